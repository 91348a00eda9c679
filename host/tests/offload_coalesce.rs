//! Coalescing (GRO) against segmentation (GSO): the segments of a super-frame merge back into
//! one super-frame whose segmentation gives the very same segments, for TCP and UDP over IPv4
//! and IPv6, tagged or not; and what must not merge (another flow, a gap in the sequence, a bad
//! checksum, flags other than ACK and PSH, an IPv4 ID out of step) does not.

mod common;

use proptest::prelude::*;
use wasm_vtep::offload::{Run, segment};
use wasm_vtep::wire::{FrameMeta, VirtioNetHdr};

use common::gso_hdr;
use wasm_vtep_testkit::flow::{Csum, Flow, flow, pattern, tcp_frame, udp_frame};

const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;

fn cut(frame: &[u8], hdr: &VirtioNetHdr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut scratch = vec![0u8; 70_000];
    segment(frame, hdr, &mut scratch, |s| out.push(s.to_vec())).expect("the super-frame cuts");
    out
}

/// Merges `frames` the way the delivery path does: each joins the run if it can, else starts a
/// new one. Returns the finished frames with their headers.
fn merge(frames: &[Vec<u8>]) -> Vec<(VirtioNetHdr, Vec<u8>)> {
    let mut runs: Vec<(Option<Run>, Vec<u8>)> = Vec::new();
    for frame in frames {
        let meta = FrameMeta::parse(frame).expect("a whole Ethernet header");
        if let Some((Some(run), head)) = runs.last_mut()
            && run.same_flow(head, frame)
            && run.append(head, frame, &meta)
        {
            continue;
        }
        runs.push((Run::start(frame, &meta), frame.clone()));
    }
    runs.into_iter()
        .map(|(run, mut head)| match run {
            Some(run) => (run.finish(&mut head), head),
            None => (VirtioNetHdr::NONE, head),
        })
        .collect()
}

/// The value a super-frame carries in its transport checksum field (at `csum_start +
/// csum_offset`), which the receiving kernel takes as the pseudo-header sum to finish.
fn partial_field(head: &[u8], vnet: &VirtioNetHdr) -> Option<u16> {
    let at = usize::from(vnet.csum_start) + usize::from(vnet.csum_offset);
    Some(u16::from_be_bytes([*head.get(at)?, *head.get(at + 1)?]))
}

/// The pseudo-header sum (folded, not complemented) of the IP packet at `l3`, protocol `proto`
/// (6 is TCP, 17 UDP), over its whole transport length: what `CHECKSUM_PARTIAL` wants.
fn pseudo_sum(head: &[u8], l3: usize, v6: bool, proto: u8) -> u16 {
    let (addrs, l4) = if v6 {
        (&head[l3 + 8..l3 + 40], l3 + 40)
    } else {
        (&head[l3 + 12..l3 + 20], l3 + 20)
    };
    let len = u32::try_from(head.len() - l4).expect("a super-frame's length fits");
    let mut sum: u32 = addrs
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    sum += u32::from(proto) + (len >> 16) + (len & 0xffff);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded to 16 bits")
}

#[test]
fn udp_padding_inside_the_ip_packet_is_not_merged_as_payload() {
    let f = Flow::v4();
    let (mut padded, _) = udp_frame(&f, 1, &pattern(100, 1), Csum::Full);
    // Shorten the UDP length by 4 bytes: the IP packet carries 4 bytes past the datagram.
    let l4 = 14 + 20;
    let ulen = u16::from_be_bytes([padded[l4 + 4], padded[l4 + 5]]) - 4;
    padded[l4 + 4..l4 + 6].copy_from_slice(&ulen.to_be_bytes());
    padded[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]); // no checksum: only the length can tell
    let meta = FrameMeta::parse(&padded).expect("parses");
    assert!(Run::start(&padded, &meta).is_none());
}

