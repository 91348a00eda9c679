//! The pipeline's rules one at a time: drops and their counters, local switching, split
//! horizon, static entries, limits, MTU, outer headers, and the offloads on the encap path.

use std::net::IpAddr;
use std::time::Instant;

use super::frames::{arp_request, mac, udp};
use super::sim::datagrams;
use crate::fdb::{Location, PortId};
use crate::vtep::{Dest, DropReason, Outbox, StaticEntry, VniSettings, Vtep, VtepSettings};
use crate::wire::{VirtioNetHdr, Vni};
use wasm_vtep_testkit::vxlan::encapsulate as vxlan;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Host 198.18.0.1: VNI 5001 on ports 0 and 1 (remote 198.18.0.2), VNI 5002 on port 2.
fn vtep_with(edit: impl FnOnce(&mut VtepSettings)) -> Vtep {
    let mut s = VtepSettings::new(ip("198.18.0.1"));
    let mut v1 = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0), PortId(1)]);
    v1.remotes = vec![ip("198.18.0.2")];
    let v2 = VniSettings::new(Vni::new(5002).unwrap(), vec![PortId(2)]);
    s.vnis = vec![v1, v2];
    edit(&mut s);
    Vtep::new(s, Instant::now()).unwrap()
}

fn vtep() -> Vtep {
    vtep_with(|_| {})
}

/// Where a frame went, without the flow's source port.
#[derive(Debug, PartialEq, Eq)]
enum To {
    Port(PortId),
    Underlay(IpAddr),
}

fn dests(out: &Outbox) -> Vec<To> {
    out.frames()
        .iter()
        .map(|f| match f.dest {
            Dest::Port(p) => To::Port(p),
            Dest::Underlay(d) | Dest::UnderlayWhole(d) => To::Underlay(d.dst),
        })
        .collect()
}

#[test]
fn local_switching_never_touches_the_underlay() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    // VM on port 1 announces itself (flooded: port 0 and the remote).
    v.handle_port_frame(
        now,
        PortId(1),
        &VirtioNetHdr::NONE,
        &arp_request(2, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        dests(&out),
        [To::Port(PortId(0)), To::Underlay(ip("198.18.0.2"))]
    );
    out.clear();
    // Port 0 to the now-known MAC on port 1: switched locally only.
    v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 2, 1, 2, 100),
        &mut out,
    )
    .unwrap();
    assert_eq!(dests(&out), [To::Port(PortId(1))]);
    assert_eq!(out.frames()[0].bytes, udp(1, 2, 1, 2, 100));
    out.clear();
    // A frame to a MAC behind its own ingress port is not sent back out of it.
    let r = v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(3, 1, 1, 2, 10),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::DestOnIngressPort));
    assert_eq!(v.drops().get(DropReason::DestOnIngressPort), 1);
}

/// A frame to the all-zero MAC, from `src` (the pipeline's test MAC numbering).
fn to_zero_mac(src: u8) -> Vec<u8> {
    let mut f = udp(src, 1, 1, 2, 10);
    f[..6].fill(0);
    f
}

/// The all-zero MAC is no entry of any VNI: a frame to it is flooded within its own VNI, as the
/// kernel's vxlan and bridge do with a destination they do not know, and never found in the
/// table (whose empty slots it once matched, for the first VNI, delivering to another VNI's
/// port).
#[test]
fn the_all_zero_mac_is_unknown_in_every_vni() {
    // The first VNI has no port (flooding to a remote only); the second has port 0.
    let mut v = vtep_with(|s| {
        let mut first = VniSettings::new(Vni::new(100).unwrap(), vec![]);
        first.remotes = vec![ip("198.18.0.3")];
        let second = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0)]);
        s.vnis = vec![first, second];
    });
    let mut out = Outbox::new();
    let now = Instant::now();
    let r = v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(100, &to_zero_mac(5)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::NoDestination), "VNI 100 has no port");
    assert!(out.is_empty(), "nothing leaves by VNI 5001's port");
    // On the VNI with the port, the same frame floods there.
    v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &to_zero_mac(5)),
        &mut out,
    )
    .unwrap();
    assert_eq!(dests(&out), [To::Port(PortId(0))]);
    out.clear();
    // From the port: flooded (to VNI 5001's flood list, here empty: nowhere), never switched.
    let r = v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &to_zero_mac(6),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::NoDestination));
    assert_eq!(
        v.fdb_entries(now)
            .filter(|(e, _)| e.mac.to_u64() == 0)
            .count(),
        0
    );
    // Deleting it finds nothing in either VNI, and changes nothing.
    let before = v.fdb_entries(now).count();
    for vni in [100, 5001] {
        let vni = Vni::new(vni).unwrap();
        assert!(v.remove_entry(vni, crate::wire::MacAddr::ZERO).is_err());
    }
    assert_eq!(v.fdb_entries(now).count(), before);
    // A frame from the all-zero MAC is no source: dropped, not learned (the kernel's bridge).
    let mut from_zero = udp(1, 7, 1, 2, 10);
    from_zero[6..12].fill(0);
    let r = v.handle_port_frame(now, PortId(0), &VirtioNetHdr::NONE, &from_zero, &mut out);
    assert_eq!(r, Err(DropReason::InvalidSourceMac));
}

