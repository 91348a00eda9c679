//! `show bgp l2vpn evpn route detail json` and `show bgp l2vpn evpn summary json` of FRR 8.4,
//! parsed.
//!
//! The detail listing is used rather than `show bgp l2vpn evpn json` because only it carries
//! the VNI of a type 2 and the PMSI attribute of a type 3. Its shape: an object with one member
//! per RD (`{"rd": "198.18.0.1:5001", "<prefix>": {...}, ...}`), each prefix with the route's
//! key fields (`routeType`, `ethTag`, `mac`, `ip`) and `paths`, a list whose elements are
//! lists of paths (FRR 8.4; a plain path object is accepted too). Extended communities come as
//! one string (`"RT:65000:5001 ET:8 MM:3, sticky MAC"`). Members that are not RDs (table
//! version, router ID) and fields not listed here are skipped.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use crate::evpn::route::{EvpnRoute, MacMobility, RouteType, parse_ip};

/// Parses the detail RIB: every path of every prefix of every RD.
pub(crate) fn parse_rib_json(json: &str) -> Result<Vec<EvpnRoute>> {
    let text = json.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let top: Map<String, Value> = serde_json::from_str(text).context("not a JSON object")?;
    let mut routes = Vec::new();
    for (key, rd_entry) in &top {
        let Some(rd_entry) = rd_entry.as_object() else {
            continue;
        };
        let Some(rd) = rd_entry.get("rd").and_then(Value::as_str) else {
            continue;
        };
        for (prefix, entry) in rd_entry {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            let Some(paths) = entry.get("paths").and_then(Value::as_array) else {
                continue;
            };
            for path in paths.iter().flat_map(flatten) {
                let route = route_of(rd, entry, path)
                    .with_context(|| format!("a path of {prefix} under {key}"))?;
                routes.push(route);
            }
        }
    }
    Ok(routes)
}

/// A `paths` element: a list of paths (8.4's detail output) or one path.
fn flatten(element: &Value) -> Vec<&Value> {
    match element {
        Value::Array(paths) => paths.iter().collect(),
        path => vec![path],
    }
}

fn route_of(rd: &str, prefix: &Map<String, Value>, path: &Value) -> Result<EvpnRoute> {
    let Some(route_type) = prefix.get("routeType").and_then(Value::as_u64) else {
        bail!("no routeType");
    };
    let route_type =
        RouteType::from(u8::try_from(route_type).with_context(|| format!("type {route_type}"))?);
    let mac = prefix
        .get("mac")
        .and_then(Value::as_str)
        .map(|m| m.parse().map_err(|e| anyhow::anyhow!("{e}: mac {m:?}")))
        .transpose()?;
    let communities = path["extendedCommunity"]["string"].as_str().unwrap_or("");
    let (route_targets, mac_mobility) = parse_extended_communities(communities);
    let vni = number(&path["vni"]).or_else(|| number(&path["pmsi"]["label"]));
    // `bestpath` is an object with `overall` in the detail output, a bool elsewhere.
    let best = path["bestpath"]["overall"]
        .as_bool()
        .or(path["bestpath"].as_bool())
        .unwrap_or(false);
    Ok(EvpnRoute {
        route_type,
        rd: rd.to_owned(),
        etag: number(prefix.get("ethTag").unwrap_or(&Value::Null)).unwrap_or(0),
        mac,
        ip: prefix.get("ip").and_then(Value::as_str).and_then(parse_ip),
        next_hop: path["nexthops"][0]["ip"].as_str().and_then(parse_ip),
        vni,
        pmsi_tunnel: None,
        route_targets,
        mac_mobility,
        best,
        // Local paths show peer 0.0.0.0 (or "(unspec)" elsewhere): no peer.
        peer: path["peer"]["peerId"]
            .as_str()
            .or(path["peerId"].as_str())
            .and_then(parse_ip),
    })
}

