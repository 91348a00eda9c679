use std::net::IpAddr;

use super::*;
use crate::wire::{MacAddr, Vni};

const AGING: Tick = 300_000;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fdb_with(vni: u32, max_entries: usize) -> (Fdb, VniIdx) {
    let mut fdb = Fdb::new();
    let idx = fdb
        .add_vni(
            Vni::new(vni).unwrap(),
            VniTableSettings {
                aging_ms: AGING,
                max_entries,
            },
        )
        .unwrap();
    (fdb, idx)
}

#[test]
fn learns_refreshes_and_moves() {
    let (fdb, v) = fdb_with(5001, 100);
    let a = Location::Remote(ip("198.18.0.1"));
    let b = Location::Remote(ip("198.18.0.2"));
    let p = Location::Port(PortId(0));
    assert_eq!(fdb.lookup(v, mac(1)), None);
    assert_eq!(
        fdb.learn(v, mac(1), a, 0, &mut Builtin),
        LearnOutcome::Learned
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(a));
    assert_eq!(
        fdb.learn(v, mac(1), a, 10, &mut Builtin),
        LearnOutcome::Refreshed
    );
    assert_eq!(
        fdb.learn(v, mac(1), b, 20, &mut Builtin),
        LearnOutcome::Moved { from: a }
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(b));
    assert_eq!(
        fdb.learn(v, mac(1), p, 30, &mut Builtin),
        LearnOutcome::Moved { from: b }
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(p));
    assert_eq!(fdb.learned_in(v), 1);
    let view = fdb.entries(1_000_000).next().unwrap();
    assert_eq!(
        (view.vni.get(), view.mac, view.is_static, view.last_seen),
        (5001, mac(1), false, 30)
    );
}

#[test]
fn vnis_are_separate_tables() {
    let mut fdb = Fdb::new();
    let s = VniTableSettings {
        aging_ms: AGING,
        max_entries: 10,
    };
    let v1 = fdb.add_vni(Vni::new(5001).unwrap(), s).unwrap();
    let v2 = fdb.add_vni(Vni::new(0xff_ffff).unwrap(), s).unwrap();
    let a = Location::Remote(ip("198.18.0.1"));
    fdb.learn(v1, mac(1), a, 0, &mut Builtin);
    assert_eq!(fdb.lookup(v2, mac(1)), None);
    assert_eq!(fdb.vni_idx(Vni::new(0xff_ffff).unwrap()), Some(v2));
    let vnis: Vec<u32> = fdb.entries(1_000_000).map(|e| e.vni.get()).collect();
    assert_eq!(vnis, [5001]);
}

#[test]
fn static_entries_are_never_moved_or_aged() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = Location::Remote(ip("198.18.0.1"));
    let b = Location::Remote(ip("198.18.0.2"));
    fdb.insert_static(vni, mac(2), a).unwrap();
    assert_eq!(
        fdb.learn(v, mac(2), a, 0, &mut Builtin),
        LearnOutcome::Static
    );
    assert_eq!(
        fdb.learn(v, mac(2), b, 0, &mut Builtin),
        LearnOutcome::StaticConflict
    );
    assert_eq!(fdb.lookup(v, mac(2)), Some(a));
    assert_eq!(fdb.expire(AGING * 10, &mut Builtin, |_, _| {}), 0);
    assert_eq!(fdb.lookup(v, mac(2)), Some(a));
    assert_eq!(fdb.learned_in(v), 0);
    fdb.remove(vni, mac(2)).unwrap();
    assert_eq!(fdb.lookup(v, mac(2)), None);
    assert_eq!(
        fdb.remove(vni, mac(2)),
        Err(FdbError::NoSuchEntry(vni, mac(2)))
    );
}

