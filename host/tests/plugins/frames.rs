//! Frames and a pipeline for the plugin tests and benches: host 198.18.0.1 with VNI 5001 on
//! ports 0 and 1 (and remote 198.18.0.2) and VNI 5002 on ports 2 and 3.

#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::time::Instant;

use wasm_vtep::fdb::PortId;
use wasm_vtep::vtep::{VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{VirtioNetHdr, Vni};

pub const REMOTE: &str = "198.18.0.2";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

pub fn vtep() -> Vtep {
    let mut s = VtepSettings::new(ip("198.18.0.1"));
    let mut v1 = VniSettings::new(Vni::new(5001).expect("a VNI"), vec![PortId(0), PortId(1)]);
    v1.remotes = vec![ip(REMOTE)];
    let v2 = VniSettings::new(Vni::new(5002).expect("a VNI"), vec![PortId(2), PortId(3)]);
    s.vnis = vec![v1, v2];
    Vtep::new(s, Instant::now()).expect("valid settings")
}

/// A broadcast UDP/IPv4 frame from MAC `02:00:00:00:<hi>:<lo>` (hi, lo of `src`) to UDP port
/// `dport`, with `payload` bytes after the headers. Checksums are left zero: the pipeline
/// does not check them.
pub fn udp(src: u16, dport: u16, payload: usize) -> Vec<u8> {
    let [hi, lo] = src.to_be_bytes();
    let mut f = vec![0u8; 42 + payload];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, hi, lo]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(28 + payload).expect("a small payload");
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[192, 0, 2, lo]);
    f[30..34].copy_from_slice(&[192, 0, 2, 255]);
    f[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// `frame` as the payload of a VXLAN packet on `vni`.
pub fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&vni.to_be_bytes()[1..]);
    d.push(0);
    d.extend_from_slice(frame);
    d
}

/// `n` frames from `n` MACs starting at `first`.
pub fn batch(first: u16, n: u16, dport: u16) -> Vec<Vec<u8>> {
    (first..first + n).map(|s| udp(s, dport, 18)).collect()
}

/// A port batch as the pipeline reads it.
pub fn port_batch(frames: &[Vec<u8>]) -> Vec<(VirtioNetHdr, &[u8])> {
    frames
        .iter()
        .map(|f| (VirtioNetHdr::NONE, f.as_slice()))
        .collect()
}
