//! GSO segmentation: cutting a super-frame (a VM's TSO or USO send, up to 64 KiB and more) into
//! frames that carry at most `gso_size` payload bytes each, as the kernel's `skb_gso_segment`
//! (`tcp_gso_segment`, `__udp_gso_segment`, `inet_gso_segment`, `ipv6_gso_segment`) does.
//!
//! Each segment is the super-frame's headers (Ethernet, optional 802.1Q tag, IP with its options
//! or extension headers, TCP or UDP) followed by its share of the payload, with:
//! - IPv4: total length, an ID incrementing from the super-frame's (wrapping), header checksum;
//! - IPv6: payload length;
//! - TCP: sequence number advanced by the bytes before it; FIN and PSH only on the last segment,
//!   CWR only on the first (the `GSO_ECN` bit changes nothing here); full checksum;
//! - UDP (USO): length and full checksum of each datagram (0 sent as 0xffff).
//!
//! Headers are found by parsing the frame ([`FrameMeta`]): `hdr_len` is ignored (a packet socket
//! reports the linear length there, and it may be 0). When `NEEDS_CSUM` is set, `csum_start` and
//! `csum_offset` must name the transport checksum field, so that a header that disagrees with
//! the bytes is refused rather than guessed at. An IP length field of 0 (BIG TCP) means "up to
//! the end of the frame"; otherwise bytes past the IP length (Ethernet padding) are dropped.
//!
//! Checksums are computed from scratch (pseudo-header from the IP addresses), not derived from
//! the partial sum: the result cannot depend on how the guest filled the field.

use core::fmt;

use smoltcp::wire::{IpAddress, IpProtocol, checksum::pseudo_header};

use super::OffloadError;
use super::checksum::ones_complement_sum;
use super::fields::{
    IPV6_HEADER_LEN, L4, TCP_CHECKSUM_OFFSET, TCP_CWR, TCP_FIN, TCP_MIN_HEADER_LEN, TCP_PSH,
    UDP_CHECKSUM_OFFSET, UDP_HEADER_LEN, put16,
};
use crate::wire::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, FrameMeta, VirtioNetHdr, ip_proto, read_u16,
    walk_ipv6_extensions,
};

/// A validated plan for cutting one super-frame, handing out one segment at a time into buffers
/// the caller owns.
///
/// [`Segmenter::new`] checks everything; afterwards [`Segmenter::write_next`] can fail only with
/// [`OffloadError::BufferTooSmall`] (and then writes nothing and stays on the same segment).
/// This lets the pipeline write each segment straight after the outer headers in its outbox,
/// with no intermediate copy. [`segment`] is the simpler scratch-buffer-and-closure form.
pub struct Segmenter<'a> {
    frame: &'a [u8],
    l4: L4,
    ipv4: bool,
    /// Start of the IP header.
    l3: usize,
    /// Start of the transport header.
    l4_offset: usize,
    /// End of the transport header: the headers copied into every segment are `..hdr_end`.
    hdr_end: usize,
    /// End of the payload (the IP packet's end).
    payload_end: usize,
    gso_size: usize,
    /// Offset of the next payload byte to send.
    next: usize,
    /// Segments written so far.
    index: usize,
    /// The IPv4 ID of the next segment.
    ip_id: u16,
    count: usize,
    src: IpAddress,
    dst: IpAddress,
}

impl fmt::Debug for Segmenter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segmenter")
            .field("frame_len", &self.frame.len())
            .field("l4", &self.l4)
            .field("header_len", &self.hdr_end)
            .field("gso_size", &self.gso_size)
            .field("segment", &self.index)
            .field("of", &self.count)
            .finish()
    }
}

