//! Where a MAC lives: behind a local port or behind a remote VTEP.

use std::net::IpAddr;

/// A VM-facing port, by index into the daemon's port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// A VM-facing port of this host.
    Port(PortId),
    /// A remote VTEP, by its underlay address.
    Remote(IpAddr),
}

impl Location {
    /// The remote VTEP's address, if the MAC is behind one.
    pub fn remote(&self) -> Option<IpAddr> {
        match self {
            Location::Remote(ip) => Some(*ip),
            Location::Port(_) => None,
        }
    }

    /// The local port, if the MAC is behind one.
    pub fn port(&self) -> Option<PortId> {
        match self {
            Location::Port(p) => Some(*p),
            Location::Remote(_) => None,
        }
    }
}
