//! The VTEP core: the sans-IO flood-and-learn pipeline of RFC 7348 §4.
//!
//! [`Vtep`] takes frames from local ports ([`Vtep::handle_port_frame`], or a batch with
//! [`Vtep::handle_port_batch`]) and datagrams from the underlay ([`Vtep::handle_underlay`],
//! [`Vtep::handle_underlay_batch`]), each with an explicit `now`, and writes what must be
//! sent into an [`Outbox`]; aging follows the `poll_timeout` / `handle_timeout` pair. The batch
//! entry points consult [`Hooks`] (filter, learn, age policies: the plugins) through a trait the
//! core owns. It never touches a socket or reads a clock, so it runs the same in the daemon,
//! in benchmarks and in the in-memory simulations of its tests.

mod batch;
mod control_plane;
mod encap;
mod from_port;
mod from_underlay;
mod hooks;
mod local_ips;
mod neighbors;
mod outbox;
mod remote_vteps;
mod settings;
mod source_ports;
mod stats;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

pub use batch::{PortBatch, UnderlayBatch};
pub use hooks::{Direction, FilterBatch, FilterFrame, Hooks, Verdict};
pub use outbox::{Dest, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, OutFrame, Outbox, UnderlayDest};
pub use settings::{
    DEFAULT_AGING, DEFAULT_DST_PORT, DEFAULT_MAX_ENTRIES, DEFAULT_MTU, DEFAULT_TTL, SettingsError,
    StaticEntry, VniSettings, VtepSettings,
};
pub use source_ports::{DEFAULT_SRC_PORTS, SourcePorts, SourcePortsError};
pub use stats::{Counter, DropReason, Drops, VniStats};

use self::batch::Pending;
use self::encap::Encapsulator;
use crate::fdb::{
    AgePolicy, Builtin, EntryView, Fdb, FdbError, LearnEvent, LearnOutcome, LearnPolicy, Location,
    PortId, Tick, VniIdx, VniTableSettings,
};
use crate::wire::{MacAddr, Vni};
use local_ips::LocalIps;
use neighbors::Neighbors;
use remote_vteps::RemoteVteps;

/// Largest frame a port hands over: a 64 KiB GSO super-frame plus link headers.
const MAX_FRAME: usize = 65_536 + 64;

/// One served VNI's configuration, fixed for the pipeline's life but for the remote VTEPs a
/// control plane announces.
#[derive(Debug)]
struct VniConfig {
    settings: VniSettings,
    /// Where BUM frames go (the group only while the VNI has ports), and which VTEPs are known.
    remotes: RemoteVteps,
    /// IP -> MAC bindings a control plane knows, for ARP suppression. Boxed, as `local_ips`:
    /// their lock words are written on ARP frames and must not share a cache line with what
    /// every frame reads here.
    neighbors: Box<Neighbors>,
    /// The addresses local VMs use, for a control plane to announce.
    local_ips: Box<LocalIps>,
}

/// What every worker of one VTEP shares: its configuration and its forwarding table.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    local: IpAddr,
    encap: Encapsulator,
    fdb: Fdb,
    /// Indexed by `VniIdx::index()`.
    vnis: Vec<VniConfig>,
    by_vni: HashMap<Vni, VniIdx, RandomState>,
    /// Indexed by `PortId`.
    port_vni: Vec<Option<VniIdx>>,
    merge_udp: bool,
}

/// A VXLAN tunnel endpoint's data plane, as one worker runs it.
///
/// The configuration and the forwarding table are shared by every worker of the VTEP
/// ([`Vtep::worker`] makes another): a MAC one worker learns, every worker finds, and lookups
/// take no lock. Counters and scratch memory are the worker's own, so that workers on several
/// cores never write the same cache lines; the control plane adds the counters up.
#[derive(Debug)]
pub struct Vtep {
    shared: Arc<Shared>,
    /// This worker's counters, indexed by `VniIdx::index()`.
    stats: Vec<VniStats>,
    /// Room for one segment or one checksum-completed copy of a frame.
    scratch: Box<[u8]>,
    /// The frames of the batch being handled, and their verdicts: kept to reuse their memory.
    pending: Vec<Pending>,
    verdicts: Vec<Verdict>,
    drops: Drops,
}