#[test]
fn static_replaces_learned_and_rejects_group_macs() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = Location::Remote(ip("198.18.0.1"));
    let p = Location::Port(PortId(3));
    fdb.learn(v, mac(1), a, 0, &mut Builtin);
    fdb.insert_static(vni, mac(1), p).unwrap();
    assert_eq!(fdb.lookup(v, mac(1)), Some(p));
    assert_eq!(fdb.learned_in(v), 0);
    assert_eq!(
        fdb.insert_static(vni, MacAddr::BROADCAST, p),
        Err(FdbError::NotUnicast(MacAddr::BROADCAST))
    );
    let other = Vni::new(7).unwrap();
    assert_eq!(
        fdb.insert_static(other, mac(1), p),
        Err(FdbError::UnknownVni(other))
    );
    // The stale aging item of the replaced learned entry must not expire the static one.
    assert_eq!(fdb.expire(AGING * 2, &mut Builtin, |_, _| {}), 0);
    assert_eq!(fdb.lookup(v, mac(1)), Some(p));
}

#[test]
fn limit_stops_new_macs_not_moves() {
    let (fdb, v) = fdb_with(5001, 2);
    let a = Location::Remote(ip("198.18.0.1"));
    let b = Location::Remote(ip("198.18.0.2"));
    assert_eq!(
        fdb.learn(v, mac(1), a, 0, &mut Builtin),
        LearnOutcome::Learned
    );
    assert_eq!(
        fdb.learn(v, mac(2), a, 0, &mut Builtin),
        LearnOutcome::Learned
    );
    assert_eq!(
        fdb.learn(v, mac(3), a, 0, &mut Builtin),
        LearnOutcome::LimitReached
    );
    assert_eq!(fdb.lookup(v, mac(3)), None);
    assert_eq!(
        fdb.learn(v, mac(2), b, 0, &mut Builtin),
        LearnOutcome::Moved { from: a }
    );
    fdb.remove(Vni::new(5001).unwrap(), mac(1)).unwrap();
    assert_eq!(
        fdb.learn(v, mac(3), a, 0, &mut Builtin),
        LearnOutcome::Learned
    );
}

#[test]
fn entries_age_out_unless_their_mac_sends() {
    let (fdb, v) = fdb_with(5001, 100);
    let a = Location::Remote(ip("198.18.0.1"));
    fdb.learn(v, mac(1), a, 0, &mut Builtin);
    fdb.learn(v, mac(2), a, 0, &mut Builtin);
    assert_eq!(fdb.poll_timeout(), Some(AGING));
    // mac(2) sends at 200 s; mac(1) is only sent to (lookups do not refresh).
    fdb.learn(v, mac(2), a, 200_000, &mut Builtin);
    assert_eq!(fdb.lookup(v, mac(1)), Some(a));
    let mut gone = Vec::new();
    assert_eq!(fdb.expire(AGING - 1, &mut Builtin, |_, m| gone.push(m)), 0);
    assert_eq!(fdb.expire(AGING, &mut Builtin, |_, m| gone.push(m)), 1);
    assert_eq!(gone, [mac(1)]);
    assert_eq!(fdb.lookup(v, mac(1)), None);
    assert_eq!(fdb.lookup(v, mac(2)), Some(a));
    // mac(2)'s item was re-queued at its real deadline.
    assert_eq!(fdb.poll_timeout(), Some(200_000 + AGING));
    assert_eq!(
        fdb.expire(200_000 + AGING, &mut Builtin, |_, m| gone.push(m)),
        1
    );
    assert!(fdb.is_empty());
    assert_eq!(fdb.learned_in(v), 0);
}

#[test]
fn relearned_entry_keeps_one_aging_item() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = Location::Remote(ip("198.18.0.1"));
    fdb.learn(v, mac(1), a, 0, &mut Builtin);
    fdb.remove(vni, mac(1)).unwrap();
    fdb.learn(v, mac(1), a, 100_000, &mut Builtin);
    // The item queued at learn time 0 is stale and must not expire the new entry early.
    assert_eq!(fdb.expire(AGING, &mut Builtin, |_, _| {}), 0);
    assert_eq!(fdb.lookup(v, mac(1)), Some(a));
    assert_eq!(fdb.expire(100_000 + AGING, &mut Builtin, |_, _| {}), 1);
}

struct KeepBusy;

impl AgePolicy for KeepBusy {
    fn decide_age(&mut self, e: &AgeEvent) -> AgeDecision {
        if e.hits > 1 {
            AgeDecision::KeepFor(60_000)
        } else {
            AgeDecision::Expire
        }
    }
}

