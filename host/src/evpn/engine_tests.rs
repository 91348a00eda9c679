//! The EVPN engine without gobgpd: a real sans-IO [`Vtep`] (its journal on, as the daemon turns
//! it on) driven by remote routes and by frames from its local ports, and what comes out of
//! the engine checked on both sides: the forwarding table (`evpn` entries, the flood list and
//! the accepted underlay sources, the neighbour bindings seen through ARP suppression) and the
//! [`BgpOp`]s queued for gobgpd. Covered: remote type 2 and type 3 routes and their
//! withdrawals, local learning and local addresses, MAC mobility (RFC 7432 §15: numbers,
//! tie-break, sticky MACs), our own routes read back, resync after a gobgpd restart,
//! reconnection and shutdown, and refusals (counted, never fatal).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use wasm_vtep_testkit::{eth, vm, vxlan};

use super::engine::{BgpOp, Engine, Stale, VniPlan, VniSummary};
use super::parse::{Import, RouteError};
use super::route::{LocalRoute, MacMobility, RemoteEvent, RemoteRoute, RouteTarget, VniExport};
use crate::fdb::{EntryView, Location, PortId};
use crate::vtep::{Dest, DropReason, Outbox, VniSettings, Vtep, VtepSettings};
use crate::wire::{MacAddr, VirtioNetHdr, Vni};

/// The VNI with local ports (0 and 1): announced with a type 3 route.
const VNI: Vni = Vni::from_u24(5001);
/// An EVPN VNI without local ports: it takes routes but announces no type 3.
const NO_PORTS: Vni = Vni::from_u24(5002);

/// Our underlay address; the remote VTEPs around it.
const US: &str = "198.18.0.10";
/// Below us: wins a tie of sequence numbers (RFC 7432 §15.1).
const LOW: &str = "198.18.0.2";
const B: &str = "198.18.0.20";
const C: &str = "198.18.0.30";
const D: &str = "198.18.0.40";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// Test VM `n`'s MAC (the test kit's numbering: `02:00:00:00:00:n`).
fn mac(n: u8) -> MacAddr {
    MacAddr(vm::mac(n))
}

/// Test VM `n`'s address (`192.0.2.n`).
fn vm_ip(n: u8) -> IpAddr {
    IpAddr::V4(vm::vm_ip(n))
}

fn seq(seq: u32) -> MacMobility {
    MacMobility { seq, sticky: false }
}

fn sticky(seq: u32) -> MacMobility {
    MacMobility { seq, sticky: true }
}

/// `vtep`'s type 2 route for VM `n`'s MAC (and `ip`) on [`VNI`].
fn mac_route(n: u8, ip: Option<IpAddr>, vtep: &str, mobility: MacMobility) -> RemoteRoute {
    RemoteRoute::Mac {
        vni: VNI,
        mac: mac(n),
        ip,
        vtep: self::ip(vtep),
        mobility,
    }
}

/// `vtep`'s type 3 route on [`VNI`].
fn vtep_route(vtep: &str) -> RemoteRoute {
    RemoteRoute::Vtep {
        vni: VNI,
        vtep: ip(vtep),
    }
}

/// Our type 2 route for VM `n`'s MAC (and `ip`).
fn ours(n: u8, ip: Option<IpAddr>, mobility: MacMobility) -> LocalRoute {
    LocalRoute::MacIp {
        mac: mac(n),
        ip,
        mobility,
    }
}

fn add(route: LocalRoute) -> BgpOp {
    BgpOp::Add(VNI, route)
}

fn delete(route: LocalRoute) -> BgpOp {
    BgpOp::Delete(VNI, route)
}

/// Remote MACs a VNI holds at most in these tests.
const MAX_REMOTE_MACS: usize = 16;

fn plan(vni: Vni, has_ports: bool) -> VniPlan {
    let export =
        VniExport::auto(vni, Ipv4Addr::new(198, 18, 0, 10), 65000, ip(US)).expect("small VNI");
    VniPlan {
        export,
        import: vec![RouteTarget::auto(65000, vni)],
        has_ports,
        max_remote_macs: MAX_REMOTE_MACS,
    }
}

/// A VTEP at [`US`] and its engine, as the daemon wires them.
struct Rig {
    vtep: Vtep,
    engine: Engine,
    now: Instant,
}

impl Rig {
    /// [`VNI`] on ports 0 and 1 (ARP suppression and the source check on, no learning from
    /// the underlay: EVPN's defaults), [`NO_PORTS`] without ports.
    fn new() -> Rig {
        Rig::with(|_| {})
    }

    fn with(edit: impl FnOnce(&mut VtepSettings)) -> Rig {
        let mut settings = VtepSettings::new(ip(US));
        let mut v = VniSettings::new(VNI, vec![PortId(0), PortId(1)]);
        v.arp_suppress = true;
        v.source_check = true;
        v.learn_from_underlay = false;
        let mut quiet = VniSettings::new(NO_PORTS, vec![]);
        quiet.source_check = true;
        quiet.learn_from_underlay = false;
        settings.vnis = vec![v, quiet];
        edit(&mut settings);
        let now = Instant::now();
        let vtep = Vtep::new(settings, now).expect("valid settings");
        vtep.journal_local_changes(true);
        let mut import = Import::default();
        for vni in [VNI, NO_PORTS] {
            import
                .insert(RouteTarget::auto(65000, vni), vni)
                .expect("distinct targets");
        }
        let plans = vec![plan(VNI, true), plan(NO_PORTS, false)];
        let mut engine = Engine::new(ip(US), import, plans);
        // The daemon reads the whole table once at start.
        engine.local_changes(&vtep, now, true);
        Rig { vtep, engine, now }
    }

