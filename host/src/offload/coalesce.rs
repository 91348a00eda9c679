//! Coalescing (receive offload, the kernel's GRO): merging consecutive TCP segments of a flow,
//! or equal-sized UDP datagrams of a flow, into one super-frame that a port's kernel takes with
//! a `virtio_net_hdr` (GSO TCPv4/TCPv6, or UDP L4) and carries through its stack as one packet.
//!
//! This is what keeps big frames big on the way to a VM: a TCP super-frame a VM sent was cut
//! into MTU-sized segments for the underlay; delivering them merged again spares the receiving
//! VM's kernel one trip through its stack per segment, as the kernel's own vxlan (which never
//! cut it) does. The receiving kernel cuts the super-frame again only if it must forward it to
//! a device without the offload, rebuilding the same segments.
//!
//! The rules are the kernel's (`inet_gro_receive`, `tcp_gro_receive`, `udp_gro_receive`):
//! - same Ethernet header, same IP addresses, protocol, TOS/traffic class, TTL/hop limit and DF;
//!   IPv4 without options and not fragmented, with IDs counting up unless DF is set; IPv6
//!   without extension headers;
//! - TCP: same ports, acknowledgment, window and options (byte for byte), only ACK (and PSH on
//!   the last) set, each segment starting where the previous ended; UDP: same ports;
//! - every segment carries `gso_size` payload bytes but the last, which may carry fewer and
//!   ends the run, as PSH does;
//! - every segment's checksum verifies: a corrupted one is delivered alone, for its receiver to
//!   drop, never merged into a super-frame whose checksum the receiver will not check.
//!
//! The super-frame keeps the first segment's headers; [`Run::finish`] rewrites the lengths,
//! the IPv4 header checksum and the transport checksum field (the pseudo-header sum, as
//! `CHECKSUM_PARTIAL` wants it) and returns the `virtio_net_hdr`.

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, IpProtocol, checksum::pseudo_header};

use super::checksum::ones_complement_sum;
use super::fields::{
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, L4, TCP_ACK, TCP_CHECKSUM_OFFSET, TCP_CWR, TCP_PSH,
    UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN, put16,
};
use crate::wire::{FrameMeta, VirtioNetHdr, ip_proto, read_u16, read_u32};

/// The most segments one super-frame takes (the kernel's `MAX_GRO_SKBS` is 8 skbs of frags,
/// its `gso_max_segs` far more; 64 keeps every receiver's segmentation cheap).
const MAX_SEGMENTS: u16 = 64;
/// The largest IP packet: a super-frame's IPv4 total length, or IPv6 payload length, fits 16
/// bits.
const MAX_IP_LEN: usize = 65_535;

/// A run of segments being merged into one super-frame (whose bytes the caller keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    l4: L4,
    ipv4: bool,
    l3: usize,
    l4_offset: usize,
    /// End of the transport header: bytes before it are the super-frame's headers.
    hdr_end: usize,
    gso_size: usize,
    segments: u16,
    /// TCP: the sequence number the next segment must start at.
    next_seq: u32,
    /// IPv4: the ID the next segment must carry (unless DF is set).
    next_id: u16,
    /// A segment shorter than `gso_size`, or with PSH, ended the run.
    closed: bool,
    /// A merged segment had PSH: the super-frame carries it.
    psh: bool,
    /// The first segment's checksum was checked: done when a second joins, so that a frame
    /// that stays alone costs no pass over its payload.
    verified: bool,
}

/// What one segment is, as far as merging needs.
struct Segment {
    l4: L4,
    ipv4: bool,
    l3: usize,
    l4_offset: usize,
    hdr_end: usize,
    payload: usize,
    seq: u32,
    id: u16,
    flags: u8,
}

impl Segment {
    /// The frame as a mergeable segment: plain IPv4 or IPv6, TCP with data and only ACK (and
    /// PSH), or UDP with data; exactly as long as its IP length says. Its checksum is not
    /// checked here.
    fn parse(frame: &[u8], meta: &FrameMeta) -> Option<Segment> {
        let ip = meta.ip?;
        if ip.fragment {
            return None;
        }
        let l3 = meta.l3_offset;
        let (ipv4, ip_end) = match ip.src {
            IpAddr::V4(_) => {
                // No options: IHL 5 (so l4 right after the fixed header).
                if *frame.get(l3)? != 0x45 {
                    return None;
                }
                (true, l3 + usize::from(read_u16(frame, l3 + 2)?))
            }
            IpAddr::V6(_) => {
                if ip.l4_offset != l3 + IPV6_HEADER_LEN {
                    return None; // extension headers
                }
                (
                    false,
                    l3 + IPV6_HEADER_LEN + usize::from(read_u16(frame, l3 + 4)?),
                )
            }
        };
        if ip_end != frame.len() {
            return None; // padded, or truncated
        }
        let l4_offset = ip.l4_offset;
        let (l4, hdr_end, flags) = match ip.protocol {
            ip_proto::TCP => {
                let doff = usize::from(*frame.get(l4_offset + 12)? >> 4) * 4;
                let flags = *frame.get(l4_offset + 13)?;
                if doff < 20 || flags & !(TCP_ACK | TCP_PSH | TCP_CWR) != 0 || flags & TCP_ACK == 0
                {
                    return None;
                }
                (L4::Tcp, l4_offset + doff, flags)
            }
            // The UDP length must cover exactly the rest of the packet: padding inside the IP
            // packet would otherwise become payload.
            ip_proto::UDP
                if read_u16(frame, l4_offset + 4).map(usize::from)
                    == Some(frame.len() - l4_offset) =>
            {
                (L4::Udp, l4_offset + UDP_HEADER_LEN, 0)
            }
            _ => return None,
        };
        if hdr_end >= frame.len() {
            return None; // no payload: nothing to merge (pure ACKs stay as they are)
        }
        Some(Segment {
            l4,
            ipv4,
            l3,
            l4_offset,
            hdr_end,
            payload: frame.len() - hdr_end,
            seq: if l4 == L4::Tcp {
                read_u32(frame, l4_offset + 4)?
            } else {
                0
            },
            id: if ipv4 { read_u16(frame, l3 + 4)? } else { 0 },
            flags,
        })
    }
}