impl Vtep {
    /// Builds the pipeline (its first worker); `now` is its epoch for aging.
    pub fn new(settings: VtepSettings, now: Instant) -> Result<Vtep, SettingsError> {
        settings.validate()?;
        let encap = Encapsulator::new(settings.local, settings.src_ports.clone(), settings.mtu)
            .with_whole_super_frames(settings.whole_super_frames);
        let mut fdb = Fdb::new();
        let mut vnis = Vec::with_capacity(settings.vnis.len());
        let mut by_vni = HashMap::default();
        let mut port_vni: Vec<Option<VniIdx>> = Vec::new();
        for v in settings.vnis {
            let table = VniTableSettings {
                aging_ms: u64::try_from(v.aging.as_millis()).unwrap_or(u64::MAX),
                max_entries: v.max_entries,
            };
            let idx = fdb
                .add_vni(v.vni, table)
                .map_err(|_| SettingsError::TooManyVnis)?;
            for s in &v.statics {
                // Validated above: unicast MACs on this VNI's ports, same-family remotes.
                let _ = fdb.insert_static(v.vni, s.mac, s.location);
            }
            for &p in &v.ports {
                let i = usize::from(p.0);
                if port_vni.len() <= i {
                    port_vni.resize(i + 1, None);
                }
                port_vni[i] = Some(idx);
            }
            let group = v.group.filter(|_| !v.ports.is_empty());
            let statics: Vec<IpAddr> = v
                .statics
                .iter()
                .filter_map(|s| s.location.remote())
                .collect();
            let remotes = RemoteVteps::new(group, &v.remotes, &statics);
            by_vni.insert(v.vni, idx);
            vnis.push(VniConfig {
                settings: v,
                remotes,
                neighbors: Box::default(),
                local_ips: Box::default(),
            });
        }
        let shared = Shared {
            epoch: now,
            merge_udp: settings.merge_udp,
            local: settings.local,
            encap,
            fdb,
            vnis,
            by_vni,
            port_vni,
        };
        Ok(Vtep::with_shared(Arc::new(shared)))
    }

    fn with_shared(shared: Arc<Shared>) -> Vtep {
        Vtep {
            stats: shared
                .vnis
                .iter()
                .map(|v| VniStats::new(v.settings.vni))
                .collect(),
            shared,
            scratch: vec![0; MAX_FRAME].into_boxed_slice(),
            pending: Vec::new(),
            verdicts: Vec::new(),
            drops: Drops::default(),
        }
    }

    /// Another worker of this VTEP: the same configuration and forwarding table, its own
    /// counters (starting at zero) and scratch memory.
    pub fn worker(&self) -> Vtep {
        Vtep::with_shared(Arc::clone(&self.shared))
    }

    /// This worker after a panic: the same counters, fresh scratch memory (whatever the panic
    /// left in the batch vectors is gone).
    pub fn renewed(self) -> Vtep {
        let mut fresh = Vtep::with_shared(Arc::clone(&self.shared));
        fresh.stats = self.stats;
        fresh.drops = self.drops;
        fresh
    }

    /// Learns what a learn policy deferred ([`LearnDecision::Defer`](crate::fdb::LearnDecision)):
    /// the event's MAC from its location, asking `policy` now. The entry counts as seen at
    /// `now` (not at the frame's time, which may be long past when the queue was full of a slow
    /// plugin's work). Counted in this worker's counters.
    pub fn learn_deferred(
        &mut self,
        event: &LearnEvent,
        now: Instant,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) {
        let at = self.tick(now).max(event.at);
        let outcome = self
            .shared
            .fdb
            .learn(event.idx, event.mac, event.new, at, policy);
        if let Some(stats) = self.stats.get_mut(event.idx.index()) {
            // A static conflict drops frames, not deferred events: nothing to count for it.
            let _ = count_learn(stats, outcome);
        }
    }

    /// This VTEP's underlay address.
    pub fn local(&self) -> IpAddr {
        self.shared.local
    }