    fn advertise(&mut self, route: RemoteRoute) {
        self.engine
            .remote(&self.vtep, RemoteEvent::Advertised(route));
    }

    fn withdraw(&mut self, route: RemoteRoute) {
        self.engine
            .remote(&self.vtep, RemoteEvent::Withdrawn(route));
    }

    /// Tells the table the flood lists and announced VTEPs (after a batch of routes).
    fn flush(&mut self) {
        self.engine.flush_remotes(&self.vtep);
    }

    /// Reads the journal of local changes; the operations queued since the last read.
    fn local(&mut self) -> Vec<BgpOp> {
        self.engine.local_changes(&self.vtep, self.now, false);
        self.engine.take_ops()
    }

    fn ops(&mut self) -> Vec<BgpOp> {
        self.engine.take_ops()
    }

    fn entry(&self, n: u8) -> Option<EntryView> {
        self.vtep.fdb_entry(VNI, mac(n), self.now).map(|(e, _)| e)
    }

    /// Where the table says VM `n` is, and whether a control plane put it there.
    fn place(&self, n: u8) -> Option<(Location, bool)> {
        self.entry(n).map(|e| (e.location, e.is_evpn))
    }

    fn summary(&self) -> VniSummary {
        self.engine
            .summary()
            .into_iter()
            .find(|s| s.plan.export.vni == VNI)
            .expect("VNI 5001 is planned")
    }

    /// A frame from a local VM out of `port`: where it went.
    fn send(&mut self, port: u16, frame: &[u8]) -> Result<Vec<Dest>, DropReason> {
        let mut out = Outbox::new();
        self.vtep.handle_port_frame(
            self.now,
            PortId(port),
            &VirtioNetHdr::NONE,
            frame,
            &mut out,
        )?;
        Ok(out.frames().iter().map(|f| f.dest).collect())
    }

    /// VM `asker` on `port` asks who has `target`: the MAC the VTEP answers with on the port
    /// (ARP suppression: the address is bound), or `None` (the request was flooded).
    fn arp_answer(&mut self, port: u16, asker: u8, target: IpAddr) -> Option<MacAddr> {
        let IpAddr::V4(target) = target else {
            panic!("ARP asks for IPv4 addresses");
        };
        let request = eth::arp_request(vm::mac(asker), vm::vm_ip(asker), target);
        let mut out = Outbox::new();
        // Flooded to nowhere or answered: either way, what came back on `port` tells.
        let _ = self.vtep.handle_port_frame(
            self.now,
            PortId(port),
            &VirtioNetHdr::NONE,
            &request,
            &mut out,
        );
        out.frames()
            .iter()
            .find(|f| f.dest == Dest::Port(PortId(port)))
            .and_then(|f| f.bytes.get(6..))
            .and_then(MacAddr::from_bytes)
    }

    /// The remote VTEPs a frame from VM 1 (port 0) to an unknown MAC is flooded to.
    fn flooded_to(&mut self) -> BTreeSet<IpAddr> {
        self.send(0, &vm::udp(1, 99, 1, 2, 10))
            .expect("flooded to port 1 at least")
            .into_iter()
            .filter_map(|d| match d {
                Dest::Underlay(u) | Dest::UnderlayWhole(u) => Some(u.dst),
                Dest::Port(_) => None,
            })
            .collect()
    }

    /// Whether a VXLAN datagram on [`VNI`] from `src` passes the source check.
    fn accepts_from(&mut self, src: &str) -> bool {
        let mut out = Outbox::new();
        let datagram = vxlan::encapsulate(VNI.get(), &vm::udp(50, 1, 1, 2, 10));
        self.vtep
            .handle_underlay(self.now, ip(src), &datagram, &mut out)
            != Err(DropReason::UnknownVtep)
    }

    fn refused(&self, kind: &str) -> u64 {
        self.engine
            .counters()
            .refused
            .get(kind)
            .copied()
            .unwrap_or(0)
    }
}

// --- Remote type 2 routes ---------------------------------------------------------------------

/// A remote MAC route becomes an `evpn` entry behind its VTEP (not static, not local), counted
/// as received; it announces nothing of ours; its withdrawal removes the entry.
#[test]
fn a_remote_mac_route_installs_an_evpn_entry_and_its_withdrawal_removes_it() {
    let mut rig = Rig::new();
    let route = mac_route(7, None, B, seq(0));
    rig.advertise(route);
    let entry = rig.entry(7).expect("installed");
    assert_eq!(entry.location, Location::Remote(ip(B)));
    assert!(entry.is_evpn && !entry.is_static && !entry.is_sticky);
    assert_eq!(rig.engine.counters().received, 1);
    assert_eq!(rig.summary().remote_macs, 1);
    assert_eq!(rig.ops(), [], "a remote route announces nothing of ours");
    // Frames to it go to its VTEP.
    let dests = rig.send(0, &vm::udp(1, 7, 1, 2, 10)).expect("forwarded");
    assert!(
        matches!(dests[..], [Dest::Underlay(u)] if u.dst == ip(B)),
        "{dests:?}"
    );
    rig.withdraw(route);
    assert_eq!(rig.entry(7), None);
    assert_eq!(rig.summary().remote_macs, 0);
    assert_eq!(rig.engine.counters().received, 2);
    // A withdrawal of a route never held changes nothing.
    rig.withdraw(mac_route(8, None, C, seq(0)));
    assert_eq!(rig.entry(8), None);
}

