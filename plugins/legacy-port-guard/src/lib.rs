//! `legacy-port-guard`: a plugin of interface **0.1.0**, built with wit-bindgen straight from
//! the frozen `plugin-sdk/wit-0.1.0/plugin.wit`, as a plugin built with SDK 0.1 was. The host
//! speaks 0.2.0 and must go on loading it; the test that loads it beside 0.2.0 plugins shows
//! that an old plugin still gets the fields it knows (ports here) and the bytes it asks for.
//!
//! Layer: a plugin (filter only). Contract: drops UDP frames to the ports in its config's
//! `drop_udp_ports` (reason 1, counter `udp-dropped`) and counts ARP replies in counter
//! `arp-replies`: 0.1.0 has no ARP fields, so it reads the opcode from the frame's bytes.
//!
//! ```toml
//! config = { drop_udp_ports = [9] }
//! ```

// A plugin only: on the build machine (`cargo build --workspace`) the crate is empty, since
// its exports' names (`wasm-vtep:plugin/hooks@0.1.0#filter`) are not symbols a native
// linker takes.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;

#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::cast_possible_truncation
)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../plugin-sdk/wit-0.1.0",
        world: "plugin",
    });
}

use bindings::exports::wasm_vtep::plugin::hooks::Guest;
use bindings::wasm_vtep::plugin::host;
use bindings::wasm_vtep::plugin::types::{
    AgeDecision, AgeEvent, FilterResult, FrameMeta, Hooks, LearnDecision, LearnEvent, Verdict,
};

const UDP: u8 = 17;
const ETHERTYPE_ARP: u16 = 0x0806;
/// The ARP opcode's offset in an untagged frame: 14 bytes of Ethernet, then 6 of ARP.
const ARP_OPCODE_OFFSET: usize = 20;
const ARP_REPLY: u16 = 2;
/// The drop reason of a UDP frame to a guarded port.
const GUARDED_PORT: u16 = 1;

struct State {
    ports: Vec<u16>,
    udp_dropped: u32,
    arp_replies: u32,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct PortGuard;

impl Guest for PortGuard {
    fn init(config: String) -> Result<Hooks, String> {
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        let ports = config
            .get("drop_udp_ports")
            .and_then(serde_json::Value::as_array)
            .ok_or("config.drop_udp_ports: a list of ports is required")?
            .iter()
            .map(|p| {
                p.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| format!("config.drop_udp_ports: {p} is not a port"))
            })
            .collect::<Result<Vec<u16>, String>>()?;
        let state = State {
            ports,
            udp_dropped: host::counter("udp-dropped"),
            arp_replies: host::counter("arp-replies"),
        };
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(Hooks::FILTER)
    }

    fn filter(frames: Vec<FrameMeta>) -> Vec<FilterResult> {
        STATE.with(|s| {
            let state = s.borrow();
            let Some(state) = state.as_ref() else {
                return frames.iter().map(|_| pass()).collect();
            };
            let mut results = Vec::with_capacity(frames.len());
            for (i, f) in (0u32..).zip(&frames) {
                if f.ethertype == ETHERTYPE_ARP && f.vlan.is_none() {
                    let bytes = host::frame_bytes(i);
                    let opcode = bytes
                        .get(ARP_OPCODE_OFFSET..ARP_OPCODE_OFFSET + 2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]));
                    if opcode == Some(ARP_REPLY) {
                        host::counter_add(state.arp_replies, 1);
                    }
                }
                let guarded =
                    f.ip_proto == Some(UDP) && f.dst_port.is_some_and(|p| state.ports.contains(&p));
                results.push(if guarded {
                    host::counter_add(state.udp_dropped, 1);
                    FilterResult {
                        verdict: Verdict::Drop(GUARDED_PORT),
                        cache_secs: 0,
                    }
                } else {
                    pass()
                });
            }
            results
        })
    }

    fn learn(_: LearnEvent) -> LearnDecision {
        LearnDecision::Accept
    }

    fn age(_: AgeEvent) -> AgeDecision {
        AgeDecision::Expire
    }
}

fn pass() -> FilterResult {
    FilterResult {
        verdict: Verdict::Pass,
        cache_secs: 0,
    }
}

bindings::export!(PortGuard with_types_in bindings);