    /// The multicast groups this VTEP must have joined: those of VNIs with local ports.
    pub fn groups(&self) -> impl Iterator<Item = (Vni, IpAddr)> + '_ {
        self.shared
            .vnis
            .iter()
            .filter(|v| !v.settings.ports.is_empty())
            .filter_map(|v| v.settings.group.map(|g| (v.settings.vni, g)))
    }

    /// When [`Vtep::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.shared
            .fdb
            .poll_timeout()
            .map(|t| self.shared.epoch + Duration::from_millis(t))
    }

    /// Ages out idle learned entries under the built-in policy.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_with(now, &mut Builtin);
    }

    /// Ages out idle learned entries, asking `policy` about each whose deadline has come.
    /// Expiries are counted in this worker's counters.
    pub fn handle_timeout_with(&mut self, now: Instant, policy: &mut (impl AgePolicy + ?Sized)) {
        let tick = self.tick(now);
        let stats = &mut self.stats;
        self.shared.fdb.expire(tick, policy, |idx, _| {
            if let Some(s) = stats.get_mut(idx.index()) {
                s.expired += 1;
            }
        });
    }

    /// Every FDB entry with its age at `now` (zero for static entries).
    pub fn fdb_entries(&self, now: Instant) -> impl Iterator<Item = (EntryView, Duration)> + '_ {
        let tick = self.tick(now);
        self.shared
            .fdb
            .entries(tick)
            .map(move |e| with_age(e, tick))
    }

    /// Adds a static entry at run time (`vtep fdb add`).
    pub fn add_static(&self, vni: Vni, mac: MacAddr, at: Location) -> Result<(), FdbError> {
        let idx = *self
            .shared
            .by_vni
            .get(&vni)
            .ok_or(FdbError::UnknownVni(vni))?;
        match at {
            Location::Port(p) if !on_vni(&self.shared.port_vni, p, idx) => {
                return Err(FdbError::PortNotOnVni(p, vni));
            }
            Location::Remote(ip) => self.check_remote(ip)?,
            Location::Port(_) => {}
        }
        self.shared.fdb.insert_static(vni, mac, at)
    }

    /// Removes an entry, static or learned (`vtep fdb del`).
    pub fn remove_entry(&self, vni: Vni, mac: MacAddr) -> Result<(), FdbError> {
        self.shared.fdb.remove(vni, mac)
    }

    /// This worker's per-VNI counters.
    pub fn vni_stats(&self) -> impl Iterator<Item = &VniStats> + '_ {
        self.stats.iter()
    }

    /// This worker's drop counters.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Milliseconds since the epoch; times before it count as the epoch.
    fn tick(&self, now: Instant) -> Tick {
        u64::try_from(now.saturating_duration_since(self.shared.epoch).as_millis())
            .unwrap_or(u64::MAX)
    }
}

/// Whether `port` carries `vni`: a frame of one VNI never leaves by a port of another.
fn on_vni(port_vni: &[Option<VniIdx>], port: PortId, vni: VniIdx) -> bool {
    port_vni.get(usize::from(port.0)) == Some(&Some(vni))
}

/// An entry with its age at `tick` (none for a static one).
fn with_age(e: EntryView, tick: Tick) -> (EntryView, Duration) {
    let age = if e.is_static || e.is_evpn {
        0
    } else {
        tick.saturating_sub(e.last_seen)
    };
    (e, Duration::from_millis(age))
}

/// Counts a learning outcome; `Err` when the frame must be dropped.
fn count_learn(stats: &mut VniStats, outcome: LearnOutcome) -> Result<(), DropReason> {
    match outcome {
        LearnOutcome::Learned => stats.learned += 1,
        LearnOutcome::Moved { .. } => stats.moved += 1,
        LearnOutcome::LimitReached => stats.learn_limit += 1,
        LearnOutcome::Rejected => stats.learn_rejected += 1,
        LearnOutcome::Deferred => stats.learn_deferred += 1,
        LearnOutcome::StaticConflict => return Err(DropReason::StaticConflict),
        LearnOutcome::Refreshed
        | LearnOutcome::Static
        | LearnOutcome::Evpn
        | LearnOutcome::UnknownVni
        | LearnOutcome::Superseded => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
