//! GoBGP API `Path`s (from `ListPath` and `WatchEvent`) read as typed remote routes (pure).
//!
//! A route is imported into the VNI whose import route targets it carries (FRR's rule: RT
//! import, not the label), and its label must then be that VNI: we encapsulate with the VNI of
//! the table that holds the entry, so a route asking for another VNI on the wire (VNI
//! translation) cannot be honoured and is refused. For a type 2 the VTEP is the next hop, for a
//! type 3 the PMSI tunnel's identifier (RFC 8365 §5.1.3).
//!
//! Contract: [`decode`] never panics on anything gobgpd or a peer sends; what it cannot use is a
//! [`RouteError`] the caller counts and ignores.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gobgp_api::apipb::{
    self, EvpnInclusiveMulticastEthernetTagRoute, EvpnmacipAdvertisementRoute,
    ExtendedCommunitiesAttribute, MpReachNlriAttribute, NextHopAttribute, Path,
    PmsiTunnelAttribute,
};
use gobgp_api::prost::{DecodeError, Name};
use gobgp_api::prost_types::Any;
use wasm_vtep_plugin_sdk::MacAddr;

use super::any::{type_name, unpack};
use super::path::{PMSI_INGRESS_REPLICATION, TUNNEL_TYPE_VXLAN, evpn_family};
use super::route::{MacMobility, RemoteEvent, RemoteRoute, RouteTarget};
use crate::config::AdminNumber;
use crate::wire::Vni;

/// Why a path from GoBGP's RIB is not used. Each is counted by the caller, none is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("not an L2VPN EVPN path (AFI {afi}, SAFI {safi})")]
    WrongFamily { afi: i32, safi: i32 },
    #[error("the path has no NLRI")]
    MissingNlri,
    #[error("EVPN route {0} is not a MAC/IP (type 2) or inclusive multicast (type 3) route")]
    UnsupportedRoute(String),
    #[error("{name} does not decode: {reason}")]
    MalformedMessage { name: &'static str, reason: String },
    #[error("MAC address {0:?} is not six octets")]
    BadMac(String),
    #[error("IP address {0:?} does not parse")]
    BadIp(String),
    #[error("the MAC/IP route has no label (VNI)")]
    MissingLabel,
    #[error("label {0} is not a 24-bit VNI")]
    BadVni(u32),
    #[error("the route has no next hop")]
    MissingNextHop,
    #[error("the inclusive multicast route has no PMSI tunnel attribute")]
    MissingPmsi,
    #[error("PMSI tunnel type {0} is not ingress replication (6)")]
    UnsupportedPmsiTunnel(u32),
    #[error("the PMSI tunnel identifier ({0} octets) is not an IPv4 or IPv6 address")]
    BadTunnelId(usize),
    #[error("encapsulation tunnel type {0} is not VXLAN (8)")]
    NotVxlan(u32),
    #[error("no route target of the route is imported by a configured VNI (label {label})")]
    NotImported { label: u32 },
    #[error("imported into VNI {vni} by its route target, but its label asks for VNI {label}")]
    LabelMismatch { vni: Vni, label: u32 },
}

impl RouteError {
    /// The refusal's name, as counted and shown (`vtep evpn show`).
    pub fn kind(&self) -> &'static str {
        match self {
            RouteError::WrongFamily { .. } => "wrong_family",
            RouteError::MissingNlri => "missing_nlri",
            RouteError::UnsupportedRoute(_) => "unsupported_route",
            RouteError::MalformedMessage { .. } => "malformed",
            RouteError::BadMac(_) => "bad_mac",
            RouteError::BadIp(_) => "bad_ip",
            RouteError::MissingLabel => "missing_label",
            RouteError::BadVni(_) => "bad_vni",
            RouteError::MissingNextHop => "missing_next_hop",
            RouteError::MissingPmsi => "missing_pmsi",
            RouteError::UnsupportedPmsiTunnel(_) => "unsupported_pmsi_tunnel",
            RouteError::BadTunnelId(_) => "bad_tunnel_id",
            RouteError::NotVxlan(_) => "not_vxlan",
            RouteError::NotImported { .. } => "not_imported",
            RouteError::LabelMismatch { .. } => "label_mismatch",
        }
    }
}

/// Which VNI imports which route targets.
#[derive(Debug, Clone, Default)]
pub struct Import {
    by_rt: HashMap<RouteTarget, Vni>,
}

