//! The translation without gobgpd: our routes to `Path`s and back, the path shapes gobgpd's
//! `ListPath`/`WatchEvent` produce for routes the `gobgp` CLI added (as its `apiutil` marshals
//! them: next hop in `MpReachNLRIAttribute`, Go's `"<nil>"` for an absent IP), and each refusal.

use std::net::{IpAddr, Ipv4Addr};

use gobgp_api::apipb::{
    self, EthernetSegmentIdentifier, EvpnInclusiveMulticastEthernetTagRoute,
    EvpnmacipAdvertisementRoute, ExtendedCommunitiesAttribute, Family, MpReachNlriAttribute,
    OriginAttribute, Path, PmsiTunnelAttribute,
};
use gobgp_api::prost_types::Any;
use wasm_vtep_plugin_sdk::MacAddr;

use super::any::pack;
use super::*;
use crate::wire::Vni;

const VNI: Vni = Vni::from_u24(5001);
const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

fn ours() -> VniExport {
    let vtep = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9));
    VniExport::auto(VNI, Ipv4Addr::new(198, 18, 0, 9), 65000, vtep).expect("small VNI")
}

fn import() -> Import {
    let mut import = Import::default();
    import
        .insert(RouteTarget::auto(65000, VNI), VNI)
        .expect("one VNI");
    import
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn mac_ip_route_round_trips_with_mobility() {
    let mobility = MacMobility {
        seq: 3,
        sticky: true,
    };
    let route = LocalRoute::MacIp {
        mac: MAC,
        ip: Some(ip("192.0.2.1")),
        mobility,
    };
    let back = decode(&emit(&ours(), &route), &import());
    let expected = RemoteRoute::Mac {
        vni: VNI,
        mac: MAC,
        ip: Some(ip("192.0.2.1")),
        vtep: ip("198.18.0.9"),
        mobility,
    };
    assert_eq!(back, Ok(RemoteEvent::Advertised(expected)));
}

#[test]
fn mac_only_route_round_trips_without_mobility_community() {
    let route = LocalRoute::MacIp {
        mac: MAC,
        ip: None,
        mobility: MacMobility::default(),
    };
    let path = emit(&ours(), &route);
    let communities = communities(&path);
    assert_eq!(
        communities.len(),
        2,
        "RT and encapsulation only: {communities:?}"
    );
    let back = decode(&path, &import()).expect("decodes");
    assert!(
        matches!(back.route(), RemoteRoute::Mac { ip: None, mobility, .. } if mobility.is_default())
    );
}

#[test]
fn inclusive_multicast_route_round_trips_with_pmsi_ingress_replication() {
    let path = emit(&ours(), &LocalRoute::InclusiveMulticast);
    let pmsi = path
        .pattrs
        .iter()
        .find_map(any::unpack::<PmsiTunnelAttribute>);
    let pmsi = pmsi.expect("a PMSI attribute").expect("decodes");
    assert_eq!(
        (pmsi.r#type, pmsi.label, pmsi.id),
        (6, 5001, vec![198, 18, 0, 9])
    );
    let back = decode(&path, &import());
    let expected = RemoteRoute::Vtep {
        vni: VNI,
        vtep: ip("198.18.0.9"),
    };
    assert_eq!(back, Ok(RemoteEvent::Advertised(expected)));
}

#[test]
fn emitted_path_carries_frr_defaults() {
    let path = emit(&ours(), &LocalRoute::InclusiveMulticast);
    assert_eq!(path.family, Some(Family { afi: 25, safi: 70 }));
    let nlri = path.nlri.as_ref().expect("an NLRI");
    let nlri = any::unpack::<EvpnInclusiveMulticastEthernetTagRoute>(nlri).expect("type 3");
    let rd = nlri.expect("decodes").rd.expect("an RD");
    let rd = any::unpack::<apipb::RouteDistinguisherIpAddress>(&rd).expect("type 1");
    let rd = rd.expect("decodes");
    assert_eq!((rd.admin.as_str(), rd.assigned), ("198.18.0.9", 5001));
    let rt = apipb::TwoOctetAsSpecificExtended {
        is_transitive: true,
        sub_type: 2,
        asn: 65000,
        local_admin: 5001,
    };
    let encap = apipb::EncapExtended { tunnel_type: 8 };
    assert_eq!(communities(&path), vec![pack(&rt), pack(&encap)]);
}

#[test]
fn a_withdrawal_is_read_as_such() {
    let mut path = emit(&ours(), &LocalRoute::InclusiveMulticast);
    path.is_withdraw = true;
    assert!(matches!(
        decode(&path, &import()),
        Ok(RemoteEvent::Withdrawn(RemoteRoute::Vtep { .. }))
    ));
}

/// `gobgp global rib -a evpn add macadv 02:00:00:00:00:01 192.0.2.1 etag 0 label 5001 rd
/// 198.18.0.1:5001 rt 65000:5001 encap vxlan nexthop 198.18.0.1`, as gobgpd lists it.
fn cli_macadv(ip_address: &str) -> Path {
    let nlri = pack(&EvpnmacipAdvertisementRoute {
        rd: Some(cli_rd()),
        esi: Some(EthernetSegmentIdentifier {
            r#type: 0,
            value: vec![],
        }),
        ethernet_tag: 0,
        mac_address: "02:00:00:00:00:01".into(),
        ip_address: ip_address.into(),
        labels: vec![5001],
    });
    cli_path(nlri, vec![])
}

/// `gobgp global rib -a evpn add multicast 198.18.0.1 etag 0 rd 198.18.0.1:5001 rt 65000:5001
/// encap vxlan pmsi ingress-repl 5001 198.18.0.1 nexthop 198.18.0.1`, as gobgpd lists it.
fn cli_multicast() -> Path {
    let nlri = pack(&EvpnInclusiveMulticastEthernetTagRoute {
        rd: Some(cli_rd()),
        ethernet_tag: 0,
        ip_address: "198.18.0.1".into(),
    });
    let pmsi = PmsiTunnelAttribute {
        flags: 0,
        r#type: 6,
        label: 5001,
        id: vec![198, 18, 0, 1],
    };
    cli_path(nlri, vec![pack(&pmsi)])
}

fn cli_rd() -> Any {
    pack(&apipb::RouteDistinguisherIpAddress {
        admin: "198.18.0.1".into(),
        assigned: 5001,
    })
}

fn cli_path(nlri: Any, mut extra: Vec<Any>) -> Path {
    let rt = apipb::TwoOctetAsSpecificExtended {
        is_transitive: true,
        sub_type: 2,
        asn: 65000,
        local_admin: 5001,
    };
    let encap = apipb::EncapExtended { tunnel_type: 8 };
    let mut pattrs = vec![
        pack(&OriginAttribute { origin: 0 }),
        pack(&MpReachNlriAttribute {
            family: Some(Family { afi: 25, safi: 70 }),
            next_hops: vec!["198.18.0.1".into()],
            nlris: vec![nlri.clone()],
        }),
        pack(&ExtendedCommunitiesAttribute {
            communities: vec![pack(&rt), pack(&encap)],
        }),
    ];
    pattrs.append(&mut extra);
    Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(Family { afi: 25, safi: 70 }),
        best: true,
        ..Path::default()
    }
}

#[test]
fn cli_macadv_shape_parses() {
    let expected = RemoteRoute::Mac {
        vni: VNI,
        mac: MAC,
        ip: Some(ip("192.0.2.1")),
        vtep: ip("198.18.0.1"),
        mobility: MacMobility::default(),
    };
    assert_eq!(
        decode(&cli_macadv("192.0.2.1"), &import()),
        Ok(RemoteEvent::Advertised(expected))
    );
    for absent in ["<nil>", "", "0.0.0.0"] {
        let event = decode(&cli_macadv(absent), &import()).expect("decodes");
        assert!(
            matches!(event.route(), RemoteRoute::Mac { ip: None, .. }),
            "{absent:?}"
        );
    }
}

#[test]
fn cli_multicast_shape_parses() {
    let expected = RemoteRoute::Vtep {
        vni: VNI,
        vtep: ip("198.18.0.1"),
    };
    assert_eq!(
        decode(&cli_multicast(), &import()),
        Ok(RemoteEvent::Advertised(expected))
    );
}

fn with_nlri(path: &Path, edit: impl FnOnce(&mut EvpnmacipAdvertisementRoute)) -> Path {
    let nlri = path.nlri.as_ref().expect("an NLRI");
    let mut route = any::unpack::<EvpnmacipAdvertisementRoute>(nlri)
        .expect("type 2")
        .expect("ok");
    edit(&mut route);
    Path {
        nlri: Some(pack(&route)),
        ..path.clone()
    }
}

#[test]
fn refusals_are_typed() {
    let good = cli_macadv("192.0.2.1");
    let wrong_family = Path {
        family: Some(Family { afi: 1, safi: 1 }),
        ..good.clone()
    };
    assert_eq!(
        decode(&wrong_family, &import()),
        Err(RouteError::WrongFamily { afi: 1, safi: 1 })
    );
    let no_nlri = Path {
        nlri: None,
        ..good.clone()
    };
    assert_eq!(decode(&no_nlri, &import()), Err(RouteError::MissingNlri));
    let bad_mac = with_nlri(&good, |r| r.mac_address = "02:00:00:00:01".into());
    assert_eq!(
        decode(&bad_mac, &import()),
        Err(RouteError::BadMac("02:00:00:00:01".into()))
    );
    let no_label = with_nlri(&good, |r| r.labels.clear());
    assert_eq!(decode(&no_label, &import()), Err(RouteError::MissingLabel));
    let big_label = with_nlri(&good, |r| r.labels = vec![1 << 24]);
    assert_eq!(
        decode(&big_label, &import()),
        Err(RouteError::BadVni(1 << 24))
    );
    let other_label = with_nlri(&good, |r| r.labels = vec![5002]);
    assert_eq!(
        decode(&other_label, &import()),
        Err(RouteError::LabelMismatch {
            vni: VNI,
            label: 5002
        })
    );
    assert_eq!(
        decode(&good, &Import::default()),
        Err(RouteError::NotImported { label: 5001 })
    );
    let no_next_hop = Path {
        pattrs: communities_only(&good),
        ..good.clone()
    };
    assert_eq!(
        decode(&no_next_hop, &import()),
        Err(RouteError::MissingNextHop)
    );
    let type5 = Path {
        nlri: Some(pack(&apipb::EvpnipPrefixRoute::default())),
        ..good.clone()
    };
    assert_eq!(
        decode(&type5, &import()),
        Err(RouteError::UnsupportedRoute(
            "apipb.EVPNIPPrefixRoute".into()
        ))
    );
    let garbage = Any {
        type_url: good.nlri.as_ref().expect("nlri").type_url.clone(),
        value: vec![0xff],
    };
    assert!(matches!(
        decode(
            &Path {
                nlri: Some(garbage),
                ..good.clone()
            },
            &import()
        ),
        Err(RouteError::MalformedMessage { .. })
    ));
    let mut mpls = good.clone();
    mpls.pattrs.push(pack(&ExtendedCommunitiesAttribute {
        communities: vec![pack(&apipb::EncapExtended { tunnel_type: 10 })],
    }));
    assert_eq!(decode(&mpls, &import()), Err(RouteError::NotVxlan(10)));
}

#[test]
fn type3_refusals_are_typed() {
    let mut no_pmsi = cli_multicast();
    no_pmsi
        .pattrs
        .retain(|a| !any::is::<PmsiTunnelAttribute>(a));
    assert_eq!(decode(&no_pmsi, &import()), Err(RouteError::MissingPmsi));
    let pmsi = |r#type, id| PmsiTunnelAttribute {
        flags: 0,
        r#type,
        label: 5001,
        id,
    };
    let mut other_tunnel = no_pmsi.clone();
    other_tunnel
        .pattrs
        .push(pack(&pmsi(3, vec![198, 18, 0, 1])));
    assert_eq!(
        decode(&other_tunnel, &import()),
        Err(RouteError::UnsupportedPmsiTunnel(3))
    );
    let mut bad_id = no_pmsi.clone();
    bad_id.pattrs.push(pack(&pmsi(6, vec![198, 18, 0])));
    assert_eq!(decode(&bad_id, &import()), Err(RouteError::BadTunnelId(3)));
}

#[test]
fn import_refuses_one_rt_for_two_vnis() {
    let mut import = import();
    let rt = RouteTarget::auto(65000, VNI);
    assert!(
        import.insert(rt, VNI).is_ok(),
        "the same pair again is fine"
    );
    let other = Vni::from_u24(5002);
    assert_eq!(
        import.insert(rt, other),
        Err(ImportConflict {
            rt,
            first: VNI,
            second: other
        })
    );
}

fn communities(path: &Path) -> Vec<Any> {
    let attr = path
        .pattrs
        .iter()
        .find_map(any::unpack::<ExtendedCommunitiesAttribute>);
    attr.expect("communities").expect("decodes").communities
}

fn communities_only(path: &Path) -> Vec<Any> {
    path.pattrs
        .iter()
        .filter(|a| any::is::<ExtendedCommunitiesAttribute>(a))
        .cloned()
        .collect()
}
