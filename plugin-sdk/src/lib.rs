//! The wasm-vtep plugin SDK: write a VTEP plugin (frame filter, learning policy, aging policy)
//! in Rust, build it for `wasm32-unknown-unknown`, and load it into `vtep`.
//!
//! Layer: the plugin side of the versioned interface `wasm-vtep:plugin@0.2.0`
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
    AgeDecision, AgeEvent, Arp, Direction, FilterResult, FrameMeta, Hooks, Icmp, LearnDecision,
    LearnEvent, Level, Location, MacAddr, MacAddrParseError, TcpFlags, Verdict,
};

/// The version of the plugin interface this SDK implements: the version of the WIT package
/// `wasm-vtep:plugin`. A plugin states it by construction: its component exports
/// `wasm-vtep:plugin/hooks@0.2.0`, and the host refuses versions it does not support.
pub const INTERFACE_VERSION: &str = "0.2.0";

/// A plugin: its state, built once from its configuration.
///
/// The hooks it answers are the hook traits it implements: [`Filter`], [`Learn`], [`Age`].
/// [`export_plugin!`] reports exactly those to the host, which never calls the others: a hook
/// not implemented costs nothing, and there is no list to keep in step with the code. Hooks are
/// called one at a time (an instance is single-threaded) and must not block; a panic traps the
/// instance, and the host then applies the plugin's `on_error` policy.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from the `config` table of its `[[plugin]]` section (converted to
    /// JSON; an empty object when there is none). An error is the one line the operator sees
    /// (`vtep` refuses to attach the plugin), so name the field: [`from_config`] does.
    fn init(config: &Value) -> Result<Self, String>;
}

/// The `filter` hook: a verdict for each frame of the plugin's VNIs.
pub trait Filter: Plugin {
    /// One result per frame of `frames`, in order: the frames of one VNI-attached batch (up
    /// to 64). [`frame_bytes`] gives a frame's bytes by its index here.
    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult>;
}

/// The `learn` hook: whether the FDB may add (or move) an entry.
pub trait Learn: Plugin {
    /// Called on learning and moves, never on a refresh.
    fn learn(&mut self, event: &LearnEvent) -> LearnDecision;
}

/// The `age` hook: whether a learned entry idle for its VNI's aging time goes.
pub trait Age: Plugin {
    /// Expire it now, or keep it a while longer.
    fn age(&mut self, event: &AgeEvent) -> AgeDecision;
}

/// A [`Plugin`] registered with [`export_plugin!`], which implements this trait.
pub trait Registered: Plugin {
    /// The hooks it answers, as `init` reports them to the host: those of [`Filter`],
    /// [`Learn`] and [`Age`] it implements.
    fn hooks() -> Hooks;
}

/// How [`export_plugin!`] tells, for a concrete type, which hook traits it implements:
/// autoref-based specialisation. For `probe: &Probe<T>`, `probe.filter_flag()` finds
/// [`HasFilter`](dispatch::HasFilter) (implemented for `Probe<T>` when `T: Filter`, so taking
/// `&Probe<T>` as it is) before [`NoFilter`](dispatch::NoFilter) (implemented for
/// `&Probe<T>`, reached only by borrowing once more). Not public API.
#[doc(hidden)]
pub mod dispatch {
    use core::marker::PhantomData;

    use super::{Age, Filter, Hooks, Learn, Plugin};

    /// A zero-sized stand-in for a plugin type, for method resolution only.
    #[derive(Debug)]
    pub struct Probe<P>(PhantomData<P>);

    impl<P> Probe<P> {
        /// The probe of `P`.
        pub const fn new() -> Probe<P> {
            Probe(PhantomData)
        }
    }

    impl<P> Default for Probe<P> {
        fn default() -> Self {
            Probe::new()
        }
    }

    macro_rules! flag {
        ($has:ident, $no:ident, $hook:ident, $method:ident, $flag:ident) => {
            /// The type implements the hook's trait.
            pub trait $has {
                /// The hook's flag.
                fn $method(&self) -> Hooks;
            }
            impl<P: $hook> $has for Probe<P> {
                fn $method(&self) -> Hooks {
                    Hooks::$flag
                }
            }
            /// The type does not implement the hook's trait.
            pub trait $no {
                /// No flag.
                fn $method(&self) -> Hooks;
            }
            impl<P: Plugin> $no for &Probe<P> {
                fn $method(&self) -> Hooks {
                    Hooks::NONE
                }
            }
        };
    }

    flag!(HasFilter, NoFilter, Filter, filter_flag, FILTER);
    flag!(HasLearn, NoLearn, Learn, learn_flag, LEARN);
    flag!(HasAge, NoAge, Age, age_flag, AGE);
}