impl<'a> Segmenter<'a> {
    /// Validates `frame` against `hdr` and plans its segments.
    ///
    /// Errors: [`OffloadError::NotGso`] (gso type NONE), [`OffloadError::Unsupported`] (UFO,
    /// unknown type, IPv6 routing header), [`OffloadError::BadGsoSize`] (0, or a segment longer
    /// than an IP length field allows), [`OffloadError::Malformed`] (headers not the IP version
    /// and protocol the type names, an IP fragment, a bad header length),
    /// [`OffloadError::Truncated`] (frame shorter than its headers or its IP length),
    /// [`OffloadError::BadChecksumOffset`] (`NEEDS_CSUM` offsets not at the transport checksum).
    pub fn new(frame: &'a [u8], hdr: &VirtioNetHdr) -> Result<Segmenter<'a>, OffloadError> {
        let (l4, need_ethertype) = match hdr.gso_kind() {
            VirtioNetHdr::GSO_NONE => return Err(OffloadError::NotGso),
            VirtioNetHdr::GSO_TCPV4 => (L4::Tcp, Some(ETHERTYPE_IPV4)),
            VirtioNetHdr::GSO_TCPV6 => (L4::Tcp, Some(ETHERTYPE_IPV6)),
            VirtioNetHdr::GSO_UDP_L4 => (L4::Udp, None),
            _ => return Err(OffloadError::Unsupported),
        };
        if hdr.gso_size == 0 {
            return Err(OffloadError::BadGsoSize);
        }
        let meta = FrameMeta::parse(frame).map_err(|_| OffloadError::Truncated)?;
        let ipv4 = match meta.ethertype {
            ETHERTYPE_IPV4 => true,
            ETHERTYPE_IPV6 => false,
            _ => return Err(OffloadError::Malformed),
        };
        if need_ethertype.is_some_and(|e| e != meta.ethertype) {
            return Err(OffloadError::Malformed);
        }
        let l3 = meta.l3_offset;
        let ip = meta.ip.ok_or(OffloadError::Malformed)?;
        if ip.fragment {
            return Err(OffloadError::Malformed);
        }

        // The IP packet's end, from its length field (0: up to the frame's end).
        let field = |at| read_u16(frame, at).ok_or(OffloadError::Truncated);
        let ip_len = if ipv4 {
            usize::from(field(l3 + 2)?)
        } else {
            match usize::from(field(l3 + 4)?) {
                0 => 0,
                n => IPV6_HEADER_LEN + n,
            }
        };
        let payload_end = if ip_len == 0 {
            frame.len()
        } else {
            l3 + ip_len
        };
        if payload_end > frame.len() {
            return Err(OffloadError::Truncated);
        }
        if !ipv4 {
            let first = frame[l3 + 6];
            let walk = walk_ipv6_extensions(&frame[..payload_end], first, l3 + IPV6_HEADER_LEN);
            if walk.routing {
                return Err(OffloadError::Unsupported);
            }
        }

        let (proto, l4_min, csum_field) = match l4 {
            L4::Tcp => (ip_proto::TCP, TCP_MIN_HEADER_LEN, TCP_CHECKSUM_OFFSET),
            L4::Udp => (ip_proto::UDP, UDP_HEADER_LEN, UDP_CHECKSUM_OFFSET),
        };
        if ip.protocol != proto {
            return Err(OffloadError::Malformed);
        }
        let l4_offset = ip.l4_offset;
        if l4_offset + l4_min > payload_end {
            return Err(if payload_end < frame.len() {
                OffloadError::Malformed
            } else {
                OffloadError::Truncated
            });
        }
        let l4_len = match l4 {
            L4::Tcp => usize::from(frame[l4_offset + 12] >> 4) * 4,
            L4::Udp => UDP_HEADER_LEN,
        };
        if l4_len < l4_min {
            return Err(OffloadError::Malformed);
        }
        let hdr_end = l4_offset + l4_len;
        if hdr_end > payload_end {
            return Err(OffloadError::Truncated);
        }
        if hdr.needs_csum()
            && (usize::from(hdr.csum_start) != l4_offset
                || usize::from(hdr.csum_offset) != csum_field)
        {
            return Err(OffloadError::BadChecksumOffset);
        }

        let gso_size = usize::from(hdr.gso_size);
        let payload = payload_end - hdr_end;
        let largest = gso_size.min(payload);
        // The IPv4 total length, or IPv6 payload length, of the largest segment must fit.
        let ip_field = hdr_end - l3 + largest - if ipv4 { 0 } else { IPV6_HEADER_LEN };
        if ip_field > usize::from(u16::MAX) {
            return Err(OffloadError::BadGsoSize);
        }
        Ok(Segmenter {
            frame,
            l4,
            ipv4,
            l3,
            l4_offset,
            hdr_end,
            payload_end,
            gso_size,
            next: hdr_end,
            index: 0,
            ip_id: if ipv4 { field(l3 + 4)? } else { 0 },
            count: payload.div_ceil(gso_size).max(1),
            src: IpAddress::from(ip.src),
            dst: IpAddress::from(ip.dst),
        })
    }

    /// How many segments the super-frame yields (at least 1: a super-frame whose payload fits
    /// one segment goes out as one frame with its checksum completed, as in the kernel).
    pub fn segment_count(&self) -> usize {
        self.count
    }

    /// Segments not yet written.
    pub fn remaining(&self) -> usize {
        self.count - self.index
    }

    /// The length of the headers repeated in every segment (Ethernet through TCP/UDP).
    pub fn header_len(&self) -> usize {
        self.hdr_end
    }

    /// Where the IP header starts (after Ethernet and any VLAN tags).
    pub fn network_offset(&self) -> usize {
        self.l3
    }

    /// Where the IP packet ends: bytes of the frame past it (Ethernet padding) are no payload.
    pub fn packet_end(&self) -> usize {
        self.payload_end
    }

    /// The bytes of all segments together: each repeats the headers, the payload is cut.
    pub fn segments_len(&self) -> usize {
        self.count * self.hdr_end + (self.payload_end - self.hdr_end)
    }

    /// The length of the longest segment: a buffer this long holds any of them.
    pub fn max_segment_len(&self) -> usize {
        self.hdr_end + self.gso_size.min(self.payload_end - self.hdr_end)
    }

    /// The length of the next segment, or `None` when all segments have been written.
    pub fn next_len(&self) -> Option<usize> {
        (self.index < self.count)
            .then(|| self.hdr_end + self.gso_size.min(self.payload_end - self.next))
    }

    /// Writes the next segment into the start of `out` and returns its length, or `Ok(None)`
    /// when all segments have been written.
    ///
    /// Errors: [`OffloadError::BufferTooSmall`] if `out` cannot hold the segment; nothing is
    /// written and the same segment comes next.
    pub fn write_next(&mut self, out: &mut [u8]) -> Result<Option<usize>, OffloadError> {
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        let out = out.get_mut(..len).ok_or(OffloadError::BufferTooSmall)?;
        let take = len - self.hdr_end;
        let (headers, payload) = out.split_at_mut(self.hdr_end);
        headers.copy_from_slice(&self.frame[..self.hdr_end]);
        payload.copy_from_slice(&self.frame[self.next..self.next + take]);
        self.finish_segment(out);
        Ok(Some(len))
    }

    /// Appends the next segment to `out` (no zeroing of room first) and returns its length, or
    /// `None` when all segments have been written.
    pub fn append_next(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let len = self.next_len()?;
        let start = out.len();
        out.extend_from_slice(&self.frame[..self.hdr_end]);
        out.extend_from_slice(&self.frame[self.next..self.next + len - self.hdr_end]);
        self.finish_segment(&mut out[start..]);
        Some(len)
    }

    /// Fixes the headers of the segment just copied into `out` (exactly `next_len()` bytes:
    /// the headers, then its share of the payload) and moves on to the next.
    fn finish_segment(&mut self, out: &mut [u8]) {
        let len = out.len();
        let take = len - self.hdr_end;
        let first = self.index == 0;
        let last = self.index + 1 == self.count;
        // The lengths written below fit 16 bits: `new` bounded the largest segment.
        let l4_len = len - self.l4_offset;
        if self.ipv4 {
            let ip = self.l3;
            let ihl = usize::from(out[ip] & 0x0f) * 4;
            put16(out, ip + 2, u16::try_from(len - ip).unwrap_or(u16::MAX));
            put16(out, ip + 4, self.ip_id);
            put16(out, ip + 10, 0);
            let check = !ones_complement_sum(&out[ip..ip + ihl]);
            put16(out, ip + 10, check);
        } else {
            let payload_len = len - self.l3 - IPV6_HEADER_LEN;
            put16(
                out,
                self.l3 + 4,
                u16::try_from(payload_len).unwrap_or(u16::MAX),
            );
        }

        let th = self.l4_offset;
        let (proto, check_at) = match self.l4 {
            L4::Tcp => {
                let offset = u32::try_from(self.next - self.hdr_end).unwrap_or(0);
                let seq = u32::from_be_bytes([out[th + 4], out[th + 5], out[th + 6], out[th + 7]]);
                out[th + 4..th + 8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
                if !last {
                    out[th + 13] &= !(TCP_FIN | TCP_PSH);
                }
                if !first {
                    out[th + 13] &= !TCP_CWR;
                }
                (IpProtocol::Tcp, th + TCP_CHECKSUM_OFFSET)
            }
            L4::Udp => {
                put16(out, th + 4, u16::try_from(l4_len).unwrap_or(u16::MAX));
                (IpProtocol::Udp, th + UDP_CHECKSUM_OFFSET)
            }
        };
        put16(out, check_at, 0);
        let l4_len32 = u32::try_from(l4_len).unwrap_or(u32::MAX);
        let pseudo = pseudo_header(&self.src, &self.dst, proto, l4_len32);
        let sum = smoltcp::wire::checksum::combine(&[pseudo, ones_complement_sum(&out[th..len])]);
        let check = match (!sum, self.l4) {
            (0, L4::Udp) => 0xffff,
            (c, _) => c,
        };
        put16(out, check_at, check);

        self.next += take;
        self.index += 1;
        // The ID wraps, as the kernel's `id++` on a 16-bit field does.
        self.ip_id = self.ip_id.wrapping_add(1);
    }
}

/// Cuts the super-frame `frame` described by `hdr` into segments, building each in `scratch`
/// and passing it to `emit`; returns the number of segments.
///
/// Everything is checked before the first call to `emit`: on error nothing was emitted. Errors
/// are those of [`Segmenter::new`], plus [`OffloadError::BufferTooSmall`] if `scratch` is
/// shorter than [`Segmenter::max_segment_len`] (at most `header_len + gso_size`).
pub fn segment(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let mut segmenter = Segmenter::new(frame, hdr)?;
    if scratch.len() < segmenter.max_segment_len() {
        return Err(OffloadError::BufferTooSmall);
    }
    let mut n = 0;
    while let Some(len) = segmenter.write_next(scratch)? {
        emit(&scratch[..len]);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A TCPv4 super-frame, 192.0.2.1:40000 -> 192.0.2.2:5201, IP ID 0xfffe, seq 0xfffffffe,
    /// flags CWR|ACK|PSH|FIN, payload "abcdefghij", partial checksum (bytes computed
    /// independently from RFC 791/793/1071).
    const SUPER: &str = "020000000002020000000001080045000032fffe40004006b6c3c0000201c0000202\
                         9c401451fffffffe010203045099faf0842800006162636465666768696a";
    /// Its segments at gso_size 4: IDs and sequence numbers wrap, CWR only on the first, PSH
    /// and FIN only on the last.
    const SEGMENTS: [&str; 3] = [
        "02000000000202000000000108004500002cfffe40004006b6c9c0000201c00002029c401451fffffffe\
         010203045090faf0b6fe000061626364",
        "02000000000202000000000108004500002cffff40004006b6c8c0000201c00002029c40145100000002\
         010203045010faf0af73000065666768",
        "02000000000202000000000108004500002a000040004006b6cac0000201c00002029c40145100000006\
         010203045019faf012cd0000696a",
    ];

    fn tso_hdr(gso_size: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 0,
            gso_size,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    fn collect(frame: &[u8], hdr: &VirtioNetHdr) -> Result<Vec<Vec<u8>>, OffloadError> {
        let mut out = Vec::new();
        let mut scratch = [0u8; 2048];
        segment(frame, hdr, &mut scratch, |s| out.push(s.to_vec()))?;
        Ok(out)
    }

    #[test]
    fn segments_fixed_tcpv4_frame() {
        let frame = hex(SUPER);
        let segs = collect(&frame, &tso_hdr(4)).unwrap();
        let expect: Vec<Vec<u8>> = SEGMENTS.iter().map(|s| hex(s)).collect();
        assert_eq!(segs, expect);
        // The ECN bit changes nothing.
        let ecn = VirtioNetHdr {
            gso_type: VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN,
            ..tso_hdr(4)
        };
        assert_eq!(collect(&frame, &ecn).unwrap(), expect);
    }

    #[test]
    fn segmenter_writes_into_caller_buffers() {
        let frame = hex(SUPER);
        let mut s = Segmenter::new(&frame, &tso_hdr(4)).unwrap();
        assert_eq!((s.segment_count(), s.remaining()), (3, 3));
        assert_eq!((s.header_len(), s.max_segment_len()), (54, 58));
        let mut small = [0u8; 57];
        assert_eq!(s.write_next(&mut small), Err(OffloadError::BufferTooSmall));
        let mut buf = [0u8; 100];
        for expect in SEGMENTS {
            let n = s.write_next(&mut buf).unwrap().unwrap();
            assert_eq!(buf[..n], hex(expect)[..]);
        }
        assert_eq!(s.remaining(), 0);
        assert_eq!(s.write_next(&mut buf), Ok(None));
    }

    #[test]
    fn payload_within_one_segment_gives_one_completed_frame() {
        let frame = hex(SUPER);
        let segs = collect(&frame, &tso_hdr(10)).unwrap();
        assert_eq!(segs.len(), 1);
        // Same as the input but with flags intact and the checksum completed.
        assert_eq!(segs[0][..50], frame[..50]);
        assert_eq!(segs[0][52..], frame[52..]);
        assert_ne!(segs[0][50..52], frame[50..52]);
        assert_eq!(collect(&frame, &tso_hdr(u16::MAX)).unwrap(), segs);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut frame = hex(SUPER);
        frame.extend_from_slice(&[0xee; 6]);
        let expect: Vec<Vec<u8>> = SEGMENTS.iter().map(|s| hex(s)).collect();
        assert_eq!(collect(&frame, &tso_hdr(4)).unwrap(), expect);
    }

    #[test]
    fn zero_ip_length_runs_to_the_frame_end() {
        let mut frame = hex(SUPER);
        frame[16..18].fill(0);
        let segs = collect(&frame, &tso_hdr(4)).unwrap();
        let expect: Vec<Vec<u8>> = SEGMENTS.iter().map(|s| hex(s)).collect();
        assert_eq!(segs, expect);
    }

    #[test]
    fn hostile_headers_are_errors() {
        let frame = hex(SUPER);
        let base = tso_hdr(4);
        let cases = [
            (VirtioNetHdr::NONE, OffloadError::NotGso),
            (
                VirtioNetHdr {
                    gso_size: 0,
                    ..base
                },
                OffloadError::BadGsoSize,
            ),
            (
                VirtioNetHdr {
                    gso_type: VirtioNetHdr::GSO_UDP,
                    ..base
                },
                OffloadError::Unsupported,
            ),
            (
                VirtioNetHdr {
                    gso_type: 0x7f,
                    ..base
                },
                OffloadError::Unsupported,
            ),
            (
                VirtioNetHdr {
                    gso_type: VirtioNetHdr::GSO_TCPV6,
                    ..base
                },
                OffloadError::Malformed,
            ),
            (
                VirtioNetHdr {
                    gso_type: VirtioNetHdr::GSO_UDP_L4,
                    csum_offset: 6,
                    ..base
                },
                OffloadError::Malformed,
            ),
            (
                VirtioNetHdr {
                    csum_start: 60000,
                    ..base
                },
                OffloadError::BadChecksumOffset,
            ),
            (
                VirtioNetHdr {
                    csum_start: 14,
                    ..base
                },
                OffloadError::BadChecksumOffset,
            ),
            (
                VirtioNetHdr {
                    csum_offset: 6,
                    ..base
                },
                OffloadError::BadChecksumOffset,
            ),
            (
                VirtioNetHdr {
                    csum_offset: u16::MAX,
                    ..base
                },
                OffloadError::BadChecksumOffset,
            ),
        ];
        for (hdr, err) in cases {
            let mut emitted = 0;
            let r = segment(&frame, &hdr, &mut [0u8; 2048], |_| emitted += 1);
            assert_eq!(r, Err(err), "{hdr:?}");
            assert_eq!(emitted, 0);
        }
        // Without NEEDS_CSUM the offsets are not consulted.
        let no_csum = VirtioNetHdr {
            flags: 0,
            csum_start: 60000,
            ..base
        };
        assert_eq!(collect(&frame, &no_csum).unwrap().len(), 3);
        // A scratch buffer too small for the largest segment: nothing emitted.
        let mut emitted = 0;
        let r = segment(&frame, &base, &mut [0u8; 57], |_| emitted += 1);
        assert_eq!((r, emitted), (Err(OffloadError::BufferTooSmall), 0));
    }

    #[test]
    fn hostile_frames_are_errors() {
        let frame = hex(SUPER);
        let hdr = tso_hdr(4);
        let check = |f: &[u8], err| {
            assert_eq!(Segmenter::new(f, &hdr).map(|_| ()), Err(err), "{f:02x?}");
        };
        check(&frame[..13], OffloadError::Truncated);
        check(&frame[..30], OffloadError::Malformed); // IP header cut
        check(&frame[..60], OffloadError::Truncated); // shorter than the IP length
        let mut f = frame.clone();
        f[12] = 0x86;
        f[13] = 0xdd;
        check(&f, OffloadError::Malformed); // not IPv4
        let mut f = frame.clone();
        f[20] = 0x20; // MF: a fragment
        check(&f, OffloadError::Malformed);
        let mut f = frame.clone();
        f[23] = 17; // UDP, not TCP
        check(&f, OffloadError::Malformed);
        let mut f = frame.clone();
        f[46] = 0x40; // TCP data offset 4 words
        check(&f, OffloadError::Malformed);
        let mut f = frame.clone();
        f[46] = 0xf0; // TCP header of 60 bytes beyond the packet
        check(&f, OffloadError::Truncated);
        let mut f = frame.clone();
        f[16..18].copy_from_slice(&30u16.to_be_bytes()); // IP length ends inside TCP
        check(&f, OffloadError::Malformed);
    }

    #[test]
    fn oversized_gso_size_with_zero_ip_length_is_refused() {
        // A BIG TCP style frame (IP length 0) whose one segment would exceed 16-bit lengths.
        let mut frame = hex(SUPER);
        frame[16..18].fill(0);
        frame.resize(54 + 70_000, 0x61);
        let hdr = tso_hdr(u16::MAX);
        assert_eq!(
            Segmenter::new(&frame, &hdr).map(|_| ()),
            Err(OffloadError::BadGsoSize)
        );
        let ok = tso_hdr(60_000);
        assert_eq!(Segmenter::new(&frame, &ok).unwrap().segment_count(), 2);
    }
}