/// Should the table ever point a VNI's MAC at a port of another VNI, delivery refuses it.
#[test]
fn delivery_never_uses_a_port_of_another_vni() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    // Past `add_static`'s check: (5002, MAC 1) at port 0, which carries 5001.
    v.shared
        .fdb
        .insert_static(Vni::new(5002).unwrap(), mac(1), Location::Port(PortId(0)))
        .unwrap();
    let r = v.handle_port_frame(
        now,
        PortId(2),
        &VirtioNetHdr::NONE,
        &udp(9, 1, 1, 2, 10),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::ForeignPort));
    let r = v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5002, &udp(8, 1, 1, 2, 10)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::ForeignPort));
    assert!(out.is_empty());
    assert_eq!(v.drops().get(DropReason::ForeignPort), 2);
}

#[test]
fn vni_isolation_and_unserved_vnis() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    // A broadcast on VNI 5002 reaches no port of 5001 (and 5002 has no other port or remote).
    let r = v.handle_port_frame(
        now,
        PortId(2),
        &VirtioNetHdr::NONE,
        &arp_request(9, 1),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::NoDestination));
    assert!(out.is_empty());
    // From the underlay: VNI 5001 goes to 5001's ports only; VNI 7 is not served.
    v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &arp_request(5, 1)),
        &mut out,
    )
    .unwrap();
    assert_eq!(dests(&out), [To::Port(PortId(0)), To::Port(PortId(1))]);
    out.clear();
    let r = v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(7, &arp_request(5, 1)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::VniNotServed));
    assert_eq!(v.drops().get(DropReason::VniNotServed), 1);
    let r = v.handle_port_frame(
        now,
        PortId(9),
        &VirtioNetHdr::NONE,
        &arp_request(5, 1),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::PortNotOnVni));
}

#[test]
fn malformed_underlay_packets_are_counted_and_lose_no_state() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    let peer = ip("198.18.0.2");
    v.handle_underlay(now, peer, &vxlan(5001, &arp_request(5, 1)), &mut out)
        .unwrap();
    let mut no_i = vxlan(5001, &arp_request(6, 1));
    no_i[0] = 0;
    let cases: [(&[u8], DropReason); 3] = [
        (&[0x08, 0, 0], DropReason::VxlanTooShort),
        (&no_i, DropReason::VxlanFlagClear),
        (&vxlan(5001, &[0xff; 10]), DropReason::InnerFrameTooShort),
    ];
    let mut bcast_src = udp(1, 1, 1, 1, 1);
    bcast_src[6] = 0x01; // multicast source MAC
    for (bytes, reason) in &cases {
        assert_eq!(v.handle_underlay(now, peer, bytes, &mut out), Err(*reason));
    }
    assert_eq!(
        v.handle_underlay(now, peer, &vxlan(5001, &bcast_src), &mut out),
        Err(DropReason::InvalidSourceMac)
    );
    // Our own flood looped back by the underlay.
    let r = v.handle_underlay(
        now,
        ip("198.18.0.1"),
        &vxlan(5001, &arp_request(7, 1)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::OwnPacket));
    for reason in [
        DropReason::VxlanTooShort,
        DropReason::VxlanFlagClear,
        DropReason::InnerFrameTooShort,
        DropReason::InvalidSourceMac,
        DropReason::OwnPacket,
    ] {
        assert_eq!(v.drops().get(reason), 1, "{reason:?}");
    }
    let macs: Vec<_> = v.fdb_entries(now).map(|(e, _)| e.mac).collect();
    assert_eq!(
        macs,
        [mac(5)],
        "nothing learned from bad packets, nothing lost"
    );
}

