//! The pipeline's types in the interface's terms (the WIT `types` interface): addresses as
//! integers, MACs in the low 48 bits of a `u64`, lengths and counts saturated to 32 bits.

use std::net::{IpAddr, Ipv6Addr};

use super::bindings::wasm_vtep::plugin::types as wit;
use crate::fdb::{AgeEvent, LearnDecision, LearnEvent, Location};
use crate::vtep::{Direction, FilterFrame};
use crate::wire::{Arp, Details, Icmp};

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn ip(addr: IpAddr) -> wit::IpAddr {
    match addr {
        IpAddr::V4(a) => wit::IpAddr::V4(u32::from(a)),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            // The halves of a u128: truncation is the point.
            #[allow(clippy::cast_possible_truncation)]
            let halves = ((bits >> 64) as u64, bits as u64);
            wit::IpAddr::V6(halves)
        }
    }
}

pub(crate) fn location(at: Location) -> wit::Location {
    match at {
        Location::Port(p) => wit::Location::Port(p.0),
        Location::Remote(a) => wit::Location::Remote(ip(a)),
    }
}

pub(crate) fn direction(d: Direction) -> wit::Direction {
    match d {
        Direction::FromPort => wit::Direction::FromPort,
        Direction::FromUnderlay => wit::Direction::FromUnderlay,
    }
}

pub(crate) fn frame_meta(f: &FilterFrame<'_>, d: &Details) -> wit::FrameMeta {
    let m = f.meta;
    wit::FrameMeta {
        vni: f.vni.get(),
        direction: direction(f.direction),
        source: location(f.source),
        src_mac: m.src.to_u64(),
        dst_mac: m.dst.to_u64(),
        vlan: m.vlan,
        ethertype: m.ethertype,
        src_ip: m.ip_src().map(ip),
        dst_ip: m.ip_dst().map(ip),
        ip_proto: m.ip_proto(),
        src_port: m.src_port(),
        dst_port: m.dst_port(),
        len: saturate(m.len),
        dscp: d.dscp,
        tcp_flags: d.tcp_flags.map(tcp_flags),
        icmp: d.icmp.map(icmp),
        arp: d.arp.map(arp),
    }
}

/// The flags of a TCP header's flags byte: WIT's flags, in the header's bit order.
fn tcp_flags(byte: u8) -> wit::TcpFlags {
    use wit::TcpFlags as F;
    [
        F::FIN,
        F::SYN,
        F::RST,
        F::PSH,
        F::ACK,
        F::URG,
        F::ECE,
        F::CWR,
    ]
    .into_iter()
    .enumerate()
    .filter(|&(bit, _)| byte >> bit & 1 == 1)
    .fold(F::empty(), |all, (_, flag)| all | flag)
}

fn icmp(i: Icmp) -> wit::IcmpMeta {
    wit::IcmpMeta {
        type_: i.kind,
        code: i.code,
        nd_target: i.nd_target.map(|a: Ipv6Addr| ip(IpAddr::V6(a))),
    }
}

fn arp(a: Arp) -> wit::ArpMeta {
    wit::ArpMeta {
        opcode: a.opcode,
        sender_mac: a.sender_mac.to_u64(),
        sender_ip: a.sender_ip.to_bits(),
        target_mac: a.target_mac.to_u64(),
        target_ip: a.target_ip.to_bits(),
    }
}

pub(crate) fn learn_event(e: &LearnEvent) -> wit::LearnEvent {
    wit::LearnEvent {
        vni: e.vni.get(),
        mac: e.mac.to_u64(),
        new_location: location(e.new),
        current: e.current.map(location),
        current_sticky: e.current_sticky,
        vni_entries: saturate(e.vni_entries),
    }
}

pub(crate) fn age_event(e: &AgeEvent) -> wit::AgeEvent {
    wit::AgeEvent {
        vni: e.vni.get(),
        mac: e.mac.to_u64(),
        idle_ms: e.idle_ms,
        hits: e.hits,
        location: location(e.location),
    }
}

pub(crate) fn learn_decision(d: wit::LearnDecision) -> LearnDecision {
    match d {
        wit::LearnDecision::Accept => LearnDecision::Accept,
        wit::LearnDecision::Reject => LearnDecision::Reject,
        wit::LearnDecision::AcceptSticky => LearnDecision::AcceptSticky,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_bit_for_bit() {
        // As the canonical ABI lowers them: flag n is bit n.
        for byte in [0u8, 0x02, 0x12, 0x11, 0xff] {
            assert_eq!(tcp_flags(byte).as_array(), [u32::from(byte)]);
        }
    }

    #[test]
    fn addresses_as_integers() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(matches!(ip(v4), wit::IpAddr::V4(0xc612_0001)));
        let v6: IpAddr = "2001:db8::1:2".parse().unwrap();
        match ip(v6) {
            wit::IpAddr::V6((hi, lo)) => {
                assert_eq!(hi, 0x2001_0db8_0000_0000);
                assert_eq!(lo, 0x0000_0000_0001_0002);
            }
            wit::IpAddr::V4(_) => panic!("v6 became v4"),
        }
    }
}
