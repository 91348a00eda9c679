//! `gobgp global rib -a evpn -j` and `gobgp neighbor -j`, parsed.
//!
//! The JSON output is gobgp's Go structures marshalled as they are: the RIB is an object from
//! each prefix's text to its paths, each with the NLRI (`{"type": 2, "value": {"rd": ..., "mac":
//! ..., "ip": ..., "labels": [...]}}`) and the path attributes by type code (14 `MP_REACH_NLRI`
//! with the next hop, 16 extended communities, 22 PMSI tunnel). Attributes and extended
//! communities of kinds not listed here are skipped, so a path with something new still parses;
//! a path whose key fields are malformed is an error that quotes it.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::evpn::route::{EvpnRoute, MacMobility, RouteType, parse_ip};

/// Path attribute type codes (RFC 4271 §5, RFC 4760, RFC 4360, RFC 6514 §5).
const ATTR_MP_REACH: u64 = 14;
const ATTR_EXTENDED_COMMUNITIES: u64 = 16;
const ATTR_PMSI_TUNNEL: u64 = 22;

/// Extended community (type, subtype) pairs: route targets of the three administrator formats
/// (RFC 4360 §4, RFC 5668) and MAC mobility (RFC 7432 §7.7).
const RT_TYPES: [u64; 3] = [0, 1, 2];
const RT_SUBTYPE: u64 = 2;
const EVPN_TYPE: u64 = 6;
const MAC_MOBILITY_SUBTYPE: u64 = 0;

/// gobgp's `SessionState` enum value for an established session.
const ESTABLISHED: u64 = 6;

#[derive(Deserialize)]
struct RawPath {
    nlri: RawNlri,
    #[serde(default)]
    best: bool,
    #[serde(default)]
    attrs: Vec<Value>,
    #[serde(rename = "neighbor-ip")]
    neighbor_ip: Option<String>,
}

#[derive(Deserialize)]
struct RawNlri {
    #[serde(rename = "type")]
    route_type: u8,
    value: RawNlriValue,
}

#[derive(Deserialize)]
struct RawNlriValue {
    rd: RawRd,
    #[serde(default)]
    etag: u32,
    mac: Option<String>,
    ip: Option<String>,
    #[serde(default)]
    labels: Vec<u32>,
}

#[derive(Deserialize)]
struct RawRd {
    /// An AS number (types 0 and 2) or an IPv4 address (type 1).
    admin: Value,
    assigned: u32,
}

/// Parses `gobgp global rib -a evpn -j`: every path of every prefix, in prefix order.
pub(crate) fn parse_rib_json(json: &str) -> Result<Vec<EvpnRoute>> {
    // An empty RIB prints `{}`, `null` or, with some versions, nothing.
    let text = json.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    let prefixes: serde_json::Map<String, Value> =
        serde_json::from_str(text).context("not a JSON object of prefixes")?;
    let mut routes = Vec::new();
    for (prefix, paths) in prefixes {
        let paths: Vec<RawPath> =
            serde_json::from_value(paths).with_context(|| format!("paths of {prefix}"))?;
        for path in paths {
            routes.push(route_of(path).with_context(|| format!("a path of {prefix}"))?);
        }
    }
    Ok(routes)
}

fn route_of(path: RawPath) -> Result<EvpnRoute> {
    let value = path.nlri.value;
    let route_type = RouteType::from(path.nlri.route_type);
    let admin = match &value.rd.admin {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => bail!("route distinguisher administrator {other}"),
    };
    let mac = value
        .mac
        .as_deref()
        .map(|m| m.parse().map_err(|e| anyhow::anyhow!("{e}: mac {m:?}")))
        .transpose()?;
    let mut route = EvpnRoute {
        route_type,
        rd: format!("{admin}:{}", value.rd.assigned),
        etag: value.etag,
        mac,
        ip: value.ip.as_deref().and_then(parse_ip),
        next_hop: None,
        vni: value.labels.first().copied(),
        pmsi_tunnel: None,
        route_targets: Vec::new(),
        mac_mobility: None,
        best: path.best,
        peer: path.neighbor_ip.as_deref().and_then(parse_ip),
    };
    for attr in &path.attrs {
        match attr["type"].as_u64() {
            Some(ATTR_MP_REACH) => {
                route.next_hop = attr["nexthop"].as_str().and_then(parse_ip);
            }
            Some(ATTR_EXTENDED_COMMUNITIES) => {
                for community in attr["value"].as_array().into_iter().flatten() {
                    read_extended_community(community, &mut route);
                }
            }
            Some(ATTR_PMSI_TUNNEL) => {
                route.pmsi_tunnel = attr["tunnel-id"].as_str().and_then(parse_ip);
                if route.vni.is_none() {
                    route.vni = attr["label"].as_u64().and_then(|l| u32::try_from(l).ok());
                }
            }
            _ => {}
        }
    }
    Ok(route)
}

