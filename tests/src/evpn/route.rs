//! `EvpnRoute`: one EVPN path as a BGP speaker's RIB shows it, the same typed row whether it
//! was read from gobgpd ([`super::Gobgpd::rib`]) or from FRR ([`super::Frr::rib`]), so a test
//! can ask both sides the same question.
//!
//! Only what the tests look at is kept: the route type (RFC 7432 §7: 2 is MAC/IP
//! advertisement, 3 inclusive multicast), its key (RD, Ethernet tag, MAC, IP), where it leads
//! (next hop, PMSI tunnel endpoint), the VNI (a type 2's label, a type 3's PMSI label; RFC 8365
//! §5.1.3), route targets and the MAC mobility extended community (RFC 7432 §7.7).

use std::net::IpAddr;

use wasm_vtep::wire::MacAddr;

/// The EVPN route type (the NLRI's first octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteType {
    /// Type 2, MAC/IP advertisement: a MAC (and maybe an IP) behind a VTEP.
    MacIp,
    /// Type 3, inclusive multicast Ethernet tag: a VTEP's membership of a VNI, where its BUM
    /// traffic goes.
    InclusiveMulticast,
    /// Any other type (1, 4, 5, ...), by number.
    Other(u8),
}

impl From<u8> for RouteType {
    fn from(n: u8) -> RouteType {
        match n {
            2 => RouteType::MacIp,
            3 => RouteType::InclusiveMulticast,
            n => RouteType::Other(n),
        }
    }
}

/// The MAC mobility extended community (RFC 7432 §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacMobility {
    /// The sequence number: raised each time the MAC moves to another VTEP.
    pub sequence: u32,
    /// A static MAC that must not move.
    pub sticky: bool,
}

/// One EVPN path in a RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvpnRoute {
    /// The route type.
    pub route_type: RouteType,
    /// The route distinguisher as text, `admin:assigned` (e.g. `198.18.0.1:5001`).
    pub rd: String,
    /// The Ethernet tag (0 in VLAN-based service).
    pub etag: u32,
    /// Type 2: the MAC.
    pub mac: Option<MacAddr>,
    /// Type 2: the MAC's IP, if the route carries one; type 3: the originating router's IP.
    pub ip: Option<IpAddr>,
    /// The BGP next hop: the VTEP a type 2 points at.
    pub next_hop: Option<IpAddr>,
    /// The VNI: a type 2's (first) label, a type 3's PMSI label; `None` where the speaker does
    /// not show it.
    pub vni: Option<u32>,
    /// Type 3: the PMSI tunnel endpoint (the VTEP to replicate BUM frames to), where shown.
    pub pmsi_tunnel: Option<IpAddr>,
    /// Route targets, `admin:value` (e.g. `65000:5001`).
    pub route_targets: Vec<String>,
    /// The MAC mobility extended community, if the path has one.
    pub mac_mobility: Option<MacMobility>,
    /// Whether the speaker chose this path as best for its prefix.
    pub best: bool,
    /// The BGP peer the path came from; `None` for the speaker's own routes.
    pub peer: Option<IpAddr>,
}

impl EvpnRoute {
    /// The VTEP the route leads to: a type 3's PMSI tunnel endpoint when shown, otherwise the
    /// next hop.
    pub fn vtep(&self) -> Option<IpAddr> {
        self.pmsi_tunnel.or(self.next_hop)
    }

    /// Whether this is a type 2 for `mac`.
    pub fn is_mac(&self, mac: MacAddr) -> bool {
        self.route_type == RouteType::MacIp && self.mac == Some(mac)
    }

    /// Whether this is a type 3 leading to `vtep`.
    pub fn is_multicast_of(&self, vtep: IpAddr) -> bool {
        self.route_type == RouteType::InclusiveMulticast && self.vtep() == Some(vtep)
    }
}

/// The first type 2 for `mac` in `routes` (with an IP or without).
pub fn find_mac(routes: &[EvpnRoute], mac: MacAddr) -> Option<&EvpnRoute> {
    routes.iter().find(|r| r.is_mac(mac))
}

/// The first type 3 leading to `vtep` in `routes`.
pub fn find_multicast(routes: &[EvpnRoute], vtep: IpAddr) -> Option<&EvpnRoute> {
    routes.iter().find(|r| r.is_multicast_of(vtep))
}

/// Parses an IP address as speakers print them, where an absent one is shown as `<nil>`
/// (gobgp), `0.0.0.0` or `::`: those are `None`, as is anything unparsable.
pub(super) fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(route_type: RouteType) -> EvpnRoute {
        EvpnRoute {
            route_type,
            rd: "198.18.0.1:5001".into(),
            etag: 0,
            mac: None,
            ip: None,
            next_hop: Some("198.18.0.1".parse().unwrap()),
            vni: Some(5001),
            pmsi_tunnel: None,
            route_targets: vec!["65000:5001".into()],
            mac_mobility: None,
            best: true,
            peer: None,
        }
    }

    #[test]
    fn finds_routes_by_mac_and_by_vtep() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut t2 = route(RouteType::MacIp);
        t2.mac = Some(mac);
        let mut t3 = route(RouteType::InclusiveMulticast);
        t3.pmsi_tunnel = Some("198.18.0.9".parse().unwrap());
        let routes = [t3.clone(), t2.clone()];
        assert_eq!(find_mac(&routes, mac), Some(&t2));
        assert_eq!(find_mac(&routes, MacAddr([2, 0, 0, 0, 0, 2])), None);
        // The PMSI tunnel wins over the next hop.
        assert_eq!(
            find_multicast(&routes, "198.18.0.9".parse().unwrap()),
            Some(&t3)
        );
        assert_eq!(find_multicast(&routes, "198.18.0.1".parse().unwrap()), None);
        assert_eq!(RouteType::from(5), RouteType::Other(5));
    }

    #[test]
    fn absent_addresses_are_none() {
        assert_eq!(parse_ip("<nil>"), None);
        assert_eq!(parse_ip("0.0.0.0"), None);
        assert_eq!(parse_ip("::"), None);
        assert_eq!(parse_ip("192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
    }
}
