//! gobgpd's configuration file (TOML), written from a [`GobgpdBuilder`]: the global section
//! (AS, router ID, listen address) and one neighbor per peer with the `l2vpn-evpn` address
//! family, as checked against FRR in `evpn-notes.md`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use super::GobgpdBuilder;

/// How soon gobgpd retries a TCP connection to a peer that was not listening (its default,
/// 120 s, would outlast a test whose peer starts second or restarts).
pub(super) const CONNECT_RETRY_SECS: u32 = 2;

/// One BGP peer of gobgpd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Neighbor {
    pub(super) address: IpAddr,
    pub(super) peer_as: u32,
}

/// The TOML for `builder` on a host whose underlay addresses are `local_v4` (also the router
/// ID unless the builder has one) and `local_v6`; each neighbor's session starts from the
/// host's address of its family.
pub(super) fn render(
    builder: &GobgpdBuilder,
    local_v4: Ipv4Addr,
    local_v6: Option<IpAddr>,
) -> String {
    let router_id = builder.router_id.unwrap_or(local_v4);
    let mut listen: Vec<String> = vec![format!("\"{local_v4}\"")];
    listen.extend(local_v6.map(|a| format!("\"{a}\"")));
    let mut toml = format!(
        "[global.config]\n  as = {}\n  router-id = \"{router_id}\"\n  local-address-list = [{}]\n",
        builder.asn,
        listen.join(", ")
    );
    for n in &builder.neighbors {
        let local = match n.address {
            IpAddr::V4(_) => Some(IpAddr::V4(local_v4)),
            IpAddr::V6(_) => local_v6,
        };
        let _ = write!(
            toml,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    \
             peer-as = {}\n  [neighbors.timers.config]\n    connect-retry = {CONNECT_RETRY_SECS}\n",
            n.address, n.peer_as
        );
        if let Some(local) = local {
            let _ = write!(
                toml,
                "  [neighbors.transport.config]\n    local-address = \"{local}\"\n"
            );
        }
        toml.push_str(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      \
             afi-safi-name = \"l2vpn-evpn\"\n",
        );
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evpn::Gobgpd;

    #[test]
    fn renders_the_notes_config() {
        let b = Gobgpd::builder(65000).neighbor("198.18.0.2".parse().unwrap());
        let toml = render(&b, Ipv4Addr::new(198, 18, 0, 1), None);
        for line in [
            "as = 65000",
            "router-id = \"198.18.0.1\"",
            "local-address-list = [\"198.18.0.1\"]",
            "neighbor-address = \"198.18.0.2\"",
            "peer-as = 65000",
            "local-address = \"198.18.0.1\"",
            "afi-safi-name = \"l2vpn-evpn\"",
            "connect-retry = 2",
        ] {
            assert!(toml.contains(line), "{line} missing from\n{toml}");
        }
    }

    #[test]
    fn ipv6_neighbors_start_from_the_ipv6_address() {
        let b = Gobgpd::builder(65001)
            .router_id(Ipv4Addr::new(10, 0, 0, 1))
            .neighbor_as("2001:db8::2".parse().unwrap(), 65002)
            .neighbor("198.18.0.3".parse().unwrap());
        let v6 = "2001:db8::1".parse().unwrap();
        let toml = render(&b, Ipv4Addr::new(198, 18, 0, 1), Some(v6));
        assert!(toml.contains("router-id = \"10.0.0.1\""), "{toml}");
        assert!(toml.contains("[\"198.18.0.1\", \"2001:db8::1\"]"), "{toml}");
        assert!(toml.contains("peer-as = 65002"), "{toml}");
        assert!(toml.contains("local-address = \"2001:db8::1\""), "{toml}");
        assert_eq!(toml.matches("[[neighbors]]").count(), 2);
    }
}
