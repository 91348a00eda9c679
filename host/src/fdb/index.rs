//! `Index`: the forwarding table's hash index, a map of [`Key`]s (any `u64` but the two slot
//! markers) to `u64` values that any number of threads read without locks while one thread at a
//! time writes.
//!
//! Why not a general map: a lookup must stay fast at a million entries, which means touching one
//! cache line. A slot is 16 bytes (the key and the packed entry, four to a line) in an
//! open-addressing table with linear probing that grows at 3/4 full, so a million entries take
//! 2^21 slots: 32 MiB of slots that lookups read (40 MiB with the writer's deadline words, and
//! the old table's size again for the moment of growing), and a lookup reads one or two
//! neighbouring lines. And the data path
//! of several workers reads it concurrently: readers only load atomics, so a lookup or a
//! refresh (the per-frame update of an entry's timestamp) never waits for anything.
//!
//! Protocol (one writer at a time, serialized by the caller):
//! - a slot is empty (key 0), a tombstone (key `u64::MAX`, left by a removal, so that probing
//!   goes on past it), or live. A [`Key`] is never either marker (its type says so), so no
//!   lookup, removal or insertion can mistake a marker for an entry.
//! - a slot holds one key in its life: empty, then that key, then a tombstone. Tombstones are
//!   not reused (they go when the table is rebuilt), so a slot's key never changes from one
//!   live key to another under a reader's feet.
//! - the writer stores a new entry's value, then its key (release); a reader that loads the key
//!   (acquire) sees the value. A reader re-checks the key after reading the value, so that an
//!   entry removed meanwhile is reported absent.
//! - values change by compare-and-swap (readers refreshing) or by the writer's stores.
//! - growing copies the live entries into a table twice as large and publishes it; readers that
//!   still hold the old table finish on it (a refresh there may be lost, which ages an entry at
//!   most one batch early).
//!
//! Each slot also has a deadline word that only the writer uses (the aging queue's stale-item
//! check); it moves with its entry when the table grows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

/// The key of an empty slot.
const EMPTY: u64 = 0;
/// The key of a removed entry's slot.
const TOMBSTONE: u64 = u64::MAX;
/// The smallest table.
const MIN_SLOTS: usize = 1024;

/// A key the index can hold: any `u64` but the markers of empty and removed slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(u64);

impl Key {
    /// The largest `tag` [`Key::tagged`] takes.
    pub(crate) const MAX_TAG: u16 = 0xfffd;

    /// `raw` as a key, unless it is a marker.
    pub(crate) const fn new(raw: u64) -> Option<Key> {
        match raw {
            EMPTY | TOMBSTONE => None,
            raw => Some(Key(raw)),
        }
    }

    /// The key of `low` (48 bits) under `tag` (at most [`Key::MAX_TAG`], clamped to it): the
    /// tag is stored plus one in the top 16 bits, which are then never all zeros nor all ones,
    /// so that no tag and value make a marker.
    pub(crate) const fn tagged(tag: u16, low: u64) -> Key {
        // Callers hand out tags up to MAX_TAG only (`Fdb::add_vni`); the clamp keeps a wrong
        // one from making a marker, and debug builds say it was wrong.
        debug_assert!(tag <= Key::MAX_TAG);
        let tag = if tag > Key::MAX_TAG {
            Key::MAX_TAG
        } else {
            tag
        };
        Key(((tag as u64) + 1) << 48 | (low & 0xffff_ffff_ffff))
    }

    /// The tag and the low 48 bits of a key made by [`Key::tagged`].
    pub(crate) const fn untag(self) -> (u16, u64) {
        // The top 16 bits are the tag plus one (at least 1 for a tagged key).
        (
            ((self.0 >> 48) as u16).wrapping_sub(1),
            self.0 & 0xffff_ffff_ffff,
        )
    }
}

#[derive(Debug, Default)]
#[repr(C, align(16))]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

#[derive(Debug)]
struct Table {
    slots: Box<[Slot]>,
    deadlines: Box<[AtomicU32]>,
    mask: usize,
    /// Set once a larger table has replaced this one: a reader still holding it looks again,
    /// so that it neither misses what was learned, moved or made static since nor refreshes
    /// entries in a table nobody reads any more.
    retired: AtomicBool,
}

