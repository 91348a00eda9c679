//! [`EvpnPair`]: two wasm-vtep hosts on one underlay, each with its gobgpd, peered (iBGP), each
//! with its VMs; started and ready: the sessions up and each VTEP flooding to the other (type 3
//! routes exchanged). The bed of the EVPN tests between two wasm-vteps.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;

use super::{EvpnVtepConfig, Gobgpd};
use crate::process::wait_until;
use crate::topology::{Host, Switch, Vm};
use crate::vtep::VtepDaemon;

/// How long gobgpd's sessions and the first routes may take.
const READY: Duration = Duration::from_secs(60);

/// Hosts 1 and 2, indexed 0 and 1 in every field.
#[derive(Debug)]
pub struct EvpnPair {
    pub hosts: [Host; 2],
    /// The hosts' underlay (IPv4) addresses.
    pub addrs: [IpAddr; 2],
    /// Each host's VMs, in the order asked for.
    pub vms: [Vec<Vm>; 2],
    pub gobgpds: [Gobgpd; 2],
    pub vteps: [VtepDaemon; 2],
    // Dropped last: the hosts hang off it.
    _underlay: Switch,
}

impl EvpnPair {
    /// The pair on `underlay` in AS `asn`: on host i+1 the VMs numbered `vms[i]` (their ports
    /// on the VNI), and its configuration as `configure(i, ...)` completes it.
    pub fn start(
        underlay: Switch,
        asn: u32,
        vms: [&[u8]; 2],
        configure: impl Fn(usize, EvpnVtepConfig) -> EvpnVtepConfig,
    ) -> Result<EvpnPair> {
        let hosts = [Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?];
        let addrs = [0, 1].map(|i| IpAddr::V4(hosts[i].ipv4()));
        let vms = [make_vms(&hosts[0], vms[0])?, make_vms(&hosts[1], vms[1])?];
        let mut gobgpds = [
            Gobgpd::builder(asn).neighbor(addrs[1]).start(&hosts[0])?,
            Gobgpd::builder(asn).neighbor(addrs[0]).start(&hosts[1])?,
        ];
        let start = |i: usize, gobgpd: &Gobgpd| {
            let ports: Vec<&str> = vms[i].iter().map(Vm::host_port).collect();
            let config = EvpnVtepConfig::new(addrs[i], &gobgpd.api_address(), asn, &ports);
            VtepDaemon::start(&hosts[i], &configure(i, config).to_string())
        };
        let vteps = [start(0, &gobgpds[0])?, start(1, &gobgpds[1])?];
        for i in 0..2 {
            gobgpds[i].wait_established(addrs[1 - i], READY)?;
        }
        for i in 0..2 {
            let other = addrs[1 - i].to_string();
            wait_until("the other's type 3", READY, || {
                Ok(vteps[i].evpn()?.vnis[0].flood == [other.clone()])
            })?;
        }
        Ok(EvpnPair {
            hosts,
            addrs,
            vms,
            gobgpds,
            vteps,
            _underlay: underlay,
        })
    }
}

fn make_vms(host: &Host, numbers: &[u8]) -> Result<Vec<Vm>> {
    numbers.iter().map(|&n| Vm::numbered(host, n)).collect()
}