/// A MAC/IP route binds its address to its MAC (answered by ARP suppression); a MAC's
/// MAC-only and MAC/IP routes from one VTEP each hold the entry: withdrawing either leaves it,
/// withdrawing both removes it. The binding goes with the MAC/IP route.
#[test]
fn a_mac_ip_route_binds_the_neighbour_and_either_route_of_a_mac_keeps_its_entry() {
    let mut rig = Rig::new();
    let only = mac_route(7, None, B, seq(0));
    let with_ip = mac_route(7, Some(vm_ip(7)), B, seq(0));
    rig.advertise(only);
    rig.advertise(with_ip);
    assert_eq!(rig.place(7), Some((Location::Remote(ip(B)), true)));
    let s = rig.summary();
    assert_eq!((s.remote_macs, s.mac_ips), (1, 1), "one MAC, one binding");
    assert_eq!(
        rig.arp_answer(1, 4, vm_ip(7)),
        Some(mac(7)),
        "bound: answered"
    );
    // The MAC/IP route goes: the MAC-only route keeps the entry, the binding goes.
    rig.withdraw(with_ip);
    assert_eq!(rig.place(7), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.summary().mac_ips, 0);
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), None, "unbound: flooded");
    rig.withdraw(only);
    assert_eq!(rig.entry(7), None);

    // The other order: the MAC-only route goes first, the MAC/IP route keeps the entry.
    rig.advertise(only);
    rig.advertise(with_ip);
    rig.withdraw(only);
    assert_eq!(rig.place(7), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), Some(mac(7)));
    rig.withdraw(with_ip);
    assert_eq!(rig.entry(7), None);
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), None);
    let s = rig.summary();
    assert_eq!((s.remote_macs, s.mac_ips), (0, 0));
}

/// A VTEP's MAC routes make it an accepted underlay source without making it a flood target;
/// the last route's withdrawal makes it an outsider again.
#[test]
fn a_vtep_with_mac_routes_is_an_accepted_source_until_its_last_route_goes() {
    let mut rig = Rig::new();
    assert!(!rig.accepts_from(D), "unknown before any route");
    let (a, b) = (mac_route(7, None, D, seq(0)), mac_route(8, None, D, seq(0)));
    rig.advertise(a);
    rig.advertise(b);
    assert!(
        !rig.accepts_from(D),
        "the table hears of it at the flush only"
    );
    rig.flush();
    assert!(rig.accepts_from(D));
    assert_eq!(rig.summary().remote_vteps, [ip(D)]);
    assert_eq!(rig.summary().flood, [] as [IpAddr; 0]);
    assert_eq!(
        rig.flooded_to(),
        BTreeSet::new(),
        "no type 3: no BUM frames to it"
    );
    rig.withdraw(a);
    rig.flush();
    assert!(rig.accepts_from(D), "one route left");
    rig.withdraw(b);
    rig.flush();
    assert!(!rig.accepts_from(D));
    assert_eq!(rig.summary().remote_vteps, [] as [IpAddr; 0]);
}

// --- Remote type 3 routes ---------------------------------------------------------------------

/// Type 3 routes make the flood list and the accepted sources once flushed; withdrawals empty
/// them again.
#[test]
fn type_3_routes_make_the_flood_list_and_their_withdrawal_empties_it() {
    let mut rig = Rig::new();
    rig.advertise(vtep_route(B));
    rig.advertise(vtep_route(C));
    // Again: the same route twice is held once.
    rig.advertise(vtep_route(B));
    assert_eq!(rig.flooded_to(), BTreeSet::new(), "not flushed yet");
    rig.flush();
    let s = rig.summary();
    assert_eq!(s.flood, [ip(B), ip(C)]);
    assert_eq!(s.remote_vteps, [ip(B), ip(C)]);
    assert_eq!(rig.flooded_to(), BTreeSet::from([ip(B), ip(C)]));
    assert!(rig.accepts_from(B) && rig.accepts_from(C));
    assert_eq!(rig.ops(), []);

    rig.withdraw(vtep_route(B));
    rig.flush();
    assert_eq!(rig.summary().flood, [ip(C)]);
    assert_eq!(rig.flooded_to(), BTreeSet::from([ip(C)]));
    assert!(!rig.accepts_from(B));
    rig.withdraw(vtep_route(C));
    rig.flush();
    let s = rig.summary();
    assert_eq!((s.flood, s.remote_vteps), (vec![], vec![]));
    assert_eq!(rig.flooded_to(), BTreeSet::new());
    assert!(!rig.accepts_from(C));
}

/// A VTEP with a type 3 and a MAC route stays an accepted source, and off the flood list,
/// when its type 3 goes and its MAC route stays.
#[test]
fn a_vtep_stays_announced_while_any_of_its_routes_is_held() {
    let mut rig = Rig::new();
    rig.advertise(vtep_route(B));
    rig.advertise(mac_route(7, None, B, seq(0)));
    rig.flush();
    rig.withdraw(vtep_route(B));
    rig.flush();
    let s = rig.summary();
    assert_eq!(s.flood, [] as [IpAddr; 0]);
    assert_eq!(s.remote_vteps, [ip(B)]);
    assert!(rig.accepts_from(B));
    assert_eq!(rig.flooded_to(), BTreeSet::new());
}

// --- Local MACs ---------------------------------------------------------------------------------

/// A MAC learned on a local port is announced once (MAC-only, no mobility community); when it
/// goes from the table, its route is withdrawn.
#[test]
fn a_mac_learned_locally_is_announced_and_withdrawn_when_it_goes() {
    let mut rig = Rig::new();
    assert_eq!(rig.local(), []);
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    assert_eq!(rig.place(3), Some((Location::Port(PortId(0)), false)));
    assert_eq!(rig.local(), [add(ours(3, None, seq(0)))]);
    // More frames from it: nothing new to announce.
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    assert_eq!(rig.local(), []);
    let s = rig.summary();
    assert_eq!((s.local_macs, s.local_routes), (1, 2), "type 3 and the MAC");

    rig.vtep.remove_entry(VNI, mac(3)).expect("learned");
    assert_eq!(rig.local(), [delete(ours(3, None, seq(0)))]);
    let s = rig.summary();
    assert_eq!((s.local_macs, s.local_routes), (0, 1));
}