impl Table {
    fn with_slots(n: usize) -> Table {
        let n = n.next_power_of_two().max(MIN_SLOTS);
        let mut slots = Vec::with_capacity(n);
        advise_huge_pages(&slots);
        slots.extend((0..n).map(|_| Slot::default()));
        Table {
            slots: slots.into_boxed_slice(),
            deadlines: (0..n).map(|_| AtomicU32::new(0)).collect(),
            mask: n - 1,
            retired: AtomicBool::new(false),
        }
    }

    /// Where probing for `key` starts.
    fn home(&self, key: Key) -> usize {
        // A multiplicative hash: keys are VNI handle and MAC bits, often sequential; the high
        // bits of the product mix all of them.
        let h = key.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & self.mask
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: Key) -> Option<usize> {
        let mut i = self.home(key);
        for _ in 0..self.slots.len() {
            match self.slots[i].key.load(Ordering::Acquire) {
                k if k == key.0 => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }
}

/// Asks the CPU to bring `slot`'s cache line closer (a no-op where no prefetch instruction is
/// known).
#[inline]
fn prefetch_line(slot: &Slot) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE, which the intrinsic requires, is part of the x86-64 baseline; the
        // pointer comes from a live reference, and a prefetch never faults and has no visible
        // effect on memory.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Asks the kernel to back a large table's (still untouched) allocation with huge pages where
/// it can: a lookup's random access into tens of MiB then misses the TLB far less often
/// (`fdb_1M/lookup` in `host/benches/pipeline.rs` measures such a lookup). Only advice: with
/// transparent huge pages off, or for a small table, nothing changes.
fn advise_huge_pages(v: &Vec<Slot>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * size_of::<Slot>();
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: `[aligned, end)` lies inside the vector's allocation (its capacity, not yet
        // touched); MADV_HUGEPAGE only changes how the kernel backs those pages, not their
        // contents or the mapping's validity, and it fails harmlessly where unsupported.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

/// The index. Readers read and refresh through a [`Reader`] (or [`Index::update`] for one
/// key); the writer calls the rest.
#[derive(Debug)]
pub(crate) struct Index {
    table: ArcSwap<Table>,
    /// Live entries (written by the writer only).
    len: AtomicUsize,
    /// Live entries and tombstones: what fills the table (writer only).
    used: AtomicUsize,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            table: ArcSwap::from_pointee(Table::with_slots(MIN_SLOTS)),
            len: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
        }
    }
}

/// A live entry as the writer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) value: u64,
    pub(crate) deadline: u32,
}

/// A reader's hold on the current table, for a batch of lookups and refreshes. Loading the
/// table pointer is the one synchronizing step of a lookup (a sequentially consistent store),
/// and it keeps the cache misses of consecutive lookups from overlapping: a batch loads it once
/// and its prefetched lookups then overlap their cache misses (`fdb_1M/lookup_batch_32`
/// against `fdb_1M/lookup` in `host/benches/pipeline.rs`). Once the table has grown,
/// [`Reader::is_current`] says so and the caller takes a new reader; a refresh that lands on
/// the old table while it is being copied is lost (the entry may then age out before its next
/// refresh).
pub(crate) struct Reader(arc_swap::Guard<Arc<Table>>);

impl Reader {
    /// Whether the table held is still the index's: false once a larger one replaced it,
    /// after which this reader must not be used for anything but a hint.
    pub(crate) fn is_current(&self) -> bool {
        !self.0.retired.load(Ordering::Acquire)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: Key) -> Option<u64> {
        let i = self.0.find(key)?;
        let slot = &self.0.slots[i];
        let value = slot.value.load(Ordering::Acquire);
        // Removed (and perhaps reused) between the two loads: not this key's value.
        (slot.key.load(Ordering::Acquire) == key.0).then_some(value)
    }

