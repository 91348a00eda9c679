//! The EVPN state of one VTEP, between its forwarding table and GoBGP's RIB (sans-IO: routes
//! and the table's journal in, table changes and [`BgpOp`]s out). It keeps, per (VNI, MAC),
//! the MAC mobility state ([`MacState`]), the remote routes that announce it and the local
//! addresses bound to it; per VNI, the remote VTEPs of its type 3 routes; and drives
//! [`Vtep`]'s control-plane interface: remote MACs become `evpn` entries, remote MAC/IP routes
//! neighbour bindings for ARP/ND suppression, type 3 routes the flood list, and every VTEP that
//! announces anything an accepted underlay source.
//!
//! Contract: a route the table refuses (an address no VTEP can have, a MAC a static entry
//! holds) is counted, never fatal; our own routes coming back from the RIB are skipped. The
//! operations for gobgpd queue up in order ([`Engine::take_ops`]); while gobgpd is away they
//! are dropped ([`Engine::clear_ops`]) and [`Engine::connected`] queues everything again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use wasm_vtep_plugin_sdk::MacAddr;

use super::mobility::{Action, MacState, Seq};
use super::parse::{Import, RouteError};
use super::route::{LocalRoute, MacMobility, RemoteEvent, RemoteRoute, RouteTarget, VniExport};
use super::small_map::SmallMap;
use crate::fdb::{FdbError, LocalChanges, Location};
use crate::vtep::Vtep;
use crate::wire::Vni;

/// An operation on gobgpd's RIB: advertise or withdraw one of our routes on a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpOp {
    Add(Vni, LocalRoute),
    Delete(Vni, LocalRoute),
}

/// What [`Engine::resync`] does with remote routes the RIB no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Keep them (gobgpd's peers may not have sent theirs yet).
    Keep,
    /// Withdraw them (the RIB is complete).
    Remove,
}

/// One EVPN VNI as configured: what it exports and whether it has local ports (only then is
/// it announced with a type 3 route, RFC 8365 §5.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniPlan {
    pub export: VniExport,
    /// The route targets it imports.
    pub import: Vec<RouteTarget>,
    pub has_ports: bool,
    /// Remote MACs held at most (the VNI's `max_entries`): past it, routes for further MACs
    /// are refused and counted (`vni_full`), so that peers cannot grow the table without end.
    pub max_remote_macs: usize,
}

/// What the engine counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Remote route changes applied.
    pub received: u64,
    /// Our own routes read back from the RIB (skipped).
    pub own: u64,
    /// Routes refused, by reason (`RouteError::kind`, or `table:` and the table's refusal).
    pub refused: BTreeMap<String, u64>,
}

/// One VNI's state.
#[derive(Debug)]
struct VniState {
    plan: VniPlan,
    /// Remote VTEPs with a type 3 route: BUM frames go to each.
    flood: BTreeSet<IpAddr>,
    /// Per remote VTEP, how many of its routes (type 2 and 3) are held: the VTEPs whose
    /// datagrams the source check accepts.
    routes_from: BTreeMap<IpAddr, usize>,
    /// The flood list or the announced VTEPs changed since the table was told.
    dirty: bool,
    /// MACs with at least one remote route.
    remote_macs: usize,
}

/// One MAC's state on one VNI.
#[derive(Debug, Default)]
struct MacEntry {
    mobility: MacState,
    /// Remote type 2 routes: per VTEP, per IP (none: the MAC-only route), their mobility.
    remote: SmallMap<IpAddr, SmallMap<Option<IpAddr>, MacMobility>>,
    /// Local addresses bound to the MAC (announced as MAC/IP routes while the MAC is local).
    local_ips: BTreeSet<IpAddr>,
}

impl MacEntry {
    fn is_empty(&self) -> bool {
        self.mobility.is_empty() && self.remote.is_empty() && self.local_ips.is_empty()
    }

    /// What `vtep`'s routes say of the MAC: the highest number, sticky if any route is.
    fn remote_seq(&self, vtep: IpAddr) -> Option<Seq> {
        let routes = self.remote.get(&vtep)?;
        routes.values().fold(None, |acc: Option<Seq>, m| {
            let seq = acc.map_or(m.seq, |a| a.seq.max(m.seq));
            let sticky = acc.is_some_and(|a| a.sticky) || m.sticky;
            Some(Seq { seq, sticky })
        })
    }
}

