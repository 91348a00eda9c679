//! FRR's integrated configuration (`frr.conf`, read by both zebra and bgpd), written from a
//! [`FrrBuilder`]: one `router bgp` with the L2VPN EVPN address family, as checked against
//! gobgpd in `evpn-notes.md`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use super::FrrBuilder;

/// How soon bgpd retries a TCP connection to a peer that was not listening (its default,
/// 120 s, would outlast a test whose peer starts second or restarts).
const CONNECT_RETRY_SECS: u32 = 2;

/// One BGP peer of bgpd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Neighbor {
    pub(super) address: IpAddr,
    pub(super) remote_as: u32,
}

/// The configuration for `builder` on a host with underlay addresses `local_v4` (also the
/// router ID unless the builder has one) and `local_v6`; `hostname` names the instance in
/// FRR's output.
pub(super) fn render(
    builder: &FrrBuilder,
    hostname: &str,
    local_v4: Ipv4Addr,
    local_v6: Option<IpAddr>,
) -> String {
    let router_id = builder.router_id.unwrap_or(local_v4);
    // Logging to stdout lands in the process's log file in the run's artifacts.
    let mut conf = format!(
        "hostname {hostname}\nlog stdout informational\n!\nrouter bgp {}\n bgp router-id {router_id}\n \
         no bgp default ipv4-unicast\n no bgp ebgp-requires-policy\n",
        builder.asn
    );
    for n in &builder.neighbors {
        let local = match n.address {
            IpAddr::V4(_) => Some(IpAddr::V4(local_v4)),
            IpAddr::V6(_) => local_v6,
        };
        let _ = writeln!(conf, " neighbor {} remote-as {}", n.address, n.remote_as);
        if let Some(local) = local {
            let _ = writeln!(conf, " neighbor {} update-source {local}", n.address);
        }
        let _ = writeln!(
            conf,
            " neighbor {} timers connect {CONNECT_RETRY_SECS}",
            n.address
        );
    }
    conf.push_str(" address-family l2vpn evpn\n");
    for n in &builder.neighbors {
        let _ = writeln!(conf, "  neighbor {} activate", n.address);
    }
    if builder.advertise_all_vni {
        conf.push_str("  advertise-all-vni\n");
    }
    conf.push_str(" exit-address-family\n!\n");
    conf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evpn::Frr;

    #[test]
    fn renders_the_notes_config() {
        let b = Frr::builder(65000).neighbor("198.18.0.1".parse().unwrap());
        let conf = render(&b, "wv-1-0", Ipv4Addr::new(198, 18, 0, 2), None);
        let expected = "router bgp 65000
 bgp router-id 198.18.0.2
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 neighbor 198.18.0.1 remote-as 65000
 neighbor 198.18.0.1 update-source 198.18.0.2
 neighbor 198.18.0.1 timers connect 2
 address-family l2vpn evpn
  neighbor 198.18.0.1 activate
  advertise-all-vni
 exit-address-family
";
        assert!(conf.contains(expected), "{conf}");
        assert!(conf.starts_with("hostname wv-1-0\n"), "{conf}");
    }

    #[test]
    fn several_neighbors_and_no_advertise_all_vni() {
        let b = Frr::builder(65002)
            .router_id(Ipv4Addr::new(10, 0, 0, 2))
            .neighbor_as("198.18.0.1".parse().unwrap(), 65001)
            .neighbor("2001:db8::3".parse().unwrap())
            .advertise_all_vni(false);
        let v6 = Some("2001:db8::2".parse().unwrap());
        let conf = render(&b, "x", Ipv4Addr::new(198, 18, 0, 2), v6);
        assert!(conf.contains(" bgp router-id 10.0.0.2\n"), "{conf}");
        assert!(
            conf.contains(" neighbor 198.18.0.1 remote-as 65001\n"),
            "{conf}"
        );
        assert!(
            conf.contains(" neighbor 2001:db8::3 update-source 2001:db8::2\n"),
            "{conf}"
        );
        assert!(conf.contains("  neighbor 2001:db8::3 activate\n"), "{conf}");
        assert!(!conf.contains("advertise-all-vni"), "{conf}");
    }
}