/// At start the engine reads every entry: a static MAC at a local port configured before the
/// journal was on is announced sticky; a static entry at a remote VTEP is not ours.
#[test]
fn at_start_every_local_entry_is_announced_static_ones_sticky() {
    let mut rig = Rig::with(|s| {
        s.vnis[0].statics = vec![
            crate::vtep::StaticEntry {
                mac: mac(5),
                location: Location::Port(PortId(1)),
            },
            crate::vtep::StaticEntry {
                mac: mac(6),
                location: Location::Remote(ip(C)),
            },
        ];
    });
    assert_eq!(rig.ops(), [add(ours(5, None, sticky(0)))]);
}

/// Reconnection queues every route we announce (type 3 on VNIs with ports only, every local
/// MAC with its addresses), replacing what was queued; shutdown queues their withdrawal.
#[test]
fn connected_queues_every_route_and_withdraw_all_deletes_them() {
    let mut rig = Rig::new();
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    rig.send(1, &vm::arp_request(4, 9)).expect("flooded");
    let ops = rig.local();
    assert_eq!(
        ops,
        [
            add(ours(3, None, seq(0))),
            add(ours(4, None, seq(0))),
            add(ours(4, Some(vm_ip(4)), seq(0)))
        ]
    );
    // gobgpd is away: what was queued is dropped, and more changes are dropped too...
    rig.send(0, &vm::udp(5, 99, 1, 2, 10)).expect("flooded");
    rig.engine.local_changes(&rig.vtep, rig.now, false);
    rig.engine.clear_ops();
    assert_eq!(rig.ops(), []);
    // ... then it is back: everything, once.
    rig.advertise(mac_route(7, None, B, seq(0))); // remote: not ours to announce
    rig.engine.connected();
    let ops = rig.ops();
    assert_eq!(
        ops.first(),
        Some(&add(LocalRoute::InclusiveMulticast)),
        "type 3 first"
    );
    assert!(
        !ops.contains(&BgpOp::Add(NO_PORTS, LocalRoute::InclusiveMulticast)),
        "no type 3 for a VNI without ports"
    );
    let want = [
        add(LocalRoute::InclusiveMulticast),
        add(ours(3, None, seq(0))),
        add(ours(4, None, seq(0))),
        add(ours(4, Some(vm_ip(4)), seq(0))),
        add(ours(5, None, seq(0))),
    ];
    assert_eq!(ops.len(), want.len(), "{ops:?}");
    for op in want {
        assert!(ops.contains(&op), "{op:?} missing from {ops:?}");
    }
    // The MAC/IP route follows its MAC-only route.
    let at = |op: BgpOp| ops.iter().position(|&o| o == op);
    assert!(at(add(ours(4, None, seq(0)))) < at(add(ours(4, Some(vm_ip(4)), seq(0)))));
    // A second reconnection replaces the queue rather than adding to it.
    rig.engine.connected();
    assert_eq!(rig.ops().len(), want.len());

    rig.engine.withdraw_all();
    let ops = rig.ops();
    assert_eq!(ops.len(), want.len(), "{ops:?}");
    for op in want {
        let BgpOp::Add(vni, route) = op else {
            unreachable!("only additions above");
        };
        assert!(
            ops.contains(&BgpOp::Delete(vni, route)),
            "withdrawal of {route:?} missing from {ops:?}"
        );
    }
}

// --- MAC mobility -------------------------------------------------------------------------------

