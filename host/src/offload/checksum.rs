//! Checksum completion: finishing the partial TCP/UDP checksum of a frame whose
//! `virtio_net_hdr` says `NEEDS_CSUM`.
//!
//! The sender's kernel left the pseudo-header sum (folded, not complemented) in the checksum
//! field and set `csum_start` to the transport header. Summing everything from `csum_start` to
//! the end of the frame, partial field included, and storing the complement yields the complete
//! checksum: exactly the kernel's `skb_checksum_help`, which needs no knowledge of the protocol
//! or the addresses.
//!
//! The same partial form also arrives from the underlay: a kernel VTEP whose packets cross only
//! virtual links (a veth pair, as between containers on one machine) never has the inner
//! checksum finished, nor a TCP super-frame segmented, and a UDP socket hands such a datagram
//! over without saying so. [`recover_offloads`] recognises both, so the frame can be delivered
//! with the `virtio_net_hdr` the kernel's own vxlan would in effect have kept.

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, IpProtocol, checksum::pseudo_header};

use super::OffloadError;
use crate::wire::{FrameMeta, VirtioNetHdr, ip_proto, read_u16};

/// Finishes the partial checksum of `frame` in place if `hdr` says `NEEDS_CSUM`; a frame without
/// that flag is left as it is.
///
/// A result of 0 is stored as 0xffff (the kernel's `CSUM_MANGLED_0`): the same value in one's
/// complement, and the only form UDP can carry, since 0 there means "no checksum".
///
/// Errors: [`OffloadError::BadChecksumOffset`] if the 16-bit field at `csum_start + csum_offset`
/// is not inside the frame; [`OffloadError::IsGso`] for a GSO super-frame, whose segments get
/// their checksums from [`super::segment`]. On error the frame is unchanged.
pub fn complete_checksum(frame: &mut [u8], hdr: &VirtioNetHdr) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    if hdr.is_gso() {
        return Err(OffloadError::IsGso);
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    // `at + 2 <= len` also puts `start` inside the frame.
    if at + 2 > frame.len() {
        return Err(OffloadError::BadChecksumOffset);
    }
    let sum = ones_complement_sum(&frame[start..]);
    let check = match !sum {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

/// What a kernel peer left undone in a frame decapsulated from a UDP datagram, which arrives
/// without a `virtio_net_hdr`: the header that has the receiving port's kernel finish it, as the
/// kernel's own vxlan would have on delivery. [`VirtioNetHdr::NONE`] for an ordinary frame.
///
/// - A TCP or UDP checksum left partial gives `NEEDS_CSUM` at the transport header. The partial
///   form is the pseudo-header sum (folded, not complemented) in the checksum field. A complete
///   checksum that happens to equal that value matches too, and finishing it then writes the
///   same value back (the sum over the segment with it is its own complement), so a match never
///   alters a correct frame. Costs a pseudo-header sum: the payload is not read.
/// - A partial TCP frame longer than `max_frame`, the largest frame the underlay carries in
///   one packet, can only be a GSO super-frame that crossed no wire (a peer kernel on a virtual
///   link keeps it whole, and a UDP socket delivers it whole). It becomes TSO, with segments of
///   up to `max_frame` bytes: the sender's own segment size is lost with the socket's metadata.
///
/// UDP super-frames never arrive: the kernel segments them before a plain UDP socket sees them.
pub fn recover_offloads(frame: &[u8], meta: &FrameMeta, max_frame: usize) -> VirtioNetHdr {
    partial_checksum(frame, meta)
        .map(|(hdr, ip_end)| with_tso(frame, meta, hdr, ip_end, max_frame).unwrap_or(hdr))
        .unwrap_or(VirtioNetHdr::NONE)
}

/// `NEEDS_CSUM` if `frame`'s TCP/UDP checksum is partial, with the IP packet's end.
fn partial_checksum(frame: &[u8], meta: &FrameMeta) -> Option<(VirtioNetHdr, usize)> {
    let ip = meta.ip?;
    if ip.fragment {
        return None;
    }
    let (protocol, csum_offset) = match ip.protocol {
        ip_proto::TCP => (IpProtocol::Tcp, 16),
        ip_proto::UDP => (IpProtocol::Udp, 6),
        _ => return None,
    };
    let l3 = meta.l3_offset;
    // The transport segment's length as the pseudo-header counts it: up to the IP packet's end
    // by its length field (Ethernet may pad the frame beyond it).
    let ip_end = match ip.src {
        IpAddr::V4(_) => l3 + usize::from(read_u16(frame, l3 + 2)?),
        IpAddr::V6(_) => l3 + 40 + usize::from(read_u16(frame, l3 + 4)?),
    };
    let l4_len = ip_end.checked_sub(ip.l4_offset)?;
    if ip_end > frame.len() || l4_len < usize::from(csum_offset) + 2 {
        return None;
    }
    let field = read_u16(frame, ip.l4_offset + usize::from(csum_offset))?;
    let pseudo = pseudo_header(
        &IpAddress::from(ip.src),
        &IpAddress::from(ip.dst),
        protocol,
        u32::try_from(l4_len).ok()?,
    );
    // 0 is no sum at all (UDP over IPv4 without a checksum); a pseudo-header sum is never 0.
    if field == 0 || field != pseudo {
        return None;
    }
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: u16::try_from(ip.l4_offset).ok()?,
        csum_offset,
        ..VirtioNetHdr::NONE
    };
    Some((hdr, ip_end))
}

/// `hdr` (a partial checksum) made TSO if the frame is a TCP packet longer than `max_frame`.
fn with_tso(
    frame: &[u8],
    meta: &FrameMeta,
    hdr: VirtioNetHdr,
    ip_end: usize,
    max_frame: usize,
) -> Option<VirtioNetHdr> {
    let ip = meta.ip?;
    if ip.protocol != ip_proto::TCP || ip_end <= max_frame {
        return None;
    }
    let flags = *frame.get(ip.l4_offset + 13)?;
    let tcp_len = usize::from(*frame.get(ip.l4_offset + 12)? >> 4) * 4;
    let hdr_len = ip.l4_offset + tcp_len;
    if tcp_len < 20 || hdr_len >= ip_end {
        return None;
    }
    let gso_size = u16::try_from(max_frame.checked_sub(hdr_len)?).ok()?;
    if gso_size == 0 {
        return None;
    }
    let kind = match ip.src {
        IpAddr::V4(_) => VirtioNetHdr::GSO_TCPV4,
        IpAddr::V6(_) => VirtioNetHdr::GSO_TCPV6,
    };
    // CWR set: the sender's TCP uses ECN, and segmentation must set CWR on the first only.
    let ecn = if flags & 0x80 != 0 {
        VirtioNetHdr::GSO_ECN
    } else {
        0
    };
    Some(VirtioNetHdr {
        gso_type: kind | ecn,
        hdr_len: u16::try_from(hdr_len).ok()?,
        gso_size,
        ..hdr
    })
}

/// The RFC 1071 one's-complement sum of `data`, folded to 16 bits and not complemented, as a
/// number in network byte order (what smoltcp's `checksum::data` returns).
///
/// Why not smoltcp's: its 32-bit accumulator overflows past 128 KiB of input, and frames from a
/// packet socket can be that large (BIG TCP). A 64-bit accumulator of 32-bit words cannot
/// overflow below 16 GiB, and the loop vectorises well.
pub(crate) fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let (chunks, mut rest) = data.as_chunks::<8>();
    for chunk in chunks {
        let w = u64::from_ne_bytes(*chunk);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    if let Some((word, tail)) = rest.split_first_chunk::<4>() {
        acc += u64::from(u32::from_ne_bytes(*word));
        rest = tail;
    }
    if let Some((word, tail)) = rest.split_first_chunk::<2>() {
        acc += u64::from(u16::from_ne_bytes(*word));
        rest = tail;
    }
    if let Some(&last) = rest.first() {
        // An odd byte is the high byte of a word padded with zero (network order).
        acc += u64::from(u16::from_ne_bytes([last, 0]));
    }
    // 2^16 = 1 (mod 0xffff): adding the high part to the low part keeps the sum's value.
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The words were read in native order; the one's-complement sum is byte-order independent
    // (RFC 1071 §2(B)), so converting the result once gives the network-order sum.
    u16::from_be(u16::try_from(acc).unwrap_or(0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::segment;
    use smoltcp::wire::{Ipv4Address, Ipv6Address, TcpPacket, UdpPacket, checksum};

    #[test]
    fn sum_matches_smoltcp_on_every_length_and_alignment() {
        let data: Vec<u8> = (0..600u32)
            .map(|i| u8::try_from(i * 37 % 251).unwrap())
            .collect();
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(
                    ones_complement_sum(&data[start..end]),
                    checksum::data(&data[start..end]),
                    "{start}..{end}"
                );
            }
        }
        assert_eq!(ones_complement_sum(&[0xff; 200_000]), 0xffff);
    }

    /// RFC 1071 §3's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    /// A UDP datagram 192.0.2.1:1000 -> 192.0.2.2:2000 with payload "hi!", its checksum field
    /// holding the pseudo-header sum as Linux leaves it for `CHECKSUM_PARTIAL`.
    fn partial_udp4() -> (Vec<u8>, VirtioNetHdr) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 31, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'h', b'i', b'!']);
        let (s, d) = (
            Ipv4Address::new(192, 0, 2, 1),
            Ipv4Address::new(192, 0, 2, 2),
        );
        let partial = checksum::pseudo_header_v4(&s, &d, IpProtocol::Udp, 11);
        f[40..42].copy_from_slice(&partial.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VirtioNetHdr::NONE
        };
        (f, hdr)
    }

    #[test]
    fn completes_a_partial_udp_checksum() {
        let (mut f, hdr) = partial_udp4();
        let (s, d) = (IpAddress::v4(192, 0, 2, 1), IpAddress::v4(192, 0, 2, 2));
        assert!(
            UdpPacket::new_checked(&f[34..])
                .unwrap()
                .verify_partial_checksum(&s, &d)
        );
        complete_checksum(&mut f, &hdr).unwrap();
        let udp = UdpPacket::new_checked(&f[34..]).unwrap();
        assert_ne!(udp.checksum(), 0);
        assert!(udp.verify_checksum(&s, &d));
        let mut expect = f.clone();
        UdpPacket::new_unchecked(&mut expect[34..]).fill_checksum(&s, &d);
        assert_eq!(f, expect);
    }

    #[test]
    fn zero_result_is_stored_as_ffff() {
        // Data whose sum with the field is 0xffff: two bytes summing with the zero partial.
        let mut f = vec![0xff, 0xff, 0, 0];
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: 0,
            csum_offset: 2,
            ..VirtioNetHdr::NONE
        };
        complete_checksum(&mut f, &hdr).unwrap();
        assert_eq!(f, [0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn without_needs_csum_nothing_changes() {
        let (mut f, mut hdr) = partial_udp4();
        hdr.flags = 0;
        hdr.csum_start = 60000;
        let before = f.clone();
        complete_checksum(&mut f, &hdr).unwrap();
        assert_eq!(f, before);
    }

    #[test]
    fn hostile_offsets_are_errors() {
        let (mut f, hdr) = partial_udp4();
        let len = u16::try_from(f.len()).unwrap();
        let before = f.clone();
        for (start, offset) in [
            (len, 0),
            (len - 1, 0),
            (34, len - 35),
            (u16::MAX, u16::MAX),
            (0, u16::MAX),
        ] {
            let h = VirtioNetHdr {
                csum_start: start,
                csum_offset: offset,
                ..hdr
            };
            assert_eq!(
                complete_checksum(&mut f, &h),
                Err(OffloadError::BadChecksumOffset)
            );
        }
        let gso = VirtioNetHdr {
            gso_type: VirtioNetHdr::GSO_UDP_L4,
            gso_size: 4,
            ..hdr
        };
        assert_eq!(complete_checksum(&mut f, &gso), Err(OffloadError::IsGso));
        assert_eq!(f, before);
        // The last position that fits is fine.
        let h = VirtioNetHdr {
            csum_start: 34,
            csum_offset: len - 36,
            ..hdr
        };
        assert_eq!(complete_checksum(&mut f, &h), Ok(()));
    }

    /// A TCP frame 192.0.2.1:40000 -> 192.0.2.2:5201 (or 2001:db8:100::1 -> ::2) with
    /// `payload` bytes, flags ACK|PSH (and CWR if `cwr`), its checksum partial as Linux leaves
    /// it; and the transport header's offset.
    fn partial_tcp(ipv6: bool, payload: usize, cwr: bool) -> (Vec<u8>, usize) {
        let data: Vec<u8> = (0..payload)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let mut tcp = vec![0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18];
        tcp[13] |= if cwr { 0x80 } else { 0 };
        tcp.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        tcp.extend_from_slice(&data);
        let l4_len = u16::try_from(tcp.len()).unwrap();
        let (mut f, src, dst): (Vec<u8>, IpAddress, IpAddress) = if ipv6 {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&l4_len.to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            let (s, d) = (
                Ipv6Address::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1),
                Ipv6Address::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2),
            );
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            (f, s.into(), d.into())
        } else {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
            f.extend_from_slice(&(20 + l4_len).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
            let (s, d) = (
                Ipv4Address::new(192, 0, 2, 1),
                Ipv4Address::new(192, 0, 2, 2),
            );
            (f, s.into(), d.into())
        };
        let l4 = f.len();
        let partial = checksum::pseudo_header(&src, &dst, IpProtocol::Tcp, u32::from(l4_len));
        tcp[16..18].copy_from_slice(&partial.to_be_bytes());
        f.extend_from_slice(&tcp);
        (f, l4)
    }

    fn recover(frame: &[u8], max_frame: usize) -> VirtioNetHdr {
        recover_offloads(frame, &FrameMeta::parse(frame).unwrap(), max_frame)
    }

    #[test]
    fn recovers_a_partial_udp_checksum() {
        let (mut f, hdr) = partial_udp4();
        assert_eq!(recover(&f, 1564), hdr);
        // Finished, the same frame needs nothing.
        complete_checksum(&mut f, &hdr).unwrap();
        assert_eq!(recover(&f, 1564), VirtioNetHdr::NONE);
        // No checksum at all (UDP over IPv4 may say 0).
        f[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(recover(&f, 1564), VirtioNetHdr::NONE);
        // Ethernet padding after the IP packet changes nothing.
        let (mut padded, hdr) = partial_udp4();
        padded.resize(60, 0);
        assert_eq!(recover(&padded, 1564), hdr);
    }

    /// A complete checksum that equals the partial form is recognised as partial, and
    /// finishing it writes the same value: delivering it with `NEEDS_CSUM` changes nothing.
    #[test]
    fn finishing_a_coincidental_match_is_harmless() {
        let (mut f, hdr) = partial_udp4();
        f.truncate(44); // payload "hi": one whole word
        f[16..18].copy_from_slice(&30u16.to_be_bytes()); // IP total length
        f[38..40].copy_from_slice(&10u16.to_be_bytes()); // UDP length
        let (s, d) = (IpAddress::v4(192, 0, 2, 1), IpAddress::v4(192, 0, 2, 2));
        let pseudo = checksum::pseudo_header(&s, &d, IpProtocol::Udp, 10);
        // The payload word whose complete checksum is the pseudo-header sum.
        let complete = (0..=u16::MAX)
            .map(|word| {
                let mut g = f.clone();
                g[42..44].copy_from_slice(&word.to_be_bytes());
                UdpPacket::new_unchecked(&mut g[34..]).fill_checksum(&s, &d);
                g
            })
            .find(|g| g[40..42] == pseudo.to_be_bytes())
            .unwrap();
        assert!(
            UdpPacket::new_checked(&complete[34..])
                .unwrap()
                .verify_checksum(&s, &d)
        );
        assert_eq!(recover(&complete, 1564), hdr);
        let mut again = complete.clone();
        complete_checksum(&mut again, &hdr).unwrap();
        assert_eq!(again, complete);
    }

    #[test]
    fn small_tcp_gets_needs_csum_only() {
        for ipv6 in [false, true] {
            let (f, l4) = partial_tcp(ipv6, 100, false);
            let hdr = recover(&f, 1564);
            assert_eq!(
                hdr,
                VirtioNetHdr {
                    flags: VirtioNetHdr::F_NEEDS_CSUM,
                    csum_start: u16::try_from(l4).unwrap(),
                    csum_offset: 16,
                    ..VirtioNetHdr::NONE
                }
            );
        }
    }

    /// A TCP super-frame becomes TSO whose segments fit `max_frame` and carry valid checksums.
    #[test]
    fn tcp_super_frames_become_tso() {
        for ipv6 in [false, true] {
            for cwr in [false, true] {
                let (f, l4) = partial_tcp(ipv6, 5000, cwr);
                let max_frame = 1564;
                let hdr = recover(&f, max_frame);
                let kind = if ipv6 {
                    VirtioNetHdr::GSO_TCPV6
                } else {
                    VirtioNetHdr::GSO_TCPV4
                };
                let ecn = if cwr { VirtioNetHdr::GSO_ECN } else { 0 };
                assert_eq!(hdr.gso_type, kind | ecn);
                assert_eq!(usize::from(hdr.hdr_len), l4 + 20);
                assert_eq!(usize::from(hdr.gso_size), max_frame - l4 - 20);
                assert_eq!((usize::from(hdr.csum_start), hdr.csum_offset), (l4, 16));
                let mut scratch = vec![0u8; 2048];
                let mut payload = 0;
                let n = segment(&f, &hdr, &mut scratch, |seg| {
                    assert!(seg.len() <= max_frame, "{} bytes", seg.len());
                    let meta = FrameMeta::parse(seg).unwrap();
                    let ip = meta.ip.unwrap();
                    let tcp = TcpPacket::new_checked(&seg[l4..]).unwrap();
                    assert!(tcp.verify_checksum(&ip.src.into(), &ip.dst.into()));
                    payload += tcp.payload().len();
                })
                .unwrap();
                assert_eq!((n, payload), (4, 5000));
            }
            // Exactly `max_frame` long: an ordinary frame.
            let (f, _) = partial_tcp(ipv6, 100, false);
            assert_eq!(recover(&f, f.len()).gso_type, VirtioNetHdr::GSO_NONE);
            assert_eq!(
                recover(&f, f.len() - 1).gso_type & 0x7f,
                if ipv6 { 4 } else { 1 }
            );
        }
    }

    #[test]
    fn other_frames_need_nothing_and_nothing_panics() {
        let (tcp, _) = partial_tcp(false, 3000, false);
        let (udp, _) = partial_udp4();
        for f in [tcp, udp] {
            for cut in 14..f.len() {
                // Cut short of its IP length: not recognised (the sum would be wrong anyway).
                let Ok(meta) = FrameMeta::parse(&f[..cut]) else {
                    continue;
                };
                assert_eq!(recover_offloads(&f[..cut], &meta, 60), VirtioNetHdr::NONE);
            }
            // A fragment's checksum is not for us to judge.
            let mut frag = f.clone();
            frag[20] = 0x20; // MF
            assert_eq!(recover(&frag, 60), VirtioNetHdr::NONE);
            // Another protocol.
            let mut icmp = f.clone();
            icmp[23] = 1;
            assert_eq!(recover(&icmp, 60), VirtioNetHdr::NONE);
        }
    }
}
