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
mod kernel_vtep;
mod switch;
mod vm;

pub use host::{Host, HostConfig};
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
