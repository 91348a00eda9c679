//! Properties of the wire layer: parsers never panic on arbitrary bytes, and what is emitted
//! parses back to the same value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wasm_vtep::wire::{
    FrameMeta, MacAddr, Tci, VirtioNetHdr, VlanPacket, VlanRepr, Vni, VxlanPacket, VxlanRepr,
    is_tag_tpid, pop_vlan_tag, push_vlan_tag,
};

use wasm_vtep_testkit::flow::{Csum, Flow, pattern, tcp_frame, udp_frame};

fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| (
            IpAddr::V4(Ipv4Addr::from_bits(a)),
            IpAddr::V4(Ipv4Addr::from_bits(b))
        )),
        (any::<u128>(), any::<u128>()).prop_map(|(a, b)| (
            IpAddr::V6(Ipv6Addr::from_bits(a)),
            IpAddr::V6(Ipv6Addr::from_bits(b))
        )),
    ]
}

prop_compose! {
    fn flow()(
        dst_mac in any::<[u8; 6]>(),
        src_mac in any::<[u8; 6]>(),
        vlan in proptest::option::of(any::<u16>()),
        (src, dst) in ip_pair(),
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
    ) -> Flow {
        Flow { dst_mac, src_mac, vlan, src, dst, src_port, dst_port }
    }
}

