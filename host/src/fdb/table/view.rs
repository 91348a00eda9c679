//! The table as the control plane sees it: every entry as an [`EntryView`], and sizes. Reads
//! only; nothing here is for the data path.

use super::entry::{Packed, key, split_key};
use super::{Fdb, VniIdx};
use crate::fdb::index::Key;
use crate::fdb::{Location, Tick};
use crate::wire::{MacAddr, Vni};

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
    /// Installed by a control plane (an EVPN route): never aged, never moved by the underlay.
    pub is_evpn: bool,
    /// When it was learned or last refreshed (to 10 ms).
    pub last_seen: Tick,
    /// Frames from the MAC at this location (saturating at 4095).
    pub hits: u32,
}

impl Fdb {
    /// Every entry, in no particular order, with times as of `now`.
    pub fn entries(&self, now: Tick) -> impl Iterator<Item = EntryView> + '_ {
        self.index
            .entries()
            .into_iter()
            .map(move |(k, v)| self.view(k, Packed(v), now))
    }

    /// The entry for `mac` on `vni`, if any, with times as of `now` (what a control plane reads
    /// of a key the journal names).
    pub fn entry(&self, vni: Vni, mac: MacAddr, now: Tick) -> Option<EntryView> {
        let k = key(self.vni_idx(vni)?, mac);
        let found = self.index.lookup(k)?;
        Some(self.view(k, Packed(found.value), now))
    }

    fn view(&self, k: Key, p: Packed, now: Tick) -> EntryView {
        let (idx, mac) = split_key(k);
        EntryView {
            vni: self.vni_id(idx),
            mac,
            location: self.location(p.slot()),
            is_static: p.is_static(),
            is_sticky: p.is_sticky(),
            is_evpn: p.is_evpn(),
            last_seen: if p.is_static() { 0 } else { p.last_seen(now) },
            hits: p.hits(),
        }
    }

    /// Number of entries, learned and static, across all VNIs.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the table's index occupies (the aging queue adds 16 per learned entry).
    pub fn memory(&self) -> usize {
        self.index.memory()
    }

    /// Number of learned entries in `vni` (takes the writer lock: not for the data path).
    pub fn learned_in(&self, vni: VniIdx) -> usize {
        self.writer().vnis.get(vni.index()).map_or(0, |t| t.learned)
    }
}
