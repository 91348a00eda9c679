//! Encapsulation (RFC 7348 §5): outer IPv4 or IPv6 header, UDP, VXLAN, then the inner frame,
//! written into an [`Outbox`] buffer.
//!
//! Outer fields follow the kernel's vxlan driver where RFC 7348 leaves a choice: UDP source
//! port from a hash of the inner flow (so the underlay can spread flows over equal-cost paths),
//! IPv4 UDP checksum zero (§5 allows it; the kernel's default), IPv6 UDP checksum computed
//! (RFC 8200 requires one; the kernel's `udp6zerocsumtx` is off by default), DF clear, TOS 0.

use core::ops::RangeInclusive;
use std::net::IpAddr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

use super::outbox::{Dest, Outbox};
use super::stats::DropReason;
use crate::wire::{VXLAN_HEADER_LEN, VirtioNetHdr, Vni, VxlanPacket, VxlanRepr, flow_src_port};

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// Writes outer headers. Holds everything per-VTEP they need, including the IPv4 ID counter.
#[derive(Debug, Clone)]
pub(crate) struct Encapsulator {
    local: IpAddr,
    dst_port: u16,
    src_ports: RangeInclusive<u16>,
    ttl: u8,
    mtu: usize,
    next_ip_id: u16,
}

impl Encapsulator {
    pub(crate) fn new(
        local: IpAddr,
        dst_port: u16,
        src_ports: RangeInclusive<u16>,
        ttl: u8,
        mtu: u16,
    ) -> Encapsulator {
        Encapsulator {
            local,
            dst_port,
            src_ports,
            ttl,
            mtu: usize::from(mtu),
            next_ip_id: 0,
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

    /// Appends one outer packet to `dst` carrying `inner` on `vni`; returns its length.
    pub(crate) fn encapsulate(
        &mut self,
        out: &mut Outbox,
        dst: IpAddr,
        vni: Vni,
        flow_hash: u32,
        inner: &[u8],
    ) -> Result<usize, DropReason> {
        if inner.len() > self.max_inner() {
            return Err(DropReason::MtuExceeded);
        }
        let overhead = self.overhead();
        let total = overhead + inner.len();
        let src_port = flow_src_port(flow_hash, self.src_ports.clone());
        let buf = out.push(Dest::Underlay(dst), VirtioNetHdr::NONE);
        buf.resize(overhead, 0);
        buf.extend_from_slice(inner);
        // The lengths below fit in u16: `total` <= mtu <= u16::MAX.
        let ip_len = match (self.local, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER]);
                ip.set_version(4);
                ip.set_header_len(20);
                ip.set_dscp(0);
                ip.set_ecn(0);
                ip.set_total_len(u16::try_from(total).unwrap_or(u16::MAX));
                ip.set_ident(self.next_ip_id);
                self.next_ip_id = self.next_ip_id.wrapping_add(1);
                ip.clear_flags();
                ip.set_frag_offset(0);
                ip.set_hop_limit(self.ttl);
                ip.set_next_header(IpProtocol::Udp);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                ip.fill_checksum();
                IPV4_HEADER
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut ip = Ipv6Packet::new_unchecked(&mut buf[..IPV6_HEADER]);
                ip.set_version(6);
                ip.set_traffic_class(0);
                ip.set_flow_label(0);
                ip.set_payload_len(u16::try_from(total - IPV6_HEADER).unwrap_or(u16::MAX));
                ip.set_next_header(IpProtocol::Udp);
                ip.set_hop_limit(self.ttl);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                IPV6_HEADER
            }
            // Settings validation keeps every address in the local address's family, and
            // remotes are learned from sockets of that family.
            _ => {
                out.pop();
                return Err(DropReason::NoDestination);
            }
        };
        let udp_len = u16::try_from(total - ip_len).unwrap_or(u16::MAX);
        let mut udp = UdpPacket::new_unchecked(&mut buf[ip_len..]);
        udp.set_src_port(src_port);
        udp.set_dst_port(self.dst_port);
        udp.set_len(udp_len);
        VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut udp.payload_mut()[..]));
        if dst.is_ipv6() {
            udp.fill_checksum(&self.local.into(), &dst.into());
        } else {
            udp.set_checksum(0);
        }
        Ok(total)
    }
}
