//! `KernelVtep`: the Linux kernel's own VXLAN data plane on a host — a `vxlan` device and a
//! bridge `br-<vni>` whose ports are that device and the host ports of local VMs. It is the
//! reference `vtep` is measured and interop-tested against.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use wasm_vtep::wire::MacAddr;

use super::{Host, Vm};
use crate::netns::exec_in;
use crate::tools::fdb::{FdbEntry, fdb_show_in};

/// A kernel VTEP on one host. Dropping it deletes its devices (the VM ports stay, unbridged);
/// they would also go with the host's namespace.
#[derive(Debug)]
#[must_use = "dropping a KernelVtep deletes its devices"]
pub struct KernelVtep {
    ns: String,
    vni: u32,
    device: String,
    bridge: String,
}

/// Options for a [`KernelVtep`]; from [`KernelVtep::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct KernelVtepBuilder {
    vni: u32,
    group: Option<IpAddr>,
    remotes: Vec<IpAddr>,
    local: Option<IpAddr>,
    learning: bool,
    dstport: u16,
    ports: Vec<String>,
}

impl KernelVtep {
    /// Starts describing a kernel VTEP for `vni`: UDP port 4789 (stated explicitly: the
    /// kernel's default is the pre-IANA 8472), learning on, TTL 64, no flooding target yet.
    pub fn builder(vni: u32) -> KernelVtepBuilder {
        KernelVtepBuilder {
            vni,
            group: None,
            remotes: Vec::new(),
            local: None,
            learning: true,
            dstport: 4789,
            ports: Vec::new(),
        }
    }

    /// The vxlan device, `vxlan<vni>`.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The bridge, `br-<vni>`.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The VNI.
    pub fn vni(&self) -> u32 {
        self.vni
    }

    /// Adds a head-end replication target: `bridge fdb append 00:00:00:00:00:00 dev vxlanN
    /// dst REMOTE`. Broadcast, multicast and unknown unicast frames go to every such remote.
    pub fn add_remote(&self, remote: IpAddr) -> Result<()> {
        let args = [
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            &self.device,
            "dst",
        ];
        let remote = remote.to_string();
        let args: Vec<&str> = args.into_iter().chain([remote.as_str()]).collect();
        exec_in(&self.ns, "bridge", &args).map(drop)
    }

    /// Bridges a VM's host port into this VNI.
    pub fn add_port(&self, vm: &Vm) -> Result<()> {
        self.attach(vm.host_port())
    }

    /// `bridge fdb show dev vxlan<vni>`: for a learned remote MAC two lines, the vxlan device's
    /// own (`self`, with `dst` the remote VTEP) and the bridge's (`master br-<vni>`); head-end
    /// replication and group entries (all-zero MAC, `self permanent`); the device's own MAC.
    pub fn fdb(&self) -> Result<Vec<FdbEntry>> {
        fdb_show_in(&self.ns, &self.device)
    }

    /// The remote VTEP the vxlan device has for `mac` (its own `self` entry's `dst`), if any:
    /// where the kernel would send a frame for `mac` now.
    pub fn remote_of(&self, mac: MacAddr) -> Result<Option<IpAddr>> {
        Ok(self
            .fdb()?
            .into_iter()
            .find(|e| e.mac == mac && e.has_flag("self"))
            .and_then(|e| e.dst))
    }

    fn attach(&self, port: &str) -> Result<()> {
        exec_in(
            &self.ns,
            "ip",
            &["link", "set", port, "master", &self.bridge, "up"],
        )
        .map(drop)
        .with_context(|| format!("bridging {port} into {}", self.bridge))
    }
}

impl Drop for KernelVtep {
    fn drop(&mut self) {
        for dev in [&self.device, &self.bridge] {
            let _ = exec_in(&self.ns, "ip", &["link", "del", dev]);
        }
    }
}

impl KernelVtepBuilder {
    /// Floods broadcast and unknown unicast to multicast `group` (IPv4 or IPv6), joined on the
    /// host's uplink.
    pub fn group(mut self, group: IpAddr) -> Self {
        self.group = Some(group);
        self
    }

    /// Adds a head-end replication target (see [`KernelVtep::add_remote`]).
    pub fn remote(mut self, remote: IpAddr) -> Self {
        self.remotes.push(remote);
        self
    }

    /// The local underlay address; by default the host's address of the family of the group
    /// or the first remote (IPv4 if there is neither).
    pub fn local(mut self, local: IpAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// Whether the device learns remote MACs from received packets (`learning`/`nolearning`).
    pub fn learning(mut self, learning: bool) -> Self {
        self.learning = learning;
        self
    }

    /// The UDP destination port (default 4789).
    pub fn dstport(mut self, port: u16) -> Self {
        self.dstport = port;
        self
    }

    /// Bridges a VM's host port into the VNI.
    pub fn port(mut self, vm: &Vm) -> Self {
        self.ports.push(vm.host_port().to_owned());
        self
    }

    /// Creates the devices on `host`:
    ///
    /// `ip link add vxlan<vni> type vxlan id <vni> dstport 4789 local <addr> [group <g>]
    /// dev uplink ttl 64 [no]learning`, a bridge `br-<vni>` (multicast snooping off: there is no
    /// querier in the overlay) with the vxlan device and the VM ports, and one all-zero FDB entry
    /// per remote. The vxlan device's MTU follows from the uplink's (minus 50 for IPv4, 70 for
    /// IPv6), so frames too large for the underlay are dropped as the kernel drops them. No
    /// device has an address, so the VTEP is silent until VMs talk.
    pub fn create(self, host: &Host) -> Result<KernelVtep> {
        let hint = self.group.or(self.remotes.first().copied());
        let local = match (self.local, hint) {
            (Some(local), _) => local,
            (None, Some(hint)) => host.underlay_addr_like(hint).with_context(|| {
                format!("host {} has no address of {hint}'s family", host.number())
            })?,
            (None, None) => IpAddr::V4(host.ipv4()),
        };
        for addr in self.group.iter().chain(&self.remotes) {
            if addr.is_ipv4() != local.is_ipv4() {
                bail!("{addr} and local address {local} are of different families");
            }
        }

        let ns = host.netns();
        let vtep = KernelVtep {
            ns: ns.name().to_owned(),
            vni: self.vni,
            device: format!("vxlan{}", self.vni),
            bridge: format!("br-{}", self.vni),
        };
        let vni = self.vni.to_string();
        let (port, local) = (self.dstport.to_string(), local.to_string());
        let learning = if self.learning {
            "learning"
        } else {
            "nolearning"
        };
        let mut args = vec!["link", "add", &vtep.device, "type", "vxlan", "id", &vni];
        args.extend(["dstport", &port, "local", &local, "ttl", "64"]);
        let group = self.group.map(|g| g.to_string());
        if let Some(group) = &group {
            args.extend(["group", group]);
        }
        args.extend(["dev", Host::UPLINK, learning]);
        ns.ip(&args)?;
        super::disable_ipv6(ns, &vtep.device)?;

        let bridge = vtep.bridge.as_str();
        super::add_bridge(ns, bridge)?;
        ns.ip(&["link", "set", bridge, "up"])?;
        vtep.attach(&vtep.device)?;
        for port in &self.ports {
            vtep.attach(port)?;
        }
        for remote in &self.remotes {
            vtep.add_remote(*remote)?;
        }
        Ok(vtep)
    }
}
