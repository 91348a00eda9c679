//! Per-packet costs of the wire and offload layers: parsing a frame and hashing its flow (and the
//! same parse with etherparse, the alternative to smoltcp's views that was weighed), completing
//! a checksum, segmenting a 64 KiB TSO super-frame.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasm_vtep::offload::{Segmenter, complete_checksum, segment};
use wasm_vtep::wire::{FrameMeta, VirtioNetHdr};

use wasm_vtep_testkit::flow::{Csum, Flow, pattern, tcp_frame};

const ACK: u8 = 0x10;

fn parse_and_hash(c: &mut Criterion) {
    let (frame, _) = tcp_frame(&Flow::v4(), 1, 1, ACK, &[], &pattern(1448, 1), Csum::Full);
    c.bench_function("frame_meta_parse_flow_hash_tcp4", |b| {
        b.iter(|| {
            let m = FrameMeta::parse(black_box(&frame)).expect("bench fixture");
            black_box(m.flow_hash())
        })
    });
}

/// What the pipeline needs of a frame (MACs, EtherType, IP addresses and protocol, ports), read
/// through smoltcp's views (as `FrameMeta::parse` does) and through etherparse's slices.
fn parse_crates(c: &mut Criterion) {
    let (frame, _) = tcp_frame(&Flow::v4(), 1, 1, ACK, &[], &pattern(1448, 1), Csum::Full);
    let mut g = c.benchmark_group("parse_tcp4_headers");
    g.bench_function("smoltcp_frame_meta", |b| {
        b.iter(|| {
            let m = FrameMeta::parse(black_box(&frame)).expect("bench fixture");
            black_box((
                m.src,
                m.dst,
                m.ethertype,
                m.ip_src(),
                m.ip_proto(),
                m.src_port(),
            ))
        })
    });
    g.bench_function("etherparse_sliced", |b| {
        b.iter(|| {
            let p =
                etherparse::SlicedPacket::from_ethernet(black_box(&frame)).expect("bench fixture");
            let eth = match &p.link {
                Some(etherparse::LinkSlice::Ethernet2(e)) => {
                    Some((e.source(), e.destination(), e.ether_type()))
                }
                _ => None,
            };
            let ip = match &p.net {
                Some(etherparse::NetSlice::Ipv4(v4)) => {
                    let h = v4.header();
                    Some((h.source(), h.destination(), h.protocol()))
                }
                _ => None,
            };
            let ports = match &p.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => {
                    Some((t.source_port(), t.destination_port()))
                }
                _ => None,
            };
            black_box((eth, ip, ports))
        })
    });
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let (mut frame, layout) = tcp_frame(
        &Flow::v4(),
        1,
        1,
        ACK,
        &[],
        &pattern(1460, 2),
        Csum::Partial,
    );
    assert_eq!(frame.len(), 1514);
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: u16::try_from(layout.l4).expect("bench fixture"),
        csum_offset: 16,
        ..VirtioNetHdr::NONE
    };
    let partial = [frame[layout.l4 + 16], frame[layout.l4 + 17]];
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("complete_1500", |b| {
        b.iter(|| {
            // Restore the partial sum so every iteration does the same work.
            frame[layout.l4 + 16..layout.l4 + 18].copy_from_slice(&partial);
            complete_checksum(black_box(&mut frame), &hdr).expect("bench fixture");
        })
    });
    g.finish();
}

fn gso(c: &mut Criterion) {
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let payload = pattern(65_160 - 12, 3);
    let (frame, layout) = tcp_frame(&Flow::v4(), 1, 1, ACK, &ts, &payload, Csum::Partial);
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: 0,
        gso_size: 1448,
        csum_start: u16::try_from(layout.l4).expect("bench fixture"),
        csum_offset: 16,
    };
    let mut scratch = vec![0u8; 2048];
    let mut g = c.benchmark_group("gso");
    g.throughput(Throughput::Bytes(
        u64::try_from(frame.len()).expect("bench fixture"),
    ));
    g.bench_function("segment_tcp4_64k_mss1448", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let n = segment(black_box(&frame), &hdr, &mut scratch, |s| bytes += s.len())
                .expect("bench fixture");
            black_box((n, bytes))
        })
    });
    g.bench_function("segmenter_tcp4_64k_mss1448", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(black_box(&frame), &hdr).expect("bench fixture");
            while let Some(n) = s.write_next(&mut scratch).expect("bench fixture") {
                black_box(&scratch[..n]);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parse_and_hash, parse_crates, checksum, gso);
criterion_main!(benches);
