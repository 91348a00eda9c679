//! `Gobgpd`: the real GoBGP daemon in a host's namespace, with a configuration the
//! [`GobgpdBuilder`] writes, killed on drop; and the `gobgp` CLI as the tests' oracle and
//! remote-VTEP stand-in: the EVPN RIB parsed, type 2 and type 3 routes added and withdrawn,
//! session state.
//!
//! Each namespace has its own loopback, so every host's gobgpd can serve its gRPC API on
//! 127.0.0.1:50051 (the daemon's and CLI's default); the port is configurable all the same.

mod config;
mod rib;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasm_vtep::wire::MacAddr;

use self::config::Neighbor;
use super::route::EvpnRoute;
use crate::netns::{Netns, exec_in};
use crate::paths::artifact_path;
use crate::process::{Process, wait_until};
use crate::topology::Host;

/// GoBGP's default gRPC API port.
pub const DEFAULT_API_PORT: u16 = 50051;

/// How long [`GobgpdBuilder::start`] waits for the API to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running gobgpd. Dropping the guard kills it (by pid, like every [`Process`]).
#[derive(Debug)]
#[must_use = "dropping a Gobgpd kills it"]
pub struct Gobgpd {
    process: Process,
    ns: String,
    api_port: u16,
    asn: u32,
    router_id: Ipv4Addr,
    config: PathBuf,
}

/// How to start a [`Gobgpd`]; from [`Gobgpd::builder`]. `Clone`, so a test can start the same
/// daemon again after killing it.
#[derive(Debug, Clone)]
#[must_use]
pub struct GobgpdBuilder {
    asn: u32,
    router_id: Option<Ipv4Addr>,
    neighbors: Vec<Neighbor>,
    api_port: u16,
}

impl Gobgpd {
    /// Starts describing a gobgpd in autonomous system `asn`, with no neighbors yet, the API on
    /// port [`DEFAULT_API_PORT`], and the host's IPv4 underlay address as router ID.
    pub fn builder(asn: u32) -> GobgpdBuilder {
        GobgpdBuilder {
            asn,
            router_id: None,
            neighbors: Vec::new(),
            api_port: DEFAULT_API_PORT,
        }
    }

    /// The gRPC API's address as seen inside the namespace (what wasm-vtep's `[evpn] gobgp`
    /// names).
    pub fn api_address(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The API's port.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The autonomous system.
    pub fn asn(&self) -> u32 {
        self.asn
    }

    /// The router ID (also the administrator of the RDs [`Gobgpd::add_mac_ip`] and
    /// [`Gobgpd::add_multicast`] use).
    pub fn router_id(&self) -> Ipv4Addr {
        self.router_id
    }

    /// The configuration file written for this daemon.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's process guard (logs, signals; [`Process::stop`] to end it early).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Runs `gobgp -p PORT ARGS` in the daemon's namespace; returns stdout, fails with stderr
    /// (the CLI prints its errors there, or on stdout with its usage) unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let port = self.api_port.to_string();
        let all: Vec<&str> = ["-p", port.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        exec_in(&self.ns, "gobgp", &all)
    }

    /// The EVPN RIB (`gobgp global rib -a evpn -j`): every path, the daemon's own and the
    /// peers', as typed rows.
    pub fn rib(&self) -> Result<Vec<EvpnRoute>> {
        let json = self.cli(&["global", "rib", "-a", "evpn", "-j"])?;
        rib::parse_rib_json(&json).context("parsing `gobgp global rib -a evpn -j`")
    }

    /// Whether the BGP session with `peer` is established (`gobgp neighbor -j`).
    pub fn established(&self, peer: IpAddr) -> Result<bool> {
        let json = self.cli(&["neighbor", "-j"])?;
        rib::parse_established(&json, peer).context("parsing `gobgp neighbor -j`")
    }

    /// Waits until the session with `peer` is established.
    pub fn wait_established(&mut self, peer: IpAddr, timeout: Duration) -> Result<()> {
        let waited = wait_until(
            &format!("gobgpd's session with {peer} to be established"),
            timeout,
            || {
                self.check_running()?;
                self.established(peer)
            },
        );
        waited.with_context(|| self.process.log_tails())
    }

    /// Advertises a type 2 route as a remote VTEP at `vtep` would for `mac` (and `ip`, if
    /// given) on `vni`: label `vni`, RD `<router-id>:<vni>`, RT `<asn>:<vni>`, encapsulation
    /// VXLAN, next hop `vtep`.
    pub fn add_mac_ip(
        &self,
        vni: u32,
        mac: MacAddr,
        ip: Option<IpAddr>,
        vtep: IpAddr,
    ) -> Result<()> {
        self.change_mac_ip("add", vni, mac, ip, vtep)
    }

    /// Withdraws a route added with [`Gobgpd::add_mac_ip`] (same arguments).
    pub fn del_mac_ip(
        &self,
        vni: u32,
        mac: MacAddr,
        ip: Option<IpAddr>,
        vtep: IpAddr,
    ) -> Result<()> {
        self.change_mac_ip("del", vni, mac, ip, vtep)
    }

    /// Advertises a type 3 route for `vni` as a remote VTEP at `vtep` would: originator and
    /// PMSI tunnel (ingress replication, label `vni`) `vtep`, RD `<router-id>:<vni>`, RT
    /// `<asn>:<vni>`, encapsulation VXLAN, next hop `vtep`.
    pub fn add_multicast(&self, vni: u32, vtep: IpAddr) -> Result<()> {
        self.change_multicast("add", vni, vtep)
    }

    /// Withdraws a route added with [`Gobgpd::add_multicast`] (same arguments).
    pub fn del_multicast(&self, vni: u32, vtep: IpAddr) -> Result<()> {
        self.change_multicast("del", vni, vtep)
    }

    fn change_mac_ip(
        &self,
        op: &str,
        vni: u32,
        mac: MacAddr,
        ip: Option<IpAddr>,
        vtep: IpAddr,
    ) -> Result<()> {
        let (mac, ip) = (
            mac.to_string(),
            ip.map_or("0.0.0.0".into(), |ip| ip.to_string()),
        );
        let (vni_s, rd, rt, vtep) = self.route_keys(vni, vtep);
        let args = [
            "global", "rib", "-a", "evpn", op, "macadv", &mac, &ip, "etag", "0", "label", &vni_s,
            "rd", &rd, "rt", &rt, "encap", "vxlan", "nexthop", &vtep,
        ];
        self.cli(&args).map(drop)
    }

    fn change_multicast(&self, op: &str, vni: u32, vtep: IpAddr) -> Result<()> {
        let (vni_s, rd, rt, vtep) = self.route_keys(vni, vtep);
        let args = [
            "global",
            "rib",
            "-a",
            "evpn",
            op,
            "multicast",
            &vtep,
            "etag",
            "0",
            "rd",
            &rd,
            "rt",
            &rt,
            "encap",
            "vxlan",
            "pmsi",
            "ingress-repl",
            &vni_s,
            &vtep,
            "nexthop",
            &vtep,
        ];
        self.cli(&args).map(drop)
    }

    /// The VNI, RD, RT and VTEP address as CLI arguments.
    fn route_keys(&self, vni: u32, vtep: IpAddr) -> (String, String, String, String) {
        (
            vni.to_string(),
            format!("{}:{vni}", self.router_id),
            format!("{}:{vni}", self.asn),
            vtep.to_string(),
        )
    }

    /// Fails, quoting the logs, if gobgpd has exited.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.process.try_status()? {
            bail!("gobgpd exited ({status})\n{}", self.process.log_tails());
        }
        Ok(())
    }
}

