//! Aging: the learned entries idle for their VNI's aging time expire unless the age policy
//! keeps them. As in learning, the policy decides outside the writer lock and its decisions
//! are carried out only for entries that did not change meanwhile (see [`Fdb::expire`]).

use super::entry::{Packed, centis, split_key};
use super::{Fdb, VniIdx, Writer};
use crate::fdb::Tick;
use crate::fdb::index::Key;
use crate::fdb::policy::{AgeDecision, AgeEvent, AgePolicy};
use crate::wire::MacAddr;

/// Entries [`Fdb::expire`] handles at most per call: aging holds the writer lock, and a burst of
/// entries all due at once (learned together) must not keep learners waiting for long.
pub const EXPIRE_BATCH: usize = 4096;

/// An entry whose aging deadline came, waiting for the age policy's decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Due {
    key: Key,
    /// The entry's value as the policy saw it: carried out only if still the same.
    seen: u64,
    /// Its deadline word then.
    deadline: u32,
    event: AgeEvent,
    decision: AgeDecision,
}

impl Fdb {
    /// When [`Fdb::expire`] next has work, if ever. May be early (a refreshed entry), never late.
    pub fn poll_timeout(&self) -> Option<Tick> {
        self.writer().aging.next_deadline()
    }

    /// Expires the learned entries idle for their VNI's aging time at `now`, asking `policy`
    /// about each; calls `on_expired` for each entry removed and returns how many. Handles at
    /// most [`EXPIRE_BATCH`] due entries per call ([`Fdb::poll_timeout`] then says more are
    /// due at once).
    ///
    /// The policy is asked without the writer lock (learning on every worker waits for it, and
    /// a plugin's call may take its whole budget): the due entries are taken from the queue
    /// under the lock, decided without it, and each decision is carried out under the lock
    /// only if its entry is still as the policy saw it; an entry refreshed or moved meanwhile
    /// is queued again at its new deadline.
    pub fn expire(
        &self,
        now: Tick,
        policy: &mut (impl AgePolicy + ?Sized),
        mut on_expired: impl FnMut(VniIdx, MacAddr),
    ) -> usize {
        let mut due = self.take_due(now);
        for d in &mut due {
            d.decision = policy.decide_age(&d.event);
        }
        let mut w = self.writer();
        let w = &mut *w;
        let mut expired = 0;
        for d in due.drain(..) {
            let Some(found) = self.index.lookup(d.key) else {
                continue; // deleted meanwhile
            };
            if found.deadline != d.deadline {
                continue; // replaced meanwhile: the new entry has an aging item of its own
            }
            let next = if found.value != d.seen {
                // Refreshed or moved meanwhile: not idle after all, or not the same entry.
                let idle_deadline = self.idle_deadline(w, d.key, Packed(found.value), now);
                idle_deadline.max(now + 1)
            } else {
                match d.decision {
                    AgeDecision::Expire => {
                        self.remove_entry(w, d.key);
                        let (idx, mac) = split_key(d.key);
                        on_expired(idx, mac);
                        expired += 1;
                        continue;
                    }
                    AgeDecision::KeepFor(ms) => now.saturating_add(ms.max(1)),
                }
            };
            self.index.set_deadline(d.key, centis(next));
            w.aging.push(next, d.key);
        }
        w.due = due;
        expired
    }

    /// Under the writer lock: pops the queue's due items; re-queues those whose entry was
    /// refreshed since (at their real deadline), and returns those idle for their aging time,
    /// for the policy to decide.
    fn take_due(&self, now: Tick) -> Vec<Due> {
        let mut w = self.writer();
        let w = &mut *w;
        let mut due = core::mem::take(&mut w.due);
        for _ in 0..EXPIRE_BATCH {
            let Some((deadline, k)) = w.aging.pop_due(now) else {
                break;
            };
            let Some(found) = self.index.lookup(k) else {
                continue;
            };
            let entry = Packed(found.value);
            if found.deadline != centis(deadline) || entry.is_static() || entry.is_evpn() {
                continue; // a stale item: the entry was replaced or re-queued since
            }
            let idle_deadline = self.idle_deadline(w, k, entry, now);
            if idle_deadline > now {
                self.index.set_deadline(k, centis(idle_deadline));
                w.aging.push(idle_deadline, k);
                continue;
            }
            let (idx, mac) = split_key(k);
            let last_seen = entry.last_seen(now);
            due.push(Due {
                key: k,
                seen: found.value,
                deadline: found.deadline,
                event: AgeEvent {
                    vni: self.vni_id(idx),
                    mac,
                    idle_ms: now.saturating_sub(last_seen),
                    hits: entry.hits(),
                    location: self.location(entry.slot()),
                },
                decision: AgeDecision::Expire,
            });
        }
        due
    }

    /// When `entry` (of key `k`) has been idle for its VNI's aging time.
    fn idle_deadline(&self, w: &Writer, k: Key, entry: Packed, now: Tick) -> Tick {
        let (idx, _) = split_key(k);
        let aging = w.vnis.get(idx.index()).map_or(0, |t| t.settings.aging_ms);
        entry.last_seen(now).saturating_add(aging)
    }
}