struct RejectFrom(IpAddr);

impl LearnPolicy for RejectFrom {
    fn decide_learn(&mut self, e: &LearnEvent) -> LearnDecision {
        if e.new == Location::Remote(self.0) {
            LearnDecision::Reject
        } else {
            LearnDecision::Accept
        }
    }
}

#[test]
fn policies_decide_learning_and_aging() {
    let (fdb, v) = fdb_with(5001, 100);
    let a = Location::Remote(ip("198.18.0.1"));
    let bad = ip("198.18.0.66");
    assert_eq!(
        fdb.learn(v, mac(1), Location::Remote(bad), 0, &mut RejectFrom(bad)),
        LearnOutcome::Rejected
    );
    assert_eq!(fdb.lookup(v, mac(1)), None);
    fdb.learn(v, mac(1), a, 0, &mut Builtin);
    fdb.learn(v, mac(2), a, 0, &mut Builtin);
    fdb.learn(v, mac(2), a, 1, &mut Builtin); // a second hit
    assert_eq!(fdb.expire(AGING + 1, &mut KeepBusy, |_, _| {}), 1);
    assert_eq!(fdb.lookup(v, mac(2)), Some(a));
    assert_eq!(fdb.poll_timeout(), Some(AGING + 1 + 60_000));
}

#[test]
fn remote_addresses_are_released_with_their_entries() {
    let (fdb, v) = fdb_with(5001, 100_000);
    for n in 0..=255u8 {
        let at = Location::Remote(IpAddr::from([198, 18, 1, n]));
        fdb.learn(v, mac(n), at, 0, &mut Builtin);
    }
    assert_eq!(fdb.expire(AGING, &mut Builtin, |_, _| {}), 256);
    // Re-learning reuses freed slots; a lookup returns the new address, not a stale one.
    let at = Location::Remote(ip("198.18.2.1"));
    fdb.learn(v, mac(9), at, AGING, &mut Builtin);
    assert_eq!(fdb.lookup(v, mac(9)), Some(at));
}

/// Accepts every learn event as sticky, and records what it was asked.
#[derive(Default)]
struct Sticky(Vec<LearnEvent>);

impl LearnPolicy for Sticky {
    fn decide_learn(&mut self, e: &LearnEvent) -> LearnDecision {
        self.0.push(*e);
        LearnDecision::AcceptSticky
    }
}

#[test]
fn sticky_entries_move_only_when_a_policy_accepts() {
    let (fdb, v) = fdb_with(5001, 100);
    let a = Location::Remote(ip("198.18.0.1"));
    let b = Location::Remote(ip("198.18.0.2"));
    let mut sticky = Sticky::default();
    assert_eq!(
        fdb.learn(v, mac(1), a, 0, &mut sticky),
        LearnOutcome::Learned
    );
    assert!(fdb.entries(1_000_000).all(|e| e.is_sticky));
    // A refresh asks nobody and keeps the entry sticky.
    assert_eq!(
        fdb.learn(v, mac(1), a, 5, &mut sticky),
        LearnOutcome::Refreshed
    );
    assert_eq!(sticky.0.len(), 1);
    // The built-in policy (no plugin) refuses to move a sticky entry.
    assert_eq!(
        fdb.learn(v, mac(1), b, 10, &mut Builtin),
        LearnOutcome::Rejected
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(a));
    // A policy is told the entry is sticky, and its accept moves it.
    assert_eq!(
        fdb.learn(v, mac(1), b, 20, &mut sticky),
        LearnOutcome::Moved { from: a }
    );
    let asked = sticky.0[1];
    assert_eq!(asked.current, Some(a));
    assert!(asked.current_sticky);
    assert_eq!(fdb.lookup(v, mac(1)), Some(b));
    // A plain accept of a move clears the flag: the built-in policy may move it again.
    struct Plain;
    impl LearnPolicy for Plain {
        fn decide_learn(&mut self, _: &LearnEvent) -> LearnDecision {
            LearnDecision::Accept
        }
    }
    fdb.learn(v, mac(1), a, 30, &mut Plain);
    assert!(fdb.entries(1_000_000).all(|e| !e.is_sticky));
    assert_eq!(
        fdb.learn(v, mac(1), b, 40, &mut Builtin),
        LearnOutcome::Moved { from: a }
    );
}