#[test]
fn reserved_bits_are_ignored_unless_strict() {
    let mut frame = vxlan(5001, &arp_request(5, 1));
    frame[1] = 0xff;
    frame[7] = 0xff;
    let mut out = Outbox::new();
    let now = Instant::now();
    let mut lax = vtep();
    lax.handle_underlay(now, ip("198.18.0.2"), &frame, &mut out)
        .unwrap();
    let mut strict = vtep_with(|s| s.vnis[0].strict_reserved = true);
    let r = strict.handle_underlay(now, ip("198.18.0.2"), &frame, &mut out);
    assert_eq!(r, Err(DropReason::VxlanReservedBits));
}

#[test]
fn split_horizon_never_sends_underlay_traffic_back() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    // MAC 9 is known behind 198.18.0.3; a packet from .2 addressed to it is not re-sent.
    v.handle_underlay(
        now,
        ip("198.18.0.3"),
        &vxlan(5001, &arp_request(9, 1)),
        &mut out,
    )
    .unwrap();
    out.clear();
    let r = v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &udp(5, 9, 1, 1, 8)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::SplitHorizon));
    assert!(out.is_empty());
    // Unknown unicast and broadcast from the underlay go to local ports only.
    v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &udp(5, 42, 1, 1, 8)),
        &mut out,
    )
    .unwrap();
    assert!(dests(&out).iter().all(|d| matches!(d, To::Port(_))));
}

#[test]
fn static_entries_win_over_learning() {
    let mac2 = mac(2);
    let mut v = vtep_with(|s| {
        s.vnis[0].statics = vec![StaticEntry {
            mac: mac2,
            location: Location::Remote(ip("198.18.0.2")),
        }];
    });
    let mut out = Outbox::new();
    let now = Instant::now();
    // Forwarding uses it.
    v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 2, 1, 1, 8),
        &mut out,
    )
    .unwrap();
    assert_eq!(dests(&out), [To::Underlay(ip("198.18.0.2"))]);
    out.clear();
    // A frame claiming MAC2 from elsewhere is dropped, and the entry stays.
    let r = v.handle_underlay(
        now,
        ip("198.18.0.3"),
        &vxlan(5001, &udp(2, 1, 1, 1, 8)),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::StaticConflict));
    let r = v.handle_port_frame(
        now,
        PortId(1),
        &VirtioNetHdr::NONE,
        &udp(2, 1, 1, 1, 8),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::StaticConflict));
    assert_eq!(v.drops().get(DropReason::StaticConflict), 2);
    let e = v.fdb_entries(now).find(|(e, _)| e.mac == mac2).unwrap().0;
    assert_eq!(
        (e.location, e.is_static),
        (Location::Remote(ip("198.18.0.2")), true)
    );
    // Added and removed at run time.
    let vni = Vni::new(5001).unwrap();
    v.add_static(vni, mac(3), Location::Port(PortId(1)))
        .unwrap();
    assert!(
        v.add_static(vni, mac(4), Location::Port(PortId(2)))
            .is_err(),
        "port of another VNI"
    );
    assert!(
        v.add_static(vni, mac(4), Location::Remote(ip("2001:db8::1")))
            .is_err(),
        "family"
    );
    v.remove_entry(vni, mac(3)).unwrap();
    assert!(v.remove_entry(vni, mac(3)).is_err());
}

#[test]
fn past_the_limit_new_macs_are_flooded_to_not_learned() {
    let mut v = vtep_with(|s| s.vnis[0].max_entries = 1);
    let mut out = Outbox::new();
    let now = Instant::now();
    v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &arp_request(5, 1)),
        &mut out,
    )
    .unwrap();
    v.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &arp_request(6, 1)),
        &mut out,
    )
    .unwrap();
    assert_eq!(v.fdb_entries(now).count(), 1);
    assert_eq!(v.vni_stats().next().unwrap().learn_limit, 1);
    out.clear();
    // Frames to the unlearned MAC still get through, by flooding.
    v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 6, 1, 1, 8),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        dests(&out),
        [To::Port(PortId(1)), To::Underlay(ip("198.18.0.2"))]
    );
}

#[test]
fn learning_off_learns_nothing() {
    let mut v = vtep_with(|s| s.vnis[0].learning = false);
    let mut out = Outbox::new();
    v.handle_underlay(
        Instant::now(),
        ip("198.18.0.2"),
        &vxlan(5001, &arp_request(5, 1)),
        &mut out,
    )
    .unwrap();
    assert_eq!(v.fdb_entries(Instant::now()).count(), 0);
}