/// Per VNI, what `vtep evpn show` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniSummary {
    pub plan: VniPlan,
    /// Our routes on it: type 3, MACs, MAC/IPs.
    pub local_routes: usize,
    /// Local MACs announced.
    pub local_macs: usize,
    /// Remote VTEPs with a type 3 route.
    pub flood: Vec<IpAddr>,
    /// Remote VTEPs with any route.
    pub remote_vteps: Vec<IpAddr>,
    /// Remote MACs installed.
    pub remote_macs: usize,
    /// MAC/IP bindings, remote and local.
    pub mac_ips: usize,
}

/// The EVPN state.
#[derive(Debug)]
pub struct Engine {
    us: IpAddr,
    import: Import,
    vnis: BTreeMap<Vni, VniState>,
    macs: HashMap<(Vni, MacAddr), MacEntry>,
    /// Which MAC each local address is bound to.
    local_ip_owner: HashMap<(Vni, IpAddr), MacAddr>,
    ops: Vec<BgpOp>,
    counters: EngineCounters,
    actions: Vec<Action>,
    changed: Vec<(Vni, MacAddr)>,
    bindings: Vec<(IpAddr, MacAddr)>,
}

impl Engine {
    /// The engine of the VTEP at `us` (its underlay address: the next hop of its routes),
    /// importing by `import`, with `plans` for its EVPN VNIs.
    pub fn new(us: IpAddr, import: Import, plans: Vec<VniPlan>) -> Engine {
        let vnis = plans
            .into_iter()
            .map(|plan| {
                let state = VniState {
                    plan,
                    flood: BTreeSet::new(),
                    routes_from: BTreeMap::new(),
                    dirty: false,
                    remote_macs: 0,
                };
                (state.plan.export.vni, state)
            })
            .collect();
        Engine {
            us,
            import,
            vnis,
            macs: HashMap::new(),
            local_ip_owner: HashMap::new(),
            ops: Vec::new(),
            counters: EngineCounters::default(),
            actions: Vec::new(),
            changed: Vec::new(),
            bindings: Vec::new(),
        }
    }