    /// Starts loading the home slots of `keys` into the cache and returns at once. A lookup in
    /// a large table is one cache miss (from DRAM, at a million entries: `fdb_1M/lookup` in
    /// `host/benches/pipeline.rs`); prefetching a batch's keys first lets the memory system
    /// fetch them all at once. Only a hint: it changes no state and nothing depends on it.
    pub(crate) fn prefetch(&self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            prefetch_line(&self.0.slots[self.0.home(key)]);
        }
    }

    /// Replaces `key`'s value with `f(value)` while `f` returns `Some`, atomically against
    /// other updates; returns the value `f` saw last, or `None` if the key is absent. Lock-free:
    /// for readers' refreshes.
    pub(crate) fn update(&self, key: Key, mut f: impl FnMut(u64) -> Option<u64>) -> Option<u64> {
        let i = self.0.find(key)?;
        let slot = &self.0.slots[i];
        let mut current = slot.value.load(Ordering::Acquire);
        loop {
            if slot.key.load(Ordering::Acquire) != key.0 {
                return None;
            }
            let Some(new) = f(current) else {
                return Some(current);
            };
            match slot.value.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(current),
                Err(seen) => current = seen,
            }
        }
    }
}

impl Index {
    /// A hold on the current table for a batch of reads: see [`Reader`].
    pub(crate) fn reader(&self) -> Reader {
        Reader(self.table.load())
    }

    /// [`Reader::update`] on the current table.
    pub(crate) fn update(&self, key: Key, f: impl FnMut(u64) -> Option<u64>) -> Option<u64> {
        self.reader().update(key, f)
    }

    /// Writer: `key`'s value and deadline.
    pub(crate) fn lookup(&self, key: Key) -> Option<Found> {
        let table = self.table.load();
        let i = table.find(key)?;
        Some(Found {
            value: table.slots[i].value.load(Ordering::Acquire),
            deadline: table.deadlines[i].load(Ordering::Relaxed),
        })
    }

    /// Writer: sets `key`'s value (inserting it if absent) and deadline.
    pub(crate) fn insert(&self, key: Key, value: u64, deadline: u32) {
        let table = self.table.load();
        if let Some(i) = table.find(key) {
            table.slots[i].value.store(value, Ordering::Release);
            table.deadlines[i].store(deadline, Ordering::Relaxed);
            return;
        }
        let used = self.used.load(Ordering::Relaxed);
        // At most 3/4 full (tombstones included), so that probes stay short.
        if (used + 1) * 4 > table.slots.len() * 3 {
            drop(table);
            self.grow();
        }
        let table = self.table.load();
        let mut i = table.home(key);
        loop {
            // Only an empty slot: a tombstone's slot is never given another key.
            if table.slots[i].key.load(Ordering::Relaxed) == EMPTY {
                self.used.fetch_add(1, Ordering::Relaxed);
                table.slots[i].value.store(value, Ordering::Release);
                table.deadlines[i].store(deadline, Ordering::Relaxed);
                table.slots[i].key.store(key.0, Ordering::Release);
                self.len.fetch_add(1, Ordering::Relaxed);
                return;
            }
            i = (i + 1) & table.mask;
        }
    }

    /// Writer: sets the deadline of `key`, if present.
    pub(crate) fn set_deadline(&self, key: Key, deadline: u32) {
        let table = self.table.load();
        if let Some(i) = table.find(key) {
            table.deadlines[i].store(deadline, Ordering::Relaxed);
        }
    }