#[test]
fn frames_too_big_for_the_underlay_are_dropped_whole() {
    let mut v = vtep_with(|s| s.mtu = 1500);
    let mut out = Outbox::new();
    let now = Instant::now();
    // 14 + 20 + 8 + 1423 = 1465 inner bytes: 1501 outer (36 bytes of IPv4, UDP and VXLAN).
    let r = v.handle_port_frame(
        now,
        PortId(2),
        &VirtioNetHdr::NONE,
        &udp(1, 2, 1, 1, 1423),
        &mut out,
    );
    assert_eq!(
        r,
        Err(DropReason::NoDestination),
        "VNI 5002 has nowhere to flood"
    );
    let r = v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 2, 1, 1, 1423),
        &mut out,
    );
    assert_eq!(r, Err(DropReason::MtuExceeded));
    assert!(
        out.frames().iter().all(|f| matches!(f.dest, Dest::Port(_))),
        "no truncated packet"
    );
    // One byte less fits exactly: an inner IP MTU of 1450, as the kernel's vxlan has.
    out.clear();
    v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 2, 1, 1, 1422),
        &mut out,
    )
    .unwrap();
    let sent = datagrams(&out.frames()[1], ip("198.18.0.1"));
    assert_eq!(
        20 + 8 + sent[0].payload.len(),
        1500,
        "the outer packet fills the MTU"
    );
}

#[test]
fn ipv6_underlay_datagrams() {
    let mut s = VtepSettings::new(ip("2001:db8::1"));
    let mut v = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0)]);
    v.group = Some(ip("ff05::1:100"));
    s.vnis.push(v);
    let mut vtep = Vtep::new(s, Instant::now()).unwrap();
    let mut out = Outbox::new();
    vtep.handle_port_frame(
        Instant::now(),
        PortId(0),
        &VirtioNetHdr::NONE,
        &arp_request(1, 2),
        &mut out,
    )
    .unwrap();
    let wire = &datagrams(&out.frames()[0], ip("2001:db8::1"))[0];
    assert_eq!(wire.payload.len(), 8 + arp_request(1, 2).len());
    assert_eq!(wire.dst, ip("ff05::1:100"));
    assert_eq!(&wire.payload[..8], &[0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0]);
    assert_eq!(&wire.payload[8..], &arp_request(1, 2)[..]);
}

#[test]
fn partial_checksums_are_completed_before_encapsulation() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    // What a VM's kernel hands over with checksum offload: the UDP checksum field holds the
    // pseudo-header sum only.
    let full = udp(1, 2, 1111, 2222, 300);
    let mut partial = full.clone();
    let pseudo = pseudo_header_sum(&full);
    partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
    let vnet = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VirtioNetHdr::NONE
    };
    v.handle_port_frame(now, PortId(0), &vnet, &partial, &mut out)
        .unwrap();
    // The local copy keeps the offload for the receiving kernel; the underlay copy is complete.
    assert_eq!(out.frames()[0].dest, Dest::Port(PortId(1)));
    assert_eq!(out.frames()[0].vnet, vnet);
    assert_eq!(out.frames()[0].bytes, partial);
    let wire = &datagrams(&out.frames()[1], ip("198.18.0.1"))[0];
    assert_eq!(&wire.payload[8..], &full[..]);
}

/// The folded (not complemented) sum of the UDP/IPv4 pseudo-header, as Linux leaves it.
fn pseudo_header_sum(frame: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in frame[26..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    sum += 17;
    sum += u32::from(u16::from_be_bytes([frame[38], frame[39]]));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn partial_checksums_from_the_underlay_are_delivered_with_needs_csum() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let now = Instant::now();
    let remote = ip("198.18.0.2");
    // To VM 1 on port 0, learned first so the frame is not flooded.
    v.handle_port_frame(
        now,
        PortId(0),
        &VirtioNetHdr::NONE,
        &udp(1, 9, 1, 2, 10),
        &mut out,
    )
    .unwrap();
    out.clear();
    // What a kernel VTEP sends over a veth: the inner UDP checksum left partial.
    let full = udp(2, 1, 1111, 2222, 300);
    let mut partial = full.clone();
    partial[40..42].copy_from_slice(&pseudo_header_sum(&full).to_be_bytes());
    v.handle_underlay(now, remote, &vxlan(5001, &partial), &mut out)
        .unwrap();
    let needs_csum = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VirtioNetHdr::NONE
    };
    assert_eq!(dests(&out), [To::Port(PortId(0))]);
    assert_eq!(out.frames()[0].vnet, needs_csum);
    assert_eq!(out.frames()[0].bytes, partial);
    // A complete checksum is delivered as it is.
    out.clear();
    v.handle_underlay(now, remote, &vxlan(5001, &full), &mut out)
        .unwrap();
    assert_eq!(out.frames()[0].vnet, VirtioNetHdr::NONE);
}