/// A route target listed for two VNIs: a route carrying it could go to either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("route target {rt} is imported by VNI {first} and VNI {second}")]
pub struct ImportConflict {
    pub rt: RouteTarget,
    pub first: Vni,
    pub second: Vni,
}

impl Import {
    /// `vni` imports routes carrying `rt`.
    pub fn insert(&mut self, rt: RouteTarget, vni: Vni) -> Result<(), ImportConflict> {
        match self.by_rt.insert(rt, vni) {
            Some(first) if first != vni => Err(ImportConflict {
                rt,
                first,
                second: vni,
            }),
            _ => Ok(()),
        }
    }

    /// The VNI that imports the first of `rts` that any imports.
    fn vni(&self, rts: &[RouteTarget]) -> Option<Vni> {
        rts.iter().find_map(|rt| self.by_rt.get(rt).copied())
    }
}

/// Reads `path` as an advertisement or a withdrawal of a remote route imported by `import`.
pub fn decode(path: &Path, import: &Import) -> Result<RemoteEvent, RouteError> {
    let family = path.family.unwrap_or_default();
    if family != evpn_family() {
        return Err(RouteError::WrongFamily {
            afi: family.afi,
            safi: family.safi,
        });
    }
    let nlri = path.nlri.as_ref().ok_or(RouteError::MissingNlri)?;
    let attrs = Attributes::collect(&path.pattrs)?;
    let route = if let Some(mac_ip) = unpack::<EvpnmacipAdvertisementRoute>(nlri) {
        mac_route(&malformed(mac_ip)?, &attrs, import)?
    } else if let Some(imet) = unpack::<EvpnInclusiveMulticastEthernetTagRoute>(nlri) {
        malformed(imet)?;
        vtep_route(&attrs, import)?
    } else {
        return Err(RouteError::UnsupportedRoute(type_name(nlri).to_owned()));
    };
    Ok(if path.is_withdraw {
        RemoteEvent::Withdrawn(route)
    } else {
        RemoteEvent::Advertised(route)
    })
}

fn mac_route(
    nlri: &EvpnmacipAdvertisementRoute,
    attrs: &Attributes,
    import: &Import,
) -> Result<RemoteRoute, RouteError> {
    let mac: MacAddr = nlri
        .mac_address
        .parse()
        .map_err(|_| RouteError::BadMac(nlri.mac_address.clone()))?;
    let ip = parse_optional_ip(&nlri.ip_address)?;
    let label = *nlri.labels.first().ok_or(RouteError::MissingLabel)?;
    let vni = attrs.import(label, import)?;
    let vtep = attrs.next_hop.ok_or(RouteError::MissingNextHop)?;
    Ok(RemoteRoute::Mac {
        vni,
        mac,
        ip,
        vtep,
        mobility: attrs.mobility,
    })
}

fn vtep_route(attrs: &Attributes, import: &Import) -> Result<RemoteRoute, RouteError> {
    let pmsi = attrs.pmsi.as_ref().ok_or(RouteError::MissingPmsi)?;
    if pmsi.r#type != PMSI_INGRESS_REPLICATION {
        return Err(RouteError::UnsupportedPmsiTunnel(pmsi.r#type));
    }
    let vtep = ip_from_octets(&pmsi.id).ok_or(RouteError::BadTunnelId(pmsi.id.len()))?;
    let vni = attrs.import(pmsi.label, import)?;
    Ok(RemoteRoute::Vtep { vni, vtep })
}

/// GoBGP writes a MAC-only route's IP as `""` (what we send) or as Go's `"<nil>"` (what it
/// prints for an absent address); the zero address means none too (the CLI's `0.0.0.0`).
fn parse_optional_ip(text: &str) -> Result<Option<IpAddr>, RouteError> {
    if text.is_empty() || text == "<nil>" {
        return Ok(None);
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| RouteError::BadIp(text.to_owned()))?;
    Ok((!ip.is_unspecified()).then_some(ip))
}

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(Ipv4Addr::from(v4).into())
    } else {
        <[u8; 16]>::try_from(octets)
            .ok()
            .map(|v6| Ipv6Addr::from(v6).into())
    }
}

