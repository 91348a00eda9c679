//! Properties of the offload layer: segmentation of generated TCP and UDP super-frames yields
//! segments that smoltcp accepts (checksums, lengths) and that carry the original payload in
//! order; checksum completion turns Linux's partial checksums into verifying ones; hostile
//! `virtio_net_hdr` values give errors, never panics.

mod common;

use std::net::IpAddr;

use proptest::prelude::*;
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
use wasm_vtep::offload::{OffloadError, Segmenter, complete_checksum, segment};
use wasm_vtep::wire::{FrameMeta, VirtioNetHdr};

use common::gso_hdr;
use wasm_vtep_testkit::flow::{Csum, Flow, Layout, flow, pattern, tcp_frame, udp_frame};

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const CWR: u8 = 0x80;

/// Checks one segment's IP header and returns (L4 offset, L4 bytes, src, dst).
fn check_ip(seg: &[u8], layout: Layout, v6: bool) -> (IpAddress, IpAddress) {
    let ip = &seg[layout.l3..];
    if v6 {
        let p = Ipv6Packet::new_checked(ip).expect("IPv6 header parses");
        assert_eq!(usize::from(p.payload_len()), seg.len() - layout.l3 - 40);
        (p.src_addr().into(), p.dst_addr().into())
    } else {
        let p = Ipv4Packet::new_checked(ip).expect("IPv4 header parses");
        assert!(p.verify_checksum(), "IPv4 header checksum");
        assert_eq!(usize::from(p.total_len()), seg.len() - layout.l3);
        (p.src_addr().into(), p.dst_addr().into())
    }
}