/// Frame `frame` from port `port` at once; it must not be dropped.
fn send(v: &mut Vtep, port: u16, frame: &[u8], out: &mut Outbox) {
    v.handle_port_frame(
        Instant::now(),
        PortId(port),
        &VirtioNetHdr::NONE,
        frame,
        out,
    )
    .unwrap();
}

/// A control plane's VTEPs (EVPN type 3 routes) take a VNI's BUM frames beside the configured
/// remote, on every worker at once, each once; withdrawn, they take nothing more.
#[test]
fn bum_frames_go_to_the_vteps_a_control_plane_announces() {
    let v = vtep();
    let mut other = v.worker();
    let mut out = Outbox::new();
    let vni = Vni::new(5001).unwrap();
    let flood = [ip("198.18.0.3"), ip("198.18.0.2"), ip("198.18.0.4")];
    v.set_control_remotes(vni, &flood, &[]).unwrap();
    send(&mut other, 0, &arp_request(1, 9), &mut out);
    assert_eq!(
        dests(&out),
        [
            To::Port(PortId(1)),
            To::Underlay(ip("198.18.0.2")),
            To::Underlay(ip("198.18.0.3")),
            To::Underlay(ip("198.18.0.4")),
        ]
    );
    out.clear();
    v.set_control_remotes(vni, &[], &[]).unwrap();
    send(&mut other, 0, &arp_request(1, 9), &mut out);
    assert_eq!(
        dests(&out),
        [To::Port(PortId(1)), To::Underlay(ip("198.18.0.2"))]
    );
}

/// What a control plane may not announce: an address of the other family, a group, ours; an
/// unserved VNI. Nothing changes.
#[test]
fn a_control_plane_cannot_announce_what_is_no_remote_vtep() {
    let mut v = vtep();
    let vni = Vni::new(5001).unwrap();
    for bad in ["2001:db8::2", "239.1.1.1", "0.0.0.0", "198.18.0.1"] {
        assert!(
            v.set_control_remotes(vni, &[ip(bad)], &[]).is_err(),
            "{bad}"
        );
        assert!(
            v.set_control_remotes(vni, &[], &[ip(bad)]).is_err(),
            "{bad}"
        );
    }
    assert!(
        v.set_control_remotes(Vni::new(7).unwrap(), &[ip("198.18.0.3")], &[])
            .is_err()
    );
    let mut out = Outbox::new();
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    assert_eq!(
        dests(&out),
        [To::Port(PortId(1)), To::Underlay(ip("198.18.0.2"))]
    );
}

/// With the source check on, a datagram from a VTEP neither configured nor announced is
/// dropped and counted, and never learned; once announced (by a type 3 or a type 2 route), it
/// is accepted; the configured remote always is.
#[test]
fn the_source_check_accepts_only_known_vteps() {
    let mut v = vtep_with(|s| s.vnis[0].source_check = true);
    let mut out = Outbox::new();
    let now = Instant::now();
    let vni = Vni::new(5001).unwrap();
    let frame = vxlan(5001, &udp(7, 1, 1, 2, 100));
    let r = v.handle_underlay(now, ip("198.18.0.9"), &frame, &mut out);
    assert_eq!(r, Err(DropReason::UnknownVtep));
    assert_eq!(v.drops().get(DropReason::UnknownVtep), 1);
    assert!(out.frames().is_empty());
    assert!(
        v.fdb_entries(now).all(|(e, _)| e.mac != mac(7)),
        "not learned"
    );
    // The configured remote is known.
    v.handle_underlay(now, ip("198.18.0.2"), &frame, &mut out)
        .unwrap();
    out.clear();
    // Announced by a type 2 route only (no type 3): known too.
    v.set_control_remotes(vni, &[], &[ip("198.18.0.9")])
        .unwrap();
    v.handle_underlay(now, ip("198.18.0.9"), &frame, &mut out)
        .unwrap();
    assert_eq!(dests(&out), [To::Port(PortId(0)), To::Port(PortId(1))]);
    // Withdrawn: dropped again. Another VNI without the check accepts anyone.
    v.set_control_remotes(vni, &[], &[]).unwrap();
    let r = v.handle_underlay(now, ip("198.18.0.9"), &frame, &mut out);
    assert_eq!(r, Err(DropReason::UnknownVtep));
    out.clear();
    let frame = vxlan(5002, &udp(8, 2, 1, 2, 100));
    v.handle_underlay(now, ip("198.18.0.9"), &frame, &mut out)
        .unwrap();
    assert_eq!(dests(&out), [To::Port(PortId(2))]);
}

