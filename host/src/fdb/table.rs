//! `Fdb`: the forwarding table of every VNI, in one index keyed by `(VNI, MAC)`, shared by every
//! data path worker.
//!
//! One flat index rather than a map per VNI: a lookup is one hash of a `u64` and one probe,
//! whatever the number of VNIs. The key packs a 16-bit VNI handle ([`VniIdx`], handed out by
//! [`Fdb::add_vni`]) above the 48-bit MAC, stored so that no (VNI, MAC) is ever one of the
//! index's slot markers (the all-zero MAC of the first VNI included); a VTEP serves at most
//! 65,534 VNIs. An entry is
//! one packed `u64` (location, flags, hit count, last-seen time; see [`Packed`]), so a million
//! entries take about 56 MiB with the aging queue.
//!
//! Concurrency: lookups and refreshes (a frame from a MAC already at that location, the
//! per-frame case) take no lock; they read and compare-and-swap the index's atomics. What
//! changes the table's shape (a new MAC, a move, static entries, aging) takes the writer lock:
//! rare on the steady path. The learn and age policies are asked between two holds of it,
//! never under it, and their decisions are carried out only if the entry did not change.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::aging::AgingQueue;
use super::index::{Index, Key, Reader as IndexReader};
use super::policy::{AgeDecision, AgeEvent, AgePolicy, LearnDecision, LearnEvent, LearnPolicy};
use super::remotes::{Interning, RemoteId, Remotes};
use super::{Location, PortId, Tick};
use crate::wire::{MacAddr, Vni};

/// Entries [`Fdb::expire`] handles at most per call: aging holds the writer lock, and a burst of
/// entries all due at once (learned together) must not keep learners waiting for long.
pub const EXPIRE_BATCH: usize = 4096;

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
    /// When it was learned or last refreshed (to 10 ms).
    pub last_seen: Tick,
    /// Frames from the MAC at this location (saturating at 8191).
    pub hits: u32,
}

/// Where an entry points, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Port(PortId),
    Remote(RemoteId),
}

/// An entry in one `u64`: bits 0-15 the port or remote id, 16 remote (else port), 17 static,
/// 18 sticky, 19-31 hits (saturating), 32-63 last seen in hundredths of a second since the
/// epoch (wrapping after 497 days: ages are computed against `now` with wrapping arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed(u64);

const REMOTE_BIT: u64 = 1 << 16;
const STATIC_BIT: u64 = 1 << 17;
const STICKY_BIT: u64 = 1 << 18;
const HITS_SHIFT: u32 = 19;
const HITS_MAX: u64 = (1 << 13) - 1;
const SEEN_SHIFT: u32 = 32;

/// A tick in the 32-bit wrapping hundredths that entries store.
fn centis(t: Tick) -> u32 {
    // Wrapping on purpose: only differences are used.
    ((t / 10) & 0xffff_ffff) as u32
}

impl Packed {
    fn new(slot: Slot, is_static: bool, is_sticky: bool, hits: u64, now: Tick) -> Packed {
        let loc = match slot {
            Slot::Port(p) => u64::from(p.0),
            Slot::Remote(id) => REMOTE_BIT | u64::from(id.0),
        };
        let flags = if is_static { STATIC_BIT } else { 0 } | if is_sticky { STICKY_BIT } else { 0 };
        Packed(
            loc | flags
                | (hits.min(HITS_MAX) << HITS_SHIFT)
                | (u64::from(centis(now)) << SEEN_SHIFT),
        )
    }

    fn slot(self) -> Slot {
        // The low 16 bits are the id.
        let id = (self.0 & 0xffff) as u16;
        if self.0 & REMOTE_BIT != 0 {
            Slot::Remote(RemoteId(id))
        } else {
            Slot::Port(PortId(id))
        }
    }

    fn is_static(self) -> bool {
        self.0 & STATIC_BIT != 0
    }

    fn is_sticky(self) -> bool {
        self.0 & STICKY_BIT != 0
    }

    fn hits(self) -> u32 {
        // 13 bits.
        ((self.0 >> HITS_SHIFT) & HITS_MAX) as u32
    }

    /// When the entry was last seen, as a tick not after `now`. A refresh that another worker
    /// made after the caller read `now` is a little in the future: it counts as seen at `now`,
    /// not as seen 497 days ago.
    fn last_seen(self, now: Tick) -> Tick {
        /// Differences this close to a full turn are times after `now` (an hour's worth).
        const FUTURE: u32 = 360_000;
        let seen = (self.0 >> SEEN_SHIFT) as u32;
        let diff = centis(now).wrapping_sub(seen);
        let idle = if diff > u32::MAX - FUTURE {
            0
        } else {
            u64::from(diff) * 10
        };
        (now - now % 10).saturating_sub(idle)
    }

    /// Seen again at `now`: one more hit.
    fn refreshed(self, now: Tick) -> Packed {
        let hits = (u64::from(self.hits()) + 1).min(HITS_MAX);
        let kept = self.0 & (REMOTE_BIT | STATIC_BIT | STICKY_BIT | 0xffff);
        Packed(kept | (hits << HITS_SHIFT) | (u64::from(centis(now)) << SEEN_SHIFT))
    }
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
    due: Vec<Due>,
}

