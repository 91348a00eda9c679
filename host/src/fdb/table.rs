//! `Fdb`: the forwarding table of every VNI, in one hash map keyed by `(VNI, MAC)`.
//!
//! One flat map rather than a map per VNI: a lookup is one hash of a `u64` and one probe,
//! whatever the number of VNIs. The key packs a 16-bit VNI handle ([`VniIdx`], handed out by
//! [`Fdb::add_vni`]) above the 48-bit MAC, so a VTEP serves at most 65,536 VNIs. Entries are
//! 32 bytes (remote addresses are interned), so a million of them fit in about 100 MiB with
//! the aging queue.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::aging::AgingQueue;
use super::policy::{AgeDecision, AgeEvent, AgePolicy, LearnDecision, LearnEvent, LearnPolicy};
use super::remotes::{RemoteId, RemoteTable};
use super::{Location, PortId, Tick};
use crate::wire::{MacAddr, Vni};

/// Per-VNI table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VniTableSettings {
    /// A learned entry expires this many milliseconds after the last frame from its MAC.
    pub aging_ms: Tick,
    /// At most this many learned entries.
    pub max_entries: usize,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// Known at that location: its age was reset.
    Refreshed,
    /// A new entry.
    Learned,
    /// The MAC was elsewhere and now points here.
    Moved {
        /// Where it was.
        from: Location,
    },
    /// A static entry has the MAC at that location already.
    Static,
    /// A static entry has the MAC elsewhere: the frame claiming it must be dropped.
    StaticConflict,
    /// The VNI holds `max_entries` learned entries: not learned.
    LimitReached,
    /// The learn policy said no.
    Rejected,
    /// The VNI has no table.
    UnknownVni,
}

/// A VNI's handle in the table: what the per-packet calls take, so that they hash one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VniIdx(u16);

impl VniIdx {
    /// Handles are dense from 0, in the order VNIs were added: usable as a `Vec` index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a VNI or a static entry cannot be added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    /// The 16-bit handle space is full.
    #[error("a VTEP serves at most 65536 VNIs")]
    TooManyVnis,
    /// The VNI is not served here.
    #[error("VNI {0} is not served by this VTEP")]
    UnknownVni(Vni),
    /// Broadcast, multicast and all-zero MACs have no single location.
    #[error("{0} is not a unicast MAC address")]
    NotUnicast(MacAddr),
    /// A static entry on a port that does not carry the VNI.
    #[error("port {0:?} is not on VNI {1}")]
    PortNotOnVni(PortId, Vni),
    /// A remote of the other address family than the underlay.
    #[error("{0} is not in the underlay's address family")]
    FamilyMismatch(std::net::IpAddr),
    /// Nothing to delete.
    #[error("no entry for {1} in VNI {0}")]
    NoSuchEntry(Vni, MacAddr),
}

/// One entry as the control plane shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView {
    /// The VNI.
    pub vni: Vni,
    /// The MAC.
    pub mac: MacAddr,
    /// Where frames to it go.
    pub location: Location,
    /// Configured, never learned over nor aged.
    pub is_static: bool,
    /// Learned as sticky: it moves only if a learn policy explicitly accepts the move.
    pub is_sticky: bool,
    /// When it was learned or last refreshed.
    pub last_seen: Tick,
    /// Frames from the MAC at this location.
    pub hits: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Port(PortId),
    Remote(RemoteId),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: Slot,
    last_seen: Tick,
    /// The deadline of this entry's one live item in the aging queue (`Tick::MAX` if static).
    deadline: Tick,
    hits: u32,
    is_static: bool,
    is_sticky: bool,
}

#[derive(Debug, Clone, Copy)]
struct VniTable {
    vni: Vni,
    settings: VniTableSettings,
    learned: usize,
}

/// The forwarding table.
#[derive(Debug, Default)]
pub struct Fdb {
    entries: HashMap<u64, Entry, RandomState>,
    /// Indexed by `VniIdx`.
    vnis: Vec<VniTable>,
    remotes: RemoteTable,
    aging: AgingQueue,
}

fn key(vni: VniIdx, mac: MacAddr) -> u64 {
    u64::from(vni.0) << 48 | mac.to_u64()
}

fn split_key(key: u64) -> (VniIdx, MacAddr) {
    (
        VniIdx(u16::try_from(key >> 48).unwrap_or(u16::MAX)),
        MacAddr::from_u64(key),
    )
}

