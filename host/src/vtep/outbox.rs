//! `Outbox`: where the pipeline writes what it wants sent, so that the I/O shell can send a whole
//! batch with few system calls.
//!
//! Underlay datagrams of one flow (same destination and source port) that follow each other are
//! written back to back into one frame, as a UDP GSO batch: every datagram but the last has the
//! same length, the frame's `segment_len`, and the shell hands the whole frame to the kernel in
//! one send (`UDP_SEGMENT`), which carries it through its stack as one packet and cuts it into
//! datagrams only where a device needs it. This is how a VM's TCP super-frame, segmented here,
//! leaves as one send, and how a burst of equal-sized frames of one flow does.
//!
//! Frames to a port merge the same way when they are consecutive segments of a flow (TCP, or
//! equal-sized UDP datagrams; see [`Run`]): [`Outbox::push_merging`] appends each to the newest
//! run of its flow to that port, and [`Outbox::finish_merging`] turns the runs into super-frames
//! with their `virtio_net_hdr`, which the port's kernel carries as one packet.
//!
//! The buffers are reused: `clear` keeps their capacity, so once warm the pipeline writes frames
//! without allocating.

use std::net::IpAddr;

use crate::fdb::PortId;
use crate::offload::Run;
use crate::wire::{FrameMeta, VirtioNetHdr};

/// The most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` has been 64 since
/// UDP GSO appeared; newer kernels allow more).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// The most bytes of UDP payload one GSO send may carry: what an IPv4 total length of 65,535
/// leaves after the IP and UDP headers.
pub const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;
/// How far back [`Outbox::append_datagram`] and [`Outbox::push_merging`] look for the frame of
/// the same flow: far enough for head-end replication to a few remotes, or a few flows to one
/// port, to interleave.
const OPEN_WINDOW: usize = 8;

/// Where a datagram goes into the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnderlayDest {
    /// The remote VTEP or multicast group.
    pub dst: IpAddr,
    /// The outer UDP source port: the flow's entropy for underlay ECMP.
    pub src_port: u16,
}

/// Where an outgoing frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Out of a local port: the bytes are an Ethernet frame.
    Port(PortId),
    /// Into the underlay: the bytes are UDP payloads (VXLAN header and inner frame), one or
    /// several (see [`OutFrame::segment_len`]).
    Underlay(UnderlayDest),
    /// Into the underlay as one packet for the kernel to segment (UDP-tunnel GSO): the bytes
    /// are a VXLAN header and a VM's super-frame, and `vnet` is the VM's header for it (offsets
    /// from the super-frame's start). It belongs to the flow of the same `UnderlayDest`: the
    /// shell sends it in order with that flow's datagrams.
    UnderlayWhole(UnderlayDest),
}

/// One frame to send.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// Where it goes.
    pub dest: Dest,
    /// For port frames: the offloads still pending (a super-frame switched locally stays one).
    pub vnet: VirtioNetHdr,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// For underlay frames holding several datagrams: the length of each (the last may be
    /// shorter). 0 when the bytes are one datagram or a port frame.
    pub segment_len: usize,
    /// For port frames that segments of their flow may still join: the run being merged.
    run: Option<Run>,
}

impl OutFrame {
    /// The datagrams of an underlay frame (the one frame itself if it holds one).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let step = if self.segment_len == 0 {
            self.bytes.len().max(1)
        } else {
            self.segment_len
        };
        self.bytes.chunks(step)
    }

    /// A shorter datagram ends a GSO batch: only the last may be shorter than the others.
    fn is_closed(&self) -> bool {
        self.segment_len != 0 && !self.bytes.len().is_multiple_of(self.segment_len)
    }

    /// Whether a datagram of `len` bytes may follow this frame's in one GSO send.
    fn can_take(&self, len: usize) -> bool {
        let segment = if self.segment_len == 0 {
            self.bytes.len()
        } else {
            self.segment_len
        };
        let count = self.bytes.len().div_ceil(segment.max(1));
        !self.is_closed()
            && len > 0
            && len <= segment
            && count < MAX_GSO_SEGMENTS
            && self.bytes.len() + len <= MAX_GSO_BYTES
    }
}