/// An entry whose aging deadline came, waiting for the age policy's decision.
#[derive(Debug, Clone, Copy)]
struct Due {
    key: Key,
    /// The entry's value as the policy saw it: carried out only if still the same.
    seen: u64,
    /// Its deadline word then.
    deadline: u32,
    event: AgeEvent,
    decision: AgeDecision,
}

/// Where an entry points and how, as a learn policy sees it: a decision is committed only if
/// the entry is still so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    location: Location,
    is_static: bool,
    is_sticky: bool,
}

/// How many times a learn decision is taken again when the entry changed while it was being
/// made (another worker learned or moved the MAC): past that, the frame is not learned and the
/// next one from the MAC tries again.
const LEARN_TRIES: usize = 4;

/// The forwarding table.
#[derive(Debug, Default)]
pub struct Fdb {
    index: Index,
    /// The VNI of each handle; fixed once the table is shared (`add_vni` takes `&mut self`).
    vni_ids: Vec<Vni>,
    remotes: Remotes,
    writer: Mutex<Writer>,
}

/// The table as a batch of frames reads it: the index's table loaded once for the batch, so
/// that its lookups do not serialize on loading it again and their prefetched cache misses
/// overlap (criterion, a million entries: a lone lookup 44-120 ns, a batch's 27-36 ns each).
/// If the table grows meanwhile (the writer doubles it at 3/4 full), the reader notices and
/// looks up and learns in the new one.
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
            match (p.is_static(), here) {
                (true, true) => outcome = Some(LearnOutcome::Static),
                (true, false) => outcome = Some(LearnOutcome::StaticConflict),
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

fn key(vni: VniIdx, mac: MacAddr) -> Key {
    // Handles stop at `Key::MAX_TAG` (`add_vni`), so the tag is the handle itself.
    Key::tagged(vni.0, mac.to_u64())
}

fn split_key(key: Key) -> (VniIdx, MacAddr) {
    let (tag, mac) = key.untag();
    (VniIdx(tag), MacAddr::from_u64(mac))
}

impl Fdb {
    /// An empty table serving no VNI.
    pub fn new() -> Fdb {
        Fdb::default()
    }

    /// The writer lock; a panic elsewhere leaves the table usable (every update is a whole
    /// store), so poisoning is ignored.
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `vni` with these settings (or changes them) and returns its handle.
    pub fn add_vni(&mut self, vni: Vni, settings: VniTableSettings) -> Result<VniIdx, FdbError> {
        let w = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
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

    /// The slow path of [`Fdb::learn`]: a new MAC or a move. The policy decides without the
    /// writer lock (a plugin's call may take its whole time budget, and learning on every
    /// worker waits for that lock); the decision is then committed under the lock only if the
    /// entry is still where the policy saw it, and otherwise taken again.
    fn learn_slow(
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
        Some(match (found, seen) {
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
        Ok(())
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
            if found.deadline != centis(deadline) || entry.is_static() {
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

    /// Every entry, in no particular order, with times as of `now`.
    pub fn entries(&self, now: Tick) -> impl Iterator<Item = EntryView> + '_ {
        self.index.entries().into_iter().map(move |(k, v)| {
            let (idx, mac) = split_key(k);
            let p = Packed(v);
            EntryView {
                vni: self.vni_id(idx),
                mac,
                location: self.location(p.slot()),
                is_static: p.is_static(),
                is_sticky: p.is_sticky(),
                last_seen: if p.is_static() { 0 } else { p.last_seen(now) },
                hits: p.hits(),
            }
        })
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

    fn remove_entry(&self, w: &mut Writer, k: Key) -> bool {
        let Some(v) = self.index.remove(k) else {
            return false;
        };
        let entry = Packed(v);
        self.release(&mut w.interning, entry.slot());
        if !entry.is_static() {
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

    /// Where `entry` points and how.
    fn place(&self, entry: Packed) -> Place {
        Place {
            location: self.location(entry.slot()),
            is_static: entry.is_static(),
            is_sticky: entry.is_sticky(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_ages_wrap() {
        let p = Packed::new(Slot::Remote(RemoteId(65535)), false, true, 3, 12_345);
        assert_eq!(p.slot(), Slot::Remote(RemoteId(65535)));
        assert!(!p.is_static() && p.is_sticky());
        assert_eq!(p.hits(), 3);
        assert_eq!(p.last_seen(12_345), 12_340);
        assert_eq!(p.last_seen(20_000), 12_340);
        let r = p.refreshed(99_999);
        assert_eq!((r.hits(), r.last_seen(99_999)), (4, 99_990));
        assert_eq!(r.slot(), p.slot());
        assert!(r.is_sticky());
        let s = Packed::new(Slot::Port(PortId(7)), true, false, 1 << 20, 0);
        assert_eq!(s.slot(), Slot::Port(PortId(7)));
        assert!(s.is_static());
        assert_eq!(s.hits(), 8191, "saturates");
        // 497 days on, the 32-bit hundredths have wrapped; ages stay right.
        let later: Tick = (1 << 32) * 10 + 50_000;
        let seen = Packed::new(Slot::Port(PortId(1)), false, false, 1, later - 30_000);
        assert_eq!(later - seen.last_seen(later), 30_000);
        // Refreshed by another worker just after `now` was read: seen now, not long ago.
        let ahead = Packed::new(Slot::Port(PortId(1)), false, false, 1, 12_360);
        assert_eq!(ahead.last_seen(12_345), 12_340);
    }
}
