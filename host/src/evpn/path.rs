//! Our routes as GoBGP API `Path`s (pure): the NLRI and attributes of a type 2 or type 3 route
//! for one VNI, Any-packed as `gobgp global rib -a evpn add` would send them, so that gobgpd
//! advertises exactly what FRR advertises for the same VNI.
//!
//! Contract: [`emit`] never fails (every input is valid by construction); a path it makes is
//! accepted by gobgpd's `AddPath` and, with the same NLRI, by `DeletePath`.

use std::net::IpAddr;

use gobgp_api::apipb::{
    self, EthernetSegmentIdentifier, EvpnInclusiveMulticastEthernetTagRoute,
    EvpnmacipAdvertisementRoute, ExtendedCommunitiesAttribute, Family, NextHopAttribute,
    OriginAttribute, Path, PmsiTunnelAttribute, family,
};
use gobgp_api::prost_types::Any;

use super::any::pack;
use super::route::{LocalRoute, MacMobility, RouteDistinguisher, RouteTarget, VniExport};
use crate::config::AdminNumber;

/// The BGP tunnel type of VXLAN (RFC 8365 §5.1.3, the encapsulation extended community).
pub const TUNNEL_TYPE_VXLAN: u32 = 8;
/// The PMSI tunnel type "ingress replication" (RFC 6514 §5; RFC 8365 §5.1.3).
pub const PMSI_INGRESS_REPLICATION: u32 = 6;
/// The transitive route target sub-type (RFC 4360 §4).
const SUBTYPE_ROUTE_TARGET: u32 = 0x02;
/// ORIGIN IGP, what the CLI and FRR set on locally originated EVPN routes.
const ORIGIN_IGP: u32 = 0;

/// L2VPN EVPN: AFI 25, SAFI 70 (RFC 7432 §3).
pub fn evpn_family() -> Family {
    Family {
        afi: family::Afi::L2vpn.into(),
        safi: family::Safi::Evpn.into(),
    }
}

/// The path that advertises `route` on `export`'s VNI: label = VNI, next hop = our VTEP, the
/// VNI's route targets, encapsulation VXLAN.
pub fn emit(export: &VniExport, route: &LocalRoute) -> Path {
    let vni = export.vni.get();
    let rd = Some(pack_rd(export.rd));
    let mut communities: Vec<Any> = export.route_targets.iter().map(|rt| pack_rt(*rt)).collect();
    communities.push(pack(&apipb::EncapExtended {
        tunnel_type: TUNNEL_TYPE_VXLAN,
    }));
    let mut pattrs = vec![
        pack(&OriginAttribute { origin: ORIGIN_IGP }),
        pack(&NextHopAttribute {
            next_hop: export.vtep.to_string(),
        }),
    ];
    let nlri = match *route {
        LocalRoute::MacIp { mac, ip, mobility } => {
            if !mobility.is_default() {
                communities.push(pack_mobility(mobility));
            }
            pack(&EvpnmacipAdvertisementRoute {
                rd,
                // gobgpd dereferences the ESI unchecked: always send one (0, single-homed).
                esi: Some(EthernetSegmentIdentifier {
                    r#type: 0,
                    value: vec![0; 9],
                }),
                ethernet_tag: 0,
                mac_address: mac.to_string(),
                // An empty string is "no IP" to gobgpd (a zero IP length in the NLRI).
                ip_address: ip.map(|ip| ip.to_string()).unwrap_or_default(),
                labels: vec![vni],
            })
        }
        LocalRoute::InclusiveMulticast => {
            pattrs.push(pack(&PmsiTunnelAttribute {
                flags: 0,
                r#type: PMSI_INGRESS_REPLICATION,
                label: vni,
                id: ip_octets(export.vtep),
            }));
            pack(&EvpnInclusiveMulticastEthernetTagRoute {
                rd,
                ethernet_tag: 0,
                ip_address: export.vtep.to_string(),
            })
        }
    };
    pattrs.push(pack(&ExtendedCommunitiesAttribute { communities }));
    Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(evpn_family()),
        ..Path::default()
    }
}

fn pack_rd(rd: RouteDistinguisher) -> Any {
    match rd.0 {
        AdminNumber::As2 { asn, number } => pack(&apipb::RouteDistinguisherTwoOctetAsn {
            admin: asn.into(),
            assigned: number,
        }),
        AdminNumber::Ipv4 { addr, number } => pack(&apipb::RouteDistinguisherIpAddress {
            admin: addr.to_string(),
            assigned: number.into(),
        }),
        AdminNumber::As4 { asn, number } => pack(&apipb::RouteDistinguisherFourOctetAsn {
            admin: asn,
            assigned: number.into(),
        }),
    }
}

fn pack_rt(rt: RouteTarget) -> Any {
    let (is_transitive, sub_type) = (true, SUBTYPE_ROUTE_TARGET);
    match rt.0 {
        AdminNumber::As2 { asn, number } => pack(&apipb::TwoOctetAsSpecificExtended {
            is_transitive,
            sub_type,
            asn: asn.into(),
            local_admin: number,
        }),
        AdminNumber::Ipv4 { addr, number } => pack(&apipb::IPv4AddressSpecificExtended {
            is_transitive,
            sub_type,
            address: addr.to_string(),
            local_admin: number.into(),
        }),
        AdminNumber::As4 { asn, number } => pack(&apipb::FourOctetAsSpecificExtended {
            is_transitive,
            sub_type,
            asn,
            local_admin: number.into(),
        }),
    }
}

fn pack_mobility(mobility: MacMobility) -> Any {
    pack(&apipb::MacMobilityExtended {
        is_sticky: mobility.sticky,
        sequence_num: mobility.seq,
    })
}

/// The PMSI tunnel identifier of ingress replication: the VTEP's address, 4 or 16 octets.
fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}