/// A reusable batch of outgoing frames.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: Vec<OutFrame>,
    len: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Starts a new frame and returns its (empty) buffer to write into.
    pub fn push(&mut self, dest: Dest, vnet: VirtioNetHdr) -> &mut Vec<u8> {
        if self.len == self.frames.len() {
            self.frames.push(OutFrame {
                dest,
                vnet,
                bytes: Vec::with_capacity(2048),
                segment_len: 0,
                run: None,
            });
        }
        let frame = &mut self.frames[self.len];
        self.len += 1;
        frame.dest = dest;
        frame.vnet = vnet;
        frame.segment_len = 0;
        frame.run = None;
        frame.bytes.clear();
        &mut frame.bytes
    }

    /// Queues `frame` (a whole frame, no offload pending) for `port`, merged into the newest run
    /// of its flow to that port if it continues it (UDP datagrams only with `udp`). Call
    /// [`Outbox::finish_merging`] once the batch is written.
    pub fn push_merging(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta, udp: bool) {
        if !udp && meta.ip_proto() == Some(crate::wire::ip_proto::UDP) {
            self.push(Dest::Port(port), VirtioNetHdr::NONE)
                .extend_from_slice(frame);
            return;
        }
        let start = self.len.saturating_sub(OPEN_WINDOW);
        for f in self.frames[start..self.len].iter_mut().rev() {
            if f.dest != Dest::Port(port) {
                continue;
            }
            // A frame to the port that starts no run (an ACK, a fragment, ...) may be of this
            // flow: nothing older may be joined past it.
            let Some(run) = &mut f.run else { break };
            if !run.same_flow(&f.bytes, frame) {
                continue;
            }
            // The newest run of the flow decides: joining an older one would reorder.
            if run.append(&mut f.bytes, frame, meta) {
                return;
            }
            break;
        }
        let run = Run::start(frame, meta);
        self.push(Dest::Port(port), VirtioNetHdr::NONE)
            .extend_from_slice(frame);
        self.frames[self.len - 1].run = run;
    }

    /// Turns the runs [`Outbox::push_merging`] built into super-frames with the
    /// `virtio_net_hdr` their port's kernel takes them with; nothing joins them afterwards.
    pub fn finish_merging(&mut self) {
        for f in &mut self.frames[..self.len] {
            if let Some(run) = f.run.take() {
                f.vnet = run.finish(&mut f.bytes);
            }
        }
    }

    /// Appends a datagram of `len` bytes to `dest`, which `write` appends to the buffer it is
    /// given (exactly `len` bytes; the buffer is not zeroed first). It joins the most recent
    /// frame to `dest` if that frame is among the last few and can take it in one GSO send;
    /// otherwise it starts a frame. Datagrams to one destination stay in the order they were
    /// appended.
    pub fn append_datagram(
        &mut self,
        dest: UnderlayDest,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.len.saturating_sub(OPEN_WINDOW);
        // The most recent frame to `dest` decides, a whole super-frame of the flow included:
        // appending to an older one would reorder.
        let open = (start..self.len)
            .rev()
            .find(|&i| {
                matches!(self.frames[i].dest, Dest::Underlay(d) | Dest::UnderlayWhole(d) if d == dest)
            })
            .filter(|&i| {
                self.frames[i].dest == Dest::Underlay(dest) && self.frames[i].can_take(len)
            });
        let frame = match open {
            Some(i) => {
                let frame = &mut self.frames[i];
                if frame.segment_len == 0 {
                    frame.segment_len = frame.bytes.len();
                }
                frame
            }
            None => {
                self.push(Dest::Underlay(dest), VirtioNetHdr::NONE);
                &mut self.frames[self.len - 1]
            }
        };
        let at = frame.bytes.len();
        write(&mut frame.bytes);
        // A writer that broke its promise must not shift the datagrams after it.
        debug_assert_eq!(frame.bytes.len(), at + len, "datagram of the wrong length");
        frame.bytes.resize(at + len, 0);
    }

    /// The frames pushed since the last `clear`.
    pub fn frames(&self) -> &[OutFrame] {
        &self.frames[..self.len]
    }

    /// How many frames are waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the frames, keeping their buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow's datagram, then a whole super-frame, then another datagram: the last may not
    /// join the first (it would leave before the super-frame).
    #[test]
    fn a_whole_super_frame_ends_its_flows_open_batch() {
        let mut out = Outbox::new();
        let dest = UnderlayDest {
            dst: IpAddr::from([198, 18, 0, 2]),
            src_port: 49_152,
        };
        out.append_datagram(dest, 100, |b| b.extend_from_slice(&[1; 100]));
        out.push(Dest::UnderlayWhole(dest), VirtioNetHdr::NONE)
            .extend_from_slice(&[2; 3000]);
        out.append_datagram(dest, 100, |b| b.extend_from_slice(&[3; 100]));
        let firsts: Vec<(Dest, u8, usize)> = out
            .frames()
            .iter()
            .map(|f| (f.dest, f.bytes[0], f.bytes.len()))
            .collect();
        assert_eq!(
            firsts,
            [
                (Dest::Underlay(dest), 1, 100),
                (Dest::UnderlayWhole(dest), 2, 3000),
                (Dest::Underlay(dest), 3, 100),
            ]
        );
    }

    fn to(dst: &str, src_port: u16) -> UnderlayDest {
        UnderlayDest {
            dst: dst.parse().unwrap(),
            src_port,
        }
    }

    fn append(out: &mut Outbox, dest: UnderlayDest, len: usize, fill: u8) {
        out.append_datagram(dest, len, |b| b.resize(b.len() + len, fill));
    }

    #[test]
    fn datagrams_of_one_flow_join_until_a_shorter_one() {
        let mut out = Outbox::new();
        let a = to("198.18.0.2", 50000);
        append(&mut out, a, 100, 1);
        append(&mut out, a, 100, 2);
        append(&mut out, a, 60, 3); // shorter: the last of the batch
        append(&mut out, a, 60, 4);
        assert_eq!(out.len(), 2);
        let f = &out.frames()[0];
        assert_eq!(f.segment_len, 100);
        let lens: Vec<usize> = f.datagrams().map(<[u8]>::len).collect();
        assert_eq!(lens, [100, 100, 60]);
        assert_eq!(f.datagrams().nth(2).unwrap(), [3; 60]);
        assert_eq!(out.frames()[1].segment_len, 0);
        assert_eq!(out.frames()[1].datagrams().count(), 1);
    }

    #[test]
    fn other_flows_and_longer_datagrams_start_frames() {
        let mut out = Outbox::new();
        let (a, b, a2) = (
            to("198.18.0.2", 50000),
            to("198.18.0.3", 50000),
            to("198.18.0.2", 50256),
        );
        append(&mut out, a, 100, 1);
        append(&mut out, b, 100, 2); // head-end replication interleaves
        append(&mut out, a, 100, 3);
        append(&mut out, b, 100, 4);
        append(&mut out, a2, 100, 5); // another source port: another flow
        append(&mut out, a, 101, 6); // longer than a's segments
        let counts: Vec<usize> = out.frames().iter().map(|f| f.datagrams().count()).collect();
        assert_eq!(counts, [2, 2, 1, 1]);
        // The newest frame to `a` is the 101-byte one: a 100-byte datagram joins it as its
        // shorter last one; an older frame to `a` never takes it (that would reorder).
        append(&mut out, a, 100, 7);
        assert_eq!(out.len(), 4);
        let lens: Vec<usize> = out.frames()[3].datagrams().map(<[u8]>::len).collect();
        assert_eq!(lens, [101, 100]);
        assert_eq!(out.frames()[0].datagrams().count(), 2);
    }

    #[test]
    fn a_port_frame_in_between_does_not_break_a_batch() {
        let mut out = Outbox::new();
        let a = to("2001:db8::2", 60000);
        append(&mut out, a, 80, 1);
        out.push(Dest::Port(PortId(1)), VirtioNetHdr::NONE)
            .extend_from_slice(&[9; 60]);
        append(&mut out, a, 80, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(out.frames()[0].datagrams().count(), 2);
    }

    #[test]
    fn batches_stop_at_the_kernels_limits() {
        let mut out = Outbox::new();
        let a = to("198.18.0.2", 50000);
        for _ in 0..MAX_GSO_SEGMENTS + 1 {
            append(&mut out, a, 10, 0);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out.frames()[0].datagrams().count(), MAX_GSO_SEGMENTS);

        let mut out = Outbox::new();
        for _ in 0..44 {
            append(&mut out, a, 1522, 0);
        }
        let first = &out.frames()[0];
        assert!(first.bytes.len() <= MAX_GSO_BYTES);
        assert_eq!(first.datagrams().count(), MAX_GSO_BYTES / 1522);
        assert_eq!(out.len(), 2);
    }

    /// A TCP segment of flow `flow` (its source port) with `len` payload bytes at `seq`,
    /// checksums complete.
    fn segment(flow: u16, seq: u32, len: usize) -> Vec<u8> {
        use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket};
        let mut f = vec![0u8; 14 + 20 + 20 + len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = u16::try_from(40 + len).unwrap();
        {
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
            ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
        }
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        let th = &mut f[34..54];
        th[0..2].copy_from_slice(&flow.to_be_bytes());
        th[2..4].copy_from_slice(&5201u16.to_be_bytes());
        th[4..8].copy_from_slice(&seq.to_be_bytes());
        th[12] = 5 << 4;
        th[13] = 0x10; // ACK
        let (src, dst) = (
            Ipv4Address::new(192, 0, 2, 1),
            Ipv4Address::new(192, 0, 2, 2),
        );
        TcpPacket::new_unchecked(&mut f[34..])
            .fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
        f
    }

    /// A UDP datagram of `len` payload bytes, 192.0.2.1:7 to 192.0.2.2:7, no checksum.
    fn datagram(len: usize) -> Vec<u8> {
        let mut f = segment(7, 0, 0);
        f.truncate(34);
        f.extend_from_slice(&7u16.to_be_bytes());
        f.extend_from_slice(&7u16.to_be_bytes());
        f.extend_from_slice(&u16::try_from(8 + len).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.resize(42 + len, 0xab);
        f[23] = 17;
        f[16..18].copy_from_slice(&u16::try_from(28 + len).unwrap().to_be_bytes());
        smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    #[test]
    fn udp_merges_only_where_the_ports_take_it() {
        for (udp, frames) in [(true, 1), (false, 3)] {
            let mut out = Outbox::new();
            for _ in 0..3 {
                let d = datagram(100);
                let meta = FrameMeta::parse(&d).unwrap();
                out.push_merging(PortId(0), &d, &meta, udp);
            }
            out.finish_merging();
            assert_eq!(out.len(), frames, "udp merging {udp}");
        }
    }

    fn merge(out: &mut Outbox, frame: &[u8]) {
        let meta = FrameMeta::parse(frame).unwrap();
        out.push_merging(PortId(0), frame, &meta, true);
    }

    #[test]
    fn segments_merge_per_flow_and_never_past_a_frame_that_starts_no_run() {
        let mut out = Outbox::new();
        merge(&mut out, &segment(1, 0, 100));
        merge(&mut out, &segment(2, 0, 100)); // another flow interleaves
        merge(&mut out, &segment(1, 100, 100));
        merge(&mut out, &segment(2, 100, 100));
        out.finish_merging();
        assert_eq!(out.len(), 2);
        assert!(
            out.frames()
                .iter()
                .all(|f| f.vnet.is_gso() && f.bytes.len() == 254)
        );

        let mut out = Outbox::new();
        merge(&mut out, &segment(1, 0, 100));
        // An ACK of flow 1 (no payload: it starts no run) sits between two segments.
        merge(&mut out, &segment(1, 100, 0));
        merge(&mut out, &segment(1, 100, 100));
        out.finish_merging();
        assert_eq!(out.len(), 3, "the later segment did not overtake the ACK");
        assert!(out.frames().iter().all(|f| !f.vnet.is_gso()));
    }

    #[test]
    fn clear_keeps_nothing_but_memory() {
        let mut out = Outbox::new();
        append(&mut out, to("198.18.0.2", 1), 10, 1);
        out.clear();
        assert!(out.is_empty());
        append(&mut out, to("198.18.0.2", 1), 20, 2);
        assert_eq!(out.frames()[0].bytes, [2; 20]);
        assert_eq!(out.frames()[0].segment_len, 0);
    }
}