/// Cuts the merged frames again, checking that each run was as long as it could be: 64
/// segments, or an IP packet the next segment would not fit into, or the end of its flow's run.
fn recut(merged: &[(VirtioNetHdr, Vec<u8>)], l3: usize) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut again = Vec::new();
    for (i, (vnet, head)) in merged.iter().enumerate() {
        let pieces = if vnet.is_gso() {
            cut(head, vnet)
        } else {
            vec![head.clone()]
        };
        if let Some((_, next)) = merged.get(i + 1) {
            let hdr = if vnet.is_gso() {
                usize::from(vnet.hdr_len)
            } else {
                next.len()
            };
            let next_payload = next.len().saturating_sub(hdr);
            let full = pieces.len() == 64 || head.len() - l3 + next_payload > 65_535;
            let ended = pieces.last().map(Vec::len) != pieces.first().map(Vec::len);
            prop_assert!(
                full || ended,
                "run {} stopped early at {} segments",
                i,
                pieces.len()
            );
        }
        again.extend(pieces);
    }
    Ok(again)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn tcp_segments_merge_back_into_what_cuts_into_them_again(
        v6 in any::<bool>(),
        vlan in proptest::option::of(0u16..4096),
        payload_len in 1usize..64_000,
        gso_size in prop_oneof![536u16..1449, 1449u16..9001],
        seq in any::<u32>(),
        ip_id in any::<u16>(),
        psh in any::<bool>(),
        option_words in 0usize..=10,
    ) {
        let f = flow(v6, vlan);
        let payload = pattern(payload_len, 5);
        let options = pattern(option_words * 4, 1);
        let flags = ACK | if psh { PSH } else { 0 };
        let (frame, layout) = tcp_frame(&f, ip_id, seq, flags, &options, &payload, Csum::Partial);
        let kind = if v6 { VirtioNetHdr::GSO_TCPV6 } else { VirtioNetHdr::GSO_TCPV4 };
        let segments = cut(&frame, &gso_hdr(kind, gso_size, layout, 16));

        let merged = merge(&segments);
        prop_assert!(merged.len() < segments.len() || segments.len() == 1, "nothing merged");
        let again = recut(&merged, layout.l3)?;
        prop_assert_eq!(&again, &segments);
        for (vnet, head) in merged.iter().filter(|(v, _)| v.is_gso()) {
            prop_assert_eq!(vnet.gso_size, gso_size);
            prop_assert_eq!(usize::from(vnet.hdr_len), layout.payload);
            prop_assert_eq!(partial_field(head, vnet), Some(pseudo_sum(head, layout.l3, v6, 6)));
        }
    }

    #[test]
    fn udp_datagrams_of_one_size_merge_into_a_uso_frame(
        v6 in any::<bool>(),
        count in 1usize..100,
        size in 1usize..1473,
        last in 1usize..1473,
        ip_id in any::<u16>(),
    ) {
        let f = flow(v6, None);
        let sizes: Vec<usize> = (0..count).map(|i| if i + 1 == count { last.min(size) } else { size }).collect();
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let id = ip_id.wrapping_add(u16::try_from(i).unwrap());
                udp_frame(&f, id, &pattern(n, u8::try_from(i % 256).unwrap()), Csum::Full).0
            })
            .collect();
        let merged = merge(&frames);
        prop_assert!(merged.len() < frames.len() || frames.len() == 1, "nothing merged");
        let again = recut(&merged, 14)?;
        prop_assert_eq!(&again, &frames);
        for (vnet, head) in merged.iter().filter(|(v, _)| v.is_gso()) {
            prop_assert_eq!(vnet.gso_kind(), VirtioNetHdr::GSO_UDP_L4);
            prop_assert_eq!(partial_field(head, vnet), Some(pseudo_sum(head, 14, v6, 17)));
        }
    }
}

