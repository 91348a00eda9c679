//! A VM's TSO super-frame through the whole encap path: segmented, each segment encapsulated
//! to the one remote VTEP that has the destination, every inner checksum complete, nothing
//! truncated, and the payload intact in order.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::{Csum, Flow, pattern, tcp_frame};
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use wasm_vtep::vtep::{Dest, Outbox, PortId, VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{VirtioNetHdr, Vni};

#[test]
fn tso_super_frame_is_segmented_and_encapsulated_whole() {
    let remote = IpAddr::from([198, 18, 0, 2]);
    let mut settings = VtepSettings::new(IpAddr::from([198, 18, 0, 1]));
    let mut v = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0)]);
    v.remotes = vec![remote];
    settings.vnis.push(v);
    settings.mtu = 1600;
    let mut vtep = Vtep::new(settings, Instant::now()).unwrap();
    let mut out = Outbox::new();
    let now = Instant::now();

    // Teach host 1 that VM2 is behind host 2.
    let flow = Flow::v4();
    let (reply, _) = tcp_frame(
        &Flow {
            dst_mac: flow.src_mac,
            src_mac: flow.dst_mac,
            ..flow.clone()
        },
        1,
        1,
        0x10,
        &[],
        &[],
        Csum::Full,
    );
    let mut datagram = vec![0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0];
    datagram.extend_from_slice(&reply);
    vtep.handle_underlay(now, remote, &datagram, &mut out)
        .unwrap();
    out.clear();

    // A 65,160-byte TCP send as a veth hands it over: partial checksum, GSO TCPv4, MSS 1448.
    let payload = pattern(65_160, 7);
    let (frame, layout) = tcp_frame(&flow, 100, 1_000_000, 0x18, &[], &payload, Csum::Partial);
    let vnet = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: u16::try_from(layout.payload).unwrap(),
        gso_size: 1448,
        csum_start: u16::try_from(layout.l4).unwrap(),
        csum_offset: 16,
    };
    vtep.handle_port_frame(now, PortId(0), &vnet, &frame, &mut out)
        .unwrap();

    assert_eq!(
        out.len(),
        45,
        "65,160 / 1,448 segments, one copy each to the one remote"
    );
    let mut received = Vec::new();
    let mut seq = 1_000_000u32;
    for f in out.frames() {
        assert_eq!(f.dest, Dest::Underlay(remote));
        assert!(f.bytes.len() <= 1600);
        let inner = &f.bytes[36..];
        let ip = Ipv4Packet::new_checked(&inner[14..]).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::from(flow.src), &IpAddress::from(flow.dst)));
        assert_eq!(tcp.seq_number().0 as u32, seq);
        seq = seq.wrapping_add(u32::try_from(tcp.payload().len()).unwrap());
        received.extend_from_slice(tcp.payload());
    }
    assert_eq!(received, payload);
    assert_eq!(vtep.vni_stats().next().unwrap().to_underlay.frames, 45);
}