    /// Writer: removes `key`; returns its value if it was present.
    pub(crate) fn remove(&self, key: Key) -> Option<u64> {
        let table = self.table.load();
        let i = table.find(key)?;
        let value = table.slots[i].value.load(Ordering::Acquire);
        table.slots[i].key.store(TOMBSTONE, Ordering::Release);
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(value)
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Every live `(key, value)`, as of some moment during the walk.
    pub(crate) fn entries(&self) -> Vec<(Key, u64)> {
        let table = self.table.load();
        let mut out = Vec::with_capacity(self.len());
        for slot in table.slots.iter() {
            let raw = slot.key.load(Ordering::Acquire);
            if let Some(key) = Key::new(raw) {
                let value = slot.value.load(Ordering::Acquire);
                if slot.key.load(Ordering::Acquire) == raw {
                    out.push((key, value));
                }
            }
        }
        out
    }

    /// Bytes the table occupies.
    pub(crate) fn memory(&self) -> usize {
        let table = self.table.load();
        table.slots.len() * (size_of::<Slot>() + size_of::<AtomicU32>())
    }

    /// Writer: moves the live entries into a table twice as large as they need (tombstones are
    /// dropped on the way) and publishes it. Called when the table is 3/4 full of entries and
    /// tombstones, so the new one is larger unless most of that was tombstones.
    fn grow(&self) {
        let old = self.table.load_full();
        let live = self.len();
        // Sized for the live entries only: a table full of tombstones is rebuilt, not doubled.
        let bigger = Table::with_slots((live + 1) * 2);
        for (slot, deadline) in old.slots.iter().zip(old.deadlines.iter()) {
            let Some(key) = Key::new(slot.key.load(Ordering::Acquire)) else {
                continue;
            };
            let mut i = bigger.home(key);
            while bigger.slots[i].key.load(Ordering::Relaxed) != EMPTY {
                i = (i + 1) & bigger.mask;
            }
            let target = &bigger.slots[i];
            target
                .value
                .store(slot.value.load(Ordering::Acquire), Ordering::Relaxed);
            bigger.deadlines[i].store(deadline.load(Ordering::Relaxed), Ordering::Relaxed);
            target.key.store(key.0, Ordering::Relaxed);
        }
        self.used.store(live, Ordering::Relaxed);
        // Publishing is a release: readers of the new table see every slot written above.
        self.table.store(Arc::new(bigger));
        old.retired.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` as a key (tests use small nonzero numbers).
    fn key(n: u64) -> Key {
        Key::new(n).expect("not a marker")
    }

    #[test]
    fn inserts_finds_updates_and_removes() {
        let ix = Index::default();
        assert_eq!(ix.reader().get(key(7)), None);
        ix.insert(key(7), 70, 1);
        ix.insert(key(8), 80, 2);
        assert_eq!(ix.reader().get(key(7)), Some(70));
        assert_eq!(
            ix.lookup(key(8)),
            Some(Found {
                value: 80,
                deadline: 2
            })
        );
        assert_eq!(ix.update(key(7), |v| Some(v + 1)), Some(70));
        assert_eq!(ix.reader().get(key(7)), Some(71));
        assert_eq!(ix.update(key(7), |_| None), Some(71), "no change asked");
        assert_eq!(ix.update(key(9), Some), None);
        ix.insert(key(7), 72, 3);
        assert_eq!(
            ix.lookup(key(7)),
            Some(Found {
                value: 72,
                deadline: 3
            })
        );
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.remove(key(7)), Some(72));
        assert_eq!(ix.remove(key(7)), None);
        assert_eq!(ix.reader().get(key(7)), None);
        assert_eq!(
            ix.reader().get(key(8)),
            Some(80),
            "probing goes past the tombstone"
        );
        assert_eq!(ix.len(), 1);
        ix.insert(key(7), 73, 4);
        assert_eq!(ix.reader().get(key(7)), Some(73));
    }

    #[test]
    fn a_removed_entrys_slot_never_takes_another_key() {
        let ix = Index::default();
        ix.insert(key(7), 70, 0);
        ix.remove(key(7));
        ix.insert(key(7), 71, 0);
        ix.insert(key(9), 90, 0);
        // Three slots used: the tombstone stays one until the table is rebuilt.
        assert_eq!(ix.used.load(Ordering::Relaxed), 3);
        assert_eq!(
            (ix.reader().get(key(7)), ix.reader().get(key(9))),
            (Some(71), Some(90))
        );
    }

    #[test]
    fn grows_keeping_every_entry_and_its_deadline() {
        let ix = Index::default();
        for k in 1..=100_000u64 {
            ix.insert(key(k), k * 10, u32::try_from(k).unwrap());
            if k % 3 == 0 {
                ix.remove(key(k));
            }
        }
        assert_eq!(ix.len(), 100_000 - 33_333);
        for k in 1..=100_000u64 {
            let want = (k % 3 != 0).then(|| Found {
                value: k * 10,
                deadline: u32::try_from(k).unwrap(),
            });
            assert_eq!(ix.lookup(key(k)), want, "key {k}");
        }
        assert!(ix.memory() <= 262_144 * 20, "{} bytes", ix.memory());
        let mut all = ix.entries();
        all.sort_unstable();
        assert_eq!(all.len(), ix.len());
        assert_eq!(all[0], (key(1), 10));
    }

    #[test]
    fn churn_does_not_fill_the_table_with_tombstones() {
        let ix = Index::default();
        for round in 0..50u64 {
            for k in 1..=500u64 {
                ix.insert(key(round * 1000 + k), k, 0);
            }
            for k in 1..=500u64 {
                ix.remove(key(round * 1000 + k));
            }
        }
        assert_eq!(ix.len(), 0);
        assert!(ix.memory() <= 4096 * 20, "{} bytes", ix.memory());
    }

    #[test]
    fn readers_see_whole_entries_while_a_writer_churns() {
        let ix = Arc::new(Index::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Every value is its key times 3: a reader must never see another key's value.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (ix, stop) = (Arc::clone(&ix), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for k in 1..=2000u64 {
                            if let Some(v) = ix.reader().get(key(k)) {
                                assert_eq!(v, k * 3, "key {k}");
                                seen += 1;
                            }
                            ix.update(key(k), Some);
                        }
                    }
                    seen
                })
            })
            .collect();
        for round in 0..200u64 {
            for k in 1..=2000u64 {
                if (k + round) % 2 == 0 {
                    ix.insert(key(k), k * 3, 0);
                } else {
                    ix.remove(key(k));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }

    /// One step of the property test below.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64, u32),
        Remove(u64),
        Update(u64, u64),
        Get(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Few distinct keys, so that operations meet; the markers and their neighbours among
        // them, and arbitrary ones.
        let raw = prop_oneof![
            Just(0u64),
            Just(1u64),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            0u64..64,
            any::<u64>(),
        ];
        prop_oneof![
            (raw.clone(), any::<u64>(), any::<u32>()).prop_map(|(k, v, d)| Op::Insert(k, v, d)),
            raw.clone().prop_map(Op::Remove),
            (raw.clone(), any::<u64>()).prop_map(|(k, v)| Op::Update(k, v)),
            raw.prop_map(Op::Get),
        ]
    }

    proptest::proptest! {
        /// The index behaves as a `HashMap` of the keys it accepts, and accepts every `u64` but
        /// the two markers: zero and `u64::MAX` are refused by `Key::new`, never confused with
        /// an empty or removed slot.
        #[test]
        fn behaves_as_a_map_for_arbitrary_keys(ops in proptest::collection::vec(op(), 1..400)) {
            use std::collections::HashMap;
            let ix = Index::default();
            let mut model: HashMap<u64, (u64, u32)> = HashMap::new();
            for op in ops {
                let raw = match op {
                    Op::Insert(k, ..) | Op::Remove(k) | Op::Update(k, _) | Op::Get(k) => k,
                };
                let Some(k) = Key::new(raw) else {
                    proptest::prop_assert!(raw == 0 || raw == u64::MAX, "refused {raw:#x}");
                    continue;
                };
                match op {
                    Op::Insert(_, v, d) => {
                        ix.insert(k, v, d);
                        model.insert(raw, (v, d));
                    }
                    Op::Remove(_) => {
                        proptest::prop_assert_eq!(ix.remove(k), model.remove(&raw).map(|e| e.0));
                    }
                    Op::Update(_, v) => {
                        let old = ix.update(k, |_| Some(v));
                        let want = model.get_mut(&raw).map(|e| core::mem::replace(&mut e.0, v));
                        proptest::prop_assert_eq!(old, want);
                    }
                    Op::Get(_) => {
                        let want = model.get(&raw).copied();
                        proptest::prop_assert_eq!(ix.reader().get(k), want.map(|e| e.0));
                        proptest::prop_assert_eq!(
                            ix.lookup(k),
                            want.map(|(value, deadline)| Found { value, deadline })
                        );
                    }
                }
                proptest::prop_assert_eq!(ix.len(), model.len());
            }
            let mut all: Vec<(u64, u64)> =
                ix.entries().into_iter().map(|(k, v)| (k.0, v)).collect();
            all.sort_unstable();
            let mut want: Vec<(u64, u64)> = model.iter().map(|(&k, &(v, _))| (k, v)).collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(all, want);
        }

        /// Tagged keys are never markers and give back their tag and value.
        #[test]
        fn tagged_keys_round_trip(tag in 0..=Key::MAX_TAG, low in 0u64..(1 << 48)) {
            let k = Key::tagged(tag, low);
            proptest::prop_assert!(Key::new(k.0).is_some());
            proptest::prop_assert_eq!(k.untag(), (tag, low));
        }
    }
}
