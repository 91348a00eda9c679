//! Frames of one flow, for the property tests and benches: TCP and UDP over IPv4 or IPv6,
//! optionally 802.1Q-tagged, with the L4 checksum either complete or partial exactly as Linux
//! leaves it for `CHECKSUM_PARTIAL` (the pseudo-header sum, folded, not complemented, over the
//! whole L4 length). Written by hand from the RFC layouts so that they check the code under test
//! rather than mirror it; smoltcp computes the checksums.

use std::net::IpAddr;

use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket, checksum::pseudo_header,
};

/// Who talks to whom.
#[derive(Debug, Clone)]
pub struct Flow {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Flow {
    pub fn v4() -> Flow {
        Flow {
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            src: IpAddr::from([192, 0, 2, 1]),
            dst: IpAddr::from([192, 0, 2, 2]),
            src_port: 40000,
            dst_port: 5201,
        }
    }

    pub fn v6() -> Flow {
        Flow {
            src: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
            dst: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]),
            ..Flow::v4()
        }
    }
}

/// Where the headers ended up.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub l3: usize,
    pub l4: usize,
    pub payload: usize,
}

/// How the L4 checksum field is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    Full,
    Partial,
}

fn l2(flow: &Flow, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(70_000);
    f.extend_from_slice(&flow.dst_mac);
    f.extend_from_slice(&flow.src_mac);
    if let Some(tci) = flow.vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Appends an IP header for an L4 packet of `l4_len` bytes; returns the frame and the L3 offset.
fn l3(flow: &Flow, proto: u8, ip_id: u16, l4_len: usize) -> (Vec<u8>, usize) {
    match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut f = l2(flow, 0x0800);
            let l3 = f.len();
            let total = u16::try_from(20 + l4_len).expect("IPv4 packet too long");
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&ip_id.to_be_bytes());
            f.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            Ipv4Packet::new_unchecked(&mut f[l3..]).fill_checksum();
            (f, l3)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut f = l2(flow, 0x86dd);
            let l3 = f.len();
            let plen = u16::try_from(l4_len).expect("IPv6 payload too long");
            f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
            f.extend_from_slice(&plen.to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            (f, l3)
        }
        _ => panic!("mixed address families"),
    }
}

fn finish_csum(f: &mut [u8], flow: &Flow, l4: usize, proto: IpProtocol, field: usize, csum: Csum) {
    let (s, d) = (IpAddress::from(flow.src), IpAddress::from(flow.dst));
    let len = u32::try_from(f.len() - l4).expect("L4 length fits 32 bits");
    match (csum, proto) {
        (Csum::Partial, _) => {
            let partial = pseudo_header(&s, &d, proto, len);
            f[l4 + field..l4 + field + 2].copy_from_slice(&partial.to_be_bytes());
        }
        (Csum::Full, IpProtocol::Tcp) => {
            TcpPacket::new_unchecked(&mut f[l4..]).fill_checksum(&s, &d)
        }
        (Csum::Full, _) => UdpPacket::new_unchecked(&mut f[l4..]).fill_checksum(&s, &d),
    }
}

/// A TCP segment (or super-frame) with the given sequence number, flags byte, options (a
/// multiple of 4 bytes, at most 40) and payload.
pub fn tcp_frame(
    flow: &Flow,
    ip_id: u16,
    seq: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
    csum: Csum,
) -> (Vec<u8>, Layout) {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let thl = 20 + options.len();
    let (mut f, l3) = l3(flow, 6, ip_id, thl + payload.len());
    let l4 = f.len();
    f.extend_from_slice(&flow.src_port.to_be_bytes());
    f.extend_from_slice(&flow.dst_port.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // ack
    f.push(u8::try_from(thl / 4).expect("at most 15 words") << 4);
    f.push(flags);
    f.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]); // window, checksum, urgent
    f.extend_from_slice(options);
    f.extend_from_slice(payload);
    finish_csum(&mut f, flow, l4, IpProtocol::Tcp, 16, csum);
    (
        f,
        Layout {
            l3,
            l4,
            payload: l4 + thl,
        },
    )
}

/// A UDP datagram (or USO super-datagram) with the given payload.
pub fn udp_frame(flow: &Flow, ip_id: u16, payload: &[u8], csum: Csum) -> (Vec<u8>, Layout) {
    let (mut f, l3) = l3(flow, 17, ip_id, 8 + payload.len());
    let l4 = f.len();
    f.extend_from_slice(&flow.src_port.to_be_bytes());
    f.extend_from_slice(&flow.dst_port.to_be_bytes());
    // A super-datagram's length does not fit 16 bits in general; Linux leaves the total here.
    let ulen = u16::try_from(8 + payload.len()).unwrap_or(0);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    finish_csum(&mut f, flow, l4, IpProtocol::Udp, 6, csum);
    (
        f,
        Layout {
            l3,
            l4,
            payload: l4 + 8,
        },
    )
}

/// Deterministic filler bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + usize::from(seed) * 7) % 251).expect("below 251"))
        .collect()
}

/// The IPv4 or IPv6 flow, tagged with `vlan` or not.
pub fn flow(v6: bool, vlan: Option<u16>) -> Flow {
    let f = if v6 { Flow::v6() } else { Flow::v4() };
    Flow { vlan, ..f }
}