/// Whether the transport checksum of the segment `frame` (a TCP or UDP segment starting at
/// `l4_offset`, up to the frame's end) verifies.
fn checksum_ok(frame: &[u8], l4: L4, ipv4: bool, l3: usize, l4_offset: usize) -> bool {
    let (protocol, field) = match l4 {
        L4::Tcp => (IpProtocol::Tcp, TCP_CHECKSUM_OFFSET),
        L4::Udp => (IpProtocol::Udp, UDP_CHECKSUM_OFFSET),
    };
    // UDP over IPv4 may carry no checksum at all.
    if l4 == L4::Udp && ipv4 && read_u16(frame, l4_offset + field) == Some(0) {
        return true;
    }
    let (src, dst) = addresses(frame, ipv4, l3);
    let segment = &frame[l4_offset..];
    let Ok(len) = u32::try_from(segment.len()) else {
        return false;
    };
    let pseudo = pseudo_header(&src, &dst, protocol, len);
    smoltcp::wire::checksum::combine(&[pseudo, ones_complement_sum(segment)]) == 0xffff
}

/// The IP addresses of a frame whose IP header (of the given version) starts at `l3`.
fn addresses(frame: &[u8], ipv4: bool, l3: usize) -> (IpAddress, IpAddress) {
    if ipv4 {
        let a = |at: usize| {
            IpAddress::from(IpAddr::from([
                frame[at],
                frame[at + 1],
                frame[at + 2],
                frame[at + 3],
            ]))
        };
        (a(l3 + 12), a(l3 + 16))
    } else {
        let a = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&frame[at..at + 16]);
            IpAddress::from(IpAddr::from(b))
        };
        (a(l3 + 8), a(l3 + 24))
    }
}

impl Run {
    /// Starts a run with `frame`, if it is a segment that others may join.
    pub fn start(frame: &[u8], meta: &FrameMeta) -> Option<Run> {
        let s = Segment::parse(frame, meta)?;
        let psh = s.flags & TCP_PSH != 0;
        Some(Run {
            l4: s.l4,
            ipv4: s.ipv4,
            l3: s.l3,
            l4_offset: s.l4_offset,
            hdr_end: s.hdr_end,
            gso_size: s.payload,
            segments: 1,
            next_seq: s.seq.wrapping_add(u32::try_from(s.payload).unwrap_or(0)),
            next_id: s.id.wrapping_add(1),
            closed: psh,
            psh,
            verified: false,
        })
    }

    /// Whether `frame` is of this run's flow (same headers but the per-segment fields), whether
    /// or not it continues the run: the newest run of a flow is the only one it may join.
    pub fn same_flow(&self, head: &[u8], frame: &[u8]) -> bool {
        if frame.len() < self.hdr_end || head.len() < self.hdr_end {
            return false;
        }
        let (l3, l4) = (self.l3, self.l4_offset);
        // Ethernet header (with any tag), then the IP fields that name the flow.
        let same = |from: usize, to: usize| head[from..to] == frame[from..to];
        let ip_same = if self.ipv4 {
            // protocol and addresses
            same(l3 + 9, l3 + 10) && same(l3 + 12, l3 + 20)
        } else {
            same(l3 + 6, l3 + 7) && same(l3 + 8, l3 + 40)
        };
        same(0, l3) && ip_same && same(l4, l4 + 4)
    }

