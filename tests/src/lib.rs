//! Network test harness for wasm-vtep: hosts, VMs and an underlay switch built from network
//! namespaces, veth pairs and Linux bridges; every piece is torn down when its guard drops.
//!
//! Layers:
//! - [`netns`]: the namespace guard everything else stands on.
//! - [`topology`]: [`Switch`], [`Host`], [`Vm`] and the kernel's own VXLAN ([`KernelVtep`]).
//! - [`tools`]: `ping`, `bridge fdb`, `tcpdump`, `iperf3` and `nstat`, parsed; a UDP flood
//!   generator and sink and CPU accounting for the `netbench` benchmark.
//! - [`process`]: background programs (tcpdump, iperf3, the `vtep` daemon) as guards.
//! - [`paths`]: where the `vtep` binary and the run's logs are.
//! - [`vtep`]: the real `vtep` daemon in a host namespace ([`VtepDaemon`]) and its CLI.
//! - [`evpn`]: the BGP EVPN speakers in host namespaces ([`Gobgpd`], FRR's zebra and bgpd as
//!   [`Frr`]) and their RIBs as [`EvpnRoute`] rows.
//!
//! A two-host overlay with the kernel as data plane:
//!
//! ```no_run
//! use wasm_vtep_tests::*;
//! # fn main() -> anyhow::Result<()> {
//! let underlay = Switch::new(1600)?;
//! let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
//! let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
//! let group = "239.1.1.100".parse()?;
//! let _v1 = KernelVtep::builder(5001).group(group).port(&vm1).create(&h1)?;
//! let v2 = KernelVtep::builder(5001).group(group).port(&vm2).create(&h2)?;
//! assert!(ping(&vm1, vm2.ipv4(), 3)?.all_received());
//! assert!(v2.fdb()?.iter().any(|e| e.mac == vm1.mac() && e.dst == Some(h1.ipv4().into())));
//! # Ok(())
//! # }
//! ```
//!
//! Needs root and iproute2, tcpdump, iperf3, iputils-ping and nstat on the PATH; the EVPN
//! pieces need gobgpd and FRR (`tests/setup.sh` installs everything).

pub mod evpn;
pub mod netns;
pub mod paths;
pub mod process;
pub mod tools;
pub mod topology;
pub mod vtep;

pub use evpn::{
    EvpnPair, EvpnRoute, EvpnVtepConfig, Frr, FrrBuilder, Gobgpd, GobgpdBuilder, MacMobility,
    RouteType, find_mac, find_multicast,
};
pub use netns::Netns;
pub use paths::{built_once, vtep_bin};
pub use process::{Process, wait_until};
pub use tools::capture::{Capture, Captured};
pub use tools::cpu::{MachineCpu, TaskCpu};
pub use tools::fdb::{FdbEntry, bridge_fdb_show};
pub use tools::flood::{FloodReport, SinkReport, UdpSink, udp_flood};
pub use tools::iperf::{IperfOptions, IperfReport, IperfServer, iperf3};
pub use tools::nstat::NetCounters;
pub use tools::pcap::CapturedPacket;
pub use tools::ping::{
    PingReply, PingStats, assert_no_pings, assert_pings, percentile, ping, ping_replies,
    ping_samples, ping_with,
};
pub use tools::raw_frame::PacketSocket;
pub use tools::vxlan_view::VxlanPacket;
pub use topology::{
    Host, HostConfig, KernelPeer, KernelVtep, KernelVtepBuilder, Switch, Vm, VmConfig,
};
pub use vtep::{VtepDaemon, vtep_check};
pub use wasm_vtep::control::FdbRow;