    /// The route targets each VNI imports.
    pub fn import(&self) -> &Import {
        &self.import
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// The operations for gobgpd since the last call, in order.
    pub fn take_ops(&mut self) -> Vec<BgpOp> {
        std::mem::take(&mut self.ops)
    }

    /// Forgets the queued operations (gobgpd is away: [`Engine::connected`] queues the whole
    /// state again when it is back).
    pub fn clear_ops(&mut self) {
        self.ops.clear();
    }

    /// gobgpd is (again) reachable: queues every route we announce (a restarted gobgpd has
    /// none; one that kept them replaces each with itself).
    pub fn connected(&mut self) {
        self.queue_every_route(BgpOp::Add);
    }

    /// Replaces the queue with `op` for every route we announce.
    fn queue_every_route(&mut self, op: fn(Vni, LocalRoute) -> BgpOp) {
        self.ops.clear();
        for (&vni, v) in &self.vnis {
            if v.plan.has_ports {
                self.ops.push(op(vni, LocalRoute::InclusiveMulticast));
            }
        }
        for (&(vni, mac), m) in &self.macs {
            if let Some(local) = m.mobility.local() {
                push_mac_routes(&mut self.ops, op, vni, mac, local, &m.local_ips);
            }
        }
    }

    /// Counts a path that could not be used.
    pub fn refused(&mut self, error: &RouteError) {
        self.count_refusal(error.kind());
    }

    fn count_refusal(&mut self, kind: &str) {
        *self.counters.refused.entry(kind.to_owned()).or_default() += 1;
    }

    /// Applies a change of the RIB's best paths.
    pub fn remote(&mut self, vtep: &Vtep, event: RemoteEvent) {
        let route = *event.route();
        if route.vtep() == self.us {
            self.counters.own += 1;
            return;
        }
        if !self.vnis.contains_key(&route.vni()) {
            // An import of ours names only configured VNIs; kept as a guard.
            self.count_refusal("not_imported");
            return;
        }
        self.counters.received += 1;
        let advertised = matches!(event, RemoteEvent::Advertised(_));
        match route {
            RemoteRoute::Vtep { vni, vtep: remote } => {
                self.remote_vtep(vtep, vni, remote, advertised);
            }
            RemoteRoute::Mac {
                vni,
                mac,
                ip,
                vtep: remote,
                mobility,
            } => {
                if advertised {
                    self.mac_announced(vtep, vni, mac, ip, remote, mobility);
                } else {
                    self.mac_withdrawn(vtep, vni, mac, ip, remote);
                }
            }
        }
    }

    /// A full read of the RIB (after [`Engine::connected`]): every route read is applied, our
    /// own routes in the RIB that we no longer announce are queued for withdrawal, and with
    /// [`Stale::Remove`] remote routes the engine holds and the RIB no longer has are
    /// withdrawn first. [`Stale::Keep`] is for a gobgpd that has just (re)started: its peers'
    /// routes are not back yet, and what the table holds keeps forwarding until they are.
    pub fn resync(&mut self, vtep: &Vtep, rib: &[RemoteRoute], stale: Stale) {
        let mut present: BTreeSet<RouteKey> = BTreeSet::new();
        for route in rib {
            if route.vtep() == self.us {
                self.counters.own += 1;
                if !self.announces(route) {
                    self.ops
                        .push(BgpOp::Delete(route.vni(), own_route_of(route)));
                }
                continue;
            }
            present.insert(RouteKey::of(route));
        }
        if stale == Stale::Remove {
            for gone in self.held_routes() {
                if !present.contains(&RouteKey::of(&gone)) {
                    self.remote(vtep, RemoteEvent::Withdrawn(gone));
                }
            }
        }
        let us = self.us;
        for route in rib.iter().filter(|r| r.vtep() != us) {
            self.remote(vtep, RemoteEvent::Advertised(*route));
        }
    }

    /// Whether we announce `route` (read back from the RIB with our address).
    fn announces(&self, route: &RemoteRoute) -> bool {
        match *route {
            RemoteRoute::Vtep { vni, .. } => self.vnis.get(&vni).is_some_and(|v| v.plan.has_ports),
            RemoteRoute::Mac { vni, mac, ip, .. } => self.macs.get(&(vni, mac)).is_some_and(|m| {
                m.mobility.local().is_some() && ip.is_none_or(|ip| m.local_ips.contains(&ip))
            }),
        }
    }

    /// Every remote route held.
    fn held_routes(&self) -> Vec<RemoteRoute> {
        let mut held = Vec::new();
        for (&vni, v) in &self.vnis {
            held.extend(v.flood.iter().map(|&vtep| RemoteRoute::Vtep { vni, vtep }));
        }
        for (&(vni, mac), m) in &self.macs {
            for (&vtep, routes) in m.remote.iter() {
                for (&ip, &mobility) in routes.iter() {
                    held.push(RemoteRoute::Mac {
                        vni,
                        mac,
                        ip,
                        vtep,
                        mobility,
                    });
                }
            }
        }
        held
    }

    fn remote_vtep(&mut self, vtep: &Vtep, vni: Vni, remote: IpAddr, advertised: bool) {
        // Refused here, not by the table: one bad address would make it refuse the VNI's
        // whole list at every flush.
        if advertised && let Err(e) = vtep.check_remote(remote) {
            self.count_refusal(table_refusal(&e));
            return;
        }
        let Some(v) = self.vnis.get_mut(&vni) else {
            return;
        };
        let changed = if advertised {
            v.flood.insert(remote)
        } else {
            v.flood.remove(&remote)
        };
        if changed {
            // The flood list changed, whatever else the VTEP announces.
            v.dirty = true;
            count_route(v, remote, advertised);
        }
    }

    fn mac_announced(
        &mut self,
        vtep: &Vtep,
        vni: Vni,
        mac: MacAddr,
        ip: Option<IpAddr>,
        remote: IpAddr,
        mobility: MacMobility,
    ) {
        if !mac.is_valid_unicast() {
            self.count_refusal("not_unicast_mac");
            return;
        }
        if let Err(e) = vtep.check_remote(remote) {
            self.count_refusal(table_refusal(&e));
            return;
        }
        if let Some(ip) = ip
            && let Err(e) = vtep.set_neighbor(vni, ip, mac, false)
        {
            self.count_refusal(table_refusal(&e));
        }
        let Some(v) = self.vnis.get_mut(&vni) else {
            return;
        };
        let m = self.macs.entry((vni, mac)).or_default();
        if m.remote.is_empty() {
            if v.remote_macs >= v.plan.max_remote_macs {
                if m.is_empty() {
                    self.macs.remove(&(vni, mac));
                }
                self.count_refusal("vni_full");
                return;
            }
            v.remote_macs += 1;
        }
        let new = m
            .remote
            .get_or_default(remote)
            .insert(ip, mobility)
            .is_none();
        if new {
            count_route(v, remote, true);
        }
        let seq = m.remote_seq(remote).unwrap_or(Seq {
            seq: mobility.seq,
            sticky: mobility.sticky,
        });
        self.actions.clear();
        m.mobility
            .announced(remote, seq, self.us, &mut self.actions);
        self.carry_out(vtep, vni, mac);
    }

    fn mac_withdrawn(
        &mut self,
        vtep: &Vtep,
        vni: Vni,
        mac: MacAddr,
        ip: Option<IpAddr>,
        remote: IpAddr,
    ) {
        let Some(m) = self.macs.get_mut(&(vni, mac)) else {
            return;
        };
        let Some(routes) = m.remote.get_mut(&remote) else {
            return;
        };
        if routes.remove(&ip).is_none() {
            return;
        }
        let emptied = routes.is_empty();
        if emptied {
            m.remote.remove(&remote);
        }
        if let Some(v) = self.vnis.get_mut(&vni) {
            count_route(v, remote, false);
            if m.remote.is_empty() {
                v.remote_macs = v.remote_macs.saturating_sub(1);
            }
        }
        // A binding to another MAC since is not this route's to remove (`remove_neighbor`
        // checks), nor one the MAC still has: here, or by another VTEP's route (a move whose
        // new route came before the old one's withdrawal).
        if let Some(ip) = ip {
            let local = m.mobility.local().is_some() && m.local_ips.contains(&ip);
            let elsewhere = m.remote.values().any(|r| r.contains_key(&Some(ip)));
            if !local && !elsewhere {
                let _ = vtep.remove_neighbor(vni, ip, mac);
            }
        }
        self.actions.clear();
        if emptied {
            m.mobility.withdrawn(remote, &mut self.actions);
        } else if let Some(seq) = m.remote_seq(remote) {
            m.mobility
                .announced(remote, seq, self.us, &mut self.actions);
        }
        self.carry_out(vtep, vni, mac);
    }

    /// Reads the table's journal of local changes (and the local addresses seen) and
    /// announces or withdraws accordingly. `everything`: read every entry anew (at start, and
    /// when the journal overflowed).
    pub fn local_changes(&mut self, vtep: &Vtep, now: Instant, everything: bool) {
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        let overflowed = vtep.take_local_changes(&mut changed) == LocalChanges::Overflowed;
        if everything || overflowed {
            changed.clear();
            changed.extend(vtep.fdb_entries(now).map(|(e, _)| (e.vni, e.mac)));
            changed.extend(
                self.macs
                    .iter()
                    .filter(|(_, m)| m.mobility.local().is_some())
                    .map(|(&k, _)| k),
            );
            changed.sort_unstable_by_key(|&(vni, mac)| (vni.get(), mac.0));
            changed.dedup();
        }
        for &(vni, mac) in &changed {
            if !self.vnis.contains_key(&vni) {
                continue;
            }
            let local = vtep
                .fdb_entry(vni, mac, now)
                .and_then(|(e, _)| match e.location {
                    Location::Port(_) if !e.is_evpn => Some(e.is_static),
                    _ => None,
                });
            self.local_mac(vtep, vni, mac, local);
        }
        self.changed = changed;
        self.local_ips(vtep);
    }

    /// `mac` on `vni` is local (`Some(static)`) or not.
    fn local_mac(&mut self, vtep: &Vtep, vni: Vni, mac: MacAddr, local: Option<bool>) {
        let m = self.macs.entry((vni, mac)).or_default();
        self.actions.clear();
        match local {
            Some(sticky) => m.mobility.learned_locally(sticky, &mut self.actions),
            None => m.mobility.gone_locally(&mut self.actions),
        }
        self.carry_out(vtep, vni, mac);
    }

    fn local_ips(&mut self, vtep: &Vtep) {
        let vnis: Vec<Vni> = self.vnis.keys().copied().collect();
        let mut bindings = std::mem::take(&mut self.bindings);
        for vni in vnis {
            bindings.clear();
            // A VNI of ours is the table's too: this cannot fail.
            if vtep.take_local_ips(vni, &mut bindings).is_err() {
                continue;
            }
            for &(ip, mac) in &bindings {
                self.bind_local_ip(vtep, vni, ip, mac);
            }
        }
        self.bindings = bindings;
    }

    /// A local VM uses `ip` with `mac`.
    fn bind_local_ip(&mut self, vtep: &Vtep, vni: Vni, ip: IpAddr, mac: MacAddr) {
        match self.local_ip_owner.insert((vni, ip), mac) {
            Some(old) if old == mac => return,
            Some(old) => self.unbind_local_ip(vtep, vni, ip, old),
            None => {}
        }
        let m = self.macs.entry((vni, mac)).or_default();
        m.local_ips.insert(ip);
        if let Some(local) = m.mobility.local() {
            self.ops
                .push(BgpOp::Add(vni, mac_route(mac, Some(ip), local)));
            let _ = vtep.set_neighbor(vni, ip, mac, false);
        }
    }

    /// `ip` is no longer bound to `old`.
    fn unbind_local_ip(&mut self, vtep: &Vtep, vni: Vni, ip: IpAddr, old: MacAddr) {
        let Some(m) = self.macs.get_mut(&(vni, old)) else {
            return;
        };
        m.local_ips.remove(&ip);
        if let Some(local) = m.mobility.local() {
            self.ops
                .push(BgpOp::Delete(vni, mac_route(old, Some(ip), local)));
            let _ = vtep.remove_neighbor(vni, ip, old);
        }
        if m.is_empty() {
            self.macs.remove(&(vni, old));
        }
    }

    /// Carries out `self.actions` for `mac` on `vni`.
    fn carry_out(&mut self, vtep: &Vtep, vni: Vni, mac: MacAddr) {
        let Some(m) = self.macs.get_mut(&(vni, mac)) else {
            return;
        };
        let mut refusal = None;
        for &action in &self.actions {
            match action {
                Action::Advertise(seq) => {
                    push_mac_routes(&mut self.ops, BgpOp::Add, vni, mac, seq, &m.local_ips);
                    for &ip in &m.local_ips {
                        let _ = vtep.set_neighbor(vni, ip, mac, false);
                    }
                }
                Action::Withdraw => {
                    // A withdrawal names routes by their NLRI: the number is not part of it.
                    let any = Seq {
                        seq: 0,
                        sticky: false,
                    };
                    push_mac_routes(&mut self.ops, BgpOp::Delete, vni, mac, any, &m.local_ips);
                    // The snooper forgets them too, so that the MAC's addresses are noted
                    // again if it comes back.
                    let ips: Vec<IpAddr> = m.local_ips.iter().copied().collect();
                    let _ = vtep.forget_local_ips(vni, mac, &ips);
                    for ip in std::mem::take(&mut m.local_ips) {
                        // The remote route that took the MAC may bind the same address.
                        let remote_binds = m.remote.values().any(|r| r.contains_key(&Some(ip)));
                        if !remote_binds {
                            let _ = vtep.remove_neighbor(vni, ip, mac);
                        }
                        self.local_ip_owner.remove(&(vni, ip));
                    }
                }
                Action::Install(remote) => {
                    let sticky = m.remote_seq(remote).is_some_and(|s| s.sticky);
                    if let Err(e) = vtep.install_evpn(vni, mac, remote, sticky) {
                        refusal = Some(table_refusal(&e));
                    }
                }
                Action::Remove(remote) => {
                    let _ = vtep.remove_evpn(vni, mac, remote);
                }
            }
        }
        if m.is_empty() {
            self.macs.remove(&(vni, mac));
        }
        if let Some(kind) = refusal {
            self.count_refusal(kind);
        }
    }

    /// Tells the table the VNIs' new flood lists and announced VTEPs (after a batch of
    /// routes: once per VNI, not per route).
    pub fn flush_remotes(&mut self, vtep: &Vtep) {
        let mut refusals = Vec::new();
        for (&vni, v) in &mut self.vnis {
            if !std::mem::take(&mut v.dirty) {
                continue;
            }
            let flood: Vec<IpAddr> = v.flood.iter().copied().collect();
            let announced: Vec<IpAddr> = v.routes_from.keys().copied().collect();
            if let Err(e) = vtep.set_control_remotes(vni, &flood, &announced) {
                refusals.push(table_refusal(&e));
            }
        }
        for kind in refusals {
            self.count_refusal(kind);
        }
    }

    /// Per VNI, what is announced and held (one pass over the MACs).
    pub fn summary(&self) -> Vec<VniSummary> {
        #[derive(Default)]
        struct Counts {
            local_macs: usize,
            local_ips: usize,
            remote_ips: usize,
        }
        let mut counts: BTreeMap<Vni, Counts> = BTreeMap::new();
        for (&(vni, _), m) in &self.macs {
            let c = counts.entry(vni).or_default();
            if m.mobility.local().is_some() {
                c.local_macs += 1;
                c.local_ips += m.local_ips.len();
            }
            c.remote_ips += m
                .remote
                .values()
                .flat_map(|r| r.keys())
                .filter(|ip| ip.is_some())
                .count();
        }
        self.vnis
            .iter()
            .map(|(vni, v)| {
                let c = counts.remove(vni).unwrap_or_default();
                VniSummary {
                    plan: v.plan.clone(),
                    local_routes: usize::from(v.plan.has_ports) + c.local_macs + c.local_ips,
                    local_macs: c.local_macs,
                    flood: v.flood.iter().copied().collect(),
                    remote_vteps: v.routes_from.keys().copied().collect(),
                    remote_macs: v.remote_macs,
                    mac_ips: c.local_ips + c.remote_ips,
                }
            })
            .collect()
    }

    /// Every route we announce now (to withdraw them all when the daemon stops).
    pub fn withdraw_all(&mut self) {
        self.queue_every_route(BgpOp::Delete);
    }

    /// What each VNI exports (for the [`BgpOp`]s on it).
    pub fn exports(&self) -> impl Iterator<Item = &VniExport> + '_ {
        self.vnis.values().map(|v| &v.plan.export)
    }
}