/// A remote route with a higher number moves a local MAC away: the entry points at the remote
/// VTEP (installed before our route is withdrawn: when the operations are read, forwarding
/// already follows the MAC) and our route is withdrawn, once.
#[test]
fn a_higher_number_elsewhere_moves_a_local_mac_away() {
    let mut rig = Rig::new();
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    assert_eq!(rig.local(), [add(ours(3, None, seq(0)))]);
    rig.advertise(mac_route(3, None, B, seq(1)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.ops(), [delete(ours(3, None, seq(0)))]);
    let s = rig.summary();
    assert_eq!((s.local_macs, s.remote_macs), (0, 1));
    // Frames to it go to B.
    let dests = rig.send(1, &vm::udp(4, 3, 1, 2, 10)).expect("forwarded");
    assert!(
        matches!(dests[..], [Dest::Underlay(u)] if u.dst == ip(B)),
        "{dests:?}"
    );
    // The journal noted the local entry's loss: read, it neither announces nor withdraws again
    // (only VM 4, just learned, is announced).
    assert_eq!(rig.local(), [add(ours(4, None, seq(0)))]);
}

/// Equal numbers: the lower address wins (RFC 7432 §15.1). A route that does not win is held
/// and installed when the local MAC goes; withdrawals fall back to the next best route.
#[test]
fn equal_numbers_go_to_the_lower_address_and_held_routes_take_over() {
    let mut rig = Rig::new();
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    rig.local();
    // B is above us: we keep the MAC.
    rig.advertise(mac_route(3, None, B, seq(0)));
    assert_eq!(rig.place(3), Some((Location::Port(PortId(0)), false)));
    assert_eq!(rig.ops(), []);
    // LOW is below us: it wins.
    rig.advertise(mac_route(3, None, LOW, seq(0)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(LOW)), true)));
    assert_eq!(rig.ops(), [delete(ours(3, None, seq(0)))]);
    // LOW withdraws: B's route takes over; then nothing.
    rig.withdraw(mac_route(3, None, LOW, seq(0)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    rig.withdraw(mac_route(3, None, B, seq(0)));
    assert_eq!(rig.entry(3), None);
    assert_eq!(rig.ops(), []);

    // A local MAC that loses nothing to B's route, then goes: B's route is installed.
    rig.send(0, &vm::udp(5, 99, 1, 2, 10)).expect("flooded");
    rig.local();
    rig.advertise(mac_route(5, None, B, seq(0)));
    assert_eq!(rig.place(5), Some((Location::Port(PortId(0)), false)));
    rig.vtep.remove_entry(VNI, mac(5)).expect("learned");
    assert_eq!(rig.local(), [delete(ours(5, None, seq(0)))]);
    assert_eq!(rig.place(5), Some((Location::Remote(ip(B)), true)));
}

/// A MAC a remote route holds, then learned on a local port (the VM moved here): the table
/// moves it, the engine announces it with the route's number plus one, and the old VTEP's
/// withdrawal changes nothing.
#[test]
fn a_mac_that_moves_here_is_announced_with_the_remote_number_plus_one() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(3, None, B, seq(4)));
    rig.advertise(mac_route(3, None, C, seq(2)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    rig.send(0, &vm::rarp(3)).expect("flooded");
    assert_eq!(rig.place(3), Some((Location::Port(PortId(0)), false)));
    assert_eq!(
        rig.local(),
        [add(ours(3, None, seq(5)))],
        "past the best, 4"
    );
    rig.withdraw(mac_route(3, None, B, seq(4)));
    rig.withdraw(mac_route(3, None, C, seq(2)));
    assert_eq!(rig.place(3), Some((Location::Port(PortId(0)), false)));
    assert_eq!(rig.ops(), []);
    let s = rig.summary();
    assert_eq!((s.local_macs, s.remote_macs), (1, 0));
}

/// Sticky routes (static MACs, RFC 7432 §15.2): a sticky remote route holds its MAC against
/// local frames (dropped as a static entry's) and displaces a local learned MAC whatever the
/// numbers; made static here, the MAC is taken over past the route's number.
#[test]
fn a_sticky_remote_route_holds_its_mac_against_local_learning() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(3, None, B, sticky(2)));
    let entry = rig.entry(3).expect("installed");
    assert!(entry.is_evpn && entry.is_sticky);
    assert_eq!(
        rig.send(0, &vm::rarp(3)),
        Err(DropReason::StaticConflict),
        "a frame from the MAC here is dropped"
    );
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.local(), []);
    // Made static here: ours, sticky, past B's number.
    rig.vtep
        .add_static(VNI, mac(3), Location::Port(PortId(0)))
        .expect("static entries replace evpn ones");
    assert_eq!(rig.local(), [add(ours(3, None, sticky(3)))]);

    // A learned local MAC loses to a sticky route even with a lower number from a higher
    // address.
    rig.send(1, &vm::udp(4, 99, 1, 2, 10)).expect("flooded");
    assert_eq!(rig.local(), [add(ours(4, None, seq(0)))]);
    rig.advertise(mac_route(4, None, C, sticky(0)));
    assert_eq!(rig.place(4), Some((Location::Remote(ip(C)), true)));
    assert_eq!(rig.ops(), [delete(ours(4, None, seq(0)))]);
}

/// A static MAC at a local port is announced sticky and never moves: a remote route with a
/// higher number from a lower address is held, not installed, and refused nowhere.
#[test]
fn a_static_local_mac_is_announced_sticky_and_stays() {
    let mut rig = Rig::new();
    rig.vtep
        .add_static(VNI, mac(5), Location::Port(PortId(1)))
        .expect("port 1 is on the VNI");
    assert_eq!(rig.local(), [add(ours(5, None, sticky(0)))]);
    rig.advertise(mac_route(5, None, LOW, seq(9)));
    let entry = rig.entry(5).expect("static");
    assert_eq!(entry.location, Location::Port(PortId(1)));
    assert!(entry.is_static && !entry.is_evpn);
    assert_eq!(rig.ops(), []);
    assert!(rig.engine.counters().refused.is_empty());
}

// --- Our own routes, resync ---------------------------------------------------------------------

/// Our own routes read back from the RIB are counted and skipped: no entry, no flood target.
#[test]
fn our_own_routes_are_skipped_and_counted() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(7, None, US, seq(0)));
    rig.advertise(mac_route(7, Some(vm_ip(7)), US, seq(0)));
    rig.advertise(vtep_route(US));
    rig.withdraw(vtep_route(US));
    rig.flush();
    let counters = rig.engine.counters();
    assert_eq!((counters.own, counters.received), (4, 0));
    assert!(counters.refused.is_empty());
    assert_eq!(rig.entry(7), None);
    let s = rig.summary();
    assert_eq!((s.flood, s.remote_vteps, s.mac_ips), (vec![], vec![], 0));
    assert_eq!(rig.ops(), []);
}

