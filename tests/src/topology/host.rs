//! `Host`: a hypervisor host, a namespace whose uplink veth plugs into the underlay switch.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::Switch;
use crate::netns::Netns;

/// How to build a [`Host`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Names the host (`h<n>`: its namespace tag and its port on the switch).
    pub number: u8,
    /// The uplink's IPv4 address, in 198.18.0.0/24.
    pub ipv4: Ipv4Addr,
    /// The uplink's IPv6 address, in 2001:db8::/64, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// The uplink's MTU; `None` takes the switch's.
    pub mtu: Option<u32>,
}

impl HostConfig {
    /// Host number `n`: uplink 198.18.0.`n`/24, no IPv6, the switch's MTU.
    pub fn numbered(n: u8) -> HostConfig {
        HostConfig {
            number: n,
            ipv4: Ipv4Addr::new(198, 18, 0, n),
            ipv6: None,
            mtu: None,
        }
    }

    /// Adds 2001:db8::`n`/64 to the uplink.
    pub fn with_ipv6(mut self) -> HostConfig {
        self.ipv6 = Some(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u16::from(self.number),
        ));
        self
    }

    /// Sets the uplink MTU (e.g. smaller than the switch's, to test what does not fit).
    pub fn mtu(mut self, mtu: u32) -> HostConfig {
        self.mtu = Some(mtu);
        self
    }
}

/// A host on the underlay: namespace `wv-h<n>-…` with uplink [`Host::UPLINK`].
///
/// The uplink has a route for 224.0.0.0/4 so a process can join and send to IPv4 groups
/// without naming an interface (the kernel installs the IPv6 equivalent, ff00::/8, itself).
/// VMs attach with [`super::Vm::new`]; a data plane ([`super::KernelVtep`] or the `vtep`
/// daemon) then joins their ports to the underlay.
#[derive(Debug)]
pub struct Host {
    ns: Netns,
    config: HostConfig,
    mtu: u32,
    switch_port: String,
}

impl Host {
    /// The uplink's name inside the host namespace.
    pub const UPLINK: &'static str = "uplink";

    /// Host number `n` with the defaults of [`HostConfig::numbered`].
    pub fn numbered(switch: &Switch, n: u8) -> Result<Host> {
        Host::new(switch, HostConfig::numbered(n))
    }

    /// Creates the host and plugs its uplink into `switch` (port `h<n>` there).
    pub fn new(switch: &Switch, config: HostConfig) -> Result<Host> {
        let ns = Netns::new(&format!("h{}", config.number))?;
        let switch_port = format!("h{}", config.number);
        switch.add_port(&switch_port, &ns, Self::UPLINK)?;

        let mtu = config.mtu.unwrap_or(switch.mtu());
        let up = Self::UPLINK;
        ns.ip(&["link", "set", up, "mtu", &mtu.to_string()])?;
        ns.ip(&["addr", "add", &format!("{}/24", config.ipv4), "dev", up])?;
        if let Some(v6) = config.ipv6 {
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", up, "nodad"])?;
        }
        ns.ip(&["link", "set", up, "up"])?;
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", up])?;
        Ok(Host {
            ns,
            config,
            mtu,
            switch_port,
        })
    }

    /// The uplink's IPv4 address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.config.ipv4
    }

    /// The uplink's IPv6 address, if configured.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.config.ipv6
    }

    /// The uplink address of the same family as `other` (the address a VTEP on this host uses
    /// toward `other`); `None` if the host has no IPv6 and `other` is IPv6.
    pub fn underlay_addr_like(&self, other: IpAddr) -> Option<IpAddr> {
        match other {
            IpAddr::V4(_) => Some(IpAddr::V4(self.config.ipv4)),
            IpAddr::V6(_) => self.config.ipv6.map(IpAddr::V6),
        }
    }

    /// The uplink's MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The host's number.
    pub fn number(&self) -> u8 {
        self.config.number
    }

    /// The name of the host's port on the switch (capture there to see only this host).
    pub fn switch_port(&self) -> &str {
        &self.switch_port
    }

    /// The host's namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }
}

impl AsRef<Netns> for Host {
    fn as_ref(&self) -> &Netns {
        &self.ns
    }
}
