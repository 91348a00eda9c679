//! Encapsulation (RFC 7348 §5): a VXLAN header and the inner frame, as the payload of a UDP
//! datagram to the remote VTEP (or group) from the flow's source port, written into an
//! [`Outbox`].
//!
//! The outer IP and UDP headers are the I/O shell's sockets' to write, so that the kernel can
//! carry a batch of a flow's datagrams as one UDP GSO packet: the core decides everything that
//! varies per packet (destination, source port from a hash of the inner flow, VNI) and checks
//! the underlay MTU; the fixed outer fields (TTL, checksum policy, no fragmentation) are socket
//! options set once.

use std::net::IpAddr;

use super::outbox::{Dest, Outbox, UnderlayDest};
use super::source_ports::SourcePorts;
use super::stats::DropReason;
use crate::offload::Segmenter;
use crate::wire::{VXLAN_HEADER_LEN, VirtioNetHdr, Vni, VxlanPacket, VxlanRepr};

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// Chooses outer source ports and writes VXLAN datagrams.
#[derive(Debug, Clone)]
pub(crate) struct Encapsulator {
    local: IpAddr,
    src_ports: SourcePorts,
    mtu: usize,
    /// The shell takes super-frames whole (see [`Encapsulator::encapsulate_whole`]).
    whole_super_frames: bool,
}

impl Encapsulator {
    pub(crate) fn new(local: IpAddr, src_ports: SourcePorts, mtu: u16) -> Encapsulator {
        Encapsulator {
            local,
            src_ports,
            mtu: usize::from(mtu),
            whole_super_frames: false,
        }
    }

    /// The same, handing super-frames to the shell whole when `whole` (and they qualify).
    pub(crate) fn with_whole_super_frames(self, whole: bool) -> Encapsulator {
        Encapsulator {
            whole_super_frames: whole,
            ..self
        }
    }

    /// Bytes added in front of the inner frame: 36 over IPv4, 56 over IPv6 (the "50 and 70"
    /// of VXLAN folklore count the inner Ethernet header too, against the inner IP MTU).
    pub(crate) fn overhead(&self) -> usize {
        let ip = if self.local.is_ipv4() {
            IPV4_HEADER
        } else {
            IPV6_HEADER
        };
        ip + UDP_HEADER + VXLAN_HEADER_LEN
    }

    /// The largest inner frame that fits the underlay MTU.
    pub(crate) fn max_inner(&self) -> usize {
        self.mtu.saturating_sub(self.overhead())
    }

    /// Where a flow with hash `flow_hash` to `dst` goes: the destination and the flow's port.
    fn dest(&self, dst: IpAddr, flow_hash: u32) -> Result<UnderlayDest, DropReason> {
        // Settings validation keeps every address in the local address's family, and remotes
        // are learned from sockets of that family.
        if dst.is_ipv4() != self.local.is_ipv4() {
            return Err(DropReason::NoDestination);
        }
        Ok(UnderlayDest {
            dst,
            src_port: self.src_ports.pick(flow_hash),
        })
    }

    /// Appends one datagram to `dst` carrying `inner` on `vni`; returns the outer packet's
    /// length.
    pub(crate) fn encapsulate(
        &self,
        out: &mut Outbox,
        dst: IpAddr,
        vni: Vni,
        flow_hash: u32,
        inner: &[u8],
    ) -> Result<usize, DropReason> {
        if inner.len() > self.max_inner() {
            return Err(DropReason::MtuExceeded);
        }
        let dest = self.dest(dst, flow_hash)?;
        let header = vxlan_header(vni);
        out.append_datagram(dest, VXLAN_HEADER_LEN + inner.len(), |b| {
            b.extend_from_slice(&header);
            b.extend_from_slice(inner);
        });
        Ok(self.overhead() + inner.len())
    }

    /// Appends one datagram per segment of a GSO super-frame, each segment written straight
    /// after its VXLAN header (no intermediate copy), so that they leave as one GSO batch.
    /// Returns how many outer packets, and their bytes. A super-frame whose segments do not fit
    /// the underlay MTU is dropped whole.
    pub(crate) fn encapsulate_segments(
        &self,
        out: &mut Outbox,
        dst: IpAddr,
        vni: Vni,
        flow_hash: u32,
        segments: &mut Segmenter<'_>,
    ) -> Result<(usize, usize), DropReason> {
        if segments.max_segment_len() > self.max_inner() {
            return Err(DropReason::MtuExceeded);
        }
        let dest = self.dest(dst, flow_hash)?;
        let header = vxlan_header(vni);
        let (mut packets, mut total) = (0, 0);
        while let Some(len) = segments.next_len() {
            out.append_datagram(dest, VXLAN_HEADER_LEN + len, |b| {
                b.extend_from_slice(&header);
                segments.append_next(b);
            });
            packets += 1;
            total += self.overhead() + len;
        }
        Ok((packets, total))
    }
}

/// The largest IPv4 packet: an encapsulated super-frame must fit its total length field.
const MAX_IPV4_PACKET: usize = 65_535;

impl Encapsulator {
    /// Appends `frame`, a TCP super-frame the VM's kernel left to segment (`vnet`, checked by
    /// `segments`), to `dst` whole behind its VXLAN header, for the shell to send as one packet
    /// (see [`Dest::UnderlayWhole`](super::Dest::UnderlayWhole)). Returns the outer packets it
    /// becomes on a wire and their bytes, as [`Encapsulator::encapsulate_segments`] would, or
    /// `Ok(None)` when it cannot go whole (an IPv6 underlay, a multicast destination, ECN, UDP,
    /// no partial checksum, bytes past the IP packet's end, or too long for one outer IPv4
    /// packet): then segment it.
    #[allow(clippy::too_many_arguments)] // one frame's context, as `encapsulate_segments` has
    pub(crate) fn encapsulate_whole(
        &self,
        out: &mut Outbox,
        dst: IpAddr,
        vni: Vni,
        flow_hash: u32,
        vnet: &VirtioNetHdr,
        frame: &[u8],
        segments: &Segmenter<'_>,
    ) -> Result<Option<(usize, usize)>, DropReason> {
        let tcp = matches!(
            vnet.gso_type,
            VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_TCPV6
        );
        let fits = IPV4_HEADER + UDP_HEADER + VXLAN_HEADER_LEN + frame.len() <= MAX_IPV4_PACKET;
        // A group is no route's destination for a forwarded packet; padding would become
        // payload in the kernel's segmentation.
        let unicast = !dst.is_multicast();
        let unpadded = segments.packet_end() == frame.len();
        let wanted = self.whole_super_frames && self.local.is_ipv4() && unicast;
        if !(wanted && tcp && vnet.needs_csum() && fits && unpadded) {
            return Ok(None);
        }
        if segments.max_segment_len() > self.max_inner() {
            return Err(DropReason::MtuExceeded);
        }
        let dest = self.dest(dst, flow_hash)?;
        let bytes = out.push(Dest::UnderlayWhole(dest), *vnet);
        bytes.extend_from_slice(&vxlan_header(vni));
        bytes.extend_from_slice(frame);
        let packets = segments.segment_count();
        Ok(Some((
            packets,
            packets * self.overhead() + segments.segments_len(),
        )))
    }
}

/// The VXLAN header of `vni`: the I flag, every reserved bit zero.
fn vxlan_header(vni: Vni) -> [u8; VXLAN_HEADER_LEN] {
    let mut header = [0; VXLAN_HEADER_LEN];
    VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut header[..]));
    header
}