/// After gobgpd restarts, the RIB read anew: remote routes the engine holds and the RIB lacks
/// are withdrawn (entries, bindings, flood list), the others kept, new ones applied.
#[test]
fn resync_withdraws_remote_routes_the_rib_lacks() {
    let mut rig = Rig::new();
    let kept = [
        vtep_route(B),
        mac_route(7, None, B, seq(0)),
        mac_route(8, Some(vm_ip(8)), C, seq(3)),
    ];
    let stale = [
        vtep_route(C),
        mac_route(9, None, D, seq(0)),
        mac_route(7, Some(vm_ip(7)), B, seq(0)),
    ];
    for r in kept.iter().chain(&stale) {
        rig.advertise(*r);
    }
    rig.flush();
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), Some(mac(7)));
    let new = mac_route(10, None, D, seq(0));
    let mut rib = kept.to_vec();
    rib.push(new);
    // Just after a (re)connection the stale routes stay (gobgpd's peers are not all back)...
    rig.engine.resync(&rig.vtep, &rib, Stale::Keep);
    rig.flush();
    assert_eq!(rig.place(9), Some((Location::Remote(ip(D)), true)), "kept");
    assert_eq!(rig.place(10), Some((Location::Remote(ip(D)), true)), "new");
    // ... and go with the sweep.
    rig.engine.resync(&rig.vtep, &rib, Stale::Remove);
    rig.flush();
    assert_eq!(rig.place(7), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.place(8), Some((Location::Remote(ip(C)), true)));
    assert_eq!(rig.entry(9), None, "stale: withdrawn");
    assert_eq!(rig.place(10), Some((Location::Remote(ip(D)), true)), "new");
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), None, "stale binding gone");
    assert_eq!(rig.arp_answer(1, 4, vm_ip(8)), Some(mac(8)));
    let s = rig.summary();
    assert_eq!(s.flood, [ip(B)]);
    assert_eq!(s.remote_vteps, [ip(B), ip(C), ip(D)]);
    assert_eq!((s.remote_macs, s.mac_ips), (3, 1));
    assert_eq!(rig.flooded_to(), BTreeSet::from([ip(B)]));
    assert_eq!(rig.ops(), [], "remote routes queue nothing");
}

/// Our own routes in the RIB that we no longer announce are queued for withdrawal (e.g. left
/// by a gobgpd that outlived us); those we announce are left alone.
#[test]
fn resync_withdraws_our_routes_we_no_longer_announce() {
    let mut rig = Rig::new();
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    assert_eq!(
        rig.local(),
        [
            add(ours(3, None, seq(0))),
            add(ours(3, Some(vm_ip(3)), seq(0)))
        ]
    );
    let no_ports = RemoteRoute::Vtep {
        vni: NO_PORTS,
        vtep: ip(US),
    };
    let rib = [
        vtep_route(US),                              // announced: VNI 5001 has ports
        no_ports,                                    // not: VNI 5002 has none
        mac_route(3, None, US, seq(0)),              // announced
        mac_route(3, Some(vm_ip(3)), US, seq(0)),    // announced
        mac_route(3, Some(vm_ip(33)), US, seq(0)),   // not: another address
        mac_route(6, None, US, seq(2)),              // not: MAC 6 is not here
        mac_route(6, Some(vm_ip(6)), US, sticky(1)), // nor its address
    ];
    rig.engine.resync(&rig.vtep, &rib, Stale::Keep);
    assert_eq!(
        rig.ops(),
        [
            BgpOp::Delete(NO_PORTS, LocalRoute::InclusiveMulticast),
            delete(ours(3, Some(vm_ip(33)), seq(0))),
            delete(ours(6, None, seq(2))),
            delete(ours(6, Some(vm_ip(6)), sticky(1))),
        ]
    );
    let counters = rig.engine.counters();
    assert_eq!((counters.own, counters.received), (7, 0));
    assert_eq!(rig.entry(6), None, "our own routes install nothing");
    assert_eq!(rig.place(3), Some((Location::Port(PortId(0)), false)));
}

// --- Refusals -----------------------------------------------------------------------------------

/// Paths that do not decode are counted by kind.
#[test]
fn refusals_are_counted_by_kind() {
    let mut rig = Rig::new();
    rig.engine.refused(&RouteError::MissingNlri);
    rig.engine.refused(&RouteError::NotImported { label: 7 });
    rig.engine.refused(&RouteError::MissingNlri);
    assert_eq!(rig.refused("missing_nlri"), 2);
    assert_eq!(rig.refused("not_imported"), 1);
    assert_eq!(rig.engine.counters().refused.len(), 2);
}

/// A MAC route whose VTEP no remote VTEP can be (the other address family, multicast,
/// unspecified), or whose MAC is not unicast, or on a VNI not ours, is counted and changes
/// nothing; routes after it are applied as usual.
#[test]
fn a_mac_route_no_vtep_could_send_is_counted_and_changes_nothing() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(7, None, "2001:db8::20", seq(0)));
    rig.advertise(mac_route(7, Some(vm_ip(7)), "2001:db8::20", seq(0)));
    rig.advertise(mac_route(7, None, "239.1.1.1", seq(0)));
    rig.advertise(mac_route(7, None, "0.0.0.0", seq(0)));
    rig.advertise(RemoteRoute::Mac {
        vni: VNI,
        mac: MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
        ip: None,
        vtep: ip(B),
        mobility: seq(0),
    });
    rig.advertise(RemoteRoute::Mac {
        vni: Vni::from_u24(7777),
        mac: mac(7),
        ip: None,
        vtep: ip(B),
        mobility: seq(0),
    });
    assert_eq!(rig.refused("table:family_mismatch"), 2);
    assert_eq!(rig.refused("table:not_a_remote"), 2);
    assert_eq!(rig.refused("not_unicast_mac"), 1);
    assert_eq!(rig.refused("not_imported"), 1);
    rig.flush();
    assert_eq!(rig.entry(7), None);
    assert_eq!(rig.arp_answer(1, 4, vm_ip(7)), None, "no binding either");
    let s = rig.summary();
    assert_eq!((s.remote_macs, s.mac_ips), (0, 0));
    assert_eq!(s.remote_vteps, [] as [IpAddr; 0]);
    assert!(!rig.accepts_from("239.1.1.1") && !rig.accepts_from(B));
    // Their withdrawals find nothing.
    rig.withdraw(mac_route(7, None, "239.1.1.1", seq(0)));
    rig.flush();
    assert_eq!(rig.summary().remote_vteps, [] as [IpAddr; 0]);
    // Never fatal: a good route still goes in.
    rig.advertise(mac_route(7, None, B, seq(0)));
    assert_eq!(rig.place(7), Some((Location::Remote(ip(B)), true)));
}