#[test]
fn a_reader_sees_what_it_learns_and_outlives_a_growing_table() {
    let (fdb, v) = fdb_with(5001, 10_000);
    let a = Location::Remote(ip("198.18.0.1"));
    let b = Location::Remote(ip("198.18.0.2"));
    let many = |n: u32| MacAddr::from_u64(0x0200_0000_0000 | u64::from(n));
    let reader = fdb.reader();
    reader.prefetch([(v, mac(1)), (v, mac(2))]);
    assert_eq!(reader.lookup(v, mac(1)), None, "a prefetch changes nothing");
    for m in [mac(1), mac(2)] {
        assert_eq!(
            reader.learn(v, m, a, 0, &mut Builtin),
            LearnOutcome::Learned
        );
    }
    assert_eq!(
        reader.lookup(v, mac(1)),
        Some(a),
        "same table: seen at once"
    );
    // Enough new MACs to grow the table (1,024 slots at first) several times over; then a
    // move and a static entry in the new table.
    for n in 0..5_000 {
        fdb.learn(v, many(n), a, 0, &mut Builtin);
    }
    assert_eq!(
        fdb.learn(v, mac(1), b, 10, &mut Builtin),
        LearnOutcome::Moved { from: a }
    );
    fdb.insert_static(Vni::new(5001).unwrap(), mac(2), b)
        .unwrap();
    // The reader held the table from before, where MAC 1 and MAC 2 are still learned at `a`:
    // it looks in the new one instead.
    assert_eq!(
        reader.lookup(v, many(4_999)),
        Some(a),
        "learned after it grew"
    );
    assert_eq!(reader.lookup(v, mac(1)), Some(b));
    assert_eq!(
        reader.learn(v, mac(1), a, 11, &mut Builtin),
        LearnOutcome::Moved { from: b },
        "a frame from the old place moves it back"
    );
    assert_eq!(
        reader.learn(v, mac(2), a, 12, &mut Builtin),
        LearnOutcome::StaticConflict
    );
}

