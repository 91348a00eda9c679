//! `Switch`: the underlay, a Linux bridge alone in its namespace that hosts plug into.

use anyhow::Result;

use super::{add_bridge, add_veth, disable_ipv6};
use crate::netns::Netns;

/// An underlay L2 switch: bridge [`Switch::BRIDGE`] in namespace `wv-sw-…`.
///
/// Multicast snooping is off, so multicast floods to every port as it does on a switch without
/// IGMP/MLD snooping; a VTEP's group traffic then reaches every host whether or not the group
/// membership reports were seen. The bridge and its ports carry no address.
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
    mtu: u32,
}

impl Switch {
    /// The bridge's name inside the switch namespace: capture here to see all underlay traffic.
    pub const BRIDGE: &'static str = "br0";

    /// Creates the switch; every port it gets will have `mtu` (1600 leaves room for VXLAN's
    /// 50 or 70 bytes around 1500-byte frames).
    pub fn new(mtu: u32) -> Result<Switch> {
        let ns = Netns::new("sw")?;
        let mtu_s = mtu.to_string();
        add_bridge(&ns, Self::BRIDGE)?;
        ns.ip(&["link", "set", Self::BRIDGE, "mtu", &mtu_s, "up"])?;
        Ok(Switch { ns, mtu })
    }

    /// The MTU of the switch's ports.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The switch's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Adds a port named `port` whose peer appears as `peer` in namespace `peer_ns`; used by
    /// [`super::Host::new`]. The peer end is left down, for its owner to configure.
    pub(super) fn add_port(&self, port: &str, peer_ns: &Netns, peer: &str) -> Result<()> {
        let ns = &self.ns;
        add_veth(ns, port, self.mtu, peer_ns, peer)?;
        disable_ipv6(ns, port)?;
        ns.ip(&["link", "set", port, "master", Self::BRIDGE, "up"])?;
        Ok(())
    }
}

impl AsRef<Netns> for Switch {
    fn as_ref(&self) -> &Netns {
        &self.ns
    }
}
