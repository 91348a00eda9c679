//! The wasm-vtep plugin SDK: write a VTEP plugin (frame filter, learning policy, aging policy)
//! in Rust, build it for `wasm32-unknown-unknown`, and load it into `vtep`.
//!
//! Layer: the plugin side of the versioned interface `wasm-vtep:plugin@0.1.0`
//! (`wit/plugin.wit`, the contract for every language). A plugin implements [`Plugin`] and
//! registers its type with [`export_plugin!`]; the SDK's wasm glue (wit-bindgen guest bindings,
//! compiled only for `target_arch = "wasm32"`) converts between the canonical ABI and the Rust
//! types of [`types`], keeps the plugin's state, and answers the host's calls. The module it
//! makes imports nothing but the `host` interface: no WASI, no `env`; the host turns it into a
//! component when it loads it (see the `host` feature's `componentize`).
//!
//! On any other target the same code builds against an in-process stand-in of the host
//! ([`testing`]), so plugin logic is unit-tested with a plain `cargo test -p <plugin>`.

pub mod config;
pub mod host;
mod mac;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod types;

#[cfg(feature = "host")]
mod componentize;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue;

#[cfg(feature = "host")]
pub use componentize::componentize;
pub use config::{PerVni, from_config, parse_config};
pub use host::{Counter, frame_bytes, log, now_ms};
pub use serde_json::Value;
pub use types::{
    AgeDecision, AgeEvent, Direction, FilterResult, FrameMeta, Hooks, LearnDecision, LearnEvent,
    Level, Location, MacAddr, MacAddrParseError, Verdict,
};

/// The version of the plugin interface this SDK implements: the version of the WIT package
/// `wasm-vtep:plugin`. A plugin states it by construction: its component exports
/// `wasm-vtep:plugin/hooks@0.1.0`, and the host refuses versions it does not support.
pub const INTERFACE_VERSION: &str = "0.1.0";

/// A plugin: its state, built once from its configuration, and the hooks it answers.
///
/// Every hook has a default that behaves as if there were no plugin (pass, accept, expire), but
/// the host only calls the hooks named in [`export_plugin!`]: a hook not named costs nothing.
/// Hooks are called one at a time (a plugin instance is single-threaded) and must not block;
/// a panic traps the instance, and the host then applies the plugin's `on_error` policy.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from the `config` table of its `[[plugin]]` section (converted to
    /// JSON; an empty object when there is none). An error is the one line the operator sees
    /// (`vtep` refuses to attach the plugin), so name the field: [`from_config`] does.
    fn init(config: &Value) -> Result<Self, String>;

    /// One result per frame of `frames`, in order: the frames of one VNI-attached batch (up
    /// to a few dozen). [`frame_bytes`] gives a frame's bytes by its index here.
    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
        vec![FilterResult::PASS; frames.len()]
    }

    /// Whether the FDB may add (or move) an entry; called on learning and moves, never on a
    /// refresh.
    fn learn(&mut self, event: &LearnEvent) -> LearnDecision {
        let _ = event;
        LearnDecision::Accept
    }

    /// Whether a learned entry idle for its VNI's aging time goes, or stays a while longer.
    fn age(&mut self, event: &AgeEvent) -> AgeDecision {
        let _ = event;
        AgeDecision::Expire
    }
}

/// A [`Plugin`] registered with [`export_plugin!`], which implements this trait: the hooks it
/// answers, as `init` reports them to the host.
pub trait Registered: Plugin {
    /// The hooks named in `export_plugin!`.
    const HOOKS: Hooks;
}