fn segments(frame: &[u8], hdr: &VirtioNetHdr) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut out = Vec::new();
    let mut scratch = vec![0u8; 70_000];
    let n = segment(frame, hdr, &mut scratch, |s| out.push(s.to_vec()))?;
    assert_eq!(n, out.len());
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tcp_segmentation_preserves_the_stream(
        v6 in any::<bool>(),
        vlan in proptest::option::of(any::<u16>()),
        payload_len in prop_oneof![0usize..3000, 60_000usize..64_000],
        gso_size in prop_oneof![1u16..64, 536u16..9001],
        seq in any::<u32>(),
        ip_id in any::<u16>(),
        fin_psh in any::<bool>(),
        cwr in any::<bool>(),
        ecn in any::<bool>(),
        option_words in 0usize..=10,
    ) {
        // Keep the segment count sane for the 1..64 sizes.
        prop_assume!(payload_len / usize::from(gso_size) <= 4000);
        let flow = flow(v6, vlan);
        let payload = pattern(payload_len, 3);
        let options = pattern(option_words * 4, 9);
        let flags = ACK | if fin_psh { FIN | PSH } else { 0 } | if cwr { CWR } else { 0 };
        let (frame, layout) = tcp_frame(&flow, ip_id, seq, flags, &options, &payload, Csum::Partial);
        let kind = if v6 { VirtioNetHdr::GSO_TCPV6 } else { VirtioNetHdr::GSO_TCPV4 }
            | if ecn { VirtioNetHdr::GSO_ECN } else { 0 };
        let hdr = gso_hdr(kind, gso_size, layout, 16);
        let segs = segments(&frame, &hdr).unwrap();

        let gso = usize::from(gso_size);
        prop_assert_eq!(segs.len(), payload_len.div_ceil(gso).max(1));
        let mut stream = Vec::with_capacity(payload_len);
        for (i, seg) in segs.iter().enumerate() {
            let (first, last) = (i == 0, i + 1 == segs.len());
            prop_assert_eq!(&seg[..layout.l3], &frame[..layout.l3], "L2 header copied");
            let (s, d) = check_ip(seg, layout, v6);
            if !v6 {
                let id = Ipv4Packet::new_checked(&seg[layout.l3..]).unwrap().ident();
                prop_assert_eq!(id, ip_id.wrapping_add(u16::try_from(i).unwrap()));
            }
            let tcp = TcpPacket::new_checked(&seg[layout.l4..]).unwrap();
            prop_assert!(tcp.verify_checksum(&s, &d), "TCP checksum of segment {}", i);
            prop_assert_eq!(tcp.seq_number().0 as u32, seq.wrapping_add(u32::try_from(stream.len()).unwrap()));
            prop_assert_eq!(tcp.options(), &options[..]);
            prop_assert_eq!(tcp.fin(), fin_psh && last);
            prop_assert_eq!(tcp.psh(), fin_psh && last);
            prop_assert_eq!(tcp.cwr(), cwr && first);
            prop_assert!(tcp.ack());
            let p = tcp.payload();
            if !last {
                prop_assert_eq!(p.len(), gso);
            } else {
                prop_assert!(p.len() <= gso);
            }
            stream.extend_from_slice(p);
        }
        prop_assert_eq!(stream, payload);
    }

    #[test]
    fn udp_segmentation_gives_one_datagram_per_segment(
        v6 in any::<bool>(),
        vlan in proptest::option::of(any::<u16>()),
        payload_len in prop_oneof![0usize..3000, 60_000usize..65_000],
        gso_size in prop_oneof![1u16..64, 1000u16..9001],
        ip_id in any::<u16>(),
    ) {
        prop_assume!(payload_len / usize::from(gso_size) <= 4000);
        let flow = flow(v6, vlan);
        let payload = pattern(payload_len, 5);
        let (frame, layout) = udp_frame(&flow, ip_id, &payload, Csum::Partial);
        let hdr = gso_hdr(VirtioNetHdr::GSO_UDP_L4, gso_size, layout, 6);
        let segs = segments(&frame, &hdr).unwrap();

        let gso = usize::from(gso_size);
        prop_assert_eq!(segs.len(), payload_len.div_ceil(gso).max(1));
        let mut stream = Vec::with_capacity(payload_len);
        for (i, seg) in segs.iter().enumerate() {
            let (s, d) = check_ip(seg, layout, v6);
            if !v6 {
                let id = Ipv4Packet::new_checked(&seg[layout.l3..]).unwrap().ident();
                prop_assert_eq!(id, ip_id.wrapping_add(u16::try_from(i).unwrap()));
            }
            let udp = UdpPacket::new_checked(&seg[layout.l4..]).unwrap();
            prop_assert_eq!(usize::from(udp.len()), seg.len() - layout.l4);
            prop_assert_ne!(udp.checksum(), 0);
            prop_assert!(udp.verify_checksum(&s, &d), "UDP checksum of segment {}", i);
            prop_assert_eq!((udp.src_port(), udp.dst_port()), (flow.src_port, flow.dst_port));
            let p = udp.payload();
            prop_assert!(p.len() == gso || (i + 1 == segs.len() && p.len() <= gso));
            stream.extend_from_slice(p);
        }
        prop_assert_eq!(stream, payload);
    }

    #[test]
    fn checksum_completion_verifies(
        v6 in any::<bool>(),
        vlan in proptest::option::of(any::<u16>()),
        tcp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1600),
        padding in 0usize..2,
    ) {
        let flow = flow(v6, vlan);
        let (mut frame, layout) = if tcp {
            tcp_frame(&flow, 7, 1000, ACK | PSH, &[], &payload, Csum::Partial)
        } else {
            udp_frame(&flow, 7, &payload, Csum::Partial)
        };
        // Zero padding (as from a short frame) does not change the sum.
        frame.resize(frame.len() + padding * 6, 0);
        let (s, d) = (IpAddress::from(flow.src), IpAddress::from(flow.dst));
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: u16::try_from(layout.l4).unwrap(),
            csum_offset: if tcp { 16 } else { 6 },
            ..VirtioNetHdr::NONE
        };
        complete_checksum(&mut frame, &hdr).unwrap();
        let end = frame.len() - padding * 6;
        let l4 = &frame[layout.l4..end];
        if tcp {
            prop_assert!(TcpPacket::new_checked(l4).unwrap().verify_checksum(&s, &d));
        } else {
            let udp = UdpPacket::new_checked(l4).unwrap();
            prop_assert_ne!(udp.checksum(), 0);
            prop_assert!(udp.verify_checksum(&s, &d));
        }
        // Same bytes as a checksum computed from scratch (modulo 0 vs 0xffff for TCP).
        let (full, _) = if tcp {
            tcp_frame(&flow, 7, 1000, ACK | PSH, &[], &payload, Csum::Full)
        } else {
            udp_frame(&flow, 7, &payload, Csum::Full)
        };
        let at = layout.l4 + if tcp { 16 } else { 6 };
        let ours = u16::from_be_bytes([frame[at], frame[at + 1]]);
        let theirs = u16::from_be_bytes([full[at], full[at + 1]]);
        prop_assert!(ours == theirs || (ours == 0xffff && theirs == 0));
    }

    #[test]
    fn hostile_headers_never_panic(
        v6 in any::<bool>(),
        vlan in proptest::option::of(any::<u16>()),
        tcp in any::<bool>(),
        payload_len in 0usize..4000,
        cut in any::<prop::sample::Index>(),
        flags in any::<u8>(),
        gso_type in prop_oneof![Just(1u8), Just(3), Just(4), Just(5), Just(0x81), Just(0x84), any::<u8>()],
        gso_size in prop_oneof![Just(0u16), 1u16..2000, any::<u16>()],
        csum_start in prop_oneof![Just(34u16), Just(38), Just(54), Just(58), any::<u16>()],
        csum_offset in prop_oneof![Just(6u16), Just(16), any::<u16>()],
        hdr_len in any::<u16>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        scratch_len in prop_oneof![Just(70_000usize), 0usize..2000],
    ) {
        let flow = flow(v6, vlan);
        let payload = pattern(payload_len, 1);
        let (mut frame, _) = if tcp {
            tcp_frame(&flow, 1, 1, ACK, &[], &payload, Csum::Partial)
        } else {
            udp_frame(&flow, 1, &payload, Csum::Partial)
        };
        for (i, v) in flips {
            let i = i.index(frame.len());
            frame[i] ^= v;
        }
        frame.truncate(cut.index(frame.len() + 1));
        let hdr = VirtioNetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };

        let mut c = frame.clone();
        match complete_checksum(&mut c, &hdr) {
            Ok(()) => {}
            Err(_) => prop_assert_eq!(&c, &frame),
        }

        let mut scratch = vec![0u8; scratch_len];
        let mut emitted = 0usize;
        let r = segment(&frame, &hdr, &mut scratch, |seg| {
            emitted += 1;
            // Whatever comes out is a frame the parser accepts with the same L3/L4 kinds.
            let m = FrameMeta::parse(seg).unwrap();
            assert!(m.ip.is_some());
        });
        match r {
            Ok(n) => prop_assert_eq!(n, emitted),
            Err(e) => {
                prop_assert_eq!(emitted, 0, "error {:?} after emitting", e);
                if hdr.gso_size == 0 && hdr.is_gso() {
                    let kind = hdr.gso_kind();
                    if kind == 1 || kind == 4 || kind == 5 {
                        prop_assert_eq!(e, OffloadError::BadGsoSize);
                    }
                }
            }
        }
        if let Ok(mut s) = Segmenter::new(&frame, &hdr) {
            let mut small = vec![0u8; s.max_segment_len() - 1];
            prop_assert_eq!(s.write_next(&mut small), Err(OffloadError::BufferTooSmall));
        }
    }
}

