//! A VM's TSO super-frame through the whole encap path: segmented, each segment encapsulated
//! to the one remote VTEP that has the destination, every inner checksum complete, nothing
//! truncated, the payload intact in order, and the datagrams batched for UDP GSO (one flow,
//! equal lengths but the last, within the kernel's limits).

use std::net::IpAddr;
use std::time::Instant;

use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use wasm_vtep::fdb::{Builtin, PortId};
use wasm_vtep::offload::segment;
use wasm_vtep::vtep::{
    Dest, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, Outbox, VniSettings, Vtep, VtepSettings,
};
use wasm_vtep::wire::{VirtioNetHdr, Vni};
use wasm_vtep_testkit::flow::{Csum, Flow, pattern, tcp_frame};

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

    // 65,160 / 1,448 = 45 segments of 1,502-byte frames, 1,510-byte datagrams: 43 fit one GSO
    // batch's 65,507 bytes, the other 2 go in a second.
    let datagram_len = 8 + layout.payload + 1448;
    let batches: Vec<usize> = out.frames().iter().map(|f| f.datagrams().count()).collect();
    assert_eq!(batches, [43, 2]);
    let mut received = Vec::new();
    let mut seq = 1_000_000u32;
    let mut src_port = None;
    let datagrams = out.frames().iter().flat_map(|f| {
        let Dest::Underlay(d) = f.dest else {
            panic!("to a port: {:?}", f.dest)
        };
        assert_eq!(d.dst, remote);
        assert!(
            *src_port.get_or_insert(d.src_port) == d.src_port,
            "one flow, one port"
        );
        assert!(f.bytes.len() <= MAX_GSO_BYTES && f.datagrams().count() <= MAX_GSO_SEGMENTS);
        assert_eq!(f.segment_len, datagram_len);
        f.datagrams()
    });
    for d in datagrams {
        assert!(20 + 8 + d.len() <= 1600, "each outer packet fits the MTU");
        let inner = &d[8..];
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

/// The whole way: host 1 cuts a VM's 64 KiB TCP super-frame into datagrams; host 2 receives
/// them (as a GRO batch would hand them over) and delivers super-frames again, whose segments
/// are exactly the ones that crossed the underlay.
#[test]
fn segments_from_the_underlay_reach_the_vm_merged_into_super_frames() {
    let (h1, h2) = (IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2]));
    let vtep_at = |local: IpAddr, remote: IpAddr| {
        let mut settings = VtepSettings::new(local);
        let mut v = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0)]);
        v.remotes = vec![remote];
        settings.vnis.push(v);
        settings.mtu = 1600;
        Vtep::new(settings, Instant::now()).unwrap()
    };
    let (mut v1, mut v2) = (vtep_at(h1, h2), vtep_at(h2, h1));
    let now = Instant::now();
    let flow = Flow::v4();
    let back = Flow {
        dst_mac: flow.src_mac,
        src_mac: flow.dst_mac,
        ..flow.clone()
    };
    // VM2 speaks first: host 2 learns it on its port, host 1 behind host 2.
    let (hello, _) = tcp_frame(&back, 1, 1, 0x10, &[], &[], Csum::Full);
    let mut out = Outbox::new();
    v2.handle_port_frame(now, PortId(0), &VirtioNetHdr::NONE, &hello, &mut out)
        .unwrap();
    for d in out.frames().iter().flat_map(|f| f.datagrams()) {
        v1.handle_underlay(now, h2, d, &mut Outbox::new()).unwrap();
    }
    out.clear();

    let payload = pattern(65_160, 3);
    let (frame, layout) = tcp_frame(&flow, 9, 5_000, 0x18, &[], &payload, Csum::Partial);
    let vnet = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: u16::try_from(layout.payload).unwrap(),
        gso_size: 1448,
        csum_start: u16::try_from(layout.l4).unwrap(),
        csum_offset: 16,
    };
    v1.handle_port_frame(now, PortId(0), &vnet, &frame, &mut out)
        .unwrap();
    let datagrams: Vec<Vec<u8>> = out
        .frames()
        .iter()
        .flat_map(|f| f.datagrams())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(datagrams.len(), 45);

    let batch: Vec<(IpAddr, &[u8])> = datagrams.iter().map(|d| (h1, &d[..])).collect();
    let mut delivered = Outbox::new();
    v2.handle_underlay_batch(now, &batch[..], &mut delivered, &mut Builtin);
    assert_eq!(delivered.len(), 1, "one super-frame: 45 segments fit one");
    let f = &delivered.frames()[0];
    assert_eq!(f.dest, Dest::Port(PortId(0)));
    assert_eq!(f.vnet.gso_kind(), VirtioNetHdr::GSO_TCPV4);
    assert_eq!(f.vnet.gso_size, 1448);
    assert!(f.vnet.needs_csum());
    let mut scratch = vec![0; 70_000];
    let mut again = Vec::new();
    segment(&f.bytes, &f.vnet, &mut scratch, |s| again.push(s.to_vec())).unwrap();
    let crossed: Vec<Vec<u8>> = datagrams.iter().map(|d| d[8..].to_vec()).collect();
    assert_eq!(again, crossed);
    assert_eq!(v2.vni_stats().next().unwrap().to_ports.frames, 45);
}
