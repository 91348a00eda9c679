//! [`Neighbors`]: one VNI's IP -> MAC bindings that a control plane knows (EVPN MAC/IP routes,
//! RFC 7432 §7.2, remote or local), and ARP and ND suppression (RFC 7432 §10): a VM's ARP
//! request or IPv6 neighbour solicitation for an address bound here is answered by the VTEP on
//! the VM's port (a solicited, overriding neighbour advertisement with the target's link-layer
//! address, RFC 4861 §7.2.4) instead of being flooded.
//!
//! Contract: the control plane sets and removes bindings; a worker reads them only for ARP
//! requests from its ports (a read lock, uncontended but for the control plane's brief
//! writes; never taken for other traffic). An answer is built from the request (its VLAN tag
//! kept) and padded to the Ethernet minimum.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::RwLock;

use foldhash::fast::RandomState;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use crate::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, FrameMeta, MacAddr, ip_proto};

/// The shortest Ethernet frame, without its FCS: an answer is padded to it.
const MIN_FRAME: usize = 60;

/// What an address is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    mac: MacAddr,
    /// The address is a router's (RFC 9161's flag): an IPv6 answer says so, or the asker
    /// would drop the router from its default router list (RFC 4861 §7.2.5).
    router: bool,
}

/// One VNI's IP -> MAC bindings.
#[derive(Debug, Default)]
pub(super) struct Neighbors {
    bindings: RwLock<HashMap<IpAddr, Binding, RandomState>>,
}

impl Neighbors {
    /// Binds `ip` to `mac` (replacing another binding of `ip`); `router`: it is a router's.
    pub(super) fn set(&self, ip: IpAddr, mac: MacAddr, router: bool) {
        crate::sync::write(&self.bindings).insert(ip, Binding { mac, router });
    }

    /// Unbinds `ip` if it is bound to `mac` (a withdrawal of an older binding leaves a newer
    /// one); whether it was.
    pub(super) fn remove(&self, ip: IpAddr, mac: MacAddr) -> bool {
        let mut b = crate::sync::write(&self.bindings);
        if b.get(&ip).is_some_and(|b| b.mac == mac) {
            b.remove(&ip);
            true
        } else {
            false
        }
    }

    fn resolve(&self, ip: IpAddr) -> Option<Binding> {
        crate::sync::read(&self.bindings).get(&ip).copied()
    }

    /// The answer to `frame` if it is an ARP request for a bound address other than the
    /// asker's own (built on the stack: nothing allocated per frame).
    pub(super) fn answer_arp(&self, meta: &FrameMeta, frame: &[u8]) -> Option<Answer> {
        if meta.ethertype != ETHERTYPE_ARP {
            return None;
        }
        let request = frame
            .get(meta.l3_offset..)
            .and_then(|b| ArpPacket::new_checked(b).ok())
            .and_then(|p| ArpRepr::parse(&p).ok())?;
        let ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = request
        else {
            return None;
        };
        let mac = self.resolve(IpAddr::V4(target_protocol_addr))?.mac;
        // A duplicate-address probe (from 0.0.0.0), a gratuitous ARP (a new owner announcing
        // the address: sender = target) or a VM asking for itself is not answered: the flood
        // lets the owner answer, or the others hear the announcement.
        if mac == meta.src
            || source_protocol_addr == Ipv4Addr::UNSPECIFIED
            || source_protocol_addr == target_protocol_addr
        {
            return None;
        }
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(mac.0),
            source_protocol_addr: target_protocol_addr,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        // The tag (if any) and the EtherType, as the request had them.
        let tag_and_type = frame.get(12..meta.l3_offset)?;
        let mut answer = Answer([0; MAX_ANSWER], 0);
        let arp_at = 12 + tag_and_type.len();
        let end = arp_at + reply.buffer_len();
        let buf = answer.0.get_mut(..end)?;
        buf[..6].copy_from_slice(&meta.src.0);
        buf[6..12].copy_from_slice(&mac.0);
        buf[12..arp_at].copy_from_slice(tag_and_type);
        reply.emit(&mut ArpPacket::new_unchecked(&mut buf[arp_at..]));
        answer.1 = end.max(MIN_FRAME);
        Some(answer)
    }
}

/// The longest answer: Ethernet and one tag (18), an IPv6 header (40), a neighbour
/// advertisement with its target link-layer address option (32).
const MAX_ANSWER: usize = 96;

impl Neighbors {
    /// The answer to `frame` if it is an IPv6 neighbour solicitation for a bound address other
    /// than the asker's own (not a duplicate-address probe, whose source is `::`).
    pub(super) fn answer_nd(&self, meta: &FrameMeta, frame: &[u8]) -> Option<Answer> {
        let ip = meta.ip?;
        let (IpAddr::V6(asker), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
            return None;
        };
        if meta.ethertype != ETHERTYPE_IPV6 || ip.protocol != ip_proto::ICMPV6 || ip.fragment {
            return None;
        }
        // RFC 4861 §7.1.1: a solicitation whose hop limit is not 255 came through a router.
        if frame.get(meta.l3_offset + 7) != Some(&255) {
            return None;
        }
        let icmp = Icmpv6Packet::new_checked(frame.get(ip.l4_offset..)?).ok()?;
        // The checksum is the asker's business: a malformed one costs it an answer it would
        // have dropped anyway.
        let caps = ChecksumCapabilities::ignored();
        let Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, .. }) =
            Icmpv6Repr::parse(&asker, &dst, &icmp, &caps).ok()?
        else {
            return None;
        };
        if asker.is_unspecified() {
            return None;
        }
        let Binding { mac, router } = self.resolve(IpAddr::V6(target_addr))?;
        if mac == meta.src {
            return None;
        }
        let mut flags = NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE;
        if router {
            flags |= NdiscNeighborFlags::ROUTER;
        }
        let advert = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr: Some(RawHardwareAddress::from_bytes(&mac.0)),
        });
        let ipv6 = Ipv6Repr {
            src_addr: target_addr,
            dst_addr: asker,
            next_header: IpProtocol::Icmpv6,
            payload_len: advert.buffer_len(),
            hop_limit: 255,
        };
        let tag_and_type = frame.get(12..meta.l3_offset)?;
        let l3 = 12 + tag_and_type.len();
        let l4 = l3 + ipv6.buffer_len();
        let end = l4 + advert.buffer_len();
        let mut answer = Answer([0; MAX_ANSWER], end.max(MIN_FRAME));
        let buf = answer.0.get_mut(..end)?;
        buf[..6].copy_from_slice(&meta.src.0);
        buf[6..12].copy_from_slice(&mac.0);
        buf[12..l3].copy_from_slice(tag_and_type);
        ipv6.emit(&mut Ipv6Packet::new_unchecked(&mut buf[l3..l4]));
        advert.emit(
            &target_addr,
            &asker,
            &mut Icmpv6Packet::new_unchecked(&mut buf[l4..]),
            &ChecksumCapabilities::default(),
        );
        Some(answer)
    }
}

/// A frame the VTEP answers with, on the stack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer([u8; MAX_ANSWER], usize);

impl Answer {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}
