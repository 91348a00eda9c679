//! The test network, built from namespaces: an underlay [`Switch`], [`Host`]s attached to it,
//! [`Vm`]s attached to hosts, and the kernel's own VXLAN data plane on a host ([`KernelVtep`]),
//! our interop peer and performance baseline.
//!
//! ```text
//!   Vm "vm1" (eth0, 192.0.2.1)              Vm "vm2" (eth0, 192.0.2.2)
//!        | veth                                   | veth
//!   Host 1: port "vm1", uplink 198.18.0.1    Host 2: port "vm2", uplink 198.18.0.2
//!        \______________ Switch: bridge "br0" ______________/
//! ```
//!
//! Every piece lives in its own namespace (see [`crate::Netns`]), so nothing is created in the
//! root namespace and interface names only need to be unique inside one namespace: tests run in
//! parallel threads without colliding. Veth pairs are created in one namespace with their peer
//! placed directly in the other. Dropping a guard deletes its namespace and with it every
//! interface inside and every veth pair with an end there. Guards do not borrow each other, so a
//! test fixture can own a whole topology in one struct.

mod host;
mod kernel_peer;
mod kernel_vtep;
mod switch;
mod vm;

pub use host::{Host, HostConfig};
pub use kernel_peer::KernelPeer;
pub use kernel_vtep::{KernelVtep, KernelVtepBuilder};
pub use switch::Switch;
pub use vm::{Vm, VmConfig};

use crate::netns::Netns;

/// Leaves an interface without any IPv6 address, so that it stays silent (no router
/// solicitations, MLD reports or DAD probes): switch ports and a VTEP's VM-facing ports are
/// layer-2 only, and stray frames would muddle what tests count.
fn disable_ipv6(ns: &Netns, ifname: &str) -> anyhow::Result<()> {
    ns.sysctl(&format!("net.ipv6.conf.{ifname}.disable_ipv6"), "1")
}

/// Creates veth `name` in `ns` with its peer born as `peer` in `peer_ns` (so no transient name
/// exists anywhere to collide with), both ends with `mtu`, both down.
fn add_veth(ns: &Netns, name: &str, mtu: u32, peer_ns: &Netns, peer: &str) -> anyhow::Result<()> {
    let mtu = mtu.to_string();
    let link = ["link", "add", name, "mtu", &mtu, "type", "veth"];
    let peer = ["peer", "name", peer, "mtu", &mtu, "netns", peer_ns.name()];
    ns.ip(&[link.as_slice(), &peer].concat()).map(drop)
}

/// Creates bridge `name` in `ns`, with multicast snooping off (multicast floods to every port:
/// there is no IGMP/MLD querier anywhere in the test network, so snooping state would only ever
/// be partial) and no IPv6 address, left down.
fn add_bridge(ns: &Netns, name: &str) -> anyhow::Result<()> {
    ns.ip(&["link", "add", name, "type", "bridge", "mcast_snooping", "0"])?;
    disable_ipv6(ns, name)
}
