//! Arbitrary bytes through the whole pipeline: as a VXLAN datagram from the underlay, and as a
//! frame from a port with an arbitrary `virtio_net_hdr` (checksum completion and segmentation of
//! whatever the header claims). Nothing may panic, and state must stay usable.
#![no_main]

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wasm_vtep::fdb::PortId;
use wasm_vtep::vtep::{Outbox, VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{FrameMeta, VirtioNetHdr, Vni};

struct State {
    vtep: Vtep,
    out: Outbox,
    epoch: Instant,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn vtep() -> Vtep {
    let mut s = VtepSettings::new(IpAddr::from([198, 18, 0, 1]));
    let mut v = VniSettings::new(Vni::from_u24(5001), vec![PortId(0), PortId(1)]);
    v.group = Some(IpAddr::from([239, 1, 1, 100]));
    v.remotes = vec![IpAddr::from([198, 18, 0, 2])];
    v.max_entries = 64;
    s.vnis.push(v);
    let mut strict = VniSettings::new(Vni::from_u24(5002), vec![PortId(2)]);
    strict.strict_reserved = true;
    s.vnis.push(strict);
    Vtep::new(s, Instant::now()).expect("valid fuzz settings")
}

fuzz_target!(|data: &[u8]| {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(|| State {
        vtep: vtep(),
        out: Outbox::new(),
        epoch: Instant::now(),
    });
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = state.epoch + std::time::Duration::from_millis(u64::from(selector) * 1000);
    let _ = FrameMeta::parse(rest);
    if selector & 1 == 0 {
        let src = IpAddr::from([198, 18, 0, selector >> 1]);
        let _ = state.vtep.handle_underlay(now, src, rest, &mut state.out);
    } else if rest.len() >= VirtioNetHdr::LEN {
        let (hdr, frame) = rest.split_at(VirtioNetHdr::LEN);
        if let Ok(vnet) = VirtioNetHdr::parse(hdr) {
            let port = PortId(u16::from(selector >> 1) % 4);
            let _ = state
                .vtep
                .handle_port_frame(now, port, &vnet, frame, &mut state.out);
        }
    }
    state.vtep.handle_timeout(now);
    state.out.clear();
});
