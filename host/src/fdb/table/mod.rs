//! `Fdb`: the forwarding table of every VNI, in one index keyed by `(VNI, MAC)`, shared by every
//! data path worker.
//!
//! One flat index rather than a map per VNI: a lookup is one hash of a `u64` and one probe,
//! whatever the number of VNIs. The key packs a 16-bit VNI handle ([`VniIdx`], handed out by
//! [`Fdb::add_vni`]) above the 48-bit MAC, stored so that no (VNI, MAC) is ever one of the
//! index's slot markers (the all-zero MAC of the first VNI included); a VTEP serves at most
//! 65,534 VNIs. An entry is one packed `u64` (location, flags, hit count, last-seen time; see
//! [`entry`]), so a million entries take about 56 MiB with the aging queue.
//!
//! Concurrency: lookups and refreshes (a frame from a MAC already at that location, the
//! per-frame case) take no lock; they read and compare-and-swap the index's atomics
//! ([`reader`]). What changes the table's shape (a new MAC, a move, static entries, aging)
//! takes the writer lock: rare on the steady path. The learn and age policies are asked
//! between two holds of it, never under it, and their decisions are carried out only if the
//! entry did not change ([`learn`], [`expire`]).
//!
//! This module holds the table itself, its VNIs and static entries, and what the others share
//! (the writer lock, locations as stored); [`view`] is what the control plane reads.

mod entry;
mod expire;
mod journal;
mod learn;
mod reader;
mod view;

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use self::entry::{Packed, Slot, key, split_key};
use super::aging::AgingQueue;
use super::index::{Index, Key};
use super::remotes::{Interning, Remotes};
use super::{Location, PortId, Tick};
use crate::sync;
use crate::wire::{MacAddr, Vni};

pub use expire::EXPIRE_BATCH;
pub use journal::{JOURNAL_CAPACITY, LocalChanges};
pub use learn::LearnOutcome;
pub use reader::FdbReader;
pub use view::EntryView;

/// The most VNIs one table serves: its keys have room for this many handles.
pub const MAX_VNIS: usize = Key::MAX_TAG as usize + 1;

/// Per-VNI table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VniTableSettings {
    /// A learned entry expires this many milliseconds after the last frame from its MAC.
    pub aging_ms: Tick,
    /// At most this many learned entries.
    pub max_entries: usize,
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
    /// The handle space is full.
    #[error("a VTEP serves at most {MAX_VNIS} VNIs")]
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
    /// Not an address a remote VTEP can have: multicast, unspecified, or this VTEP's own.
    #[error("{0} is not a remote VTEP's address (multicast, unspecified or this VTEP's own)")]
    NotARemote(std::net::IpAddr),
    /// Every remote id is in use.
    #[error("the table already holds 65536 remote VTEPs")]
    TooManyRemotes,
    /// A static entry has the MAC: configuration wins over a control plane.
    #[error("{1} in VNI {0} is a static entry")]
    StaticEntry(Vni, MacAddr),
}

#[derive(Debug, Clone, Copy)]
struct VniTable {
    settings: VniTableSettings,
    learned: usize,
}

/// What the writer lock guards.
#[derive(Debug, Default)]
struct Writer {
    /// Indexed by `VniIdx`.
    vnis: Vec<VniTable>,
    interning: Interning,
    aging: AgingQueue,
    /// The last aging pass's due entries: kept to reuse their memory.
    due: Vec<expire::Due>,
    /// Which local entries changed, for a control plane (off unless asked for).
    journal: journal::Journal,
}

/// The forwarding table.
#[derive(Debug, Default)]
pub struct Fdb {
    index: Index,
    /// The VNI of each handle; fixed once the table is shared (`add_vni` takes `&mut self`).
    vni_ids: Vec<Vni>,
    remotes: Remotes,
    writer: Mutex<Writer>,
}

impl Fdb {
    /// An empty table serving no VNI.
    pub fn new() -> Fdb {
        Fdb::default()
    }