/// Four full TCP segments of one flow, IDs and sequence numbers in step, checksums complete.
fn four_segments(f: &Flow) -> Vec<Vec<u8>> {
    (0u16..4)
        .map(|i| {
            let seq = 1000 + u32::from(i) * 100;
            tcp_frame(f, 7 + i, seq, ACK, &[], &pattern(100, 3), Csum::Full).0
        })
        .collect()
}

fn runs(frames: &[Vec<u8>]) -> Vec<usize> {
    merge(frames)
        .iter()
        .map(|(v, h)| if v.is_gso() { (h.len() - 54) / 100 } else { 1 })
        .collect()
}

#[test]
fn a_clean_run_merges_whole() {
    let f = Flow::v4();
    assert_eq!(runs(&four_segments(&f)), [4]);
}

#[test]
fn a_gap_in_the_sequence_starts_a_new_run() {
    let f = Flow::v4();
    let mut s = four_segments(&f);
    s.remove(2);
    assert_eq!(runs(&s), [2, 1]);
}

#[test]
fn a_bad_checksum_is_never_merged() {
    let f = Flow::v4();
    let mut s = four_segments(&f);
    let last = s[2].len() - 1;
    s[2][last] ^= 0xff;
    assert_eq!(
        runs(&s),
        [2, 1, 1],
        "the corrupted one alone; a gap after it"
    );
}

#[test]
fn another_flow_is_not_merged() {
    let f = Flow::v4();
    let mut s = four_segments(&f);
    let other = Flow {
        src_port: 40001,
        ..Flow::v4()
    };
    s[1] = tcp_frame(&other, 8, 1100, ACK, &[], &pattern(100, 3), Csum::Full).0;
    let meta = FrameMeta::parse(&s[0]).unwrap();
    let run = Run::start(&s[0], &meta).unwrap();
    assert!(!run.same_flow(&s[0], &s[1]));
    assert!(run.same_flow(&s[0], &s[2]));
}

#[test]
fn only_ack_and_psh_segments_with_data_merge() {
    let f = Flow::v4();
    let syn = tcp_frame(&f, 1, 1, SYN | ACK, &[], &pattern(10, 1), Csum::Full).0;
    let pure_ack = tcp_frame(&f, 1, 1, ACK, &[], &[], Csum::Full).0;
    for frame in [syn, pure_ack] {
        let meta = FrameMeta::parse(&frame).unwrap();
        assert!(Run::start(&frame, &meta).is_none());
    }
    // PSH ends a run and the super-frame keeps it.
    let mut s = four_segments(&f);
    s[1] = tcp_frame(&f, 8, 1100, ACK | PSH, &[], &pattern(100, 3), Csum::Full).0;
    let merged = merge(&s);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].1[14 + 20 + 13] & PSH, PSH);
}

#[test]
fn ipv4_ids_must_count_up_unless_df_is_set() {
    let f = Flow::v4();
    let mut s = four_segments(&f);
    // The common builder sets DF: any ID goes.
    s[1] = tcp_frame(&f, 99, 1100, ACK, &[], &pattern(100, 3), Csum::Full).0;
    assert_eq!(runs(&s), [4]);
    // Without DF the ID must be the next one.
    let clear_df = |frame: &mut Vec<u8>| {
        frame[14 + 6] &= !0x40;
        frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let check = !ip_sum(&frame[14..34]);
        frame[14 + 10..14 + 12].copy_from_slice(&check.to_be_bytes());
    };
    let mut s = four_segments(&f);
    s.iter_mut().for_each(clear_df);
    assert_eq!(runs(&s), [4]);
    let mut odd = tcp_frame(&f, 99, 1100, ACK, &[], &pattern(100, 3), Csum::Full).0;
    clear_df(&mut odd);
    s[1] = odd;
    assert_eq!(
        runs(&s),
        [1, 1, 2],
        "the odd one neither joins nor is joined"
    );
}

fn ip_sum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded to 16 bits")
}
