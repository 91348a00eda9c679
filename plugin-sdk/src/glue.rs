//! The wasm side of the boundary: wit-bindgen guest bindings for the `plugin` world, and the
//! generic functions [`crate::export_plugin!`] wires the generated `Guest` trait to. They keep
//! the plugin's state in a thread-local of the plugin crate (wasm is single-threaded) and
//! convert between the generated types and those of [`crate::types`].
//!
//! Not public API: only the macro names anything here.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread::LocalKey;

use crate::dispatch::Probe;
use crate::types as sdk;
use crate::{Age, Filter, Learn, Plugin, Registered};

/// The generated bindings. Their lints are wit-bindgen's business.
#[allow(
    unreachable_pub,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::cast_possible_truncation
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_hooks",
        default_bindings_module: "wasm_vtep_plugin_sdk::glue::bindings",
    });
}

use bindings::exports::wasm_vtep::plugin::hooks as exports;
use bindings::wasm_vtep::plugin::host as wit_host;
use bindings::wasm_vtep::plugin::types as wit;

pub use exports::Guest;
pub use wit::{AgeDecision, AgeEvent, LearnDecision, LearnEvent};

/// Where a plugin's state lives: filled by `init`.
pub type State<P> = RefCell<Option<P>>;
/// What `init` answers.
pub type InitResult = Result<wit::Hooks, String>;
/// A batch as the canonical ABI lifts it.
pub type Frames = Vec<wit::FrameMeta>;
/// The batch's answers.
pub type FilterResults = Vec<wit::FilterResult>;

/// `hooks.init`: parses the config, builds the plugin, and reports its hooks. Also routes
/// panics to the host's log, since a module without WASI has no stderr.
pub fn init<P: Registered>(state: &'static LocalKey<State<P>>, config: &str) -> InitResult {
    std::panic::set_hook(Box::new(|info| {
        crate::log(sdk::Level::Error, &format!("plugin panicked: {info}"));
    }));
    let plugin = P::init(&crate::parse_config(config)?)?;
    state.with(|s| *s.borrow_mut() = Some(plugin));
    Ok(hooks_to_wit(P::hooks()))
}

/// Runs `f` on the plugin. The host calls hooks only after a successful `init`; anything else
/// is a host bug, and trapping says so louder than a made-up answer would.
fn with_plugin<P: Plugin, R>(state: &'static LocalKey<State<P>>, f: impl FnOnce(&mut P) -> R) -> R {
    state.with(|s| match s.borrow_mut().as_mut() {
        Some(plugin) => f(plugin),
        None => {
            // The panic hook is installed by `init`: say it here.
            crate::log(sdk::Level::Error, "a hook was called before init succeeded");
            panic!("a hook was called before init succeeded")
        }
    })
}

/// `hooks.filter`.
fn filter<P: Filter>(state: &'static LocalKey<State<P>>, frames: Frames) -> FilterResults {
    let frames: Vec<sdk::FrameMeta> = frames.into_iter().map(frame_from_wit).collect();
    let results = with_plugin(state, |p| p.filter(&frames));
    results.into_iter().map(filter_result_to_wit).collect()
}

/// `hooks.learn`.
fn learn<P: Learn>(state: &'static LocalKey<State<P>>, event: LearnEvent) -> LearnDecision {
    let event = sdk::LearnEvent {
        vni: event.vni,
        mac: sdk::MacAddr::from_u64(event.mac),
        new_location: location_from_wit(event.new_location),
        current: event.current.map(location_from_wit),
        current_sticky: event.current_sticky,
        vni_entries: event.vni_entries,
    };
    match with_plugin(state, |p| p.learn(&event)) {
        sdk::LearnDecision::Accept => LearnDecision::Accept,
        sdk::LearnDecision::Reject => LearnDecision::Reject,
        sdk::LearnDecision::AcceptSticky => LearnDecision::AcceptSticky,
    }
}

/// `hooks.age`.
fn age<P: Age>(state: &'static LocalKey<State<P>>, event: AgeEvent) -> AgeDecision {
    let event = sdk::AgeEvent {
        vni: event.vni,
        mac: sdk::MacAddr::from_u64(event.mac),
        idle_ms: event.idle_ms,
        hits: event.hits,
        location: location_from_wit(event.location),
    };
    match with_plugin(state, |p| p.age(&event)) {
        sdk::AgeDecision::Expire => AgeDecision::Expire,
        sdk::AgeDecision::Keep(secs) => AgeDecision::Keep(secs),
    }
}