impl Fdb {
    /// An empty table serving no VNI.
    pub fn new() -> Fdb {
        Fdb::default()
    }

    /// Serves `vni` with these settings (or changes them) and returns its handle.
    pub fn add_vni(&mut self, vni: Vni, settings: VniTableSettings) -> Result<VniIdx, FdbError> {
        if let Some(idx) = self.vni_idx(vni) {
            self.vnis[usize::from(idx.0)].settings = settings;
            return Ok(idx);
        }
        let idx = VniIdx(u16::try_from(self.vnis.len()).map_err(|_| FdbError::TooManyVnis)?);
        self.vnis.push(VniTable {
            vni,
            settings,
            learned: 0,
        });
        Ok(idx)
    }

    /// The handle of `vni`, if served. A linear search: for the control plane, not per packet.
    pub fn vni_idx(&self, vni: Vni) -> Option<VniIdx> {
        let pos = self.vnis.iter().position(|t| t.vni == vni)?;
        u16::try_from(pos).ok().map(VniIdx)
    }

    /// Where frames to `mac` on `vni` go, if known.
    pub fn lookup(&self, vni: VniIdx, mac: MacAddr) -> Option<Location> {
        self.entries
            .get(&key(vni, mac))
            .map(|e| self.location(e.slot))
    }

    /// Records that a frame from `mac` arrived from `from` at `now`.
    pub fn learn(
        &mut self,
        vni: VniIdx,
        mac: MacAddr,
        from: Location,
        now: Tick,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> LearnOutcome {
        let k = key(vni, mac);
        if let Some(entry) = self.entries.get_mut(&k) {
            let here = match (entry.slot, from) {
                (Slot::Port(p), Location::Port(q)) => p == q,
                (Slot::Remote(id), Location::Remote(ip)) => self.remotes.addr(id) == ip,
                _ => false,
            };
            if entry.is_static {
                return if here {
                    LearnOutcome::Static
                } else {
                    LearnOutcome::StaticConflict
                };
            }
            if here {
                entry.last_seen = now;
                entry.hits = entry.hits.saturating_add(1);
                return LearnOutcome::Refreshed;
            }
        }
        let Some(table) = self.vnis.get(usize::from(vni.0)).copied() else {
            return LearnOutcome::UnknownVni;
        };
        let (current, current_sticky) = match self.entries.get(&k) {
            Some(e) => (Some(self.location(e.slot)), e.is_sticky),
            None => (None, false),
        };
        if current.is_none() && table.learned >= table.settings.max_entries {
            return LearnOutcome::LimitReached;
        }
        let event = LearnEvent {
            vni: table.vni,
            mac,
            new: from,
            current,
            current_sticky,
            vni_entries: table.learned,
        };
        let is_sticky = match policy.decide_learn(&event) {
            LearnDecision::Reject => return LearnOutcome::Rejected,
            LearnDecision::Accept => false,
            LearnDecision::AcceptSticky => true,
        };
        let slot = self.acquire(from);
        match self.entries.get_mut(&k) {
            Some(entry) => {
                let old = core::mem::replace(&mut entry.slot, slot);
                entry.last_seen = now;
                entry.hits = 1;
                entry.is_sticky = is_sticky;
                self.release(old);
                LearnOutcome::Moved {
                    from: current.unwrap_or(from),
                }
            }
            None => {
                let deadline = now.saturating_add(table.settings.aging_ms);
                self.entries.insert(
                    k,
                    Entry {
                        slot,
                        last_seen: now,
                        deadline,
                        hits: 1,
                        is_static: false,
                        is_sticky,
                    },
                );
                self.aging.push(deadline, k);
                if let Some(t) = self.vnis.get_mut(usize::from(vni.0)) {
                    t.learned += 1;
                }
                LearnOutcome::Learned
            }
        }
    }

    /// Adds or replaces a static entry (replacing a learned one too).
    pub fn insert_static(&mut self, vni: Vni, mac: MacAddr, at: Location) -> Result<(), FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        if !mac.is_valid_unicast() {
            return Err(FdbError::NotUnicast(mac));
        }
        self.remove_entry(key(idx, mac));
        let slot = self.acquire(at);
        let entry = Entry {
            slot,
            last_seen: 0,
            deadline: Tick::MAX,
            hits: 0,
            is_static: true,
            is_sticky: false,
        };
        self.entries.insert(key(idx, mac), entry);
        Ok(())
    }