/// One step of the model test below.
#[derive(Debug, Clone)]
enum Op {
    Static(usize, u64, u16),
    Learn(usize, u64, u8),
    Remove(usize, u64),
    Lookup(usize, u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // The all-zero and broadcast MACs, a few unicast ones so that operations meet, and any.
    let mac = prop_oneof![
        Just(0u64),
        Just(0xffff_ffff_ffff),
        Just(0x0200_0000_0001),
        Just(0x0200_0000_0002),
        0u64..(1 << 48),
    ];
    let vni = 0usize..3;
    prop_oneof![
        (vni.clone(), mac.clone(), 0u16..4).prop_map(|(v, m, p)| Op::Static(v, m, p)),
        (vni.clone(), mac.clone(), 1u8..4).prop_map(|(v, m, r)| Op::Learn(v, m, r)),
        (vni.clone(), mac.clone()).prop_map(|(v, m)| Op::Remove(v, m)),
        (vni, mac).prop_map(|(v, m)| Op::Lookup(v, m)),
    ]
}

proptest::proptest! {
    /// The table is a map of `(VNI, MAC)` for every VNI handle and every MAC, the all-zero MAC
    /// of the first VNI included: what it holds, finds, learns, refuses and removes agrees with
    /// a `HashMap` model.
    #[test]
    fn agrees_with_a_map_for_any_vni_and_mac(ops in proptest::collection::vec(op(), 1..300)) {
        use std::collections::HashMap;
        let mut fdb = Fdb::new();
        let vnis: Vec<(Vni, VniIdx)> = [1u32, 5001, 16_777_215]
            .into_iter()
            .map(|n| {
                let vni = Vni::new(n).unwrap();
                let settings = VniTableSettings { aging_ms: AGING, max_entries: 1 << 20 };
                (vni, fdb.add_vni(vni, settings).unwrap())
            })
            .collect();
        // (VNI handle, MAC) -> (location, static)
        let mut model: HashMap<(usize, u64), (Location, bool)> = HashMap::new();
        for op in ops {
            match op {
                Op::Static(v, m, port) => {
                    let (vni, _) = vnis[v];
                    let mac = MacAddr::from_u64(m);
                    let at = Location::Port(PortId(port));
                    let r = fdb.insert_static(vni, mac, at);
                    if mac.is_valid_unicast() {
                        proptest::prop_assert_eq!(r, Ok(()));
                        model.insert((v, m), (at, true));
                    } else {
                        proptest::prop_assert_eq!(r, Err(FdbError::NotUnicast(mac)));
                    }
                }
                Op::Learn(v, m, r) => {
                    let (_, idx) = vnis[v];
                    let at = Location::Remote(IpAddr::from([198, 18, 0, r]));
                    let got = fdb.learn(idx, MacAddr::from_u64(m), at, 0, &mut Builtin);
                    let want = match model.get(&(v, m)).copied() {
                        Some((loc, true)) if loc == at => LearnOutcome::Static,
                        Some((_, true)) => LearnOutcome::StaticConflict,
                        Some((loc, false)) if loc == at => LearnOutcome::Refreshed,
                        Some((from, false)) => LearnOutcome::Moved { from },
                        None => LearnOutcome::Learned,
                    };
                    proptest::prop_assert_eq!(got, want);
                    if !matches!(want, LearnOutcome::Static | LearnOutcome::StaticConflict) {
                        model.insert((v, m), (at, false));
                    }
                }
                Op::Remove(v, m) => {
                    let (vni, _) = vnis[v];
                    let mac = MacAddr::from_u64(m);
                    let r = fdb.remove(vni, mac);
                    match model.remove(&(v, m)) {
                        Some(_) => proptest::prop_assert_eq!(r, Ok(())),
                        None => proptest::prop_assert_eq!(r, Err(FdbError::NoSuchEntry(vni, mac))),
                    }
                }
                Op::Lookup(v, m) => {
                    let (_, idx) = vnis[v];
                    let want = model.get(&(v, m)).map(|e| e.0);
                    proptest::prop_assert_eq!(fdb.lookup(idx, MacAddr::from_u64(m)), want);
                }
            }
            proptest::prop_assert_eq!(fdb.len(), model.len());
        }
        let mut got: Vec<(u32, u64, bool)> = fdb
            .entries(0)
            .map(|e| (e.vni.get(), e.mac.to_u64(), e.is_static))
            .collect();
        got.sort_unstable();
        let mut want: Vec<(u32, u64, bool)> = model
            .iter()
            .map(|(&(v, m), &(_, is_static))| (vnis[v].0.get(), m, is_static))
            .collect();
        want.sort_unstable();
        proptest::prop_assert_eq!(got, want);
        for (v, (_, idx)) in vnis.iter().enumerate() {
            let learned = model.iter().filter(|&(&(mv, _), &(_, s))| mv == v && !s).count();
            proptest::prop_assert_eq!(fdb.learned_in(*idx), learned);
        }
    }
}

/// A learn policy that changes the table while it decides (as another worker may meanwhile),
/// then accepts.
struct Meddler<'a> {
    fdb: &'a Fdb,
    vni: Vni,
    /// What it does to the table on its first call.
    meddle: fn(&Fdb, Vni),
    calls: u32,
}

impl LearnPolicy for Meddler<'_> {
    fn decide_learn(&mut self, _: &LearnEvent) -> LearnDecision {
        if self.calls == 0 {
            (self.meddle)(self.fdb, self.vni);
        }
        self.calls += 1;
        LearnDecision::Accept
    }
}

