//! The batch entry points with a plain Rust [`Hooks`]: one filter call per batch with the
//! frames of filtered VNIs only, in both directions, drops counted and never learned, and the
//! learn and age policies consulted through the same trait.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::frames::{arp_request, mac, udp};
use crate::fdb::{
    AgeDecision, AgeEvent, AgePolicy, LearnDecision, LearnEvent, LearnPolicy, Location, PortId,
};
use crate::vtep::{
    Dest, Direction, DropReason, FilterBatch, Hooks, Outbox, Verdict, VniSettings, Vtep,
    VtepSettings,
};
use crate::wire::{VirtioNetHdr, Vni};
use wasm_vtep_testkit::vxlan::encapsulate as vxlan;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Host 198.18.0.1: VNI 5001 on ports 0 and 1 (remote 198.18.0.2), VNI 5002 on port 2.
fn vtep() -> Vtep {
    let mut s = VtepSettings::new(ip("198.18.0.1"));
    let mut v1 = VniSettings::new(Vni::new(5001).unwrap(), vec![PortId(0), PortId(1)]);
    v1.remotes = vec![ip("198.18.0.2")];
    v1.aging = Duration::from_secs(10);
    let v2 = VniSettings::new(Vni::new(5002).unwrap(), vec![PortId(2)]);
    s.vnis = vec![v1, v2];
    Vtep::new(s, Instant::now()).unwrap()
}

/// Filters VNI 5001: drops UDP to port 22. Learns sticky if told to; keeps busy entries.
#[derive(Default)]
struct Firewall {
    /// Per call: (direction, source, length of the bytes) of each frame offered.
    calls: Vec<Vec<(Direction, Location, usize)>>,
    sticky: bool,
    learn_events: Vec<LearnEvent>,
    age_events: Vec<AgeEvent>,
}

impl Hooks for Firewall {
    fn filters(&self, vni: Vni) -> bool {
        vni.get() == 5001
    }

    fn filter(&mut self, _: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        let mut seen = Vec::new();
        for (i, v) in verdicts.iter_mut().enumerate() {
            let f = batch.frame(i).unwrap();
            assert_eq!(f.meta.len, f.bytes.len(), "bytes are the Ethernet frame");
            seen.push((f.direction, f.source, f.bytes.len()));
            if f.vni.get() == 5001 && f.meta.dst_port() == Some(22) {
                *v = Verdict::Drop;
            }
        }
        self.calls.push(seen);
    }
}

impl LearnPolicy for Firewall {
    fn decide_learn(&mut self, e: &LearnEvent) -> LearnDecision {
        self.learn_events.push(*e);
        if self.sticky {
            LearnDecision::AcceptSticky
        } else {
            LearnDecision::Accept
        }
    }
}

impl AgePolicy for Firewall {
    fn decide_age(&mut self, e: &AgeEvent) -> AgeDecision {
        self.age_events.push(*e);
        AgeDecision::KeepFor(5_000)
    }
}

#[test]
fn port_batch_is_filtered_in_one_call_before_learning() {
    let mut v = vtep();
    let mut hooks = Firewall::default();
    let mut out = Outbox::new();
    let frames = [
        arp_request(1, 9),
        udp(2, 9, 1000, 22, 10),
        udp(3, 9, 1000, 80, 10),
    ];
    let batch: Vec<(VirtioNetHdr, &[u8])> = frames
        .iter()
        .map(|f| (VirtioNetHdr::NONE, f.as_slice()))
        .collect();
    v.handle_port_batch(
        Instant::now(),
        PortId(0),
        batch.as_slice(),
        &mut out,
        &mut hooks,
    );
    assert_eq!(hooks.calls.len(), 1, "one call for the batch");
    assert_eq!(hooks.calls[0].len(), 3);
    assert!(
        hooks.calls[0]
            .iter()
            .all(|(d, s, _)| *d == Direction::FromPort && *s == Location::Port(PortId(0)))
    );
    // Two frames flooded (port 1 and the remote each), the SSH one dropped.
    assert_eq!(out.frames().len(), 4);
    assert_eq!(v.drops().get(DropReason::Filtered), 1);
    let stats = v.vni_stats().next().unwrap();
    assert_eq!(stats.filtered, 1);
    assert_eq!(stats.from_ports.frames, 3);
    // The dropped frame's source was never learned; the others were, through the hooks.
    let learned: Vec<_> = v.fdb_entries(Instant::now()).map(|(e, _)| e.mac).collect();
    assert!(learned.contains(&mac(1)) && learned.contains(&mac(3)));
    assert!(!learned.contains(&mac(2)));
    assert_eq!(hooks.learn_events.len(), 2);
}