/// Registers a [`Plugin`] type as the plugin of this crate, naming the hooks it implements:
///
/// ```
/// use wasm_vtep_plugin_sdk::{LearnDecision, LearnEvent, Plugin, Registered, Value};
///
/// struct NoRemoteLearning;
///
/// impl Plugin for NoRemoteLearning {
///     fn init(_config: &Value) -> Result<Self, String> {
///         Ok(NoRemoteLearning)
///     }
///
///     fn learn(&mut self, event: &LearnEvent) -> LearnDecision {
///         match event.new_location {
///             wasm_vtep_plugin_sdk::Location::Port(_) => LearnDecision::Accept,
///             wasm_vtep_plugin_sdk::Location::Remote(_) => LearnDecision::Reject,
///         }
///     }
/// }
///
/// wasm_vtep_plugin_sdk::export_plugin!(NoRemoteLearning, hooks: [learn]);
///
/// assert_eq!(NoRemoteLearning::HOOKS, wasm_vtep_plugin_sdk::Hooks::LEARN);
/// ```
///
/// Hook names are `filter`, `learn` and `age`; the host never calls the others. On wasm this
/// exports the `wasm-vtep:plugin/hooks@0.1.0` functions (once per crate: the crate must be a
/// `cdylib`); everywhere it implements [`Registered`] so tests can check the hook set.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty, hooks: [$($hook:ident),* $(,)?] $(,)?) => {
        impl $crate::Registered for $ty {
            const HOOKS: $crate::Hooks =
                $crate::Hooks::NONE $(.union($crate::__hook!($hook)))*;
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmVtepPlugin;

            ::std::thread_local! {
                static STATE: $crate::glue::State<$ty> = const { $crate::glue::State::new(None) };
            }

            impl $crate::glue::Guest for __WasmVtepPlugin {
                fn init(config: ::std::string::String) -> $crate::glue::InitResult {
                    $crate::glue::init(&STATE, &config)
                }
                fn filter(frames: $crate::glue::Frames) -> $crate::glue::FilterResults {
                    $crate::glue::filter(&STATE, frames)
                }
                fn learn(event: $crate::glue::LearnEvent) -> $crate::glue::LearnDecision {
                    $crate::glue::learn(&STATE, event)
                }
                fn age(event: $crate::glue::AgeEvent) -> $crate::glue::AgeDecision {
                    $crate::glue::age(&STATE, event)
                }
            }

            $crate::glue::bindings::__export_plugin_hooks!(
                __WasmVtepPlugin with_types_in $crate::glue::bindings
            );
        };
    };
}

/// A hook's name in [`export_plugin!`] to its flag.
#[doc(hidden)]
#[macro_export]
macro_rules! __hook {
    (filter) => {
        $crate::Hooks::FILTER
    };
    (learn) => {
        $crate::Hooks::LEARN
    };
    (age) => {
        $crate::Hooks::AGE
    };
    ($other:ident) => {
        ::core::compile_error!(::core::concat!(
            "unknown hook `",
            ::core::stringify!($other),
            "`: the hooks are filter, learn and age"
        ))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    impl Plugin for Nothing {
        fn init(_: &Value) -> Result<Self, String> {
            Ok(Nothing)
        }
    }

    export_plugin!(Nothing, hooks: [filter, age]);

    #[test]
    fn the_macro_records_the_hooks() {
        assert_eq!(<Nothing as Registered>::HOOKS, Hooks::FILTER | Hooks::AGE);
    }

    #[test]
    fn defaults_behave_as_no_plugin() {
        let mut p = testing::init::<Nothing>("").unwrap();
        let frame = FrameMeta::ethernet(1, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST, 0x0806);
        assert_eq!(p.filter(&[frame, frame]), [FilterResult::PASS; 2]);
        let learn = LearnEvent {
            vni: 1,
            mac: frame.src_mac,
            new_location: Location::Port(0),
            current: None,
            current_sticky: false,
            vni_entries: 0,
        };
        assert_eq!(p.learn(&learn), LearnDecision::Accept);
        let age = AgeEvent {
            vni: 1,
            mac: frame.src_mac,
            idle_ms: 300_000,
            hits: 5,
            location: Location::Port(0),
        };
        assert_eq!(p.age(&age), AgeDecision::Expire);
    }
}

/// The README's Rust examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
