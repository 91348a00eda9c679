//! Offloads a sending kernel left pending in a frame that arrived from the underlay, where the
//! UDP socket that read it dropped the metadata saying so: recognised from the bytes, and handed
//! back as the `virtio_net_hdr` to send the frame to its port with.
//!
//! Why this happens: a kernel VTEP (the `vxlan` driver) whose underlay is a software link (a veth
//! into another namespace or container, as in every test topology here) sends its outer packets
//! with the inner TCP/UDP checksum still partial, only the pseudo-header sum in the field (the
//! skb is `CHECKSUM_PARTIAL`), and a VM's TCP bulk send as one 64 KiB super-packet
//! (`SKB_GSO_UDP_TUNNEL`): no NIC ever finishes them, because a kernel receiver keeps the skb's
//! metadata and trusts it. A UDP socket delivers the same bytes without that metadata, and does
//! not segment a tunnel super-packet either (`udp_unexpected_gso` only catches UDP GSO). Sent on
//! as a complete frame, the first is dropped by the receiving VM as a checksum error, the second
//! by the port as longer than its MTU.
//!
//! Recognising it: a checksum field equal to the folded pseudo-header sum is what Linux leaves
//! for offload (`~tcp_v4_check(len, saddr, daddr, 0)`, `udp4_hwcsum`, and their IPv6 forms). A
//! complete checksum that happens to equal that sum (1 in 65,536) loses nothing by being marked
//! partial: finishing it (the sum of the data plus the field, complemented) yields the same value.
//! So a frame whose field holds the pseudo-header sum is delivered with `NEEDS_CSUM`, and the
//! port's kernel finishes or trusts the checksum as the kernel VTEP's own receive path would.
//!
//! A TCP frame of this kind with more payload than one segment that fits `max_frame` also gets a
//! GSO type and size: the sender's MSS is not in the bytes, so the segment size is the largest
//! that would have crossed this underlay whole, which is no more than the sender could have used.

use super::checksum::ones_complement_sum;
use crate::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, FrameMeta, VirtioNetHdr, ip_proto};

const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const TCP_CHECKSUM_OFFSET: u16 = 16;
const UDP_CHECKSUM_OFFSET: u16 = 6;

/// The `virtio_net_hdr` for sending `frame` (parsed as `meta`) to a port: [`VirtioNetHdr::NONE`]
/// unless its TCP or UDP checksum was left partial (see the module documentation), then
/// `NEEDS_CSUM` at the transport checksum, and for a TCP super-frame a GSO type with the
/// largest segment size for which a frame is at most `max_frame` bytes.
///
/// Reads only headers and never fails: anything it does not recognise (not IP, a fragment,
/// truncated headers, another protocol) gets [`VirtioNetHdr::NONE`], the frame as it is.
pub fn restore_offloads(frame: &[u8], meta: &FrameMeta, max_frame: usize) -> VirtioNetHdr {
    partial_offloads(frame, meta, max_frame).unwrap_or(VirtioNetHdr::NONE)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn partial_offloads(frame: &[u8], meta: &FrameMeta, max_frame: usize) -> Option<VirtioNetHdr> {
    let ip = meta.ip?;
    if ip.fragment {
        return None;
    }
    let l3 = meta.l3_offset;
    // The IP packet's end, from its length field (0: up to the frame's end, as BIG TCP does).
    let ip_len = match meta.ethertype {
        ETHERTYPE_IPV4 => usize::from(be16(frame, l3 + 2)?),
        ETHERTYPE_IPV6 => match usize::from(be16(frame, l3 + 4)?) {
            0 => 0,
            n => IPV6_HEADER_LEN + n,
        },
        _ => return None,
    };
    let end = if ip_len == 0 {
        frame.len()
    } else {
        l3 + ip_len
    };
    let l4 = ip.l4_offset;
    if end > frame.len() {
        return None;
    }
    let (csum_offset, header_len) = match ip.protocol {
        ip_proto::TCP => {
            let thl = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
            (TCP_CHECKSUM_OFFSET, thl.max(TCP_MIN_HEADER_LEN))
        }
        ip_proto::UDP => (UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN),
        _ => return None,
    };
    let l4_len = end.checked_sub(l4)?;
    if l4_len < header_len {
        return None;
    }
    let field = be16(frame, l4 + usize::from(csum_offset))?;
    if field == 0 || field != pseudo_header_sum(frame, meta, ip.protocol, l4_len)? {
        // 0: a UDP datagram without a checksum (IPv4); never a partial sum, which is not 0.
        return None;
    }
    let mut hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: u16::try_from(l4).ok()?,
        csum_offset,
        ..VirtioNetHdr::NONE
    };
    let headers = l4 + header_len;
    let segment = max_frame.saturating_sub(headers);
    if ip.protocol == ip_proto::TCP && segment > 0 && l4_len - header_len > segment {
        hdr.gso_type = if meta.ethertype == ETHERTYPE_IPV4 {
            VirtioNetHdr::GSO_TCPV4
        } else {
            VirtioNetHdr::GSO_TCPV6
        };
        hdr.gso_size = u16::try_from(segment).unwrap_or(u16::MAX);
        hdr.hdr_len = u16::try_from(headers).ok()?;
    }
    Some(hdr)
}