impl GobgpdBuilder {
    /// Peers with `address` in the same AS (iBGP), address family L2VPN EVPN.
    pub fn neighbor(self, address: IpAddr) -> Self {
        let asn = self.asn;
        self.neighbor_as(address, asn)
    }

    /// Peers with `address` in AS `peer_as`, address family L2VPN EVPN.
    pub fn neighbor_as(mut self, address: IpAddr, peer_as: u32) -> Self {
        self.neighbors.push(Neighbor { address, peer_as });
        self
    }

    /// Sets the router ID (by default the host's IPv4 underlay address).
    pub fn router_id(mut self, id: Ipv4Addr) -> Self {
        self.router_id = Some(id);
        self
    }

    /// Serves the gRPC API on 127.0.0.1:`port` instead of [`DEFAULT_API_PORT`].
    pub fn api_port(mut self, port: u16) -> Self {
        self.api_port = port;
        self
    }

    /// Writes the configuration into the run's artifacts, starts `gobgpd -f CONFIG
    /// --api-hosts 127.0.0.1:PORT --pprof-disable --log-plain` in `host`'s namespace (logs
    /// beside the config) and waits until its API answers (`gobgp global`). Sessions come up
    /// later: see [`Gobgpd::wait_established`].
    pub fn start(&self, host: &Host) -> Result<Gobgpd> {
        let ns: &Netns = host.netns();
        let label = format!("{}-gobgpd", ns.name());
        let config = artifact_path(&label, "toml")?;
        let text = config::render(self, host.ipv4(), host.ipv6().map(IpAddr::V6));
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = ns.command("gobgpd");
        // No profiling listener (nothing but BGP and the API in the namespace), and logs as
        // text, for people reading the artifacts.
        cmd.arg("-f")
            .arg(&config)
            .args(["--api-hosts", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--pprof-disable", "--log-plain"]);
        let process = Process::spawn(&label, cmd)?;
        let mut daemon = Gobgpd {
            process,
            ns: ns.name().to_owned(),
            api_port: self.api_port,
            asn: self.asn,
            router_id: self.router_id.unwrap_or(host.ipv4()),
            config,
        };
        let started = wait_until("gobgpd's API to answer", START_TIMEOUT, || {
            daemon.check_running()?;
            Ok(daemon.cli(&["global"]).is_ok())
        });
        started.with_context(|| daemon.process.log_tails())?;
        Ok(daemon)
    }
}
