//! Inner frames as VMs send them: the test kit's (`wasm_vtep_testkit::vm`, plain bytes), with
//! VM MACs as this crate's `MacAddr`.

pub(super) use wasm_vtep_testkit::vm::{arp_reply, arp_request, rarp, udp};

use crate::wire::MacAddr;

pub(super) fn mac(n: u8) -> MacAddr {
    MacAddr(wasm_vtep_testkit::vm::mac(n))
}

/// The Ethernet source of a frame.
pub(super) fn src_of(frame: &[u8]) -> MacAddr {
    frame
        .get(6..)
        .and_then(MacAddr::from_bytes)
        .unwrap_or_default()
}
