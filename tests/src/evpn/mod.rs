//! The BGP EVPN control plane of the test network: the real speakers in host namespaces, as
//! guards, and what they hold, as typed rows.
//!
//! - [`Gobgpd`]: GoBGP's daemon, the speaker wasm-vtep drives over gRPC; its `gobgp` CLI is the
//!   tests' oracle and plays remote VTEPs (adding type 2 and type 3 routes).
//! - [`Frr`]: FRR's zebra and bgpd, with the kernel's vxlan and bridge ([`crate::KernelVtep`])
//!   the reference Linux EVPN VTEP wasm-vtep interoperates with.
//! - [`EvpnRoute`]: one path of either's EVPN RIB.
//!
//! Facts about both daemons that this follows (configs, commands, what FRR installs) are in
//! `shared/design/evpn-notes.md`. Both need root and the packages `tests/setup.sh` installs.

mod frr;
mod gobgp;
mod load;
mod pair;
mod route;
mod vtep_config;

pub use frr::{Frr, FrrBuilder};
pub use gobgp::{DEFAULT_API_PORT, Gobgpd, GobgpdBuilder};
pub use load::load_mac_routes;
pub use pair::EvpnPair;
pub use route::{EvpnRoute, MacMobility, RouteType, find_mac, find_multicast};
pub use vtep_config::{EVPN_VNI, EvpnVtepConfig};