/// A remote route for a MAC a static entry holds: the table refuses it, counted; the static
/// entry stays.
#[test]
fn a_remote_route_for_a_static_mac_is_refused_by_the_table() {
    let mut rig = Rig::new();
    rig.vtep
        .add_static(VNI, mac(6), Location::Remote(ip(D)))
        .expect("a remote static entry");
    rig.advertise(mac_route(6, None, B, seq(0)));
    assert_eq!(rig.refused("table:static_entry"), 1);
    let entry = rig.entry(6).expect("static");
    assert_eq!(entry.location, Location::Remote(ip(D)));
    assert!(entry.is_static && !entry.is_evpn);
    // Its withdrawal leaves the static entry too.
    rig.withdraw(mac_route(6, None, B, seq(0)));
    assert_eq!(rig.place(6), Some((Location::Remote(ip(D)), false)));
    assert_eq!(rig.ops(), []);
}

/// A type 3 route whose VTEP no remote VTEP can be is counted and refused on its own; the
/// other VTEPs' type 3 routes still make the flood list.
#[test]
fn a_type_3_route_no_vtep_could_send_is_refused_without_blocking_the_others() {
    let mut rig = Rig::new();
    rig.advertise(vtep_route("239.1.1.1"));
    rig.advertise(vtep_route(B));
    rig.flush();
    assert_eq!(rig.refused("table:not_a_remote"), 1);
    assert_eq!(rig.flooded_to(), BTreeSet::from([ip(B)]));
    assert!(rig.accepts_from(B));
    assert_eq!(rig.summary().flood, [ip(B)]);
    rig.advertise(vtep_route(C));
    rig.flush();
    assert_eq!(rig.flooded_to(), BTreeSet::from([ip(B), ip(C)]));
    assert_eq!(rig.refused("table:not_a_remote"), 1, "counted once");
}

// --- Local addresses ----------------------------------------------------------------------------

/// A local VM's ARP (its sender address) after its MAC is local: a MAC/IP route and a
/// binding; when the MAC goes, both its routes are withdrawn and the binding goes; when it
/// comes back, its address is announced again.
#[test]
fn a_local_vms_address_is_announced_with_its_mac_and_withdrawn_with_it() {
    let mut rig = Rig::new();
    rig.send(0, &vm::udp(3, 99, 1, 2, 10)).expect("flooded");
    assert_eq!(rig.local(), [add(ours(3, None, seq(0)))]);
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    assert_eq!(rig.local(), [add(ours(3, Some(vm_ip(3)), seq(0)))]);
    // Seen again: nothing new.
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    assert_eq!(rig.local(), []);
    let s = rig.summary();
    assert_eq!((s.local_macs, s.mac_ips, s.local_routes), (1, 1, 3));
    assert_eq!(
        rig.arp_answer(1, 4, vm_ip(3)),
        Some(mac(3)),
        "bound: answered"
    );
    assert_eq!(
        rig.local(),
        [
            add(ours(4, None, seq(0))),
            add(ours(4, Some(vm_ip(4)), seq(0)))
        ],
        "the asker, learned and snooped"
    );

    rig.vtep.remove_entry(VNI, mac(3)).expect("learned");
    assert_eq!(
        rig.local(),
        [
            delete(ours(3, None, seq(0))),
            delete(ours(3, Some(vm_ip(3)), seq(0)))
        ]
    );
    assert_eq!(rig.arp_answer(1, 4, vm_ip(3)), None, "unbound: flooded");
    let s = rig.summary();
    assert_eq!((s.local_macs, s.mac_ips), (1, 1), "VM 4 only");

    // Back, with the same address: announced again (the snooper forgot it with the MAC).
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    assert_eq!(
        rig.local(),
        [
            add(ours(3, None, seq(0))),
            add(ours(3, Some(vm_ip(3)), seq(0)))
        ]
    );
}

/// An address that moves to another local MAC: withdrawn with the old MAC, announced with the
/// new one, and bound to it.
#[test]
fn a_local_address_that_changes_mac_moves_its_route() {
    let mut rig = Rig::new();
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    rig.local();
    // VM 4 takes VM 3's address (a gratuitous ARP would too).
    let claim = eth::arp_request(vm::mac(4), vm::vm_ip(3), vm::vm_ip(9));
    rig.send(1, &claim).expect("flooded");
    assert_eq!(
        rig.local(),
        [
            add(ours(4, None, seq(0))),
            delete(ours(3, Some(vm_ip(3)), seq(0))),
            add(ours(4, Some(vm_ip(3)), seq(0))),
        ]
    );
    assert_eq!(rig.arp_answer(0, 5, vm_ip(3)), Some(mac(4)));
    assert_eq!(
        rig.local(),
        [
            add(ours(5, None, seq(0))),
            add(ours(5, Some(vm_ip(5)), seq(0)))
        ],
        "the asker, learned and snooped"
    );
    // MAC 3 stays announced, without the address.
    rig.vtep.remove_entry(VNI, mac(3)).expect("learned");
    assert_eq!(rig.local(), [delete(ours(3, None, seq(0)))]);
    assert_eq!(rig.arp_answer(0, 5, vm_ip(3)), Some(mac(4)), "still VM 4's");
}

