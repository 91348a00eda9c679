//! The ACL's behaviour on frames' metadata, and its configuration errors.

use std::net::IpAddr;

use serde_json::json;
use wasm_vtep_plugin_sdk::{
    Direction, Filter, FilterResult, FrameMeta, Hooks, Location, MacAddr, Plugin, Registered,
    Verdict, testing,
};

use super::*;

const VM1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const VM2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

fn filter(config: serde_json::Value) -> VniFilter {
    VniFilter::init(&config).unwrap()
}

fn init_err(config: serde_json::Value) -> String {
    VniFilter::init(&config).unwrap_err()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPv4 or IPv6 packet from VM1 to VM2 on VNI 5001.
fn ip_frame(src: &str, dst: &str, proto: u8, ports: Option<(u16, u16)>) -> FrameMeta {
    let ethertype = if ip(src).is_ipv4() { 0x0800 } else { 0x86dd };
    FrameMeta {
        src_ip: Some(ip(src)),
        dst_ip: Some(ip(dst)),
        ip_proto: Some(proto),
        src_port: ports.map(|p| p.0),
        dst_port: ports.map(|p| p.1),
        ..FrameMeta::ethernet(5001, VM1, VM2, ethertype)
    }
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> FrameMeta {
    ip_frame(src, dst, 6, Some((sport, dport)))
}

fn icmp(src: &str, dst: &str) -> FrameMeta {
    ip_frame(src, dst, 1, None)
}

fn arp() -> FrameMeta {
    FrameMeta::ethernet(5001, VM1, MacAddr::BROADCAST, 0x0806)
}

fn verdicts(f: &mut VniFilter, frames: &[FrameMeta]) -> Vec<Verdict> {
    f.filter(frames).into_iter().map(|r| r.verdict).collect()
}

#[test]
fn registers_the_filter_hook_only() {
    assert_eq!(VniFilter::hooks(), Hooks::FILTER);
}

#[test]
fn the_issue_example_blocks_icmp_and_nothing_else() {
    // config = { deny = [{ ip_proto = 1 }] }
    let mut f = testing::init::<VniFilter>(r#"{"deny":[{"ip_proto":1}]}"#).unwrap();
    let frames = [
        icmp("192.0.2.1", "192.0.2.2"),
        tcp("192.0.2.1", "192.0.2.2", 40000, 80),
        arp(),
        ip_frame("2001:db8::1", "2001:db8::2", 1, None),
        ip_frame("2001:db8::1", "2001:db8::2", 58, None),
    ];
    let results = f.filter(&frames);
    assert_eq!(
        results,
        [
            FilterResult::drop(1).cache_for(10),
            FilterResult::pass().cache_for(10),
            FilterResult::pass().cache_for(10),
            // Protocol 1 inside IPv6 is still protocol 1; ICMPv6 is 58.
            FilterResult::drop(1).cache_for(10),
            FilterResult::pass().cache_for(10),
        ]
    );
    assert_eq!(testing::counter("denied"), 2);
    assert_eq!(testing::counter("allowed"), 3);
}

#[test]
fn no_config_passes_everything() {
    let mut f = testing::init::<VniFilter>("").unwrap();
    assert!(f.rules().is_empty());
    let frames = [arp(), icmp("192.0.2.1", "192.0.2.2")];
    assert_eq!(verdicts(&mut f, &frames), [Verdict::Pass, Verdict::Pass]);
    assert!(f.filter(&[]).is_empty());
}

#[test]
fn first_match_wins_and_drops_name_their_rule() {
    let mut f = filter(json!({
        "rules": [
            { "action": "allow", "ip_proto": "tcp", "src_ip": "192.0.2.0/28", "dst_port": 22 },
            { "action": "deny", "ip_proto": "tcp", "dst_port": 22 },
            { "action": "deny", "dst_ip": "198.51.100.0/24" },
        ],
        "cache_secs": 30,
    }));
    let results = f.filter(&[
        tcp("192.0.2.5", "192.0.2.100", 50000, 22),
        tcp("192.0.2.99", "192.0.2.100", 50000, 22),
        tcp("192.0.2.99", "198.51.100.1", 50000, 22),
        tcp("192.0.2.99", "198.51.100.1", 50000, 443),
        tcp("192.0.2.99", "192.0.2.100", 50000, 443),
    ]);
    assert_eq!(
        results,
        [
            FilterResult::pass().cache_for(30),
            FilterResult::drop(2).cache_for(30),
            FilterResult::drop(2).cache_for(30),
            FilterResult::drop(3).cache_for(30),
            FilterResult::pass().cache_for(30),
        ]
    );
}

#[test]
fn default_deny_drops_with_reason_zero() {
    let mut f = filter(json!({
        "default": "deny",
        "allow": [{ "ethertype": "arp" }, { "ethertype": "ipv4", "ip_proto": "udp", "dst_port": [67, 68] }],
    }));
    let dhcp = ip_frame("0.0.0.0", "255.255.255.255", 17, Some((68, 67)));
    let dns = ip_frame("192.0.2.1", "192.0.2.53", 17, Some((5353, 53)));
    assert_eq!(
        verdicts(&mut f, &[arp(), dhcp, dns]),
        [Verdict::Pass, Verdict::Pass, Verdict::Drop(0)]
    );
}

#[test]
fn rules_then_deny_then_allow() {
    // Reason codes count across the three lists in that order.
    let f = filter(json!({
        "allow": [{ "ip_proto": 1 }],
        "deny": [{ "ip_proto": 1 }, { "ethertype": "arp" }],
        "rules": [{ "action": "allow", "src_ip": "192.0.2.1" }],
    }));
    assert_eq!(f.rules().len(), 4);
    assert_eq!(
        f.decide(&icmp("192.0.2.1", "192.0.2.2")).verdict,
        Verdict::Pass
    );
    assert_eq!(
        f.decide(&icmp("192.0.2.3", "192.0.2.2")).verdict,
        Verdict::Drop(2)
    );
    assert_eq!(f.decide(&arp()).verdict, Verdict::Drop(3));
}

#[test]
fn rules_can_be_limited_to_vnis_and_a_direction() {
    let f = filter(json!({
        "deny": [
            { "vnis": [5002, 5003], "ethertype": "arp" },
            { "direction": "from-underlay", "ip_proto": "icmp" },
        ],
    }));
    assert_eq!(f.decide(&arp()).verdict, Verdict::Pass);
    let arp_5002 = FrameMeta { vni: 5002, ..arp() };
    assert_eq!(f.decide(&arp_5002).verdict, Verdict::Drop(1));
    let out = icmp("192.0.2.1", "192.0.2.2");
    assert_eq!(f.decide(&out).verdict, Verdict::Pass);
    let from_remote = FrameMeta {
        direction: Direction::FromUnderlay,
        source: Location::Remote(ip("198.18.0.2")),
        ..out
    };
    assert_eq!(f.decide(&from_remote).verdict, Verdict::Drop(2));
}

#[test]
fn macs_and_ethertypes() {
    let f = filter(json!({
        "deny": [
            { "src_mac": "02:00:00:00:00:02" },
            { "dst_mac": "FF:FF:FF:FF:FF:FF", "ethertype": 0x8035 },
        ],
    }));
    let from_vm2 = FrameMeta::ethernet(5001, VM2, VM1, 0x0800);
    assert_eq!(f.decide(&from_vm2).verdict, Verdict::Drop(1));
    let rarp = FrameMeta::ethernet(5001, VM1, MacAddr::BROADCAST, 0x8035);
    assert_eq!(f.decide(&rarp).verdict, Verdict::Drop(2));
    assert_eq!(f.decide(&arp()).verdict, Verdict::Pass);
}

#[test]
fn ipv6_prefixes_and_port_ranges() {
    let f = filter(json!({
        "deny": [{ "src_ip": "2001:db8:bad::/48", "dst_ip": "2001:db8::/32", "ip_proto": "udp",
                   "src_port": "1-1023", "dst_port": [5000, 6000] }],
    }));
    let hit = ip_frame("2001:db8:bad::7", "2001:db8:1::1", 17, Some((53, 5500)));
    assert_eq!(f.decide(&hit).verdict, Verdict::Drop(1));
    for miss in [
        ip_frame("2001:db8:bad::7", "2001:db8:1::1", 17, Some((1024, 5500))),
        ip_frame("2001:db8:bad::7", "2001:db8:1::1", 17, Some((53, 6001))),
        ip_frame("2001:db8:bad::7", "2001:db8:1::1", 6, Some((53, 5500))),
        ip_frame("2001:db8:900d::7", "2001:db8:1::1", 17, Some((53, 5500))),
        ip_frame("2001:db8:bad::7", "2001:db9::1", 17, Some((53, 5500))),
        // Same ports over IPv4: the IPv6 prefixes cannot match it.
        ip_frame("192.0.2.1", "192.0.2.2", 17, Some((53, 5500))),
    ] {
        assert_eq!(f.decide(&miss).verdict, Verdict::Pass, "{miss:?}");
    }
}

#[test]
fn conditions_on_absent_fields_do_not_match() {
    // A port rule never matches ICMP or ARP, a prefix rule never matches ARP.
    let f = filter(json!({ "deny": [{ "dst_port": [0, 65535] }, { "src_ip": "0.0.0.0/0" }] }));
    assert_eq!(f.decide(&arp()).verdict, Verdict::Pass);
    assert_eq!(
        f.decide(&icmp("192.0.2.1", "192.0.2.2")).verdict,
        Verdict::Drop(2)
    );
    assert_eq!(
        f.decide(&tcp("192.0.2.1", "192.0.2.2", 1, 2)).verdict,
        Verdict::Drop(1)
    );
}

#[test]
fn config_errors_are_clear() {
    let cases = [
        (
            json!({ "deny": [{ "ip_prot": 1 }] }),
            "config.deny[0].ip_prot: unknown field `ip_prot`",
        ),
        (
            json!({ "rules": [{ "ip_proto": 1 }] }),
            "config.rules[0]: missing `action`",
        ),
        (
            json!({ "rules": [{ "action": "drop" }] }),
            "config.rules[0].action: unknown variant `drop`",
        ),
        (
            json!({ "deny": [{ "action": "allow" }] }),
            "config.deny[0]: a rule in `deny` cannot have another action",
        ),
        (
            json!({ "deny": [{ "src_ip": "192.0.2.1/24" }] }),
            "config.deny[0].src_ip: `192.0.2.1/24` has host bits set",
        ),
        (
            json!({ "allow": [{ "dst_ip": "nope" }] }),
            "config.allow[0].dst_ip: `nope` is not an IP address",
        ),
        (
            json!({ "deny": [{ "src_ip": "192.0.2.0/24", "dst_ip": "2001:db8::/32" }] }),
            "config.deny[0]: src_ip and dst_ip are of different IP versions",
        ),
        (
            json!({ "deny": [{ "dst_port": 65536 }] }),
            "config.deny[0].dst_port: expected a port",
        ),
        (
            json!({ "deny": [{ "src_port": [80, 79] }] }),
            "config.deny[0].src_port: the range 80-79 is empty",
        ),
        (
            json!({ "deny": [{ "ip_proto": "ospf" }] }),
            "config.deny[0].ip_proto: expected an IP protocol",
        ),
        (
            json!({ "deny": [{ "ethertype": "ip" }] }),
            "config.deny[0].ethertype: expected an ethertype",
        ),
        (
            json!({ "deny": [{ "vnis": [16777216] }] }),
            "config.deny[0].vnis: 16777216 is not a VNI",
        ),
        (
            json!({ "deny": [{ "src_mac": "02:00:00:00:00" }] }),
            "config.deny[0].src_mac: `02:00:00:00:00` is not a MAC address",
        ),
        (
            json!({ "default": "maybe" }),
            "config.default: unknown variant `maybe`",
        ),
        (
            json!({ "cache_secs": -1 }),
            "config.cache_secs: invalid value",
        ),
        (
            json!({ "deny": { "ip_proto": 1 } }),
            "config.deny: invalid type: map, expected a sequence",
        ),
    ];
    for (config, want) in cases {
        let err = init_err(config.clone());
        assert!(
            err.starts_with(want),
            "{config}:\n  got  {err}\n  want {want}..."
        );
    }
}

#[test]
fn too_many_rules_are_refused() {
    let rules = vec![json!({ "ip_proto": 1 }); usize::from(u16::MAX) + 1];
    let err = init_err(json!({ "deny": rules }));
    assert!(err.contains("at most 65535"), "{err}");
}