/// The folded, not complemented, sum of the IPv4 or IPv6 pseudo-header of an `l4_len`-byte
/// transport segment: what Linux leaves in the checksum field for offload.
fn pseudo_header_sum(frame: &[u8], meta: &FrameMeta, protocol: u8, l4_len: usize) -> Option<u16> {
    let l3 = meta.l3_offset;
    let addrs = if meta.ethertype == ETHERTYPE_IPV4 {
        frame.get(l3 + 12..l3 + 20)?
    } else {
        frame.get(l3 + 8..l3 + 40)?
    };
    // The length as 32 bits (IPv6's form) sums the same as IPv4's 16 bits below 64 KiB, and
    // carries a BIG TCP length over 64 KiB as the kernel's 32-bit `csum_tcpudp_magic` does.
    let len = u32::try_from(l4_len).ok()?.to_be_bytes();
    let mut pseudo = [0u8; 40];
    let n = addrs.len();
    pseudo[..n].copy_from_slice(addrs);
    pseudo[n..n + 8].copy_from_slice(&[len[0], len[1], len[2], len[3], 0, 0, 0, protocol]);
    Some(ones_complement_sum(&pseudo[..n + 8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::{complete_checksum, segment};
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv6Address, TcpPacket, UdpPacket, checksum};

    const V4: [u8; 8] = [192, 0, 2, 2, 192, 0, 2, 1];

    /// A complete TCP/IPv4 frame 192.0.2.2:5201 -> 192.0.2.1:40000 with `payload` bytes, and
    /// optionally an 802.1Q tag.
    fn tcp4(payload: usize, tagged: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if tagged {
            f.extend([0x81, 0x00, 0x00, 0x64]);
        }
        f.extend([0x08, 0x00]);
        let total = u16::try_from(20 + 20 + payload).unwrap();
        f.extend([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        let l3 = f.len() - 12;
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f.extend(V4);
        f.extend([
            0x14, 0x51, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff,
        ]);
        f.extend([0, 0, 0, 0]);
        f.extend((0..payload).map(|i| u8::try_from(i % 253).unwrap()));
        let l4 = l3 + 20;
        let (s, d) = (
            IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 2)),
            IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 1)),
        );
        TcpPacket::new_unchecked(&mut f[l4..]).fill_checksum(&s, &d);
        f
    }

    /// The same frame as a sending kernel leaves it for offload: the pseudo-header sum in the
    /// checksum field.
    fn partial(mut f: Vec<u8>) -> Vec<u8> {
        let meta = FrameMeta::parse(&f).unwrap();
        let ip = meta.ip.unwrap();
        let (proto, at) = match ip.protocol {
            ip_proto::TCP => (smoltcp::wire::IpProtocol::Tcp, 16),
            _ => (smoltcp::wire::IpProtocol::Udp, 6),
        };
        let l4_len = u16::try_from(f.len() - ip.l4_offset).unwrap();
        let sum = checksum::pseudo_header(&ip.src.into(), &ip.dst.into(), proto, l4_len.into());
        f[ip.l4_offset + at..ip.l4_offset + at + 2].copy_from_slice(&sum.to_be_bytes());
        f
    }

    fn restore(f: &[u8], max_frame: usize) -> VirtioNetHdr {
        restore_offloads(f, &FrameMeta::parse(f).unwrap(), max_frame)
    }

    #[test]
    fn complete_frames_are_left_alone() {
        for f in [tcp4(0, false), tcp4(100, true), tcp4(60_000, false)] {
            assert_eq!(restore(&f, 1564), VirtioNetHdr::NONE);
        }
    }

    #[test]
    fn a_partial_checksum_is_marked_and_finishing_it_gives_the_complete_frame() {
        for tagged in [false, true] {
            let full = tcp4(100, tagged);
            let mut f = partial(full.clone());
            assert_ne!(f, full);
            let hdr = restore(&f, 1564);
            let l4 = if tagged { 38 } else { 34 };
            assert_eq!(
                hdr,
                VirtioNetHdr {
                    flags: VirtioNetHdr::F_NEEDS_CSUM,
                    csum_start: l4,
                    csum_offset: 16,
                    ..VirtioNetHdr::NONE
                }
            );
            complete_checksum(&mut f, &hdr).unwrap();
            assert_eq!(f, full);
        }
    }

    #[test]
    fn a_partial_super_frame_becomes_gso_with_segments_that_fit() {
        let full = tcp4(60_000, false);
        let f = partial(full);
        let hdr = restore(&f, 1564);
        assert_eq!(hdr.gso_type, VirtioNetHdr::GSO_TCPV4);
        assert_eq!((hdr.csum_start, hdr.csum_offset), (34, 16));
        assert_eq!(usize::from(hdr.hdr_len), 54);
        assert_eq!(usize::from(hdr.gso_size), 1564 - 54);
        let mut scratch = vec![0; 2048];
        let mut n = 0;
        segment(&f, &hdr, &mut scratch, |s| {
            n += 1;
            assert!(s.len() <= 1564);
            let tcp = TcpPacket::new_checked(&s[34..]).unwrap();
            assert!(tcp.verify_checksum(
                &Ipv4Address::new(192, 0, 2, 2).into(),
                &Ipv4Address::new(192, 0, 2, 1).into()
            ));
        })
        .unwrap();
        assert_eq!(n, 60_000usize.div_ceil(1510));
        // A segment's worth is not a super-frame.
        let small = partial(tcp4(1510, false));
        assert_eq!(restore(&small, 1564).gso_type, VirtioNetHdr::GSO_NONE);
        assert_eq!(restore(&small, 1563).gso_type, VirtioNetHdr::GSO_TCPV4);
    }

    #[test]
    fn udp_and_ipv6_partial_sums_are_recognised() {
        // UDP/IPv6 2001:db8:100::1 -> ::2, 8-byte header and 20 bytes of payload.
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend([0x60, 0, 0, 0, 0, 28, 17, 64]);
        let (s, d) = (
            Ipv6Address::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1),
            Ipv6Address::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2),
        );
        f.extend(s.octets());
        f.extend(d.octets());
        f.extend([0x30, 0x39, 0x30, 0x3a, 0, 28, 0, 0]);
        f.extend([7u8; 20]);
        UdpPacket::new_unchecked(&mut f[54..]).fill_checksum(&s.into(), &d.into());
        let full = f.clone();
        assert_eq!(restore(&full, 1564), VirtioNetHdr::NONE);
        let mut f = partial(full.clone());
        let hdr = restore(&f, 1564);
        assert_eq!((hdr.flags, hdr.csum_start, hdr.csum_offset), (1, 54, 6));
        assert_eq!(
            hdr.gso_type,
            VirtioNetHdr::GSO_NONE,
            "UDP is never made GSO"
        );
        complete_checksum(&mut f, &hdr).unwrap();
        assert_eq!(f, full);
    }

    #[test]
    fn udp_without_a_checksum_and_odd_frames_are_left_alone() {
        let mut f = partial(tcp4(10, false));
        // Not TCP any more: protocol 17 but the bytes are no longer a partial UDP sum.
        f[23] = 17;
        f[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(restore(&f, 1564), VirtioNetHdr::NONE);
        let f = partial(tcp4(10, false));
        // Every truncation parses without panicking and marks nothing it cannot check.
        for cut in 0..f.len() {
            if let Ok(meta) = FrameMeta::parse(&f[..cut]) {
                assert_eq!(restore_offloads(&f[..cut], &meta, 1564), VirtioNetHdr::NONE);
            }
        }
        // A fragment is left alone.
        let mut frag = f.clone();
        frag[20] = 0x20;
        assert_eq!(restore(&frag, 1564), VirtioNetHdr::NONE);
    }
}
