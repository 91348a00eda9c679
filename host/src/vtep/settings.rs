//! The pipeline's settings: what the daemon's configuration file becomes once validated and
//! once port names are resolved to [`PortId`]s. Plain data, no I/O.

use core::time::Duration;
use std::net::IpAddr;

use super::source_ports::SourcePorts;
use crate::fdb::{Location, PortId};
use crate::wire::{MacAddr, Vni};

/// A static FDB entry: never learned over, never aged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticEntry {
    /// The MAC address.
    pub mac: MacAddr,
    /// Where frames to it go.
    pub location: Location,
}

/// The common aging time of bridges and VTEPs (the kernel's and OVS's default).
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
/// The default per-VNI limit on learned entries.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;
/// The IANA VXLAN port (RFC 7348 §5). The Linux kernel's own default is 8472.
pub const DEFAULT_DST_PORT: u16 = 4789;
/// The default outer TTL / hop limit.
pub const DEFAULT_TTL: u8 = 64;
/// The default underlay MTU.
pub const DEFAULT_MTU: u16 = 1500;

/// One VNI served by this VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniSettings {
    /// The VNI.
    pub vni: Vni,
    /// Local ports on this VNI. A port belongs to one VNI at most.
    pub ports: Vec<PortId>,
    /// Multicast group for BUM traffic (joined only while `ports` is not empty).
    pub group: Option<IpAddr>,
    /// Head-end replication list: each BUM frame is sent unicast to each of these.
    pub remotes: Vec<IpAddr>,
    /// How long a learned entry lives without frames from its MAC.
    pub aging: Duration,
    /// Learn from traffic (false: only static entries and flooding).
    pub learning: bool,
    /// With `learning`, learn remote MACs from VXLAN packets too (false: only local ports are
    /// learned from; a control plane says where remote MACs are, as EVPN does by default).
    pub learn_from_underlay: bool,
    /// At most this many learned entries; past it new MACs are flooded to, not learned.
    pub max_entries: usize,
    /// Drop VXLAN packets whose reserved bits are not zero (Linux and VPP do; RFC 7348 says to
    /// ignore them, which is the default here).
    pub strict_reserved: bool,
    /// Static entries.
    pub statics: Vec<StaticEntry>,
    /// Drop VXLAN packets from an underlay source that is neither a configured remote nor a
    /// VTEP a control plane announces on this VNI (see
    /// [`Vtep::set_control_remotes`](super::Vtep::set_control_remotes)): an outsider on the
    /// underlay cannot inject frames. For VNIs whose VTEPs a control plane announces (EVPN);
    /// with a multicast group, peers are not known in advance.
    pub source_check: bool,
    /// Answer a port's ARP requests for addresses a control plane binds to a MAC (see
    /// [`Vtep::set_neighbor`](super::Vtep::set_neighbor)) on the port, rather than flood them.
    pub arp_suppress: bool,
}

impl VniSettings {
    /// A VNI with the given ports and every other setting at its default.
    pub fn new(vni: Vni, ports: Vec<PortId>) -> VniSettings {
        VniSettings {
            vni,
            ports,
            group: None,
            remotes: Vec::new(),
            aging: DEFAULT_AGING,
            learning: true,
            learn_from_underlay: true,
            max_entries: DEFAULT_MAX_ENTRIES,
            strict_reserved: false,
            statics: Vec::new(),
            source_check: false,
            arp_suppress: false,
        }
    }
}

/// The whole VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtepSettings {
    /// This VTEP's underlay address: the outer source of everything it sends.
    pub local: IpAddr,
    /// The outer UDP destination port, and the port it listens on.
    pub dst_port: u16,
    /// The ports the per-flow outer UDP source port is drawn from.
    pub src_ports: SourcePorts,
    /// Outer TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Underlay MTU: an outer packet longer than this is dropped and counted.
    pub mtu: u16,
    /// Merge a flow's equal-sized UDP datagrams into one super-frame (UDP segmentation offload)
    /// when delivering to a port. The ports' kernel must take such frames from a packet socket
    /// (Linux 6.2 and later); TCP segments are merged regardless.
    pub merge_udp: bool,
    /// Hand a VM's TCP super-frame to one remote VTEP to the shell whole, encapsulated once
    /// ([`Dest::UnderlayWhole`](super::Dest::UnderlayWhole)), instead of segmenting it here:
    /// only when the shell can send such a frame as one packet (a tunnel tap is up).
    pub whole_super_frames: bool,
    /// The VNIs served.
    pub vnis: Vec<VniSettings>,
}