/// What the attributes of a path say that we use; attributes of other kinds are ignored.
#[derive(Debug, Default)]
struct Attributes {
    next_hop: Option<IpAddr>,
    route_targets: Vec<RouteTarget>,
    mobility: MacMobility,
    pmsi: Option<PmsiTunnelAttribute>,
}

impl Attributes {
    fn collect(pattrs: &[Any]) -> Result<Self, RouteError> {
        let mut attrs = Attributes::default();
        for any in pattrs {
            if let Some(next_hop) = unpack::<NextHopAttribute>(any) {
                attrs.next_hop = Some(parse_next_hop(&malformed(next_hop)?.next_hop)?);
            } else if let Some(reach) = unpack::<MpReachNlriAttribute>(any) {
                // What gobgpd's RIB holds for every family but IPv4 unicast.
                if let Some(next_hop) = malformed(reach)?.next_hops.first() {
                    attrs.next_hop = Some(parse_next_hop(next_hop)?);
                }
            } else if let Some(communities) = unpack::<ExtendedCommunitiesAttribute>(any) {
                for community in &malformed(communities)?.communities {
                    attrs.community(community)?;
                }
            } else if let Some(pmsi) = unpack::<PmsiTunnelAttribute>(any) {
                attrs.pmsi = Some(malformed(pmsi)?);
            }
        }
        Ok(attrs)
    }

    /// Route targets, MAC mobility and the encapsulation; other communities (router MAC,
    /// default gateway, ...) are ignored.
    fn community(&mut self, any: &Any) -> Result<(), RouteError> {
        const RT: u32 = 0x02;
        if let Some(c) = unpack::<apipb::TwoOctetAsSpecificExtended>(any) {
            let c = malformed(c)?;
            // A 2-octet AS in a u32 field: anything wider is not this community.
            if let (RT, Ok(asn)) = (c.sub_type, u16::try_from(c.asn)) {
                self.route_targets.push(RouteTarget(AdminNumber::As2 {
                    asn,
                    number: c.local_admin,
                }));
            }
        } else if let Some(c) = unpack::<apipb::IPv4AddressSpecificExtended>(any) {
            let c = malformed(c)?;
            if let (RT, Ok(addr), Ok(value)) = (
                c.sub_type,
                c.address.parse::<Ipv4Addr>(),
                u16::try_from(c.local_admin),
            ) {
                self.route_targets.push(RouteTarget(AdminNumber::Ipv4 {
                    addr,
                    number: value,
                }));
            }
        } else if let Some(c) = unpack::<apipb::FourOctetAsSpecificExtended>(any) {
            let c = malformed(c)?;
            if let (RT, Ok(value)) = (c.sub_type, u16::try_from(c.local_admin)) {
                self.route_targets.push(RouteTarget(AdminNumber::As4 {
                    asn: c.asn,
                    number: value,
                }));
            }
        } else if let Some(c) = unpack::<apipb::MacMobilityExtended>(any) {
            let c = malformed(c)?;
            self.mobility = MacMobility {
                seq: c.sequence_num,
                sticky: c.is_sticky,
            };
        } else if let Some(c) = unpack::<apipb::EncapExtended>(any) {
            // RFC 8365 §5.1.3: a route without it is taken as VXLAN, as FRR does.
            let tunnel_type = malformed(c)?.tunnel_type;
            if tunnel_type != TUNNEL_TYPE_VXLAN {
                return Err(RouteError::NotVxlan(tunnel_type));
            }
        }
        Ok(())
    }

    /// The VNI that imports the route, which must be its label.
    fn import(&self, label: u32, import: &Import) -> Result<Vni, RouteError> {
        let label_vni = Vni::new(label).map_err(|_| RouteError::BadVni(label))?;
        let vni = import
            .vni(&self.route_targets)
            .ok_or(RouteError::NotImported { label })?;
        if vni != label_vni {
            return Err(RouteError::LabelMismatch { vni, label });
        }
        Ok(vni)
    }
}

fn parse_next_hop(text: &str) -> Result<IpAddr, RouteError> {
    text.parse().map_err(|_| RouteError::BadIp(text.to_owned()))
}

/// A message of a known type whose bytes do not decode.
fn malformed<M: Name>(decoded: Result<M, DecodeError>) -> Result<M, RouteError> {
    decoded.map_err(|e| RouteError::MalformedMessage {
        name: M::NAME,
        reason: e.to_string(),
    })
}
