//! The aging policy, event by event.

use serde_json::json;
use wasm_vtep_plugin_sdk::{
    Age, AgeDecision, AgeEvent, Hooks, Location, MacAddr, Plugin, Registered, testing,
};

use super::*;

const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const GW: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

fn aging(config: serde_json::Value) -> AdaptiveAging {
    AdaptiveAging::init(&config).unwrap()
}

fn event(vni: u32, mac: MacAddr, idle_secs: u64, hits: u32) -> AgeEvent {
    AgeEvent {
        vni,
        mac,
        idle_ms: idle_secs * 1000,
        hits,
        location: Location::Port(0),
    }
}

#[test]
fn registers_the_age_hook_only() {
    assert_eq!(AdaptiveAging::hooks(), Hooks::AGE);
}

#[test]
fn defaults_keep_busy_entries_and_expire_the_rest() {
    let mut a = testing::init::<AdaptiveAging>("").unwrap();
    // Idle for the host's 300 s after 5000 frames: steady (16.7 hits per idle second).
    assert_eq!(a.age(&event(1, MAC, 300, 5000)), AgeDecision::Keep(300));
    // 200 frames in the same time: 0.67 per idle second, below 1.
    assert_eq!(a.age(&event(1, MAC, 300, 200)), AgeDecision::Expire);
    assert_eq!(a.age(&event(1, MAC, 300, 1)), AgeDecision::Expire);
    assert_eq!(a.age(&event(1, MAC, 300, 0)), AgeDecision::Expire);
    assert_eq!(testing::counter("kept_steady"), 1);
    assert_eq!(testing::counter("expired"), 1);
    assert_eq!(testing::counter("expired_one_hit"), 2);
}

#[test]
fn a_busy_mac_that_fell_silent_goes_in_the_end() {
    let a = aging(json!({ "steady_keep_secs": 600, "max_idle_secs": 2000 }));
    let mut idle = 300;
    let mut asked = 0;
    loop {
        asked += 1;
        match a.decide(&event(1, MAC, idle, 1500)).0 {
            AgeDecision::Keep(secs) => idle += u64::from(secs),
            AgeDecision::Expire => break,
        }
    }
    // 1500 hits: 5 per idle second at 300 s, 1.67 at 900 s, 1 at 1500 s (still steady, kept
    // only the 500 s left before the 2000 s cap), then expired at 2000 s.
    assert_eq!((idle, asked), (2000, 4));
}

#[test]
fn per_vni_aging_extends_the_hosts() {
    let mut a = aging(json!({ "aging_secs": { "default": 300, "5001": 900 } }));
    // VNI 5001: asked at the host's 300 s, kept for the 600 s left of its 900.
    assert_eq!(a.age(&event(5001, MAC, 300, 10)), AgeDecision::Keep(600));
    let e = AgeEvent {
        idle_ms: 300_001,
        ..event(5001, MAC, 0, 10)
    };
    assert_eq!(
        a.age(&e),
        AgeDecision::Keep(600),
        "rounded up, never asked early"
    );
    assert_eq!(a.age(&event(5001, MAC, 900, 10)), AgeDecision::Expire);
    // Other VNIs: 300 s, which the host's deadline already is.
    assert_eq!(a.age(&event(5002, MAC, 300, 10)), AgeDecision::Expire);
    // One-hit entries go at once, even before the VNI's aging time.
    assert_eq!(a.age(&event(5001, MAC, 300, 1)), AgeDecision::Expire);
    assert_eq!(testing::counter("kept_aging"), 2);
}

#[test]
fn pinned_macs_never_expire() {
    let mut a = aging(json!({ "pinned": { "5001": ["02:00:00:00:00:fe"] } }));
    for (idle, hits) in [(300, 0), (300, 1), (86_400 * 365, 1)] {
        assert_eq!(
            a.age(&event(5001, GW, idle, hits)),
            AgeDecision::Keep(PIN_RECHECK_SECS)
        );
    }
    assert_eq!(a.age(&event(5002, GW, 300, 1)), AgeDecision::Expire);
    assert_eq!(a.age(&event(5001, MAC, 300, 1)), AgeDecision::Expire);
    assert_eq!(testing::counter("kept_pinned"), 3);
}

#[test]
fn the_steady_threshold_is_configurable() {
    let a = aging(json!({ "steady_hits_per_idle_sec": 0.1, "steady_keep_secs": 60 }));
    assert_eq!(a.decide(&event(1, MAC, 300, 30)).0, AgeDecision::Keep(60));
    assert_eq!(a.decide(&event(1, MAC, 300, 29)).0, AgeDecision::Expire);
    // Never past max_idle_secs (3600 by default): the last keep is cut short.
    assert_eq!(
        a.decide(&event(1, MAC, 3590, 1000)).0,
        AgeDecision::Keep(10)
    );
    assert_eq!(a.decide(&event(1, MAC, 3600, 1000)).0, AgeDecision::Expire);
}

#[test]
fn config_errors_are_clear() {
    let cases = [
        (
            json!({ "aging": 300 }),
            "config.aging: unknown field `aging`",
        ),
        (
            json!({ "aging_secs": { "5001": 0 } }),
            "config.aging_secs: 0 s; an aging time is at least 1 s",
        ),
        (
            json!({ "aging_secs": "300" }),
            "config.aging_secs: invalid type: string",
        ),
        (
            json!({ "steady_hits_per_idle_sec": 0 }),
            "config.steady_hits_per_idle_sec: must be a positive number",
        ),
        (
            json!({ "steady_hits_per_idle_sec": -2.5 }),
            "config.steady_hits_per_idle_sec: must be a positive number",
        ),
        (
            json!({ "steady_keep_secs": 0 }),
            "config.steady_keep_secs: must be at least 1",
        ),
        (
            json!({ "pinned": ["ff:ff:ff:ff:ff:ff"] }),
            "config.pinned: ff:ff:ff:ff:ff:ff is a multicast address",
        ),
        (
            json!({ "pinned": "02:00:00:00:00:01" }),
            "config.pinned: invalid type: string",
        ),
    ];
    for (config, want) in cases {
        let err = AdaptiveAging::init(&config).unwrap_err();
        assert!(
            err.starts_with(want),
            "{config}:\n  got  {err}\n  want {want}..."
        );
    }
}