#[test]
fn a_learn_decision_is_taken_again_when_the_entry_changed_meanwhile() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = Location::Remote(ip("198.18.0.1"));
    // Made static elsewhere while the policy decided: the frame's claim is a conflict now.
    let mut policy = Meddler {
        fdb: &fdb,
        vni,
        meddle: |fdb, vni| {
            let b = Location::Remote(ip("198.18.0.2"));
            fdb.insert_static(vni, MacAddr([2, 0, 0, 0, 0, 1]), b)
                .unwrap();
        },
        calls: 0,
    };
    assert_eq!(
        fdb.learn(v, mac(1), a, 0, &mut policy),
        LearnOutcome::StaticConflict
    );
    assert_eq!(policy.calls, 1, "not asked again: nothing left to decide");
    // Learned elsewhere meanwhile: asked again about a move, which it accepts.
    let c = Location::Remote(ip("198.18.0.3"));
    let mut policy = Meddler {
        fdb: &fdb,
        vni,
        meddle: |fdb, _| {
            let idx = fdb.vni_idx(Vni::new(5001).unwrap()).unwrap();
            let d = Location::Remote(ip("198.18.0.4"));
            fdb.learn(idx, MacAddr([2, 0, 0, 0, 0, 2]), d, 0, &mut Builtin);
        },
        calls: 0,
    };
    assert_eq!(
        fdb.learn(v, mac(2), c, 0, &mut policy),
        LearnOutcome::Moved {
            from: Location::Remote(ip("198.18.0.4"))
        }
    );
    assert_eq!(policy.calls, 2);
    assert_eq!(fdb.lookup(v, mac(2)), Some(c));
    assert_eq!(fdb.learned_in(v), 1, "one entry, counted once");
}

/// An age policy that refreshes the entry it is asked about (its MAC sent a frame meanwhile),
/// then says expire.
struct RefreshingAger<'a> {
    fdb: &'a Fdb,
    vni: VniIdx,
    at: Location,
    now: Tick,
}

impl AgePolicy for RefreshingAger<'_> {
    fn decide_age(&mut self, e: &AgeEvent) -> AgeDecision {
        self.fdb
            .learn(self.vni, e.mac, self.at, self.now, &mut Builtin);
        AgeDecision::Expire
    }
}

#[test]
fn an_entry_refreshed_while_its_expiry_is_decided_stays() {
    let (fdb, v) = fdb_with(5001, 100);
    let a = Location::Remote(ip("198.18.0.1"));
    fdb.learn(v, mac(1), a, 0, &mut Builtin);
    let mut ager = RefreshingAger {
        fdb: &fdb,
        vni: v,
        at: a,
        now: AGING + 5,
    };
    assert_eq!(fdb.expire(AGING, &mut ager, |_, _| {}), 0);
    assert_eq!(fdb.lookup(v, mac(1)), Some(a), "refreshed meanwhile: kept");
    // Queued again at its new deadline, where (not refreshed again) it expires.
    assert_eq!(fdb.poll_timeout(), Some(AGING + AGING));
    assert_eq!(fdb.expire(2 * AGING + 10, &mut Builtin, |_, _| {}), 1);
    assert!(fdb.is_empty());
}