fn read_extended_community(community: &Value, route: &mut EvpnRoute) {
    let (Some(kind), Some(subtype)) = (community["type"].as_u64(), community["subtype"].as_u64())
    else {
        return;
    };
    if RT_TYPES.contains(&kind) && subtype == RT_SUBTYPE {
        if let Some(rt) = community["value"].as_str() {
            route.route_targets.push(rt.to_owned());
        }
    } else if kind == EVPN_TYPE && subtype == MAC_MOBILITY_SUBTYPE {
        route.mac_mobility = community["sequence"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .map(|sequence| MacMobility {
                sequence,
                sticky: community["is_sticky"].as_bool().unwrap_or(false),
            });
    }
}

/// From `gobgp neighbor -j`: whether the session with `address` is established (`false` if
/// gobgpd has no such neighbor).
pub(crate) fn parse_established(json: &str, address: IpAddr) -> Result<bool> {
    let text = json.trim();
    if text.is_empty() || text == "null" {
        return Ok(false);
    }
    let peers: Vec<Value> = serde_json::from_str(text).context("not a JSON list of peers")?;
    let peer = peers.iter().find(|p| {
        let addr = p["state"]["neighbor_address"]
            .as_str()
            .or(p["conf"]["neighbor_address"].as_str());
        addr.and_then(|a| a.parse::<IpAddr>().ok()) == Some(address)
    });
    let Some(peer) = peer else {
        return Ok(false);
    };
    // An enum marshalled as its number (3.x); accept its name too.
    let state = &peer["state"]["session_state"];
    Ok(state.as_u64() == Some(ESTABLISHED)
        || state
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("established")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_vtep::wire::MacAddr;

    /// Captured from gobgpd 3.10 (`gobgp global rib -a evpn -j`) peered with FRR 8.4: a type 2
    /// with an IP and a type 3 added with the CLI, FRR's type 2 (no IP) and type 3 received.
    const RIB: &str = r#"{"[type:macadv][rd:198.18.0.1:5001][etag:0][mac:02:00:00:00:00:01][ip:192.0.2.1]":[{"nlri":{"type":2,"value":{"rd":{"type":1,"admin":"198.18.0.1","assigned":5001},"esi":"single-homed","etag":0,"mac":"02:00:00:00:00:01","ip":"192.0.2.1","labels":[5001]}},"age":1796481132,"best":true,"attrs":[{"type":1,"value":2},{"type":16,"value":[{"type":0,"subtype":2,"value":"65000:5001"},{"type":3,"subtype":12,"tunnel_type":8}]},{"type":14,"nexthop":"198.18.0.1","afi":25,"safi":70,"value":[{"type":2,"value":{"rd":{"type":1,"admin":"198.18.0.1","assigned":5001},"esi":"single-homed","etag":0,"mac":"02:00:00:00:00:01","ip":"192.0.2.1","labels":[5001]}}]}],"stale":false}],
"[type:macadv][rd:198.18.0.2:2][etag:0][mac:02:00:00:00:00:02][ip:\u003cnil\u003e]":[{"nlri":{"type":2,"value":{"rd":{"type":1,"admin":"198.18.0.2","assigned":2},"esi":"single-homed","etag":0,"mac":"02:00:00:00:00:02","ip":"\u003cnil\u003e","labels":[5001]}},"age":1796481128,"best":true,"attrs":[{"type":1,"value":0},{"type":2,"as_paths":[]},{"type":5,"value":100},{"type":16,"value":[{"type":3,"subtype":12,"tunnel_type":8},{"type":0,"subtype":2,"value":"65000:5001"}]},{"type":14,"nexthop":"198.18.0.2","afi":25,"safi":70,"value":[{"type":2,"value":{"rd":{"type":1,"admin":"198.18.0.2","assigned":2},"esi":"single-homed","etag":0,"mac":"02:00:00:00:00:02","ip":"\u003cnil\u003e","labels":[5001]}}]}],"stale":false,"source-id":"198.18.0.2","neighbor-ip":"198.18.0.2"}],
"[type:multicast][rd:198.18.0.1:5001][etag:0][ip:198.18.0.1]":[{"nlri":{"type":3,"value":{"rd":{"type":1,"admin":"198.18.0.1","assigned":5001},"etag":0,"ip":"198.18.0.1"}},"age":1796481132,"best":true,"attrs":[{"type":1,"value":2},{"type":16,"value":[{"type":0,"subtype":2,"value":"65000:5001"},{"type":3,"subtype":12,"tunnel_type":8}]},{"type":22,"is-leaf-info-required":false,"tunnel-type":6,"label":5001,"tunnel-id":"198.18.0.1"},{"type":14,"nexthop":"198.18.0.1","afi":25,"safi":70,"value":[{"type":3,"value":{"rd":{"type":1,"admin":"198.18.0.1","assigned":5001},"etag":0,"ip":"198.18.0.1"}}]}],"stale":false}]}"#;

    #[test]
    fn parses_a_captured_rib() {
        let routes = parse_rib_json(RIB).unwrap();
        assert_eq!(routes.len(), 3);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());

        let own = &routes[0];
        assert_eq!(own.route_type, RouteType::MacIp);
        assert_eq!(own.rd, "198.18.0.1:5001");
        assert_eq!(own.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(own.ip, ip("192.0.2.1"));
        assert_eq!((own.next_hop, own.vni), (ip("198.18.0.1"), Some(5001)));
        assert_eq!(own.route_targets, ["65000:5001"]);
        assert!(own.best && own.peer.is_none() && own.mac_mobility.is_none());

        let learned = &routes[1];
        assert_eq!(learned.mac, Some(MacAddr([2, 0, 0, 0, 0, 2])));
        assert_eq!(learned.ip, None, "<nil> is no IP");
        assert_eq!(learned.rd, "198.18.0.2:2");
        assert_eq!(
            (learned.peer, learned.vtep()),
            (ip("198.18.0.2"), ip("198.18.0.2"))
        );

        let t3 = &routes[2];
        assert_eq!(t3.route_type, RouteType::InclusiveMulticast);
        assert_eq!(
            (t3.ip, t3.pmsi_tunnel),
            (ip("198.18.0.1"), ip("198.18.0.1"))
        );
        assert_eq!(t3.vni, Some(5001), "the PMSI label");
    }

    #[test]
    fn reads_mac_mobility_and_other_rd_formats() {
        // The CLI cannot add a MAC mobility community; the element is as gobgp's
        // MacMobilityExtended.MarshalJSON writes it.
        let json = r#"{"k":[{"nlri":{"type":2,"value":{"rd":{"type":0,"admin":65000,"assigned":7},
            "etag":0,"mac":"02:00:00:00:00:09","ip":"2001:db8::9","labels":[7]}},"best":false,
            "attrs":[{"type":16,"value":[{"type":6,"subtype":0,"sequence":3,"is_sticky":true},
            {"type":2,"subtype":2,"value":"4200000000:7"},{"type":99}]},{"type":99}]}]}"#;
        let r = &parse_rib_json(json).unwrap()[0];
        assert_eq!(r.rd, "65000:7");
        assert_eq!(r.ip, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(
            r.mac_mobility,
            Some(MacMobility {
                sequence: 3,
                sticky: true
            })
        );
        assert_eq!(r.route_targets, ["4200000000:7"]);
        assert!(!r.best && r.next_hop.is_none());
    }

    #[test]
    fn empty_and_malformed_ribs() {
        for empty in ["", "null", "{}", "\n"] {
            assert!(parse_rib_json(empty).unwrap().is_empty(), "{empty:?}");
        }
        for bad in [
            "[",
            "[]",
            r#"{"k":{}}"#,
            r#"{"k":[{"nlri":{"type":2,"value":{"rd":{"admin":1,"assigned":1},"mac":"zz"}}}]}"#,
            r#"{"k":[{"nlri":{"type":2,"value":{"rd":{"admin":[],"assigned":1}}}}]}"#,
        ] {
            assert!(parse_rib_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn established_from_neighbor_list() {
        // Trimmed from `gobgp neighbor -j` (3.10) with one established peer.
        let json = r#"[{"conf":{"local_asn":65000,"neighbor_address":"198.18.0.2","peer_asn":65000},
            "state":{"neighbor_address":"198.18.0.2","peer_asn":65000,"session_state":6}},
            {"conf":{"neighbor_address":"198.18.0.3"},"state":{"session_state":3}}]"#;
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(parse_established(json, addr("198.18.0.2")).unwrap());
        assert!(!parse_established(json, addr("198.18.0.3")).unwrap());
        assert!(!parse_established(json, addr("198.18.0.4")).unwrap());
        assert!(!parse_established("null", addr("198.18.0.2")).unwrap());
        assert!(parse_established("{", addr("198.18.0.2")).is_err());
    }
}
