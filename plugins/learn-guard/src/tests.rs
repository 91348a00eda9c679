//! The learning policy, event by event, with the clock under the test's control.

use std::net::IpAddr;

use serde_json::json;
use wasm_vtep_plugin_sdk::{
    Hooks, Learn, LearnDecision, LearnEvent, Level, Location, MacAddr, Plugin, Registered, testing,
};

use super::*;

const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const GW: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

fn guard(config: serde_json::Value) -> LearnGuard {
    LearnGuard::init(&config).unwrap()
}

fn remote(s: &str) -> Location {
    Location::Remote(s.parse::<IpAddr>().unwrap())
}

fn learn(vni: u32, mac: MacAddr, at: Location, entries: u32) -> LearnEvent {
    LearnEvent {
        vni,
        mac,
        new_location: at,
        current: None,
        current_sticky: false,
        vni_entries: entries,
    }
}

fn moved(vni: u32, mac: MacAddr, from: Location, to: Location) -> LearnEvent {
    LearnEvent {
        current: Some(from),
        ..learn(vni, mac, to, 10)
    }
}

#[test]
fn registers_the_learn_hook_only() {
    assert_eq!(LearnGuard::hooks(), Hooks::LEARN);
}

#[test]
fn no_config_accepts_everything() {
    let mut g = testing::init::<LearnGuard>("{}").unwrap();
    assert_eq!(
        g.learn(&learn(1, MAC, remote("198.18.0.9"), 1 << 20)),
        LearnDecision::Accept
    );
    for _ in 0..100 {
        let e = moved(1, MAC, Location::Port(0), remote("198.18.0.9"));
        assert_eq!(g.learn(&e), LearnDecision::Accept);
    }
    assert_eq!(g.tracked_macs(), 0);
}

#[test]
fn max_macs_limits_new_entries_per_vni_but_not_moves() {
    let mut g = guard(json!({ "max_macs": { "default": 3, "5002": 1 } }));
    assert_eq!(
        g.learn(&learn(5001, MAC, Location::Port(0), 2)),
        LearnDecision::Accept
    );
    assert_eq!(
        g.learn(&learn(5001, MAC, Location::Port(0), 3)),
        LearnDecision::Reject
    );
    assert_eq!(
        g.learn(&learn(5002, MAC, Location::Port(0), 0)),
        LearnDecision::Accept
    );
    assert_eq!(
        g.learn(&learn(5002, MAC, Location::Port(0), 1)),
        LearnDecision::Reject
    );
    // A move does not add an entry.
    let e = LearnEvent {
        vni_entries: 100,
        ..moved(5002, MAC, Location::Port(0), Location::Port(1))
    };
    assert_eq!(g.learn(&e), LearnDecision::Accept);
    assert_eq!(testing::counter("rejected_max_macs"), 2);

    let mut only = guard(json!({ "max_macs": { "5002": 1 } }));
    assert_eq!(
        only.learn(&learn(5001, MAC, Location::Port(0), 1000)),
        LearnDecision::Accept
    );
    assert_eq!(
        only.learn(&learn(5002, MAC, Location::Port(0), 1)),
        LearnDecision::Reject
    );
}

#[test]
fn only_allowed_remotes_are_learned_from() {
    let mut g = guard(json!({
        "allowed_remotes": { "5001": ["198.18.0.2", "2001:db8::2"] },
    }));
    for (at, want) in [
        (remote("198.18.0.2"), LearnDecision::Accept),
        (remote("2001:db8::2"), LearnDecision::Accept),
        (remote("198.18.0.66"), LearnDecision::Reject),
        // Local ports are not remotes: never restricted.
        (Location::Port(3), LearnDecision::Accept),
    ] {
        assert_eq!(g.learn(&learn(5001, MAC, at, 0)), want, "{at:?}");
    }
    // Moving behind a stranger is rejected too; other VNIs are not restricted.
    let e = moved(5001, MAC, remote("198.18.0.2"), remote("198.18.0.66"));
    assert_eq!(g.learn(&e), LearnDecision::Reject);
    assert_eq!(
        g.learn(&learn(5002, MAC, remote("198.18.0.66"), 0)),
        LearnDecision::Accept
    );
    assert_eq!(testing::counter("rejected_remote"), 2);
}

#[test]
fn sticky_macs_never_move() {
    let mut g = guard(json!({ "sticky": ["02:00:00:00:00:fe"] }));
    let first = learn(5001, GW, remote("198.18.0.2"), 0);
    assert_eq!(g.learn(&first), LearnDecision::AcceptSticky);
    assert_eq!(
        g.learn(&learn(5001, MAC, remote("198.18.0.2"), 0)),
        LearnDecision::Accept
    );
    // Someone else claims the gateway's MAC.
    let spoof = LearnEvent {
        current_sticky: true,
        ..moved(5001, GW, remote("198.18.0.2"), Location::Port(1))
    };
    assert_eq!(g.learn(&spoof), LearnDecision::Reject);
    // Learned before the plugin came, so not marked: still listed, still not moved.
    let unmarked = moved(5001, GW, remote("198.18.0.2"), Location::Port(1));
    assert_eq!(g.learn(&unmarked), LearnDecision::Reject);
    // Marked sticky by another plugin: respected.
    let other = LearnEvent {
        current_sticky: true,
        ..moved(5001, MAC, remote("198.18.0.2"), Location::Port(1))
    };
    assert_eq!(g.learn(&other), LearnDecision::Reject);
    assert_eq!(testing::counter("accepted_sticky"), 1);
    assert_eq!(testing::counter("rejected_sticky"), 3);
}

