//! Plugins built for interface 0.1.0, in the host's (0.2.0) terms: what a call passes is
//! narrowed to what 0.1.0 had, and what the plugin answers is read into the current types.
//! The two versions differ only in `frame-meta` (0.2.0 added fields), so every other type
//! maps field for field.

use super::bindings::{v0_1, v0_2};

use v0_1::wasm_vtep::plugin::types as old;
use v0_2::wasm_vtep::plugin::types as new;

fn ip(a: new::IpAddr) -> old::IpAddr {
    match a {
        new::IpAddr::V4(a) => old::IpAddr::V4(a),
        new::IpAddr::V6(a) => old::IpAddr::V6(a),
    }
}

fn location(l: new::Location) -> old::Location {
    match l {
        new::Location::Port(p) => old::Location::Port(p),
        new::Location::Remote(a) => old::Location::Remote(ip(a)),
    }
}

/// A frame's metadata as 0.1.0 shows it: without DSCP, TCP flags, ICMP and ARP.
pub(crate) fn frame_meta(m: &new::FrameMeta) -> old::FrameMeta {
    old::FrameMeta {
        vni: m.vni,
        direction: match m.direction {
            new::Direction::FromPort => old::Direction::FromPort,
            new::Direction::FromUnderlay => old::Direction::FromUnderlay,
        },
        source: location(m.source),
        src_mac: m.src_mac,
        dst_mac: m.dst_mac,
        vlan: m.vlan,
        ethertype: m.ethertype,
        src_ip: m.src_ip.map(ip),
        dst_ip: m.dst_ip.map(ip),
        ip_proto: m.ip_proto,
        src_port: m.src_port,
        dst_port: m.dst_port,
        len: m.len,
    }
}

pub(crate) fn learn_event(e: new::LearnEvent) -> old::LearnEvent {
    old::LearnEvent {
        vni: e.vni,
        mac: e.mac,
        new_location: location(e.new_location),
        current: e.current.map(location),
        current_sticky: e.current_sticky,
        vni_entries: e.vni_entries,
    }
}

pub(crate) fn age_event(e: new::AgeEvent) -> old::AgeEvent {
    old::AgeEvent {
        vni: e.vni,
        mac: e.mac,
        idle_ms: e.idle_ms,
        hits: e.hits,
        location: location(e.location),
    }
}

/// The hooks a 0.1.0 plugin's `init` named (the same three flags).
pub(crate) fn hooks(h: old::Hooks) -> new::Hooks {
    [
        (old::Hooks::FILTER, new::Hooks::FILTER),
        (old::Hooks::LEARN, new::Hooks::LEARN),
        (old::Hooks::AGE, new::Hooks::AGE),
    ]
    .into_iter()
    .filter(|&(o, _)| h.contains(o))
    .fold(new::Hooks::empty(), |all, (_, n)| all | n)
}

pub(crate) fn learn_decision(d: old::LearnDecision) -> new::LearnDecision {
    match d {
        old::LearnDecision::Accept => new::LearnDecision::Accept,
        old::LearnDecision::Reject => new::LearnDecision::Reject,
        old::LearnDecision::AcceptSticky => new::LearnDecision::AcceptSticky,
    }
}

pub(crate) fn age_decision(d: old::AgeDecision) -> new::AgeDecision {
    match d {
        old::AgeDecision::Expire => new::AgeDecision::Expire,
        old::AgeDecision::Keep(secs) => new::AgeDecision::Keep(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_keep_their_bits() {
        let all = old::Hooks::FILTER | old::Hooks::LEARN | old::Hooks::AGE;
        assert_eq!(
            hooks(all),
            new::Hooks::FILTER | new::Hooks::LEARN | new::Hooks::AGE
        );
        assert_eq!(hooks(old::Hooks::LEARN), new::Hooks::LEARN);
        assert_eq!(hooks(old::Hooks::empty()), new::Hooks::empty());
    }
}