/// A control plane's entry steers unicast to its VTEP on every worker; the underlay's frames
/// never move it (a frame from another VTEP claiming the MAC is delivered, not learned); a
/// frame from a local port does (the MAC moved here); bad addresses are refused.
#[test]
fn evpn_entries_steer_unicast_and_move_only_to_a_local_port() {
    let v = vtep();
    let mut w = v.worker();
    let mut out = Outbox::new();
    let now = Instant::now();
    let vni = Vni::new(5001).unwrap();
    v.install_evpn(vni, mac(7), ip("198.18.0.3"), false)
        .unwrap();
    send(&mut w, 0, &udp(1, 7, 1, 2, 100), &mut out);
    assert_eq!(dests(&out), [To::Underlay(ip("198.18.0.3"))]);
    out.clear();
    // From the configured remote, claiming MAC 7: delivered, not learned.
    w.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &udp(7, 1, 1, 2, 100)),
        &mut out,
    )
    .unwrap();
    let entry = |w: &Vtep| w.fdb_entries(now).find(|(e, _)| e.mac == mac(7)).unwrap().0;
    assert_eq!(entry(&w).location, Location::Remote(ip("198.18.0.3")));
    assert!(entry(&w).is_evpn);
    out.clear();
    // MAC 7 sends from port 1: it moved here.
    send(&mut w, 1, &udp(7, 1, 1, 2, 100), &mut out);
    assert_eq!(entry(&w).location, Location::Port(PortId(1)));
    assert!(!entry(&w).is_evpn);
    assert_eq!(w.vni_stats().next().unwrap().moved, 1);
    // The old route's withdrawal leaves the local entry.
    assert_eq!(v.remove_evpn(vni, mac(7), ip("198.18.0.3")), Ok(false));
    assert_eq!(entry(&w).location, Location::Port(PortId(1)));
    for bad in ["198.18.0.1", "239.1.1.1", "2001:db8::3"] {
        assert!(
            v.install_evpn(vni, mac(8), ip(bad), false).is_err(),
            "{bad}"
        );
    }
}

/// What a control plane reads to announce local MACs: the keys whose local entry changed, and
/// each entry as it is now, through the pipeline's own learning (both workers).
#[test]
fn a_control_plane_reads_the_local_changes() {
    let v = vtep();
    let mut w = v.worker();
    let mut out = Outbox::new();
    let now = Instant::now();
    let vni = Vni::new(5001).unwrap();
    v.journal_local_changes(true);
    send(&mut w, 0, &arp_request(1, 9), &mut out);
    w.handle_underlay(
        now,
        ip("198.18.0.2"),
        &vxlan(5001, &udp(5, 1, 1, 2, 60)),
        &mut out,
    )
    .unwrap();
    let mut keys = Vec::new();
    assert_eq!(
        v.take_local_changes(&mut keys),
        crate::fdb::LocalChanges::Keys
    );
    assert_eq!(keys, [(vni, mac(1))], "the remote MAC 5 is not local");
    let (entry, _) = v.fdb_entry(vni, mac(1), now).unwrap();
    assert_eq!(entry.location, Location::Port(PortId(0)));
}