    /// Appends `frame`'s payload to `head` (the super-frame so far, whose first bytes are this
    /// run's first segment) if it continues the run; returns whether it did.
    pub fn append(&mut self, head: &mut Vec<u8>, frame: &[u8], meta: &FrameMeta) -> bool {
        if self.closed || self.segments >= MAX_SEGMENTS {
            return false;
        }
        let Some(s) = Segment::parse(frame, meta) else {
            return false;
        };
        if (s.l4, s.ipv4, s.l3, s.l4_offset, s.hdr_end)
            != (self.l4, self.ipv4, self.l3, self.l4_offset, self.hdr_end)
            || s.payload > self.gso_size
            || head.len() + s.payload - self.l3 > MAX_IP_LEN
            || !self.same_headers(head, frame, &s)
            || !checksum_ok(frame, s.l4, s.ipv4, s.l3, s.l4_offset)
        {
            return false;
        }
        if !self.verified {
            // The first segment, still alone in `head`: a bad one ends the run unmerged.
            if !checksum_ok(head, self.l4, self.ipv4, self.l3, self.l4_offset) {
                self.closed = true;
                return false;
            }
            self.verified = true;
        }
        head.extend_from_slice(&frame[s.hdr_end..]);
        self.segments += 1;
        self.next_seq = s.seq.wrapping_add(u32::try_from(s.payload).unwrap_or(0));
        self.next_id = s.id.wrapping_add(1);
        self.psh |= s.flags & TCP_PSH != 0;
        self.closed = s.payload < self.gso_size || s.flags & TCP_PSH != 0;
        true
    }

    /// Everything but the per-segment fields equal, and those in sequence.
    fn same_headers(&self, head: &[u8], frame: &[u8], s: &Segment) -> bool {
        let (l3, l4) = (self.l3, self.l4_offset);
        let same = |from: usize, to: usize| head[from..to] == frame[from..to];
        let ip_ok = if self.ipv4 {
            let df = frame[l3 + 6] & 0x40 != 0;
            // version/IHL, TOS; flags and fragment offset; TTL, protocol; addresses
            same(l3, l3 + 2)
                && same(l3 + 6, l3 + 10)
                && same(l3 + 12, l3 + 20)
                && (df || s.id == self.next_id)
        } else {
            // version, traffic class, flow label; next header, hop limit; addresses
            same(l3, l3 + 4) && same(l3 + 6, l3 + 40)
        };
        if !ip_ok || !same(0, l3) || !same(l4, l4 + 4) {
            return false;
        }
        match self.l4 {
            // ACK number; data offset, then window (the flags may differ in PSH only, and CWR
            // may only be on the first); options.
            L4::Tcp => {
                s.seq == self.next_seq
                    && s.flags & TCP_CWR == 0
                    && same(l4 + 8, l4 + 13)
                    && same(l4 + 14, l4 + 16)
                    && same(l4 + 20, self.hdr_end)
            }
            L4::Udp => true,
        }
    }

    /// Makes `head` (the run's bytes) a super-frame and returns the `virtio_net_hdr` a port's
    /// kernel takes it with; a run of one segment is left as it arrived ([`VirtioNetHdr::NONE`]).
    pub fn finish(&self, head: &mut [u8]) -> VirtioNetHdr {
        if self.segments < 2 {
            return VirtioNetHdr::NONE;
        }
        let (l3, l4) = (self.l3, self.l4_offset);
        // `append` kept the IP length within 16 bits.
        let ip_len = u16::try_from(head.len() - l3).unwrap_or(u16::MAX);
        if self.ipv4 {
            put16(head, l3 + 2, ip_len);
            put16(head, l3 + 10, 0);
            let check = !ones_complement_sum(&head[l3..l3 + IPV4_HEADER_LEN]);
            put16(head, l3 + 10, check);
        } else {
            put16(head, l3 + 4, ip_len.saturating_sub(40));
        }
        let l4_len = head.len() - l4;
        let (protocol, csum_offset, gso_type) = match (self.l4, self.ipv4) {
            (L4::Tcp, true) => (
                IpProtocol::Tcp,
                TCP_CHECKSUM_OFFSET,
                VirtioNetHdr::GSO_TCPV4,
            ),
            (L4::Tcp, false) => (
                IpProtocol::Tcp,
                TCP_CHECKSUM_OFFSET,
                VirtioNetHdr::GSO_TCPV6,
            ),
            (L4::Udp, _) => (
                IpProtocol::Udp,
                UDP_CHECKSUM_OFFSET,
                VirtioNetHdr::GSO_UDP_L4,
            ),
        };
        let mut gso_type = gso_type;
        match self.l4 {
            L4::Tcp => {
                if self.psh {
                    head[l4 + 13] |= TCP_PSH;
                }
                if head[l4 + 13] & TCP_CWR != 0 {
                    gso_type |= VirtioNetHdr::GSO_ECN;
                }
            }
            L4::Udp => put16(head, l4 + 4, u16::try_from(l4_len).unwrap_or(u16::MAX)),
        }
        let (src, dst) = addresses(head, self.ipv4, l3);
        let pseudo = pseudo_header(
            &src,
            &dst,
            protocol,
            u32::try_from(l4_len).unwrap_or(u32::MAX),
        );
        put16(head, l4 + csum_offset, pseudo);
        // The offsets are within a 64 KiB frame.
        let u = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type,
            hdr_len: u(self.hdr_end),
            gso_size: u(self.gso_size),
            csum_start: u(l4),
            csum_offset: u(csum_offset),
        }
    }
}