#[test]
fn underlay_batch_is_filtered_after_the_vxlan_checks() {
    let mut v = vtep();
    let mut hooks = Firewall::default();
    let mut out = Outbox::new();
    let remote = ip("198.18.0.2");
    let mut bad = vxlan(5001, &udp(4, 9, 1, 2, 10));
    bad[0] = 0; // I flag clear: the pipeline drops it before any filter sees it
    let datagrams = [
        vxlan(5001, &udp(5, 9, 1000, 22, 10)),
        bad,
        vxlan(5001, &arp_request(6, 9)),
        vxlan(5002, &udp(7, 9, 1000, 22, 10)), // VNI 5002 is not filtered
    ];
    let batch: Vec<(IpAddr, &[u8])> = datagrams.iter().map(|d| (remote, d.as_slice())).collect();
    v.handle_underlay_batch(Instant::now(), batch.as_slice(), &mut out, &mut hooks);
    assert_eq!(hooks.calls.len(), 1);
    let call = &hooks.calls[0];
    assert_eq!(call.len(), 3, "the frames that passed the VXLAN checks");
    assert!(
        call.iter()
            .all(|(d, s, _)| *d == Direction::FromUnderlay && *s == Location::Remote(remote))
    );
    assert_eq!(call[0].2, datagrams[0].len() - 8, "the inner frame's bytes");
    assert_eq!(v.drops().get(DropReason::Filtered), 1);
    assert_eq!(v.drops().get(DropReason::VxlanFlagClear), 1);
    // The ARP flooded to both ports of 5001, the 5002 frame to port 2.
    let dests: Vec<Dest> = out.frames().iter().map(|f| f.dest).collect();
    assert_eq!(
        dests,
        [
            Dest::Port(PortId(0)),
            Dest::Port(PortId(1)),
            Dest::Port(PortId(2))
        ]
    );
}

#[test]
fn unfiltered_vnis_cost_no_filter_call() {
    let mut v = vtep();
    let mut hooks = Firewall::default();
    let mut out = Outbox::new();
    let frame = udp(1, 9, 1000, 22, 10);
    let batch = [(VirtioNetHdr::NONE, frame.as_slice())];
    v.handle_port_batch(Instant::now(), PortId(2), &batch[..], &mut out, &mut hooks);
    assert!(hooks.calls.is_empty());
    assert_eq!(
        out.frames().len(),
        0,
        "VNI 5002 has no other port and no remote"
    );
    assert_eq!(v.drops().get(DropReason::NoDestination), 1);
    assert_eq!(v.drops().get(DropReason::Filtered), 0);
}

#[test]
fn learn_and_age_policies_come_from_the_hooks() {
    let mut v = vtep();
    let mut hooks = Firewall {
        sticky: true,
        ..Firewall::default()
    };
    let mut out = Outbox::new();
    let now = Instant::now();
    let frame = arp_request(1, 9);
    v.handle_port_batch(
        now,
        PortId(0),
        &[(VirtioNetHdr::NONE, frame.as_slice())][..],
        &mut out,
        &mut hooks,
    );
    assert!(v.fdb_entries(now).all(|(e, _)| e.is_sticky));
    // The same MAC claimed from the underlay: the hooks are asked, see the sticky entry, and
    // (accepting) move it.
    let d = vxlan(5001, &frame);
    let remote = ip("198.18.0.2");
    v.handle_underlay_batch(now, &[(remote, d.as_slice())][..], &mut out, &mut hooks);
    let last = hooks.learn_events.last().unwrap();
    assert!(last.current_sticky);
    assert_eq!(last.current, Some(Location::Port(PortId(0))));
    assert_eq!(
        v.fdb_entries(now).next().unwrap().0.location,
        Location::Remote(remote)
    );
    // Without hooks, a sticky entry does not move.
    out.clear();
    let _ = v.handle_port_frame(now, PortId(1), &VirtioNetHdr::NONE, &frame, &mut out);
    assert_eq!(
        v.fdb_entries(now).next().unwrap().0.location,
        Location::Remote(remote)
    );
    // Aging asks the hooks, which keep the entry 5 s more.
    let later = now + Duration::from_secs(11);
    v.handle_timeout_with(later, &mut hooks);
    assert_eq!(hooks.age_events.len(), 1);
    assert_eq!(v.fdb_entries(later).count(), 1);
    v.handle_timeout(later + Duration::from_secs(6));
    assert_eq!(v.fdb_entries(later).count(), 0);
}