/// ARP suppression: a request for an address a control plane binds is answered on the asking
/// port (its tag kept, padded to 60 bytes) and not flooded; other requests, a probe from
/// 0.0.0.0, or the VNI without suppression flood as before; a stale withdrawal leaves the
/// binding.
#[test]
fn arp_requests_for_bound_addresses_are_answered_on_the_port() {
    let mut v = vtep_with(|s| s.vnis[0].arp_suppress = true);
    let mut out = Outbox::new();
    let vni = Vni::new(5001).unwrap();
    let (vm9, ip9) = (mac(9), ip("192.0.2.9"));
    v.set_neighbor(vni, ip9, vm9, false).unwrap();
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    assert_eq!(dests(&out), [To::Port(PortId(0))]);
    let answer = out.frames()[0].bytes.clone();
    assert_eq!(answer.len(), 60);
    let want_arp = wasm_vtep_testkit::vm::arp_reply(9, 1);
    assert_eq!(&answer[..42], &want_arp[..42], "VM 9's own reply to VM 1");
    assert!(answer[42..].iter().all(|&b| b == 0), "padding");
    assert_eq!(v.vni_stats().next().unwrap().arp_suppressed, 1);
    out.clear();
    // Tagged: the answer carries the same tag.
    let mut tagged = arp_request(1, 9);
    crate::wire::insert_vlan_tag(&mut tagged, crate::wire::TPID_8021Q, 42).unwrap();
    send(&mut v, 0, &tagged, &mut out);
    let mut want = want_arp.clone();
    crate::wire::insert_vlan_tag(&mut want, crate::wire::TPID_8021Q, 42).unwrap();
    assert_eq!(&out.frames()[0].bytes[..46], &want[..46]);
    out.clear();
    // Unbound: flooded.
    send(&mut v, 0, &arp_request(1, 8), &mut out);
    assert_eq!(
        dests(&out),
        [To::Port(PortId(1)), To::Underlay(ip("198.18.0.2"))]
    );
    out.clear();
    // A duplicate-address probe (sender 0.0.0.0) is flooded, for the owner to answer; so is
    // a gratuitous ARP (a new owner announcing 192.0.2.9: sender = target).
    let mut probe = arp_request(1, 9);
    probe[28..32].copy_from_slice(&[0, 0, 0, 0]);
    send(&mut v, 0, &probe, &mut out);
    assert_eq!(out.frames().len(), 2);
    out.clear();
    let mut gratuitous = arp_request(1, 9);
    gratuitous[28..32].copy_from_slice(&[192, 0, 2, 9]);
    send(&mut v, 0, &gratuitous, &mut out);
    assert_eq!(out.frames().len(), 2);
    out.clear();
    // A withdrawal of another MAC's binding leaves it; its own removes it.
    assert_eq!(v.remove_neighbor(vni, ip9, mac(8)), Ok(false));
    assert_eq!(v.remove_neighbor(vni, ip9, vm9), Ok(true));
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    assert_eq!(out.frames().len(), 2, "flooded once unbound");
    out.clear();
    // Without suppression on the VNI, a bound address is flooded too.
    let mut plain = vtep();
    plain.set_neighbor(vni, ip9, vm9, false).unwrap();
    send(&mut plain, 0, &arp_request(1, 9), &mut out);
    assert_eq!(out.frames().len(), 2);
    assert!(
        plain
            .set_neighbor(vni, ip9, crate::wire::MacAddr([0xff; 6]), false)
            .is_err()
    );
}

/// A neighbour solicitation from VM 1 (`asker`) for `target`, to its solicited-node group.
fn neighbour_solicitation(asker: std::net::Ipv6Addr, target: std::net::Ipv6Addr) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscRepr,
        RawHardwareAddress,
    };
    let t = target.octets();
    let group = std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac(1).0))),
    });
    let ip6 = Ipv6Repr {
        src_addr: asker,
        dst_addr: group,
        next_header: IpProtocol::Icmpv6,
        payload_len: ns.buffer_len(),
        hop_limit: 255,
    };
    let mut f = vec![0u8; 14 + 40 + ns.buffer_len()];
    f[..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f[6..12].copy_from_slice(&mac(1).0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    ip6.emit(&mut Ipv6Packet::new_unchecked(&mut f[14..54]));
    let caps = ChecksumCapabilities::default();
    ns.emit(
        &asker,
        &group,
        &mut Icmpv6Packet::new_unchecked(&mut f[54..]),
        &caps,
    );
    f
}

/// ND suppression: a solicitation for an address a control plane binds is answered on the
/// port with a solicited, overriding advertisement carrying the target's MAC (a checksum that
/// verifies); a duplicate-address probe (from `::`) and an unbound target flood.
#[test]
fn neighbour_solicitations_for_bound_addresses_are_answered_on_the_port() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetFrame, Icmpv6Packet, Icmpv6Repr, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
        RawHardwareAddress,
    };
    let mut v = vtep_with(|s| s.vnis[0].arp_suppress = true);
    let mut out = Outbox::new();
    let vni = Vni::new(5001).unwrap();
    let asker: std::net::Ipv6Addr = "2001:db8:100::1".parse().unwrap();
    let target: std::net::Ipv6Addr = "2001:db8:100::9".parse().unwrap();
    v.set_neighbor(vni, IpAddr::V6(target), mac(9), false)
        .unwrap();
    send(&mut v, 0, &neighbour_solicitation(asker, target), &mut out);
    assert_eq!(dests(&out), [To::Port(PortId(0))]);
    assert_eq!(v.vni_stats().next().unwrap().arp_suppressed, 1);
    let eth = EthernetFrame::new_checked(&out.frames()[0].bytes[..]).unwrap();
    assert_eq!((eth.dst_addr().0, eth.src_addr().0), (mac(1).0, mac(9).0));
    let ip6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(
        (ip6.src_addr(), ip6.dst_addr(), ip6.hop_limit()),
        (target, asker, 255)
    );
    let icmp = Icmpv6Packet::new_checked(ip6.payload()).unwrap();
    let na = Icmpv6Repr::parse(&target, &asker, &icmp, &ChecksumCapabilities::default())
        .expect("a valid advertisement, checksum included");
    assert_eq!(
        na,
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
            target_addr: target,
            lladdr: Some(RawHardwareAddress::from_bytes(&mac(9).0)),
        })
    );
    out.clear();
    // A duplicate-address probe, an unbound target and a solicitation that crossed a router
    // (hop limit 254) are flooded.
    let probe = neighbour_solicitation(std::net::Ipv6Addr::UNSPECIFIED, target);
    send(&mut v, 0, &probe, &mut out);
    let other: std::net::Ipv6Addr = "2001:db8:100::8".parse().unwrap();
    send(&mut v, 0, &neighbour_solicitation(asker, other), &mut out);
    let mut routed = neighbour_solicitation(asker, target);
    routed[14 + 7] = 254;
    send(&mut v, 0, &routed, &mut out);
    assert_eq!(out.frames().len(), 6, "three floods of two copies each");
    out.clear();
    // A router's address is answered with the router flag (else the asker would drop it from
    // its default routers).
    v.set_neighbor(vni, IpAddr::V6(target), mac(9), true)
        .unwrap();
    send(&mut v, 0, &neighbour_solicitation(asker, target), &mut out);
    let eth = EthernetFrame::new_checked(&out.frames()[0].bytes[..]).unwrap();
    let ip6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip6.payload()).unwrap();
    let Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, .. })) =
        Icmpv6Repr::parse(&target, &asker, &icmp, &ChecksumCapabilities::default())
    else {
        panic!("an advertisement");
    };
    assert!(flags.contains(NdiscNeighborFlags::ROUTER));
}