/// A route's identity in the RIB (its NLRI as we read it, without attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RouteKey {
    Vtep(u32, IpAddr),
    Mac(u32, [u8; 6], Option<IpAddr>, IpAddr),
}

impl RouteKey {
    fn of(route: &RemoteRoute) -> RouteKey {
        match *route {
            RemoteRoute::Vtep { vni, vtep } => RouteKey::Vtep(vni.get(), vtep),
            RemoteRoute::Mac {
                vni, mac, ip, vtep, ..
            } => RouteKey::Mac(vni.get(), mac.0, ip, vtep),
        }
    }
}

/// One of our routes read back from the RIB, as the route to withdraw.
fn own_route_of(route: &RemoteRoute) -> LocalRoute {
    match *route {
        RemoteRoute::Vtep { .. } => LocalRoute::InclusiveMulticast,
        RemoteRoute::Mac {
            mac, ip, mobility, ..
        } => LocalRoute::MacIp { mac, ip, mobility },
    }
}

/// Counts a route of `remote` in or out; the VNI is dirty only when `remote` starts or stops
/// announcing anything on it (a MAC more or less changes no list the table holds).
fn count_route(v: &mut VniState, remote: IpAddr, added: bool) {
    if added {
        let n = v.routes_from.entry(remote).or_default();
        *n += 1;
        v.dirty |= *n == 1;
    } else if let Some(n) = v.routes_from.get_mut(&remote) {
        *n -= 1;
        if *n == 0 {
            v.routes_from.remove(&remote);
            v.dirty = true;
        }
    }
}