/// A number FRR prints either as a JSON number or as a string (`"vni": "5001"`).
fn number(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Route targets and MAC mobility from FRR's community string: `RT:<rt>` tokens, and `MM:<seq>`
/// followed by `, sticky MAC` for a sticky one.
fn parse_extended_communities(text: &str) -> (Vec<String>, Option<MacMobility>) {
    let mut targets = Vec::new();
    let mut mobility = None;
    for token in text.split_whitespace() {
        if let Some(rt) = token.strip_prefix("RT:") {
            targets.push(rt.to_owned());
        } else if let Some(seq) = token.strip_prefix("MM:")
            && let Ok(sequence) = seq.trim_end_matches(',').parse()
        {
            mobility = Some(MacMobility {
                sequence,
                sticky: token.ends_with(',') && text.contains("sticky MAC"),
            });
        }
    }
    (targets, mobility)
}

/// From `show bgp l2vpn evpn summary json`: whether the session with `peer` is established
/// (`false` if FRR has no such peer).
pub(crate) fn parse_established(json: &str, peer: IpAddr) -> Result<bool> {
    let top: Value = serde_json::from_str(json.trim()).context("not JSON")?;
    let Some(peers) = top["peers"].as_object() else {
        return Ok(false);
    };
    Ok(peers.iter().any(|(addr, state)| {
        addr.parse::<IpAddr>().ok() == Some(peer) && state["state"].as_str() == Some("Established")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_vtep::wire::MacAddr;

    /// Captured from FRR 8.4.4 (`show bgp l2vpn evpn route detail json`) peered with gobgpd
    /// 3.10, trimmed to two routes received from gobgpd and FRR's own type 3 (timestamps,
    /// AS paths and hostnames cut).
    const RIB: &str = r#"{
 "198.18.0.1:5001": {
  "rd": "198.18.0.1:5001",
  "[2]:[0]:[48]:[02:00:00:00:00:01]:[32]:[192.0.2.1]": {
   "prefix": "[2]:[0]:[48]:[02:00:00:00:00:01]:[32]:[192.0.2.1]", "prefixLen": 352,
   "rd": "198.18.0.1:5001", "routeType": 2, "ethTag": 0, "macLen": 48,
   "mac": "02:00:00:00:00:01", "ipLen": 32, "ip": "192.0.2.1",
   "paths": [[{"VNI": "5001", "vni": "5001", "origin": "incomplete", "locPrf": 100,
     "valid": true, "version": 2,
     "bestpath": {"bestpathFromAs": 0, "overall": true, "selectionReason": "First path received"},
     "extendedCommunity": {"string": "RT:65000:5001 ET:8"},
     "nexthops": [{"ip": "198.18.0.1", "afi": "ipv4", "metric": 0, "accessible": true, "used": true}],
     "peer": {"peerId": "198.18.0.1", "routerId": "198.18.0.1", "type": "internal"}}]]
  },
  "[3]:[0]:[32]:[198.18.0.1]": {
   "prefix": "[3]:[0]:[32]:[198.18.0.1]", "prefixLen": 352, "rd": "198.18.0.1:5001",
   "routeType": 3, "ethTag": 0, "ipLen": 32, "ip": "198.18.0.1",
   "paths": [[{"origin": "incomplete", "locPrf": 100, "valid": true, "version": 1,
     "bestpath": {"bestpathFromAs": 0, "overall": true, "selectionReason": "First path received"},
     "extendedCommunity": {"string": "RT:65000:5001 ET:8"},
     "pmsi": {"tunnelType": "Ingress Replication", "label": 5001},
     "nexthops": [{"ip": "198.18.0.1", "afi": "ipv4", "metric": 0, "accessible": true, "used": true}],
     "peer": {"peerId": "198.18.0.1", "routerId": "198.18.0.1", "type": "internal"}}]]
  }
 },
 "198.18.0.2:2": {
  "rd": "198.18.0.2:2",
  "[3]:[0]:[32]:[198.18.0.2]": {
   "prefix": "[3]:[0]:[32]:[198.18.0.2]", "prefixLen": 352, "rd": "198.18.0.2:2",
   "routeType": 3, "ethTag": 0, "ipLen": 32, "ip": "198.18.0.2",
   "advertisedTo": {"198.18.0.1": {"hostname": "vm"}},
   "paths": [[{"VNI": "5001", "vni": "5001", "origin": "IGP", "weight": 32768, "valid": true,
     "version": 3, "sourced": true, "local": true,
     "bestpath": {"bestpathFromAs": 0, "overall": true, "selectionReason": "First path received"},
     "extendedCommunity": {"string": "ET:8 RT:65000:5001"},
     "pmsi": {"tunnelType": "Ingress Replication", "label": 5001},
     "nexthops": [{"ip": "198.18.0.2", "afi": "ipv4", "metric": 0, "accessible": true, "used": true}],
     "peer": {"peerId": "0.0.0.0", "routerId": "198.18.0.2"}}]]
  }
 }
}"#;

    #[test]
    fn parses_a_captured_rib() {
        let routes = parse_rib_json(RIB).unwrap();
        assert_eq!(routes.len(), 3);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());

        let t2 = &routes[0];
        assert_eq!(t2.route_type, RouteType::MacIp);
        assert_eq!(t2.rd, "198.18.0.1:5001");
        assert_eq!(t2.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(t2.ip, ip("192.0.2.1"));
        assert_eq!((t2.next_hop, t2.vni), (ip("198.18.0.1"), Some(5001)));
        assert_eq!(t2.route_targets, ["65000:5001"]);
        assert_eq!(t2.peer, ip("198.18.0.1"));
        assert!(t2.best && t2.mac_mobility.is_none());

        let remote_t3 = &routes[1];
        assert_eq!(remote_t3.route_type, RouteType::InclusiveMulticast);
        assert_eq!(remote_t3.vni, Some(5001), "the PMSI label");
        assert_eq!(remote_t3.vtep(), ip("198.18.0.1"));

        let own_t3 = &routes[2];
        assert_eq!((own_t3.rd.as_str(), own_t3.peer), ("198.18.0.2:2", None));
        assert_eq!(own_t3.vtep(), ip("198.18.0.2"));
    }

    #[test]
    fn reads_mac_mobility_and_plain_path_lists() {
        let json = r#"{"bgpTableVersion": 3, "bgpLocalRouterId": "198.18.0.2",
            "198.18.0.3:4": {"rd": "198.18.0.3:4", "[2]:[0]:[48]:[02:00:00:00:00:07]": {
              "routeType": 2, "ethTag": 0, "mac": "02:00:00:00:00:07",
              "paths": [{"bestpath": true, "peerId": "(unspec)", "vni": 7,
                "extendedCommunity": {"string": "RT:65000:7 ET:8 MM:4, sticky MAC"}},
                {"bestpath": false, "extendedCommunity": {"string": "MM:2 RT:1.2.3.4:7"}}]}}}"#;
        let routes = parse_rib_json(json).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes[0].mac_mobility,
            Some(MacMobility {
                sequence: 4,
                sticky: true
            })
        );
        assert!(routes[0].best && routes[0].peer.is_none());
        assert_eq!(routes[0].vni, Some(7));
        assert_eq!(
            routes[1].mac_mobility,
            Some(MacMobility {
                sequence: 2,
                sticky: false
            })
        );
        assert_eq!(routes[1].route_targets, ["1.2.3.4:7"]);
        assert!(!routes[1].best);
    }

    #[test]
    fn empty_and_malformed_ribs() {
        assert!(parse_rib_json("").unwrap().is_empty());
        assert!(parse_rib_json("{}").unwrap().is_empty());
        for bad in [
            "[",
            "[]",
            r#"{"x": {"rd": "1:1", "p": {"paths": [{}]}}}"#,
            r#"{"x": {"rd": "1:1", "p": {"routeType": 2, "mac": "zz", "paths": [{}]}}}"#,
            r#"{"x": {"rd": "1:1", "p": {"routeType": 300, "paths": [{}]}}}"#,
        ] {
            assert!(parse_rib_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn established_from_the_summary() {
        // Trimmed from FRR 8.4's `show bgp l2vpn evpn summary json`.
        let json = r#"{"routerId": "198.18.0.2", "as": 65000, "peers": {
            "198.18.0.1": {"remoteAs": 65000, "state": "Established", "peerState": "OK"},
            "198.18.0.3": {"remoteAs": 65000, "state": "Active", "peerState": "OK"}}}"#;
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(parse_established(json, addr("198.18.0.1")).unwrap());
        assert!(!parse_established(json, addr("198.18.0.3")).unwrap());
        assert!(!parse_established(json, addr("198.18.0.4")).unwrap());
        assert!(!parse_established("{}", addr("198.18.0.1")).unwrap());
        assert!(parse_established("% Unknown command", addr("198.18.0.1")).is_err());
    }
}
