//! [`LocalIps`]: the IP addresses local VMs use, as their own ARP and IPv6 neighbour
//! discovery say (an ARP packet's sender, a neighbour solicitation's source, a neighbour
//! advertisement's target), so that a control plane can announce them with their MACs (EVPN
//! MAC/IP routes, RFC 7432 §7.2), and a journal of the addresses whose binding changed.
//!
//! Contract: off until a control plane asks ([`LocalIps::set_on`]); then only ARP and ND
//! frames from MACs the table holds at a local port are read: a known binding costs a read
//! lock, a new one the write lock for one map update (never for other traffic). At most
//! [`MAX_BINDINGS`] bindings per VNI (a VM inventing sender addresses cannot grow it past
//! that: further addresses are not noted). The journal is bounded like the forwarding table's:
//! past [`JOURNAL_CAPACITY`](crate::fdb::JOURNAL_CAPACITY) addresses not yet taken it says
//! "read everything" once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use foldhash::fast::RandomState;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{ArpPacket, ArpRepr, Icmpv6Packet, Icmpv6Repr, NdiscRepr};

use crate::fdb::{JOURNAL_CAPACITY, LocalChanges};
use crate::sync;
use crate::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, FrameMeta, MacAddr, ip_proto};

/// Bindings per VNI, at most.
pub(super) const MAX_BINDINGS: usize = 65_536;

#[derive(Debug, Default)]
struct State {
    bindings: HashMap<IpAddr, MacAddr, RandomState>,
    changed: Vec<IpAddr>,
    overflowed: bool,
}

/// One VNI's local IP -> MAC bindings.
#[derive(Debug, Default)]
pub(super) struct LocalIps {
    on: AtomicBool,
    state: RwLock<State>,
}

impl LocalIps {
    /// Starts (or stops) snooping; starting forgets what was known.
    pub(super) fn set_on(&self, on: bool) {
        *sync::write(&self.state) = State::default();
        self.on.store(on, Ordering::Relaxed);
    }

    /// Reads `frame` (from a local port) for the address its sender uses, if it is ARP or ND.
    pub(super) fn snoop(&self, meta: &FrameMeta, frame: &[u8]) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let Some(ip) = sender_address(meta, frame) else {
            return;
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return;
        }
        if sync::read(&self.state).bindings.get(&ip) == Some(&meta.src) {
            return; // known: the common case, under the read lock
        }
        let mut s = sync::write(&self.state);
        if !s.bindings.contains_key(&ip) && s.bindings.len() >= MAX_BINDINGS {
            return;
        }
        if s.bindings.insert(ip, meta.src) == Some(meta.src) {
            return;
        }
        if s.overflowed {
            return;
        }
        if s.changed.len() >= JOURNAL_CAPACITY {
            s.changed = Vec::new();
            s.overflowed = true;
        } else {
            s.changed.push(ip);
        }
    }

    /// Appends the addresses whose binding changed since the last call, with their MAC now,
    /// to `into`, each once; or says that more changed than the journal holds.
    pub(super) fn take_changes(&self, into: &mut Vec<(IpAddr, MacAddr)>) -> LocalChanges {
        let mut s = sync::write(&self.state);
        if core::mem::take(&mut s.overflowed) {
            return LocalChanges::Overflowed;
        }
        let mut changed = core::mem::take(&mut s.changed);
        changed.sort_unstable();
        changed.dedup();
        into.extend(
            changed
                .into_iter()
                .filter_map(|ip| s.bindings.get(&ip).map(|&mac| (ip, mac))),
        );
        LocalChanges::Keys
    }

    /// Every binding known, appended to `into` (after an overflow).
    pub(super) fn all(&self, into: &mut Vec<(IpAddr, MacAddr)>) {
        into.extend(
            sync::read(&self.state)
                .bindings
                .iter()
                .map(|(&i, &m)| (i, m)),
        );
    }

    /// Forgets `ips` where they are bound to `mac` (a MAC that is no longer local).
    pub(super) fn forget(&self, mac: MacAddr, ips: &[IpAddr]) {
        let mut s = sync::write(&self.state);
        for ip in ips {
            if s.bindings.get(ip) == Some(&mac) {
                s.bindings.remove(ip);
            }
        }
    }
}

/// The address the sender of an ARP or ND frame says it uses, if the frame's Ethernet source
/// is the one the packet speaks for.
fn sender_address(meta: &FrameMeta, frame: &[u8]) -> Option<IpAddr> {
    match meta.ethertype {
        ETHERTYPE_ARP => {
            let packet = ArpPacket::new_checked(frame.get(meta.l3_offset..)?).ok()?;
            let ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                ..
            } = ArpRepr::parse(&packet).ok()?
            else {
                return None;
            };
            (source_hardware_addr.0 == meta.src.0).then_some(IpAddr::V4(source_protocol_addr))
        }
        ETHERTYPE_IPV6 => {
            let ip = meta.ip?;
            let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
                return None;
            };
            if ip.protocol != ip_proto::ICMPV6 || ip.fragment {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(frame.get(ip.l4_offset..)?).ok()?;
            let caps = ChecksumCapabilities::ignored();
            match Icmpv6Repr::parse(&src, &dst, &icmp, &caps).ok()? {
                Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { .. }) => Some(IpAddr::V6(src)),
                Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { target_addr, .. }) => {
                    Some(IpAddr::V6(target_addr))
                }
                _ => None,
            }
        }
        _ => None,
    }
}