proptest! {
    #[test]
    fn frame_meta_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = FrameMeta::parse(&bytes) {
            prop_assert_eq!(m.len, bytes.len());
            prop_assert!(m.l3_offset <= bytes.len());
            let _ = m.flow_hash();
        } else {
            prop_assert!(bytes.len() < 18);
        }
    }

    /// Arbitrary bytes behind a plausible Ethernet/IP prefix reach the deeper parsers.
    #[test]
    fn frame_meta_never_panics_on_ip_garbage(
        ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8)],
        inner in prop_oneof![Just(0x0800u16), Just(0x86dd)],
        version in prop_oneof![Just(0x45u8), Just(0x4f), Just(0x60), any::<u8>()],
        nh in prop_oneof![Just(0u8), Just(43), Just(44), Just(60), Just(6), Just(17), any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        if is_tag_tpid(ethertype) {
            f.extend_from_slice(&[0, 5]);
            f.extend_from_slice(&inner.to_be_bytes());
        }
        f.push(version);
        f.extend_from_slice(&rest);
        if f.len() > 20 {
            let l3 = f.len() - rest.len() - 1;
            if let Some(b) = f.get_mut(l3 + 6) { *b = nh; }
        }
        if let Ok(m) = FrameMeta::parse(&f) {
            if let Some(ip) = m.ip {
                prop_assert!(ip.l4_offset >= m.l3_offset + 20);
            }
            let _ = m.flow_hash();
        }
    }

    #[test]
    fn frame_meta_reads_back_what_was_built(
        flow in flow(),
        tcp in any::<bool>(),
        payload in 0usize..64,
    ) {
        let data = pattern(payload, 1);
        let (frame, layout) = if tcp {
            tcp_frame(&flow, 1, 1, 0x10, &[], &data, Csum::Full)
        } else {
            udp_frame(&flow, 1, &data, Csum::Full)
        };
        let m = FrameMeta::parse(&frame).unwrap();
        prop_assert_eq!(m.dst, MacAddr(flow.dst_mac));
        prop_assert_eq!(m.src, MacAddr(flow.src_mac));
        prop_assert_eq!(m.vlan, flow.vlan);
        prop_assert_eq!(m.l3_offset, layout.l3);
        prop_assert_eq!(m.len, frame.len());
        prop_assert_eq!(m.ip_src(), Some(flow.src));
        prop_assert_eq!(m.ip_dst(), Some(flow.dst));
        prop_assert_eq!(m.ip_proto(), Some(if tcp { 6 } else { 17 }));
        prop_assert_eq!(m.l4_offset(), Some(layout.l4));
        prop_assert_eq!(m.src_port(), Some(flow.src_port));
        prop_assert_eq!(m.dst_port(), Some(flow.dst_port));
        // The hash is a function of the flow, not of the payload.
        let (other, _) = if tcp {
            tcp_frame(&flow, 9, 77, 0x18, &[], &pattern(payload + 5, 2), Csum::Full)
        } else {
            udp_frame(&flow, 9, &pattern(payload + 5, 2), Csum::Full)
        };
        prop_assert_eq!(FrameMeta::parse(&other).unwrap().flow_hash(), m.flow_hash());
    }

    #[test]
    fn vxlan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        match VxlanPacket::new_checked(&bytes[..]) {
            Ok(view) => {
                let _ = (view.flags(), view.reserved_bits_set(), view.vni(), view.payload());
                let r = VxlanRepr::parse(&view);
                prop_assert_eq!(r.is_ok(), bytes[0] & 0x08 != 0);
            }
            Err(_) => prop_assert!(bytes.len() < 8),
        }
    }

    #[test]
    fn vxlan_round_trip(vni in 0u32..=Vni::MAX, junk in any::<[u8; 8]>(), tail in any::<[u8; 4]>()) {
        // Emitting over junk leaves no stale bit behind.
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&junk);
        buf[8..].copy_from_slice(&tail);
        let repr = VxlanRepr { vni: Vni::new(vni).unwrap() };
        let mut view = VxlanPacket::new_checked(&mut buf[..]).unwrap();
        repr.emit(&mut view);
        let view = VxlanPacket::new_checked(&buf[..]).unwrap();
        prop_assert!(!view.reserved_bits_set());
        prop_assert_eq!(VxlanRepr::parse(&view).unwrap(), repr);
        prop_assert_eq!(view.payload(), &tail[..]);
    }

    #[test]
    fn vlan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), start in 0usize..48) {
        if let Ok(view) = VlanPacket::new_checked(&bytes[..]) {
            let r = VlanRepr::parse(&view).unwrap();
            prop_assert_eq!(r.tci, view.tci());
            let _ = (r.tci.pcp(), r.tci.dei(), r.tci.vid(), view.payload());
        }
        let mut b = bytes.clone();
        match push_vlan_tag(&mut b, start, 0x8100, 7) {
            Ok(s) => prop_assert_eq!(s + 4, start),
            Err(_) => prop_assert_eq!(&b, &bytes),
        }
        let mut b = bytes.clone();
        if pop_vlan_tag(&mut b, start).is_err() {
            prop_assert_eq!(&b, &bytes);
        }
    }

    #[test]
    fn vlan_round_trip(tci in any::<u16>(), ethertype in any::<u16>()) {
        let repr = VlanRepr { tci: Tci(tci), ethertype };
        let mut buf = [0u8; 4];
        repr.emit(&mut VlanPacket::new_checked(&mut buf[..]).unwrap());
        prop_assert_eq!(VlanRepr::parse(&VlanPacket::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        let t = Tci(tci);
        prop_assert_eq!(Tci::new(t.pcp(), t.dei(), t.vid()), Some(t));
    }

    #[test]
    fn push_then_pop_restores_the_frame(
        frame in proptest::collection::vec(any::<u8>(), 14..100),
        tpid in prop_oneof![Just(0x8100u16), Just(0x88a8)],
        tci in any::<u16>(),
    ) {
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(&frame);
        let start = push_vlan_tag(&mut buf, 4, tpid, tci).unwrap();
        let m = FrameMeta::parse(&buf[start..]).unwrap();
        prop_assert_eq!(m.vlan, Some(tci));
        prop_assert_eq!(m.ethertype, u16::from_be_bytes([frame[12], frame[13]]));
        prop_assert_eq!((m.dst.0, m.src.0), (frame[..6].try_into().unwrap(), frame[6..12].try_into().unwrap()));
        let (start, t, c) = pop_vlan_tag(&mut buf, start).unwrap();
        prop_assert_eq!((start, t, c), (4, tpid, tci));
        prop_assert_eq!(&buf[start..], &frame[..]);
    }

    #[test]
    fn virtio_net_hdr_round_trip(b in any::<[u8; 10]>()) {
        let hdr = VirtioNetHdr::parse(&b).unwrap();
        let mut out = [0u8; 10];
        hdr.emit(&mut out).unwrap();
        prop_assert_eq!(out, b);
    }
}
