//! The seed walk-through of mission-notes.md, step by step, on three VTEPs: first with a
//! multicast group, then with head-end replication.

use std::net::IpAddr;
use std::time::Duration;

use super::frames::{arp_reply, arp_request, mac, rarp, src_of, udp};
use super::sim::Net;
use crate::fdb::{Location, PortId};
use crate::vtep::{VniSettings, VtepSettings};
use crate::wire::Vni;

const VNI: u32 = 5001;

fn host(n: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, n])
}

fn group() -> IpAddr {
    IpAddr::from([239, 1, 1, 100])
}

/// Host n (1..=3) has one port, PortId(0), on VNI 5001.
fn settings(n: u8, flood: Flood) -> VtepSettings {
    let mut s = VtepSettings::new(host(n));
    let mut v = VniSettings::new(Vni::new(VNI).unwrap(), vec![PortId(0)]);
    match flood {
        Flood::Group => v.group = Some(group()),
        Flood::HeadEnd => v.remotes = (1..=3).filter(|&m| m != n).map(host).collect(),
    }
    s.vnis.push(v);
    s
}

#[derive(Clone, Copy, PartialEq)]
enum Flood {
    Group,
    HeadEnd,
}

fn remote(n: u8) -> Option<Location> {
    Some(Location::Remote(host(n)))
}

const PORT: Option<Location> = Some(Location::Port(PortId(0)));

fn walk(flood: Flood) {
    let mut net = Net::new((1..=3).map(|n| settings(n, flood)).collect());
    // VTEPs are indexed 0..3 for hosts 1..3; VM1 is on host 1, VM2 on host 2.
    for v in 0..3 {
        assert_eq!(
            net.vteps[v].fdb_entries(net.now).count(),
            0,
            "tables start empty"
        );
    }

    // 1-4. VM1's ARP request is flooded; every other VTEP learns MAC1 -> host 1.
    net.send(0, 0, &arp_request(1, 2));
    match flood {
        Flood::Group => {
            assert_eq!(net.captured.len(), 1, "one packet to the group");
            assert_eq!(net.captured[0].dst, group());
        }
        Flood::HeadEnd => {
            let dsts: Vec<IpAddr> = net.captured.iter().map(|w| w.dst).collect();
            assert_eq!(dsts, [host(2), host(3)], "one unicast copy per remote");
        }
    }
    assert_eq!(net.entry(0, VNI, mac(1)), PORT);
    assert_eq!(net.entry(1, VNI, mac(1)), remote(1));
    assert_eq!(net.entry(2, VNI, mac(1)), remote(1));
    for v in [1, 2] {
        let got = net.delivered_to(v);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].1,
            arp_request(1, 2),
            "decapsulated frame is the VM's frame"
        );
    }

    // 5-7. VM2 answers unicast; VTEP2 sends one packet to host 1 only; VTEP1 learns MAC2.
    net.send(1, 0, &arp_reply(2, 1));
    assert_eq!(net.captured.len(), 1);
    assert_eq!(
        (net.captured[0].src, net.captured[0].dst),
        (host(2), host(1))
    );
    assert_eq!(net.entry(1, VNI, mac(2)), PORT);
    assert_eq!(net.entry(0, VNI, mac(2)), remote(2));
    assert_eq!(
        net.entry(2, VNI, mac(2)),
        None,
        "host 3 saw nothing of the reply"
    );
    assert_eq!(net.delivered_to(0), [(PortId(0), arp_reply(2, 1))]);
    assert!(net.delivered_to(2).is_empty());

    // No flooding once learned: VM1 -> VM2 goes to host 2 alone, both flows on their own port.
    net.send(0, 0, &udp(1, 2, 1000, 2000, 64));
    assert_eq!(net.captured.len(), 1);
    assert_eq!(net.captured[0].dst, host(2));
    let port_a = net.captured[0].src_port;
    net.send(0, 0, &udp(1, 2, 1001, 2000, 64));
    let port_b = net.captured[0].src_port;
    assert_ne!(
        port_a, port_b,
        "different inner flows, different outer source ports"
    );
    net.send(0, 0, &udp(1, 2, 1000, 2000, 64));
    assert_eq!(
        net.captured[0].src_port, port_a,
        "the same flow keeps its port"
    );
    assert_eq!(net.delivered_to(1).len(), 1);

    // Aging: VM1 keeps talking every 100 s, VM2 falls silent. Host 1 forgets MAC2 after 300 s
    // (sending *to* a MAC does not keep it alive); host 2 keeps MAC1.
    for _ in 0..3 {
        net.advance(Duration::from_secs(100));
        net.send(0, 0, &udp(1, 2, 1000, 2000, 64));
    }
    net.advance(Duration::from_secs(1));
    assert_eq!(
        net.entry(0, VNI, mac(2)),
        None,
        "idle MAC2 aged out on host 1"
    );
    assert_eq!(
        net.entry(1, VNI, mac(1)),
        remote(1),
        "MAC1 refreshed by its traffic"
    );
    assert_eq!(net.entry(0, VNI, mac(1)), PORT);
    assert_eq!(net.vteps[0].vni_stats().next().unwrap().expired, 1);

    // Re-learn MAC2 everywhere, then migrate VM2 to host 3: its RARP from there moves MAC2
    // on every VTEP at once, without waiting for aging.
    net.send(1, 0, &arp_request(2, 1));
    assert_eq!(net.entry(0, VNI, mac(2)), remote(2));
    assert_eq!(net.entry(2, VNI, mac(2)), remote(2));
    net.send(2, 0, &rarp(2));
    assert_eq!(
        net.entry(2, VNI, mac(2)),
        PORT,
        "host 3 learns the VM locally"
    );
    assert_eq!(
        net.entry(0, VNI, mac(2)),
        remote(3),
        "host 1 follows the VM"
    );
    assert_eq!(
        net.entry(1, VNI, mac(2)),
        remote(3),
        "host 2 hands the MAC over"
    );
    assert_eq!(net.vteps[0].vni_stats().next().unwrap().moved, 1);
    assert_eq!(net.vteps[1].vni_stats().next().unwrap().moved, 1);
    let rarp_seen = net.delivered_to(0);
    assert_eq!(src_of(&rarp_seen[0].1), mac(2));

    // Traffic follows: VM1 -> VM2 now goes to host 3 only.
    net.send(0, 0, &udp(1, 2, 1000, 2000, 64));
    assert_eq!(net.captured.len(), 1);
    assert_eq!(net.captured[0].dst, host(3));
    assert_eq!(net.delivered_to(2).len(), 1);
}

#[test]
fn seed_walkthrough_with_a_multicast_group() {
    walk(Flood::Group);
}

#[test]
fn seed_walkthrough_with_head_end_replication() {
    walk(Flood::HeadEnd);
}
