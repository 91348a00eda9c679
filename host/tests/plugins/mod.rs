//! The pipeline the plugin tests and benches run frames through: host 198.18.0.1 with VNI 5001
//! on ports 0 and 1 (and remote [`REMOTE`]) and VNI 5002 on ports 2 and 3. The frames come from
//! `wasm_vtep_testkit::vm`; this module holds what needs wasm-vtep's types, which the test kit
//! cannot depend on.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use wasm_vtep::fdb::PortId;
use wasm_vtep::vtep::{VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{VirtioNetHdr, Vni};

/// The one remote VTEP of VNI 5001.
pub(crate) const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

pub(crate) fn vtep() -> Vtep {
    let mut s = VtepSettings::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
    let mut v1 = VniSettings::new(Vni::new(5001).expect("a VNI"), vec![PortId(0), PortId(1)]);
    v1.remotes = vec![REMOTE];
    let v2 = VniSettings::new(Vni::new(5002).expect("a VNI"), vec![PortId(2), PortId(3)]);
    s.vnis = vec![v1, v2];
    Vtep::new(s, Instant::now()).expect("valid settings")
}

/// A port batch as the pipeline reads it.
pub(crate) fn port_batch(frames: &[Vec<u8>]) -> Vec<(VirtioNetHdr, &[u8])> {
    frames
        .iter()
        .map(|f| (VirtioNetHdr::NONE, f.as_slice()))
        .collect()
}
