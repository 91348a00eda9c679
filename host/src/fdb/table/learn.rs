//! The learning slow path: a new MAC or a move. The learn policy decides without the writer
//! lock (a plugin's call may take its whole time budget, and learning on every worker waits
//! for that lock): `propose` reads what there is to decide under the lock, the
//! policy decides outside it, and `commit` carries the decision out under the lock
//! only if the entry is still where the policy saw it; otherwise the decision is taken again.

use super::entry::{Packed, centis};
use super::{Fdb, VniIdx};
use crate::fdb::index::Key;
use crate::fdb::policy::{LearnDecision, LearnEvent, LearnPolicy};
use crate::fdb::{Location, Tick};
use crate::wire::MacAddr;

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
    /// A control plane's entry (EVPN) has the MAC, and the frame came from the underlay: what
    /// the underlay's frames say never moves it (the control plane does). A frame from a local
    /// port does move it: the MAC moved here, which the control plane then announces.
    Evpn,
    /// The VNI holds `max_entries` learned entries (or the table every remote it can): not
    /// learned.
    LimitReached,
    /// The learn policy said no.
    Rejected,
    /// The learn policy took the event to decide later ([`LearnDecision::Defer`]).
    Deferred,
    /// The entry changed each time the policy decided (other workers learning or moving the
    /// MAC at once): not learned; the MAC's next frame tries again.
    Superseded,
    /// The VNI has no table.
    UnknownVni,
}

/// Where an entry points and how, as a learn policy sees it: a decision is committed only if
/// the entry is still so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    location: Location,
    is_static: bool,
    is_sticky: bool,
    is_evpn: bool,
}

/// How many times a learn decision is taken again when the entry changed while it was being
/// made (another worker learned or moved the MAC): past that, the frame is not learned and the
/// next one from the MAC tries again.
const LEARN_TRIES: usize = 4;

impl Fdb {
    /// The slow path of [`Fdb::learn`]: propose, decide without the lock, commit if unchanged
    /// (at most [`LEARN_TRIES`] times).
    pub(super) fn learn_slow(
        &self,
        k: Key,
        vni: VniIdx,
        mac: MacAddr,
        from: Location,
        now: Tick,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> LearnOutcome {
        for _ in 0..LEARN_TRIES {
            let (event, seen) = match self.propose(k, vni, mac, from, now) {
                Ok(proposal) => proposal,
                Err(outcome) => return outcome,
            };
            let is_sticky = match policy.decide_learn(&event) {
                LearnDecision::Reject => return LearnOutcome::Rejected,
                LearnDecision::Defer => return LearnOutcome::Deferred,
                LearnDecision::Accept => false,
                LearnDecision::AcceptSticky => true,
            };
            if let Some(outcome) = self.commit(k, vni, from, now, seen, is_sticky) {
                return outcome;
            }
        }
        LearnOutcome::Superseded
    }

    /// Under the writer lock: what a learn policy must decide about `mac` arriving from
    /// `from`, and the entry as the policy sees it; or the outcome if nothing is to decide.
    fn propose(
        &self,
        k: Key,
        vni: VniIdx,
        mac: MacAddr,
        from: Location,
        now: Tick,
    ) -> Result<(LearnEvent, Option<Place>), LearnOutcome> {
        let w = self.writer();
        let table = w.vnis.get(vni.index()).ok_or(LearnOutcome::UnknownVni)?;
        // Another worker may have learned or moved it since the lock-free look.
        let found = self.index.lookup(k).map(|f| Packed(f.value));
        if let Some(p) = found {
            let here = self.is_at(p.slot(), from);
            if p.is_static() {
                return Err(if here {
                    LearnOutcome::Static
                } else {
                    LearnOutcome::StaticConflict
                });
            }
            if p.is_evpn() && (here || matches!(from, Location::Remote(_))) {
                return Err(LearnOutcome::Evpn);
            }
            if p.is_evpn() && p.is_sticky() {
                return Err(LearnOutcome::StaticConflict);
            }
            if here {
                self.index.update(k, |v| Some(Packed(v).refreshed(now).0));
                return Err(LearnOutcome::Refreshed);
            }
        }
        if found.is_none() && table.learned >= table.settings.max_entries {
            return Err(LearnOutcome::LimitReached);
        }
        let seen = found.map(|p| self.place(p));
        let event = LearnEvent {
            vni: self.vni_id(vni),
            idx: vni,
            mac,
            new: from,
            current: seen.map(|s| s.location),
            current_sticky: seen.is_some_and(|s| s.is_sticky),
            vni_entries: table.learned,
            at: now,
        };
        Ok((event, seen))
    }

    /// Under the writer lock: learns or moves the entry as decided, if it is still as `seen`
    /// (`None`: absent). `None` if it changed meanwhile, so that the decision is taken again.
    fn commit(
        &self,
        k: Key,
        vni: VniIdx,
        from: Location,
        now: Tick,
        seen: Option<Place>,
        is_sticky: bool,
    ) -> Option<LearnOutcome> {
        let mut w = self.writer();
        let w = &mut *w;
        let Some(table) = w.vnis.get(vni.index()).copied() else {
            return Some(LearnOutcome::UnknownVni);
        };
        let found = self.index.lookup(k);
        if found.map(|f| self.place(Packed(f.value))) != seen {
            return None;
        }
        if found.is_none() && table.learned >= table.settings.max_entries {
            return Some(LearnOutcome::LimitReached);
        }
        let Some(slot) = self.acquire(&mut w.interning, from) else {
            return Some(LearnOutcome::LimitReached);
        };
        let value = Packed::new(slot, false, is_sticky, 1, now).0;
        // A local entry gained, or lost to a remote: the control plane announces it.
        if matches!(from, Location::Port(_))
            || seen.is_some_and(|s| matches!(s.location, Location::Port(_)))
        {
            w.journal.note(k);
        }
        Some(match (found, seen) {
            // A control plane's entry had no aging item and did not count as learned: the MAC
            // moved here is learned anew.
            (Some(_), Some(seen))
                if seen.is_evpn && table.learned >= table.settings.max_entries =>
            {
                self.release(&mut w.interning, slot);
                LearnOutcome::LimitReached
            }
            (Some(old), Some(seen)) if seen.is_evpn => {
                let deadline = now.saturating_add(table.settings.aging_ms);
                self.index.insert(k, value, centis(deadline));
                w.aging.push(deadline, k);
                self.release(&mut w.interning, Packed(old.value).slot());
                if let Some(t) = w.vnis.get_mut(vni.index()) {
                    t.learned += 1;
                }
                LearnOutcome::Moved {
                    from: seen.location,
                }
            }
            (Some(old), Some(seen)) => {
                // The entry keeps its one live aging item.
                self.index.insert(k, value, old.deadline);
                self.release(&mut w.interning, Packed(old.value).slot());
                LearnOutcome::Moved {
                    from: seen.location,
                }
            }
            _ => {
                let deadline = now.saturating_add(table.settings.aging_ms);
                self.index.insert(k, value, centis(deadline));
                w.aging.push(deadline, k);
                if let Some(t) = w.vnis.get_mut(vni.index()) {
                    t.learned += 1;
                }
                LearnOutcome::Learned
            }
        })
    }

    /// Where `entry` points and how.
    fn place(&self, entry: Packed) -> Place {
        Place {
            location: self.location(entry.slot()),
            is_static: entry.is_static(),
            is_sticky: entry.is_sticky(),
            is_evpn: entry.is_evpn(),
        }
    }
}