    /// Removes the entry for `mac` on `vni`, learned or static.
    pub fn remove(&mut self, vni: Vni, mac: MacAddr) -> Result<(), FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        if self.remove_entry(key(idx, mac)) {
            Ok(())
        } else {
            Err(FdbError::NoSuchEntry(vni, mac))
        }
    }

    /// When [`Fdb::expire`] next has work, if ever. May be early (a refreshed entry), never late.
    pub fn poll_timeout(&self) -> Option<Tick> {
        self.aging.next_deadline()
    }

    /// Expires the learned entries idle for their VNI's aging time at `now`, asking `policy`
    /// about each; calls `on_expired` for each entry removed and returns how many.
    pub fn expire(
        &mut self,
        now: Tick,
        policy: &mut (impl AgePolicy + ?Sized),
        mut on_expired: impl FnMut(VniIdx, MacAddr),
    ) -> usize {
        let mut expired = 0;
        while let Some((deadline, k)) = self.aging.pop_due(now) {
            let Some(entry) = self.entries.get(&k).copied() else {
                continue;
            };
            if entry.deadline != deadline {
                continue; // a stale item: the entry was replaced or re-queued since
            }
            let (idx, mac) = split_key(k);
            let Some(table) = self.vnis.get(usize::from(idx.0)) else {
                continue;
            };
            let idle_deadline = entry.last_seen.saturating_add(table.settings.aging_ms);
            let next = if idle_deadline > now {
                idle_deadline
            } else {
                let event = AgeEvent {
                    vni: table.vni,
                    mac,
                    idle_ms: now.saturating_sub(entry.last_seen),
                    hits: entry.hits,
                    location: self.location(entry.slot),
                };
                match policy.decide_age(&event) {
                    AgeDecision::Expire => {
                        self.remove_entry(k);
                        on_expired(idx, mac);
                        expired += 1;
                        continue;
                    }
                    AgeDecision::KeepFor(ms) => now.saturating_add(ms.max(1)),
                }
            };
            if let Some(e) = self.entries.get_mut(&k) {
                e.deadline = next;
            }
            self.aging.push(next, k);
        }
        expired
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = EntryView> + '_ {
        self.entries.iter().map(|(&k, e)| {
            let (idx, mac) = split_key(k);
            EntryView {
                vni: self
                    .vnis
                    .get(usize::from(idx.0))
                    .map_or(Vni::from_u24(0), |t| t.vni),
                mac,
                location: self.location(e.slot),
                is_static: e.is_static,
                is_sticky: e.is_sticky,
                last_seen: e.last_seen,
                hits: e.hits,
            }
        })
    }

    /// Number of entries, learned and static, across all VNIs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of learned entries in `vni`.
    pub fn learned_in(&self, vni: VniIdx) -> usize {
        self.vnis.get(usize::from(vni.0)).map_or(0, |t| t.learned)
    }

    /// Removes every learned entry (static ones stay).
    pub fn flush_learned(&mut self) {
        let learned: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.is_static)
            .map(|(&k, _)| k)
            .collect();
        for k in learned {
            self.remove_entry(k);
        }
        self.aging.clear();
    }

    fn remove_entry(&mut self, k: u64) -> bool {
        let Some(entry) = self.entries.remove(&k) else {
            return false;
        };
        self.release(entry.slot);
        if !entry.is_static {
            let (idx, _) = split_key(k);
            if let Some(t) = self.vnis.get_mut(usize::from(idx.0)) {
                t.learned = t.learned.saturating_sub(1);
            }
        }
        true
    }

    fn location(&self, slot: Slot) -> Location {
        match slot {
            Slot::Port(p) => Location::Port(p),
            Slot::Remote(id) => Location::Remote(self.remotes.addr(id)),
        }
    }

    fn acquire(&mut self, at: Location) -> Slot {
        match at {
            Location::Port(p) => Slot::Port(p),
            Location::Remote(ip) => Slot::Remote(self.remotes.acquire(ip)),
        }
    }

    fn release(&mut self, slot: Slot) {
        if let Slot::Remote(id) = slot {
            self.remotes.release(id);
        }
    }
}