/// A VM that moved here from B (its MAC/IP route held): announced past B's number with its
/// address; B then withdraws its routes, as a VTEP that lost the MAC does. The address stays
/// bound: we announce it.
#[test]
fn a_remote_mac_ip_withdrawal_keeps_the_binding_of_a_mac_that_moved_here() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(3, None, B, seq(0)));
    rig.advertise(mac_route(3, Some(vm_ip(3)), B, seq(0)));
    // VM 3 arrives on port 0 and ARPs.
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    assert_eq!(
        rig.local(),
        [
            add(ours(3, None, seq(1))),
            add(ours(3, Some(vm_ip(3)), seq(1)))
        ]
    );
    rig.withdraw(mac_route(3, Some(vm_ip(3)), B, seq(0)));
    rig.withdraw(mac_route(3, None, B, seq(0)));
    assert_eq!(rig.ops(), []);
    assert_eq!(rig.summary().mac_ips, 1);
    assert_eq!(
        rig.arp_answer(1, 4, vm_ip(3)),
        Some(mac(3)),
        "our MAC/IP route's binding"
    );
}

/// A VM that moved from here to B, whose MAC/IP route comes before its MAC-only route: the
/// route moves the MAC away and binds the address, which stays bound to the MAC at B.
#[test]
fn a_mac_ip_route_that_moves_a_local_mac_away_keeps_its_binding() {
    let mut rig = Rig::new();
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    rig.local();
    rig.advertise(mac_route(3, Some(vm_ip(3)), B, seq(1)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    assert_eq!(
        rig.ops(),
        [
            delete(ours(3, None, seq(0))),
            delete(ours(3, Some(vm_ip(3)), seq(0)))
        ]
    );
    assert_eq!(rig.summary().mac_ips, 1, "B's route");
    assert_eq!(rig.arp_answer(1, 4, vm_ip(3)), Some(mac(3)), "B's binding");
}

/// The same move with the MAC-only route first: the MAC/IP route, arriving once our routes
/// are withdrawn, binds the address to the MAC at B (the other order of the test above).
#[test]
fn a_mac_only_route_then_a_mac_ip_route_moving_a_local_mac_away_bind_the_address() {
    let mut rig = Rig::new();
    rig.send(0, &vm::arp_request(3, 9)).expect("flooded");
    rig.local();
    rig.advertise(mac_route(3, None, B, seq(1)));
    assert_eq!(
        rig.ops(),
        [
            delete(ours(3, None, seq(0))),
            delete(ours(3, Some(vm_ip(3)), seq(0)))
        ]
    );
    assert_eq!(
        rig.arp_answer(1, 4, vm_ip(3)),
        None,
        "ours went with our routes"
    );
    rig.advertise(mac_route(3, Some(vm_ip(3)), B, seq(1)));
    assert_eq!(rig.place(3), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.ops(), []);
    assert_eq!(rig.summary().mac_ips, 1);
    assert_eq!(rig.arp_answer(1, 4, vm_ip(3)), Some(mac(3)), "B's binding");
}

/// A VM moving between two remote VTEPs: the new VTEP's MAC/IP route arrives before the old
/// one's withdrawal. The address stays bound (ARP is still answered): the new route binds it.
#[test]
fn a_move_between_remote_vteps_keeps_the_binding_whatever_the_order() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(3, Some(vm_ip(3)), B, seq(0)));
    rig.advertise(mac_route(3, Some(vm_ip(3)), C, seq(1)));
    rig.withdraw(mac_route(3, Some(vm_ip(3)), B, seq(0)));
    rig.flush();
    assert_eq!(rig.place(3), Some((Location::Remote(ip(C)), true)));
    assert_eq!(rig.arp_answer(1, 4, vm_ip(3)), Some(mac(3)));
    // Once C withdraws too, the address is unbound and the entry goes.
    rig.withdraw(mac_route(3, Some(vm_ip(3)), C, seq(1)));
    rig.flush();
    assert_eq!(rig.entry(3), None);
    assert_eq!(rig.arp_answer(1, 4, vm_ip(3)), None);
}

/// Peers cannot grow the table past the VNI's limit: routes for MACs beyond it are refused and
/// counted, more routes for a MAC already held are not, and a withdrawal makes room.
#[test]
fn remote_macs_stop_at_the_vnis_limit() {
    let mut rig = Rig::new();
    let max = u8::try_from(MAX_REMOTE_MACS).expect("a small limit");
    for n in 10..10 + max {
        rig.advertise(mac_route(n, None, B, seq(0)));
    }
    rig.advertise(mac_route(10 + max, None, B, seq(0)));
    assert_eq!(rig.refused("vni_full"), 1);
    assert_eq!(rig.entry(10 + max), None);
    assert_eq!(rig.summary().remote_macs, MAX_REMOTE_MACS);
    // A MAC/IP route for a MAC held is no new MAC.
    rig.advertise(mac_route(10, Some(vm_ip(10)), B, seq(0)));
    assert_eq!(rig.refused("vni_full"), 1);
    rig.withdraw(mac_route(11, None, B, seq(0)));
    rig.advertise(mac_route(10 + max, None, B, seq(0)));
    assert_eq!(rig.refused("vni_full"), 1);
    assert_eq!(rig.place(10 + max), Some((Location::Remote(ip(B)), true)));
    assert_eq!(rig.summary().remote_macs, MAX_REMOTE_MACS);
}

/// A remote route that turns sticky (or back) installs the entry again with that stickiness.
#[test]
fn a_route_that_turns_sticky_makes_its_entry_sticky() {
    let mut rig = Rig::new();
    rig.advertise(mac_route(3, None, B, seq(1)));
    assert_eq!(rig.entry(3).map(|e| e.is_sticky), Some(false));
    rig.advertise(mac_route(3, None, B, sticky(1)));
    assert_eq!(rig.entry(3).map(|e| e.is_sticky), Some(true));
    rig.advertise(mac_route(3, None, B, seq(1)));
    assert_eq!(rig.entry(3).map(|e| e.is_sticky), Some(false));
}
