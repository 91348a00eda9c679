//! Joining and leaving multicast groups on an [`UnderlayRx`]: the groups a VNI floods to.

use std::net::IpAddr;

use socket2::InterfaceIndexOrAddress;

use super::UnderlayRx;
use crate::io::sys::{SetupError, if_index};

impl UnderlayRx {
    /// Joins multicast `group` on the interface called `ifname` (or the one the routing table
    /// picks for the group when `None`): `IP_ADD_MEMBERSHIP` with an interface index
    /// (`ip_mreqn`), or `IPV6_JOIN_GROUP`. The name is resolved in the calling thread's network
    /// namespace, which must be the socket's.
    pub fn join(&self, group: IpAddr, ifname: Option<&str>) -> Result<(), SetupError> {
        self.membership(group, ifname, true)
    }

    /// Leaves a group joined with [`UnderlayRx::join`] (with the same interface).
    pub fn leave(&self, group: IpAddr, ifname: Option<&str>) -> Result<(), SetupError> {
        self.membership(group, ifname, false)
    }

    fn membership(
        &self,
        group: IpAddr,
        ifname: Option<&str>,
        join: bool,
    ) -> Result<(), SetupError> {
        if !group.is_multicast() {
            return Err(SetupError::NotMulticast { addr: group });
        }
        if group.is_ipv6() != self.ipv6 {
            return Err(SetupError::WrongFamily { addr: group });
        }
        let ifindex = ifname.map(if_index).transpose()?.unwrap_or(0);
        let result = match group {
            IpAddr::V4(g) => {
                let iface = InterfaceIndexOrAddress::Index(ifindex);
                if join {
                    self.socket.join_multicast_v4_n(&g, &iface)
                } else {
                    self.socket.leave_multicast_v4_n(&g, &iface)
                }
            }
            IpAddr::V6(g) => {
                if join {
                    self.socket.join_multicast_v6(&g, ifindex)
                } else {
                    self.socket.leave_multicast_v6(&g, ifindex)
                }
            }
        };
        let what = if join { "joining" } else { "leaving" };
        result.map_err(|e| {
            SetupError::socket(
                what,
                format!("group {group} on {}", ifname.unwrap_or("any interface")),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn wrong_family_and_non_multicast_are_refused() {
        let rx = UnderlayRx::open(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, false).unwrap();
        assert!(matches!(
            rx.join("ff05::1:100".parse().unwrap(), None),
            Err(SetupError::WrongFamily { .. })
        ));
        assert!(matches!(
            rx.join("198.18.0.1".parse().unwrap(), None),
            Err(SetupError::NotMulticast { .. })
        ));
    }
}
