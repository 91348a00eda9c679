//! The pipeline's settings: what the daemon's configuration file becomes once validated and
//! once port names are resolved to [`PortId`]s. Plain data, no I/O.

use core::ops::RangeInclusive;
use core::time::Duration;
use std::net::IpAddr;

pub use crate::fdb::{Location, PortId};
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
/// RFC 7348 §5: "it is recommended that the UDP source port number be calculated using a hash
/// of fields from the inner packet", within the dynamic/private range.
pub const DEFAULT_SRC_PORTS: RangeInclusive<u16> = 49152..=65535;
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
    /// At most this many learned entries; past it new MACs are flooded to, not learned.
    pub max_entries: usize,
    /// Drop VXLAN packets whose reserved bits are not zero (Linux and VPP do; RFC 7348 says to
    /// ignore them, which is the default here).
    pub strict_reserved: bool,
    /// Static entries.
    pub statics: Vec<StaticEntry>,
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
            max_entries: DEFAULT_MAX_ENTRIES,
            strict_reserved: false,
            statics: Vec::new(),
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
    /// The range the per-flow outer UDP source port is drawn from.
    pub src_ports: RangeInclusive<u16>,
    /// Outer TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Underlay MTU: an outer packet longer than this is dropped and counted.
    pub mtu: u16,
    /// The VNIs served.
    pub vnis: Vec<VniSettings>,
}

impl VtepSettings {
    /// A VTEP at `local` with every other setting at its default and no VNIs.
    pub fn new(local: IpAddr) -> VtepSettings {
        VtepSettings {
            local,
            dst_port: DEFAULT_DST_PORT,
            src_ports: DEFAULT_SRC_PORTS,
            ttl: DEFAULT_TTL,
            mtu: DEFAULT_MTU,
            vnis: Vec::new(),
        }
    }
}