/// While the journal is on, the addresses local VMs use (their ARP sender, their ND source)
/// are noted with their MAC, each change once; an ARP whose sender is not the frame's source is
/// not believed; a MAC no longer local has its addresses forgotten.
#[test]
fn the_addresses_local_vms_use_are_noted() {
    let mut v = vtep();
    let mut out = Outbox::new();
    let vni = Vni::new(5001).unwrap();
    let take = |v: &Vtep| {
        let mut ips = Vec::new();
        assert_eq!(
            v.take_local_ips(vni, &mut ips),
            Ok(crate::fdb::LocalChanges::Keys)
        );
        ips
    };
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    assert_eq!(take(&v), [], "off until asked for");
    v.journal_local_changes(true);
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    send(&mut v, 0, &arp_request(1, 8), &mut out); // the same binding again
    let v6: std::net::Ipv6Addr = "2001:db8:100::1".parse().unwrap();
    send(
        &mut v,
        0,
        &neighbour_solicitation(v6, "2001:db8:100::9".parse().unwrap()),
        &mut out,
    );
    assert_eq!(
        take(&v),
        [(ip("192.0.2.1"), mac(1)), (IpAddr::V6(v6), mac(1))]
    );
    assert_eq!(take(&v), []);
    // A frame from MAC 2 carrying MAC 1's ARP: not believed.
    let mut spoof = arp_request(1, 9);
    spoof[6..12].copy_from_slice(&mac(2).0);
    send(&mut v, 1, &spoof, &mut out);
    assert_eq!(take(&v), []);
    // Without learning, the table holds no MAC here, and nothing is noted.
    let mut unlearned = vtep_with(|s| s.vnis[0].learning = false);
    unlearned.journal_local_changes(true);
    send(&mut unlearned, 0, &arp_request(3, 9), &mut out);
    let mut ips = Vec::new();
    unlearned.take_local_ips(vni, &mut ips).unwrap();
    assert_eq!(ips, []);
    // MAC 2 on port 1 binds its own address.
    send(&mut v, 1, &arp_request(2, 9), &mut out);
    assert_eq!(take(&v), [(ip("192.0.2.2"), mac(2))]);
    // Forgotten, MAC 1's bindings are noted again when its VM speaks; MAC 2's, named with them
    // but not MAC 1's, stays (its ARP again is no change).
    v.forget_local_ips(
        vni,
        mac(1),
        &[ip("192.0.2.1"), IpAddr::V6(v6), ip("192.0.2.2")],
    )
    .unwrap();
    send(&mut v, 0, &arp_request(1, 9), &mut out);
    send(&mut v, 1, &arp_request(2, 9), &mut out);
    assert_eq!(take(&v), [(ip("192.0.2.1"), mac(1))]);
}