/// Registers a [`Plugin`] type as the plugin of this crate. The hooks it answers are the hook
/// traits it implements ([`Filter`], [`Learn`], [`Age`]), found at compile time:
///
/// ```
/// use wasm_vtep_plugin_sdk::{Learn, LearnDecision, LearnEvent, Location, Plugin, Registered, Value};
///
/// struct NoRemoteLearning;
///
/// impl Plugin for NoRemoteLearning {
///     fn init(_config: &Value) -> Result<Self, String> {
///         Ok(NoRemoteLearning)
///     }
/// }
///
/// impl Learn for NoRemoteLearning {
///     fn learn(&mut self, event: &LearnEvent) -> LearnDecision {
///         match event.new_location {
///             Location::Port(_) => LearnDecision::Accept,
///             Location::Remote(_) => LearnDecision::Reject,
///         }
///     }
/// }
///
/// wasm_vtep_plugin_sdk::export_plugin!(NoRemoteLearning);
///
/// assert_eq!(NoRemoteLearning::hooks(), wasm_vtep_plugin_sdk::Hooks::LEARN);
/// ```
///
/// On wasm this exports the `wasm-vtep:plugin/hooks@0.2.0` functions (once per crate: the crate
/// must be a `cdylib`); everywhere it implements [`Registered`] so tests can check the hook set.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty, hooks: $($rest:tt)*) => {
        ::core::compile_error!(
            "export_plugin!(Type): the hooks are the traits the type implements \
             (Filter, Learn, Age); drop `hooks: [...]`"
        );
    };
    ($ty:ty $(,)?) => {
        impl $crate::Registered for $ty {
            fn hooks() -> $crate::Hooks {
                #[allow(unused_imports)]
                use $crate::dispatch::{
                    HasAge as _, HasFilter as _, HasLearn as _, NoAge as _, NoFilter as _,
                    NoLearn as _,
                };
                let probe = &$crate::dispatch::Probe::<$ty>::new();
                probe
                    .filter_flag()
                    .union(probe.learn_flag())
                    .union(probe.age_flag())
            }
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[allow(unused_imports)]
            use $crate::glue::{
                CallAge as _, CallFilter as _, CallLearn as _, SkipAge as _, SkipFilter as _,
                SkipLearn as _,
            };

            struct __WasmVtepPlugin;

            ::std::thread_local! {
                static STATE: $crate::glue::State<$ty> = const { $crate::glue::State::new(None) };
            }

            impl $crate::glue::Guest for __WasmVtepPlugin {
                fn init(config: ::std::string::String) -> $crate::glue::InitResult {
                    $crate::glue::init(&STATE, &config)
                }
                fn filter(frames: $crate::glue::Frames) -> $crate::glue::FilterResults {
                    (&$crate::dispatch::Probe::<$ty>::new()).call_filter(&STATE, frames)
                }
                fn learn(event: $crate::glue::LearnEvent) -> $crate::glue::LearnDecision {
                    (&$crate::dispatch::Probe::<$ty>::new()).call_learn(&STATE, event)
                }
                fn age(event: $crate::glue::AgeEvent) -> $crate::glue::AgeDecision {
                    (&$crate::dispatch::Probe::<$ty>::new()).call_age(&STATE, event)
                }
            }

            $crate::glue::bindings::__export_plugin_hooks!(
                __WasmVtepPlugin with_types_in $crate::glue::bindings
            );
        };
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

    export_plugin!(Nothing);

    #[derive(Debug)]
    struct FilterAndAge;

    impl Plugin for FilterAndAge {
        fn init(_: &Value) -> Result<Self, String> {
            Ok(FilterAndAge)
        }
    }

    impl Filter for FilterAndAge {
        fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
            vec![FilterResult::drop(7); frames.len()]
        }
    }

    impl Age for FilterAndAge {
        fn age(&mut self, _: &AgeEvent) -> AgeDecision {
            AgeDecision::Keep(5)
        }
    }

    export_plugin!(FilterAndAge);

    #[test]
    fn the_hooks_are_the_traits_implemented() {
        assert_eq!(Nothing::hooks(), Hooks::NONE);
        assert_eq!(FilterAndAge::hooks(), Hooks::FILTER | Hooks::AGE);
        let mut p = testing::init::<FilterAndAge>("").unwrap();
        let frame = FrameMeta::ethernet(1, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST, 0x0806);
        assert_eq!(p.filter(&[frame]), [FilterResult::drop(7)]);
    }
}

/// The README's Rust examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