/// Declares, for one hook, the call `export_plugin!` makes: to the plugin's hook when its type
/// implements the hook's trait (`$call` on `Probe<P>`), else (`$skip` on `&Probe<P>`, reached
/// by autoref only when the first does not apply) an answer as if there were no plugin. The
/// second is never used by a host that keeps to the interface: `init` did not report the hook.
macro_rules! call {
    ($call:ident, $skip:ident, $hook:ident, $method:ident, $in:ty, $out:ty, $f:ident, $none:expr) => {
        /// Calls the plugin's hook.
        pub trait $call<P> {
            /// The hook's answer.
            fn $method(&self, state: &'static LocalKey<State<P>>, input: $in) -> $out;
        }
        impl<P: $hook> $call<P> for Probe<P> {
            fn $method(&self, state: &'static LocalKey<State<P>>, input: $in) -> $out {
                $f(state, input)
            }
        }
        /// Answers for a plugin without the hook.
        pub trait $skip<P> {
            /// As if there were no plugin.
            fn $method(&self, state: &'static LocalKey<State<P>>, input: $in) -> $out;
        }
        impl<P: Plugin> $skip<P> for &Probe<P> {
            fn $method(&self, _: &'static LocalKey<State<P>>, input: $in) -> $out {
                #[allow(clippy::redundant_closure_call)]
                ($none)(input)
            }
        }
    };
}

call!(
    CallFilter,
    SkipFilter,
    Filter,
    call_filter,
    Frames,
    FilterResults,
    filter,
    |frames: Frames| {
        frames
            .iter()
            .map(|_| filter_result_to_wit(sdk::FilterResult::PASS))
            .collect::<FilterResults>()
    }
);
call!(
    CallLearn,
    SkipLearn,
    Learn,
    call_learn,
    LearnEvent,
    LearnDecision,
    learn,
    |_| { LearnDecision::Accept }
);
call!(
    CallAge,
    SkipAge,
    Age,
    call_age,
    AgeEvent,
    AgeDecision,
    age,
    |_| AgeDecision::Expire
);

fn hooks_to_wit(hooks: sdk::Hooks) -> wit::Hooks {
    let mut out = wit::Hooks::empty();
    for (ours, theirs) in [
        (sdk::Hooks::FILTER, wit::Hooks::FILTER),
        (sdk::Hooks::LEARN, wit::Hooks::LEARN),
        (sdk::Hooks::AGE, wit::Hooks::AGE),
    ] {
        if hooks.contains(ours) {
            out |= theirs;
        }
    }
    out
}

/// The WIT `ip-addr`: IPv4 as a big-endian `u32`, IPv6 as its high and low 64 bits.
fn ip_from_wit(ip: wit::IpAddr) -> IpAddr {
    match ip {
        wit::IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        wit::IpAddr::V6((hi, lo)) => {
            IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
        }
    }
}

fn location_from_wit(location: wit::Location) -> sdk::Location {
    match location {
        wit::Location::Port(port) => sdk::Location::Port(port),
        wit::Location::Remote(ip) => sdk::Location::Remote(ip_from_wit(ip)),
    }
}

fn frame_from_wit(f: wit::FrameMeta) -> sdk::FrameMeta {
    sdk::FrameMeta {
        vni: f.vni,
        direction: match f.direction {
            wit::Direction::FromPort => sdk::Direction::FromPort,
            wit::Direction::FromUnderlay => sdk::Direction::FromUnderlay,
        },
        source: location_from_wit(f.source),
        src_mac: sdk::MacAddr::from_u64(f.src_mac),
        dst_mac: sdk::MacAddr::from_u64(f.dst_mac),
        vlan: f.vlan,
        ethertype: f.ethertype,
        src_ip: f.src_ip.map(ip_from_wit),
        dst_ip: f.dst_ip.map(ip_from_wit),
        ip_proto: f.ip_proto,
        src_port: f.src_port,
        dst_port: f.dst_port,
        len: f.len,
        dscp: f.dscp,
        tcp_flags: f.tcp_flags.map(|flags| sdk::TcpFlags(flags.bits())),
        icmp: f.icmp.map(|i| sdk::Icmp {
            kind: i.type_,
            code: i.code,
            nd_target: i.nd_target.and_then(|ip| match ip_from_wit(ip) {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            }),
        }),
        arp: f.arp.map(|a| sdk::Arp {
            opcode: a.opcode,
            sender_mac: sdk::MacAddr::from_u64(a.sender_mac),
            sender_ip: Ipv4Addr::from(a.sender_ip),
            target_mac: sdk::MacAddr::from_u64(a.target_mac),
            target_ip: Ipv4Addr::from(a.target_ip),
        }),
    }
}

fn filter_result_to_wit(r: sdk::FilterResult) -> wit::FilterResult {
    wit::FilterResult {
        verdict: match r.verdict {
            sdk::Verdict::Pass => wit::Verdict::Pass,
            sdk::Verdict::Drop(reason) => wit::Verdict::Drop(reason),
        },
        cache_secs: r.cache_secs,
    }
}

/// The imports behind [`crate::host`].
pub(crate) mod imports {
    use super::{sdk, wit, wit_host};

    pub(crate) fn log(level: sdk::Level, message: &str) {
        let level = match level {
            sdk::Level::Error => wit::Level::Error,
            sdk::Level::Warn => wit::Level::Warn,
            sdk::Level::Info => wit::Level::Info,
            sdk::Level::Debug => wit::Level::Debug,
        };
        wit_host::log(level, message);
    }

    pub(crate) fn now_ms() -> u64 {
        wit_host::now_ms()
    }

    pub(crate) fn counter(name: &str) -> u32 {
        wit_host::counter(name)
    }

    pub(crate) fn counter_add(id: u32, delta: u64) {
        wit_host::counter_add(id, delta);
    }

    pub(crate) fn frame_bytes(index: u32) -> Vec<u8> {
        wit_host::frame_bytes(index)
    }
}
