//! Checksum completion: finishing the partial TCP/UDP checksum of a frame whose
//! `virtio_net_hdr` says `NEEDS_CSUM`.
//!
//! The sender's kernel left the pseudo-header sum (folded, not complemented) in the checksum
//! field and set `csum_start` to the transport header. Summing everything from `csum_start` to
//! the end of the frame, partial field included, and storing the complement yields the complete
//! checksum: exactly the kernel's `skb_checksum_help`, which needs no knowledge of the protocol
//! or the addresses.

use super::OffloadError;
use crate::wire::VirtioNetHdr;

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
    use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, UdpPacket, checksum};

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
}