fn mac_route(mac: MacAddr, ip: Option<IpAddr>, seq: Seq) -> LocalRoute {
    LocalRoute::MacIp {
        mac,
        ip,
        mobility: MacMobility {
            seq: seq.seq,
            sticky: seq.sticky,
        },
    }
}

/// The MAC-only route of `mac` and one MAC/IP route per address.
fn push_mac_routes(
    ops: &mut Vec<BgpOp>,
    op: fn(Vni, LocalRoute) -> BgpOp,
    vni: Vni,
    mac: MacAddr,
    seq: Seq,
    ips: &BTreeSet<IpAddr>,
) {
    ops.push(op(vni, mac_route(mac, None, seq)));
    for &ip in ips {
        ops.push(op(vni, mac_route(mac, Some(ip), seq)));
    }
}

/// How a table refusal is counted.
fn table_refusal(e: &FdbError) -> &'static str {
    match e {
        FdbError::FamilyMismatch(_) => "table:family_mismatch",
        FdbError::NotARemote(_) => "table:not_a_remote",
        FdbError::StaticEntry(..) => "table:static_entry",
        FdbError::NotUnicast(_) => "table:not_unicast_mac",
        FdbError::TooManyRemotes => "table:too_many_remotes",
        FdbError::UnknownVni(_) => "table:unknown_vni",
        FdbError::TooManyVnis | FdbError::PortNotOnVni(..) | FdbError::NoSuchEntry(..) => {
            "table:other"
        }
    }
}