/// A control plane's entry (EVPN): replaces a learned entry but not a static one, never ages,
/// is never moved or refreshed by the underlay's frames, does not count as learned; a frame
/// from a local port moves it (the MAC moved here) into an ordinary learned entry that ages;
/// a withdrawal removes it only from the VTEP that has it.
#[test]
fn control_plane_entries() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let (a, b) = (ip("198.18.0.2"), ip("198.18.0.3"));
    let port = Location::Port(PortId(0));
    // Replaces what the data plane learned.
    fdb.learn(v, mac(1), Location::Remote(b), 0, &mut Builtin);
    assert_eq!(fdb.learned_in(v), 1);
    fdb.insert_evpn(vni, mac(1), a, false).unwrap();
    assert_eq!(fdb.lookup(v, mac(1)), Some(Location::Remote(a)));
    assert_eq!(fdb.learned_in(v), 0, "not a learned entry");
    let view = fdb.entries(0).find(|e| e.mac == mac(1)).unwrap();
    assert!(view.is_evpn && !view.is_static);
    // The underlay never moves it, from its own VTEP or another.
    for from in [a, b] {
        assert_eq!(
            fdb.learn(v, mac(1), Location::Remote(from), 10, &mut Builtin),
            LearnOutcome::Evpn
        );
    }
    assert_eq!(fdb.lookup(v, mac(1)), Some(Location::Remote(a)));
    // Never aged, however long.
    assert_eq!(fdb.expire(AGING * 10, &mut Builtin, |_, _| {}), 0);
    assert_eq!(fdb.lookup(v, mac(1)), Some(Location::Remote(a)));
    // A withdrawal from another VTEP removes nothing; from its own, the entry.
    assert_eq!(fdb.remove_evpn(vni, mac(1), b), Ok(false));
    assert_eq!(fdb.remove_evpn(vni, mac(1), a), Ok(true));
    assert_eq!(fdb.lookup(v, mac(1)), None);
    assert_eq!(fdb.remove_evpn(vni, mac(1), a), Ok(false));
    // A static entry wins over the control plane; its withdrawal does not remove the static.
    fdb.insert_static(vni, mac(2), port).unwrap();
    assert_eq!(
        fdb.insert_evpn(vni, mac(2), a, false),
        Err(FdbError::StaticEntry(vni, mac(2)))
    );
    assert_eq!(fdb.remove_evpn(vni, mac(2), a), Ok(false));
    assert_eq!(fdb.lookup(v, mac(2)), Some(port));
    assert_eq!(
        fdb.insert_evpn(vni, MacAddr([0xff; 6]), a, false),
        Err(FdbError::NotUnicast(MacAddr([0xff; 6])))
    );
    assert_eq!(
        fdb.insert_evpn(Vni::new(7).unwrap(), mac(3), a, false),
        Err(FdbError::UnknownVni(Vni::new(7).unwrap()))
    );
}

/// The MAC of an EVPN entry that a local port sends from has moved here: it becomes a learned
/// local entry that counts and ages like any other; a later withdrawal of the old route does
/// not remove it.
#[test]
fn a_control_plane_entry_moves_to_a_local_port() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = ip("198.18.0.2");
    let port = Location::Port(PortId(0));
    fdb.insert_evpn(vni, mac(1), a, false).unwrap();
    assert_eq!(
        fdb.learn(v, mac(1), port, 100, &mut Builtin),
        LearnOutcome::Moved {
            from: Location::Remote(a)
        }
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(port));
    assert_eq!(fdb.learned_in(v), 1);
    let view = fdb.entries(100).find(|e| e.mac == mac(1)).unwrap();
    assert!(!view.is_evpn);
    assert_eq!(fdb.remove_evpn(vni, mac(1), a), Ok(false));
    assert_eq!(fdb.lookup(v, mac(1)), Some(port));
    // It ages as a learned entry does.
    assert_eq!(fdb.expire(100 + AGING + 1, &mut Builtin, |_, _| {}), 1);
    assert_eq!(fdb.lookup(v, mac(1)), None);
    assert_eq!(fdb.learned_in(v), 0);
}

/// The journal names every (VNI, MAC) whose local entry changed: learned on a port, moved
/// away or here, expired, removed, made static; not refreshes, not remote entries; each once
/// per take. Off until asked for.
#[test]
fn the_journal_names_changed_local_entries() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let port = Location::Port(PortId(0));
    let remote = Location::Remote(ip("198.18.0.2"));
    let take = |fdb: &Fdb| {
        let mut keys = Vec::new();
        assert_eq!(fdb.take_local_changes(&mut keys), LocalChanges::Keys);
        keys.into_iter().map(|(_, m)| m).collect::<Vec<_>>()
    };
    fdb.learn(v, mac(9), port, 0, &mut Builtin);
    assert_eq!(take(&fdb), [], "off until asked for");
    fdb.journal_local_changes(true);
    fdb.learn(v, mac(1), port, 0, &mut Builtin);
    fdb.learn(v, mac(1), port, 10, &mut Builtin); // a refresh: no change
    fdb.learn(v, mac(2), remote, 0, &mut Builtin); // remote: not ours to announce
    fdb.learn(v, mac(3), port, 0, &mut Builtin);
    fdb.learn(v, mac(3), remote, 20, &mut Builtin); // moved away
    assert_eq!(take(&fdb), [mac(1), mac(3)]);
    assert_eq!(take(&fdb), []);
    fdb.learn(v, mac(2), port, 30, &mut Builtin); // moved here
    fdb.insert_static(vni, mac(4), port).unwrap();
    fdb.remove(vni, mac(1)).unwrap();
    fdb.insert_evpn(vni, mac(9), ip("198.18.0.3"), false)
        .unwrap(); // replaces a local entry
    // In key order: MACs 1, 2, 4, 9.
    assert_eq!(take(&fdb), [mac(1), mac(2), mac(4), mac(9)]);
    // Aged out.
    fdb.expire(AGING * 10, &mut Builtin, |_, _| {});
    assert_eq!(take(&fdb), [mac(2)]);
    assert_eq!(
        fdb.entry(vni, mac(4), 0).map(|e| (e.location, e.is_static)),
        Some((port, true))
    );
    assert_eq!(fdb.entry(vni, mac(2), 0), None);
}