impl VtepSettings {
    /// A VTEP at `local` with every other setting at its default and no VNIs.
    pub fn new(local: IpAddr) -> VtepSettings {
        VtepSettings {
            local,
            dst_port: DEFAULT_DST_PORT,
            src_ports: SourcePorts::default(),
            ttl: DEFAULT_TTL,
            mtu: DEFAULT_MTU,
            merge_udp: true,
            whole_super_frames: false,
            vnis: Vec::new(),
        }
    }
}

/// Why settings cannot make a VTEP. The config layer reports these with the file's field names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The same VNI twice.
    #[error("VNI {0} is configured twice")]
    DuplicateVni(Vni),
    /// A port can carry one VNI only.
    #[error("port {0:?} is on two VNIs")]
    PortOnTwoVnis(PortId),
    /// Underlay addresses of both families mixed.
    #[error("{0} is not in the same address family as the local address {1}")]
    FamilyMismatch(IpAddr, IpAddr),
    /// A group that is not a multicast address.
    #[error("group {0} is not a multicast address")]
    NotMulticast(IpAddr),
    /// A remote, or the local address, that cannot be a VTEP's unicast address.
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// A static entry for a broadcast, multicast or zero MAC.
    #[error("static entry {0} is not a unicast MAC address")]
    StaticNotUnicast(MacAddr),
    /// A static entry on a port of another VNI.
    #[error("static entry {0} points at port {1:?}, which is not on this VNI")]
    StaticPortElsewhere(MacAddr, PortId),
    /// An MTU that cannot carry even an Ethernet header after encapsulation.
    #[error("underlay MTU {0} is too small for VXLAN (at least {1})")]
    MtuTooSmall(u16, u16),
    /// A source port that is also the VXLAN port: its socket would take the VTEP's traffic.
    #[error("source port {0} is the VXLAN port")]
    SourcePortIsDstPort(u16),
    /// More VNIs than the forwarding table can index.
    #[error("at most {} VNIs", crate::fdb::MAX_VNIS)]
    TooManyVnis,
}

impl VtepSettings {
    /// Checks what the pipeline relies on: one VNI per port, one address family, groups that
    /// are multicast and remotes that are unicast, a usable MTU.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let local = self.local;
        if local.is_multicast() || local.is_unspecified() {
            return Err(SettingsError::NotUnicast(local));
        }
        let same_family = |ip: IpAddr| {
            if ip.is_ipv4() == local.is_ipv4() {
                Ok(())
            } else {
                Err(SettingsError::FamilyMismatch(ip, local))
            }
        };
        let min_mtu: u16 = if local.is_ipv4() { 50 + 14 } else { 70 + 14 };
        if self.mtu < min_mtu {
            return Err(SettingsError::MtuTooSmall(self.mtu, min_mtu));
        }
        if self.src_ports.contains(self.dst_port) {
            return Err(SettingsError::SourcePortIsDstPort(self.dst_port));
        }
        if self.vnis.len() > crate::fdb::MAX_VNIS {
            return Err(SettingsError::TooManyVnis);
        }
        let mut seen_vnis = std::collections::HashSet::new();
        let mut seen_ports = std::collections::HashSet::new();
        for v in &self.vnis {
            if !seen_vnis.insert(v.vni) {
                return Err(SettingsError::DuplicateVni(v.vni));
            }
            for &p in &v.ports {
                if !seen_ports.insert(p) {
                    return Err(SettingsError::PortOnTwoVnis(p));
                }
            }
            if let Some(g) = v.group {
                same_family(g)?;
                if !g.is_multicast() {
                    return Err(SettingsError::NotMulticast(g));
                }
            }
            for &r in &v.remotes {
                same_family(r)?;
                if r.is_multicast() || r.is_unspecified() {
                    return Err(SettingsError::NotUnicast(r));
                }
            }
            for s in &v.statics {
                if !s.mac.is_valid_unicast() {
                    return Err(SettingsError::StaticNotUnicast(s.mac));
                }
                match s.location {
                    Location::Remote(r) => same_family(r)?,
                    Location::Port(p) if !v.ports.contains(&p) => {
                        return Err(SettingsError::StaticPortElsewhere(s.mac, p));
                    }
                    Location::Port(_) => {}
                }
            }
        }
        Ok(())
    }
}