#[test]
fn sticky_lists_can_be_per_vni() {
    let mut g = guard(json!({ "sticky": { "5001": ["02:00:00:00:00:fe"] } }));
    assert_eq!(
        g.learn(&learn(5001, GW, Location::Port(0), 0)),
        LearnDecision::AcceptSticky
    );
    assert_eq!(
        g.learn(&learn(5002, GW, Location::Port(0), 0)),
        LearnDecision::Accept
    );
}

#[test]
fn flapping_macs_are_dampened_until_the_window_passes() {
    let mut g = guard(json!({ "max_moves": 3, "window_secs": 10 }));
    let (a, b) = (remote("198.18.0.2"), remote("198.18.0.3"));
    let hop = |i: u32| {
        if i.is_multiple_of(2) {
            moved(5001, MAC, a, b)
        } else {
            moved(5001, MAC, b, a)
        }
    };
    testing::set_now_ms(1_000);
    for i in 0..3 {
        assert_eq!(g.learn(&hop(i)), LearnDecision::Accept, "move {i}");
        testing::advance_ms(1_000);
    }
    // Three moves at 1, 2 and 3 s: the fourth, at 4 s, and any before 11 s are rejected.
    assert_eq!(g.learn(&hop(3)), LearnDecision::Reject);
    testing::set_now_ms(10_999);
    assert_eq!(g.learn(&hop(3)), LearnDecision::Reject);
    // Logged once per episode, however many moves it rejects.
    let logs = testing::take_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, Level::Warn);
    assert!(
        logs[0]
            .1
            .contains("02:00:00:00:00:01 reached its limit of 3 moves in 10 s"),
        "{}",
        logs[0].1
    );
    // At 11 s the move of 1 s has left the window: one more move is allowed.
    testing::set_now_ms(11_000);
    assert_eq!(g.learn(&hop(3)), LearnDecision::Accept);
    assert_eq!(g.learn(&hop(4)), LearnDecision::Reject);
    assert_eq!(testing::counter("rejected_flapping"), 3);
    // Other MACs and VNIs have their own budget.
    assert_eq!(g.learn(&moved(5001, GW, a, b)), LearnDecision::Accept);
    assert_eq!(g.learn(&moved(5002, MAC, a, b)), LearnDecision::Accept);
}

#[test]
fn quiet_macs_are_forgotten() {
    let mut g = guard(json!({ "max_moves": 1 }));
    testing::set_now_ms(0);
    for i in 0..100u8 {
        let mac = MacAddr([2, 0, 0, 0, 1, i]);
        assert_eq!(
            g.learn(&moved(1, mac, Location::Port(0), Location::Port(1))),
            LearnDecision::Accept
        );
    }
    assert_eq!(g.tracked_macs(), 100);
    // A window (60 s by default) later, the next move sweeps them all but its own.
    testing::set_now_ms(60_000);
    assert_eq!(
        g.learn(&moved(1, MAC, Location::Port(0), Location::Port(1))),
        LearnDecision::Accept
    );
    assert_eq!(g.tracked_macs(), 1);
}

#[test]
fn checks_run_in_order() {
    // A stranger's claim on a sticky MAC counts as a remote rejection, not a sticky one.
    let mut g = guard(json!({
        "allowed_remotes": ["198.18.0.2"],
        "sticky": ["02:00:00:00:00:fe"],
        "max_moves": 1,
    }));
    let e = moved(1, GW, remote("198.18.0.2"), remote("198.18.0.9"));
    assert_eq!(g.learn(&e), LearnDecision::Reject);
    assert_eq!(testing::counter("rejected_remote"), 1);
    assert_eq!(testing::counter("rejected_sticky"), 0);
    // A rejected sticky move does not use up the dampening budget.
    let e = moved(1, GW, remote("198.18.0.2"), Location::Port(0));
    assert_eq!(g.learn(&e), LearnDecision::Reject);
    assert_eq!(g.tracked_macs(), 0);
}

#[test]
fn config_errors_are_clear() {
    let cases = [
        (
            json!({ "max_mac": 3 }),
            "config.max_mac: unknown field `max_mac`",
        ),
        (json!({ "max_macs": -1 }), "config.max_macs: invalid value"),
        (
            json!({ "max_macs": { "vni1": 3 } }),
            "config.max_macs: `vni1` is neither `default` nor a VNI",
        ),
        (
            json!({ "allowed_remotes": ["198.18.0.300"] }),
            "config.allowed_remotes: invalid IP address syntax",
        ),
        (
            json!({ "allowed_remotes": { "5001": "198.18.0.2" } }),
            "config.allowed_remotes: 5001: invalid type: string",
        ),
        (
            json!({ "sticky": ["02:00:00:00:00"] }),
            "config.sticky: `02:00:00:00:00` is not a MAC address",
        ),
        (
            json!({ "sticky": ["01:00:5e:00:00:01"] }),
            "config.sticky: 01:00:5e:00:00:01 is a multicast address",
        ),
        (
            json!({ "window_secs": 5 }),
            "config.window_secs: needs max_moves",
        ),
        (
            json!({ "max_moves": 0 }),
            "config.max_moves: must be at least 1",
        ),
        (
            json!({ "max_moves": 2, "window_secs": 0 }),
            "config.window_secs: must be at least 1",
        ),
    ];
    for (config, want) in cases {
        let err = LearnGuard::init(&config).unwrap_err();
        assert!(
            err.starts_with(want),
            "{config}:\n  got  {err}\n  want {want}..."
        );
    }
}