/// Past its capacity the journal forgets and says so, once; then it notes again.
#[test]
fn a_full_journal_says_read_everything() {
    let (fdb, v) = fdb_with(5001, 1 << 20);
    fdb.journal_local_changes(true);
    for n in 0..=JOURNAL_CAPACITY as u64 {
        fdb.learn(
            v,
            MacAddr::from_u64(0x0200_0000_0000 | n),
            Location::Port(PortId(0)),
            0,
            &mut Builtin,
        );
    }
    let mut keys = Vec::new();
    assert_eq!(fdb.take_local_changes(&mut keys), LocalChanges::Overflowed);
    assert!(keys.is_empty());
    fdb.remove(Vni::new(5001).unwrap(), MacAddr::from_u64(0x0200_0000_0000))
        .unwrap();
    assert_eq!(fdb.take_local_changes(&mut keys), LocalChanges::Keys);
    assert_eq!(keys.len(), 1);
}

/// A sticky control-plane entry (a static MAC behind another VTEP) is not moved by a local
/// frame either: the frame is a conflict, as with a static entry. Installing the same entry
/// again changes nothing.
#[test]
fn a_sticky_control_plane_entry_does_not_move() {
    let (fdb, v) = fdb_with(5001, 100);
    let vni = Vni::new(5001).unwrap();
    let a = ip("198.18.0.2");
    fdb.insert_evpn(vni, mac(1), a, true).unwrap();
    assert_eq!(
        fdb.learn(v, mac(1), Location::Port(PortId(0)), 10, &mut Builtin),
        LearnOutcome::StaticConflict
    );
    assert_eq!(fdb.lookup(v, mac(1)), Some(Location::Remote(a)));
    let view = fdb.entries(0).find(|e| e.mac == mac(1)).unwrap();
    assert!(view.is_evpn && view.is_sticky);
    fdb.insert_evpn(vni, mac(1), a, true).unwrap();
    assert_eq!(fdb.len(), 1);
    // Made non-sticky by a new route: a local frame moves it again.
    fdb.insert_evpn(vni, mac(1), a, false).unwrap();
    assert_eq!(
        fdb.learn(v, mac(1), Location::Port(PortId(0)), 20, &mut Builtin),
        LearnOutcome::Moved {
            from: Location::Remote(a)
        }
    );
}

/// One MAC flapping more often than the journal holds notes is still one key, not an overflow.
#[test]
fn a_flapping_mac_does_not_fill_the_journal() {
    let (fdb, v) = fdb_with(5001, 100);
    fdb.journal_local_changes(true);
    let (port, remote) = (
        Location::Port(PortId(0)),
        Location::Remote(ip("198.18.0.2")),
    );
    for n in 0..(JOURNAL_CAPACITY as u64 / 2 + 10) {
        fdb.learn(v, mac(1), port, n * 2, &mut Builtin);
        fdb.learn(v, mac(1), remote, n * 2 + 1, &mut Builtin);
    }
    let mut keys = Vec::new();
    assert_eq!(fdb.take_local_changes(&mut keys), LocalChanges::Keys);
    assert_eq!(keys, [(Vni::new(5001).unwrap(), mac(1))]);
}