    /// The writer lock; a panic elsewhere leaves the table usable (every update is a whole
    /// store), so poisoning is ignored.
    fn writer(&self) -> MutexGuard<'_, Writer> {
        sync::lock(&self.writer)
    }

    /// Serves `vni` with these settings (or changes them) and returns its handle.
    pub fn add_vni(&mut self, vni: Vni, settings: VniTableSettings) -> Result<VniIdx, FdbError> {
        let w = sync::get_mut(&mut self.writer);
        if let Some(pos) = self.vni_ids.iter().position(|&v| v == vni) {
            w.vnis[pos].settings = settings;
            return Ok(VniIdx(
                u16::try_from(pos).map_err(|_| FdbError::TooManyVnis)?,
            ));
        }
        let idx = u16::try_from(self.vni_ids.len())
            .ok()
            .filter(|&i| usize::from(i) < MAX_VNIS)
            .map(VniIdx)
            .ok_or(FdbError::TooManyVnis)?;
        self.vni_ids.push(vni);
        w.vnis.push(VniTable {
            settings,
            learned: 0,
        });
        Ok(idx)
    }

    /// The handle of `vni`, if served. A linear search: for the control plane, not per packet.
    pub fn vni_idx(&self, vni: Vni) -> Option<VniIdx> {
        let pos = self.vni_ids.iter().position(|&v| v == vni)?;
        u16::try_from(pos).ok().map(VniIdx)
    }

    /// Adds or replaces a static entry (replacing a learned one too).
    pub fn insert_static(&self, vni: Vni, mac: MacAddr, at: Location) -> Result<(), FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        if !mac.is_valid_unicast() {
            return Err(FdbError::NotUnicast(mac));
        }
        let mut w = self.writer();
        let w = &mut *w;
        let slot = self
            .acquire(&mut w.interning, at)
            .ok_or(FdbError::TooManyRemotes)?;
        self.remove_entry(w, key(idx, mac));
        self.index
            .insert(key(idx, mac), Packed::new(slot, true, false, 0, 0).0, 0);
        if matches!(slot, Slot::Port(_)) {
            w.journal.note(key(idx, mac));
        }
        Ok(())
    }

    /// Installs or replaces a control plane's entry (an EVPN route): `mac` on `vni` is behind
    /// the remote VTEP `remote`. It replaces a learned entry (the control plane decided, e.g.
    /// by MAC mobility sequence numbers) but not a static one, never ages and does not count
    /// toward the VNI's learned entries. A `sticky` one (a static MAC there, RFC 7432 §15.2)
    /// is not moved by local frames either: they are dropped as a static entry's are.
    /// Installing what is there already changes nothing (readers never miss the entry).
    pub fn insert_evpn(
        &self,
        vni: Vni,
        mac: MacAddr,
        remote: IpAddr,
        sticky: bool,
    ) -> Result<(), FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        if !mac.is_valid_unicast() {
            return Err(FdbError::NotUnicast(mac));
        }
        let k = key(idx, mac);
        let mut w = self.writer();
        let w = &mut *w;
        if let Some(found) = self.index.lookup(k).map(|f| Packed(f.value)) {
            if found.is_static() {
                return Err(FdbError::StaticEntry(vni, mac));
            }
            if found.is_evpn()
                && found.is_sticky() == sticky
                && self.is_at(found.slot(), Location::Remote(remote))
            {
                return Ok(());
            }
        }
        let slot = self
            .acquire(&mut w.interning, Location::Remote(remote))
            .ok_or(FdbError::TooManyRemotes)?;
        self.remove_entry(w, k);
        self.index.insert(k, Packed::evpn(slot, sticky, 0).0, 0);
        Ok(())
    }

    /// Removes a control plane's entry for `mac` on `vni` if it is still the one behind
    /// `remote` (a withdrawal from a VTEP the MAC has since left removes nothing); `false` if
    /// there was none.
    pub fn remove_evpn(&self, vni: Vni, mac: MacAddr, remote: IpAddr) -> Result<bool, FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        let k = key(idx, mac);
        let mut w = self.writer();
        let theirs = self.index.lookup(k).is_some_and(|f| {
            let p = Packed(f.value);
            p.is_evpn() && self.is_at(p.slot(), Location::Remote(remote))
        });
        Ok(theirs && self.remove_entry(&mut w, k))
    }

    /// Removes the entry for `mac` on `vni`, learned or static.
    pub fn remove(&self, vni: Vni, mac: MacAddr) -> Result<(), FdbError> {
        let idx = self.vni_idx(vni).ok_or(FdbError::UnknownVni(vni))?;
        if self.remove_entry(&mut self.writer(), key(idx, mac)) {
            Ok(())
        } else {
            Err(FdbError::NoSuchEntry(vni, mac))
        }
    }

    fn remove_entry(&self, w: &mut Writer, k: Key) -> bool {
        let Some(v) = self.index.remove(k) else {
            return false;
        };
        let entry = Packed(v);
        if matches!(entry.slot(), Slot::Port(_)) {
            w.journal.note(k);
        }
        self.release(&mut w.interning, entry.slot());
        if !entry.is_static() && !entry.is_evpn() {
            let (idx, _) = split_key(k);
            if let Some(t) = w.vnis.get_mut(idx.index()) {
                t.learned = t.learned.saturating_sub(1);
            }
        }
        true
    }

    /// The VNI of handle `idx` (handles come from this table, so it has one).
    fn vni_id(&self, idx: VniIdx) -> Vni {
        self.vni_ids
            .get(idx.index())
            .copied()
            .unwrap_or(Vni::from_u24(0))
    }

    /// Whether `slot` is `at`. Lock-free: reads the remote's address.
    fn is_at(&self, slot: Slot, at: Location) -> bool {
        match (slot, at) {
            (Slot::Port(p), Location::Port(q)) => p == q,
            (Slot::Remote(id), Location::Remote(ip)) => self.remotes.addr(id) == ip,
            _ => false,
        }
    }

    fn location(&self, slot: Slot) -> Location {
        match slot {
            Slot::Port(p) => Location::Port(p),
            Slot::Remote(id) => Location::Remote(self.remotes.addr(id)),
        }
    }

    fn acquire(&self, w: &mut Interning, at: Location) -> Option<Slot> {
        match at {
            Location::Port(p) => Some(Slot::Port(p)),
            Location::Remote(ip) => self.remotes.acquire(w, ip).map(Slot::Remote),
        }
    }

    fn release(&self, w: &mut Interning, slot: Slot) {
        if let Slot::Remote(id) = slot {
            self.remotes.release(w, id);
        }
    }
}
