//! [`FdbReader`]: the table as a batch of frames reads it. Lookups and refreshes (a frame from
//! a MAC already at that location) take no lock: they read and compare-and-swap the index's
//! atomics. Anything else a frame teaches is handed to the learning slow path ([`learn`]).
//!
//! [`learn`]: super::learn

use super::entry::{Packed, key};
use super::learn::LearnOutcome;
use super::{Fdb, VniIdx};
use crate::fdb::index::Reader as IndexReader;
use crate::fdb::policy::LearnPolicy;
use crate::fdb::{Location, Tick};
use crate::wire::MacAddr;

/// The table as a batch of frames reads it: the index's table loaded once for the batch, so
/// that its lookups do not serialize on loading it again and their prefetched cache misses
/// overlap (the `fdb_1M` group of `host/benches/pipeline.rs` compares a lone `lookup` with a
/// `lookup_batch_32`). If the table grows meanwhile (the writer doubles it at 3/4 full), the
/// reader notices and looks up and learns in the new one.
pub struct FdbReader<'a> {
    fdb: &'a Fdb,
    index: IndexReader,
}

impl FdbReader<'_> {
    /// Starts fetching the entries of `keys` into the cache, so that the lookups and refreshes
    /// that follow find them there. A hint only.
    pub fn prefetch(&self, keys: impl IntoIterator<Item = (VniIdx, MacAddr)>) {
        self.index
            .prefetch(keys.into_iter().map(|(vni, mac)| key(vni, mac)));
    }

    /// Where frames to `mac` on `vni` go, if known. Lock-free.
    pub fn lookup(&self, vni: VniIdx, mac: MacAddr) -> Option<Location> {
        if !self.index.is_current() {
            return self.fdb.lookup(vni, mac);
        }
        self.index
            .get(key(vni, mac))
            .map(|v| self.fdb.location(Packed(v).slot()))
    }

    /// Records that a frame from `mac` arrived from `from` at `now`. A refresh (known at that
    /// location) is lock-free; anything else takes the writer lock and may ask `policy`.
    pub fn learn(
        &self,
        vni: VniIdx,
        mac: MacAddr,
        from: Location,
        now: Tick,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> LearnOutcome {
        let fdb = self.fdb;
        if !self.index.is_current() {
            return fdb.learn(vni, mac, from, now, policy);
        }
        let k = key(vni, mac);
        let mut outcome = None;
        self.index.update(k, |v| {
            let p = Packed(v);
            let here = fdb.is_at(p.slot(), from);
            let from_underlay = matches!(from, Location::Remote(_));
            match (p.is_static(), here) {
                (true, true) => outcome = Some(LearnOutcome::Static),
                (true, false) => outcome = Some(LearnOutcome::StaticConflict),
                // A control plane's entry: left as it is, unless a local port now has the MAC
                // (the slow path moves it here).
                (false, _) if p.is_evpn() && (here || from_underlay) => {
                    outcome = Some(LearnOutcome::Evpn);
                }
                // A sticky route's MAC on a local port: as for a static entry elsewhere.
                (false, false) if p.is_evpn() && p.is_sticky() => {
                    outcome = Some(LearnOutcome::StaticConflict);
                }
                (false, true) => {
                    outcome = Some(LearnOutcome::Refreshed);
                    // Nothing to write once the hit count is saturated within the same 10 ms:
                    // steady traffic then leaves the entry's cache line alone.
                    let refreshed = p.refreshed(now);
                    return (refreshed != p).then_some(refreshed.0);
                }
                (false, false) => outcome = None,
            }
            None
        });
        if let Some(outcome) = outcome {
            return outcome;
        }
        fdb.learn_slow(k, vni, mac, from, now, policy)
    }
}

impl core::fmt::Debug for FdbReader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FdbReader").finish_non_exhaustive()
    }
}

impl Fdb {
    /// A hold on the table for a batch of lookups and learning: see [`FdbReader`].
    pub fn reader(&self) -> FdbReader<'_> {
        FdbReader {
            fdb: self,
            index: self.index.reader(),
        }
    }

    /// Where frames to `mac` on `vni` go, if known. Lock-free.
    pub fn lookup(&self, vni: VniIdx, mac: MacAddr) -> Option<Location> {
        self.reader().lookup(vni, mac)
    }

    /// Records that a frame from `mac` arrived from `from` at `now`. A refresh (known at that
    /// location) is lock-free; anything else takes the writer lock and may ask `policy`.
    pub fn learn(
        &self,
        vni: VniIdx,
        mac: MacAddr,
        from: Location,
        now: Tick,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> LearnOutcome {
        self.reader().learn(vni, mac, from, now, policy)
    }
}
