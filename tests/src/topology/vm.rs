//! `Vm`: a guest, a namespace whose `eth0` is one end of a veth pair; the other end is the
//! VM's port on its host, where a VTEP picks its frames up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use wasm_vtep::wire::MacAddr;

use super::{Host, add_veth, disable_ipv6};
use crate::netns::Netns;

/// How to build a [`Vm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// `eth0`'s MAC address.
    pub mac: MacAddr,
    /// IPv4 addresses with prefix lengths; the first is [`Vm::ipv4`].
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths; the first is [`Vm::ipv6`]. Without any, IPv6 is
    /// disabled on `eth0` so the VM sends no router solicitations or MLD reports.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// `eth0`'s MTU, and its host port's.
    pub mtu: u32,
}

impl VmConfig {
    /// VM number `n`: MAC 02:00:00:00:00:`n` (locally administered), 192.0.2.`n`/24, MTU 1500.
    pub fn numbered(n: u8) -> VmConfig {
        VmConfig {
            mac: MacAddr([0x02, 0, 0, 0, 0, n]),
            ipv4: vec![(Ipv4Addr::new(192, 0, 2, n), 24)],
            ipv6: Vec::new(),
            mtu: 1500,
        }
    }

    /// Adds 2001:db8:100::`n`/64 (`n` the last byte of the MAC).
    pub fn with_ipv6(mut self) -> VmConfig {
        let n = u16::from(self.mac.0[5]);
        self.ipv6
            .push((Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, n), 64));
        self
    }

    /// Adds an IPv4 address, e.g. 198.51.100.`n`/24 for a second overlay subnet.
    pub fn with_ipv4(mut self, addr: Ipv4Addr, prefix: u8) -> VmConfig {
        self.ipv4.push((addr, prefix));
        self
    }

    /// Replaces the MAC address.
    pub fn mac(mut self, mac: MacAddr) -> VmConfig {
        self.mac = mac;
        self
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> VmConfig {
        self.mtu = mtu;
        self
    }
}

/// A VM: namespace `wv-<port>-…` with [`Vm::IFACE`] cabled to `port` on its host.
///
/// The host end is up, has no address (not even IPv6 link-local) and no master: it is for a
/// data plane to take, a bridge port of a [`super::KernelVtep`] or a packet socket of `vtep`.
/// Offloads are left at the kernel's defaults on both ends, so the VM sends what a real guest
/// would: partial checksums and GSO super-frames.
#[derive(Debug)]
pub struct Vm {
    ns: Netns,
    config: VmConfig,
    port: String,
}

impl Vm {
    /// The VM's interface inside its namespace.
    pub const IFACE: &'static str = "eth0";

    /// VM number `n` with the defaults of [`VmConfig::numbered`], on `host` port `vm<n>`.
    pub fn numbered(host: &Host, n: u8) -> Result<Vm> {
        Vm::new(host, &format!("vm{n}"), VmConfig::numbered(n))
    }

    /// Creates a VM attached to `host`, whose end of the cable is named `port` there (at most
    /// 15 characters, unique on that host).
    pub fn new(host: &Host, port: &str, config: VmConfig) -> Result<Vm> {
        if port.is_empty() || port.len() > 15 {
            bail!("interface name {port:?} must have 1 to 15 characters");
        }
        let ns = Netns::new(port)?;
        let hns = host.netns();
        add_veth(hns, port, config.mtu, &ns, Self::IFACE)?;
        disable_ipv6(hns, port)?;
        hns.ip(&["link", "set", port, "up"])?;

        let eth = Self::IFACE;
        if config.ipv6.is_empty() {
            disable_ipv6(&ns, eth)?;
        } else {
            // Skip DAD for the link-local address too, so the VM can talk at once.
            ns.sysctl(&format!("net.ipv6.conf.{eth}.accept_dad"), "0")?;
        }
        ns.ip(&["link", "set", eth, "address", &config.mac.to_string()])?;
        for (addr, prefix) in &config.ipv4 {
            ns.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", eth])?;
        }
        for (addr, prefix) in &config.ipv6 {
            ns.ip(&[
                "addr",
                "add",
                &format!("{addr}/{prefix}"),
                "dev",
                eth,
                "nodad",
            ])?;
        }
        ns.ip(&["link", "set", eth, "up"])?;
        Ok(Vm {
            ns,
            config,
            port: port.to_owned(),
        })
    }

    /// `eth0`'s MAC address.
    pub fn mac(&self) -> MacAddr {
        self.config.mac
    }

    /// The first IPv4 address.
    ///
    /// # Panics
    /// If the VM was configured without IPv4 (a test set-up mistake).
    pub fn ipv4(&self) -> Ipv4Addr {
        match self.config.ipv4.first() {
            Some((addr, _)) => *addr,
            None => panic!("VM {} has no IPv4 address", self.port),
        }
    }

    /// The first IPv6 address.
    ///
    /// # Panics
    /// If the VM was configured without IPv6 (a test set-up mistake).
    pub fn ipv6(&self) -> Ipv6Addr {
        match self.config.ipv6.first() {
            Some((addr, _)) => *addr,
            None => panic!(
                "VM {} has no IPv6 address (use VmConfig::with_ipv6)",
                self.port
            ),
        }
    }

    /// All configured addresses.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.config.ipv4.iter().map(|(a, _)| IpAddr::V4(*a));
        v4.chain(self.config.ipv6.iter().map(|(a, _)| IpAddr::V6(*a)))
    }

    /// The MTU of `eth0`.
    pub fn mtu(&self) -> u32 {
        self.config.mtu
    }

    /// The name of the VM's port on its host: what a VTEP attaches to.
    pub fn host_port(&self) -> &str {
        &self.port
    }

    /// The VM's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The MAC the VM's neighbour table holds for `ip` (`ip neigh show`), if any.
    pub fn neighbour(&self, ip: impl Into<IpAddr>) -> Result<Option<String>> {
        let out = self.ns.ip(&["neigh", "show", &ip.into().to_string()])?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned))
    }
}

impl AsRef<Netns> for Vm {
    fn as_ref(&self) -> &Netns {
        &self.ns
    }
}