#[test]
fn gso_type_none_is_not_segmented() {
    let (frame, layout) = tcp_frame(&Flow::v4(), 1, 1, ACK, &[], &[1, 2, 3], Csum::Partial);
    let hdr = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_NONE,
        ..gso_hdr(0, 1448, layout, 16)
    };
    assert_eq!(segments(&frame, &hdr), Err(OffloadError::NotGso));
}

#[test]
fn tcp_over_ipv6_with_extension_headers_is_segmented() {
    // Insert an 8-byte hop-by-hop header between IPv6 and TCP.
    let flow = Flow::v6();
    let payload = pattern(3000, 4);
    let (base, layout) = tcp_frame(&flow, 0, 5, ACK, &[], &payload, Csum::Partial);
    let mut frame = base[..layout.l3 + 40].to_vec();
    frame.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    frame.extend_from_slice(&base[layout.l4..]);
    frame[layout.l3 + 6] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([frame[layout.l3 + 4], frame[layout.l3 + 5]]) + 8;
    frame[layout.l3 + 4..layout.l3 + 6].copy_from_slice(&plen.to_be_bytes());
    let l4 = layout.l4 + 8;
    let hdr = VirtioNetHdr {
        csum_start: u16::try_from(l4).unwrap(),
        ..gso_hdr(VirtioNetHdr::GSO_TCPV6, 1000, layout, 16)
    };
    let segs = segments(&frame, &hdr).unwrap();
    assert_eq!(segs.len(), 3);
    let (s, d) = (IpAddress::from(flow.src), IpAddress::from(flow.dst));
    let mut stream = Vec::new();
    for seg in &segs {
        let ip = Ipv6Packet::new_checked(&seg[layout.l3..]).unwrap();
        assert_eq!(usize::from(ip.payload_len()), seg.len() - layout.l3 - 40);
        assert_eq!(&seg[layout.l3 + 40..l4], &[6, 0, 1, 4, 0, 0, 0, 0]);
        let tcp = TcpPacket::new_checked(&seg[l4..]).unwrap();
        assert!(tcp.verify_checksum(&s, &d));
        stream.extend_from_slice(tcp.payload());
    }
    assert_eq!(stream, payload);

    // A routing header would change the pseudo-header's destination: refused.
    let mut routed = frame.clone();
    routed[layout.l3 + 6] = 43;
    assert_eq!(segments(&routed, &hdr), Err(OffloadError::Unsupported));
}

#[test]
fn a_64k_tso_frame_is_cut_like_the_kernel() {
    // 65,160 payload bytes at MSS 1448 with timestamps: 45 segments, as iperf3 over a veth.
    let flow = Flow::v4();
    let payload = pattern(65_160 - 12, 8);
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let (frame, layout) = tcp_frame(&flow, 100, 1, ACK | PSH, &ts, &payload, Csum::Partial);
    let hdr = gso_hdr(VirtioNetHdr::GSO_TCPV4, 1448, layout, 16);
    let segs = segments(&frame, &hdr).unwrap();
    assert_eq!(segs.len(), 45);
    assert!(segs.iter().all(|s| s.len() <= 14 + 20 + 32 + 1448));
    assert_eq!(segs[0].len(), 1514);
    let m = FrameMeta::parse(&segs[44]).unwrap();
    assert_eq!(m.ip_src(), Some(IpAddr::from([192, 0, 2, 1])));
}
