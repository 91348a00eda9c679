//! A worker's hooks ([`WorkerHooks`]): its own plugin copies filter; the learn events of VNIs
//! a learn plugin decides go to the learning and aging thread, the others are decided by the
//! built-in policy at once.
//!
//! A worker hands those events to that thread through a bounded queue ([`LearnQueue`]) and
//! forwards the frame at once; a full queue drops the event (counted), and the MAC's next frame
//! offers it again. A worker offers one MAC at most once per [`REOFFER_MS`] ([`RecentOffers`]),
//! so that a chatty MAC waiting for its decision, or one a plugin rejects, does not fill the
//! queue with copies of one event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use crate::fdb::{
    AgeDecision, AgeEvent, AgePolicy, Builtin, LearnDecision, LearnEvent, LearnPolicy, Tick,
};
use crate::plugin::PluginChain;
use crate::vtep::{FilterBatch, Hooks, Verdict};
use crate::wire::Vni;

/// Learn events waiting for the learning thread, at most: a burst of new MACs beyond this (the
/// thread waits for a slow plugin) is not learned at once, and each MAC's next frame offers
/// it again.
const LEARN_QUEUE: usize = 4096;
/// A worker offers the same MAC (on the same VNI) to the learning thread at most once in this
/// many milliseconds.
const REOFFER_MS: u64 = 100;
/// Offers a worker remembers (a direct-mapped table: a collision only means an early re-offer).
const RECENT_OFFERS: usize = 1024;

/// The MACs a worker offered to the learning thread lately.
#[derive(Debug)]
pub(super) struct RecentOffers {
    /// Direct-mapped by a hash of (VNI, MAC): the key and when it was offered.
    slots: Box<[(u64, Tick)]>,
}

impl Default for RecentOffers {
    fn default() -> RecentOffers {
        RecentOffers {
            slots: vec![(u64::MAX, 0); RECENT_OFFERS].into_boxed_slice(),
        }
    }
}

impl RecentOffers {
    /// Whether `event` should go to the learning thread now: not offered in the last
    /// [`REOFFER_MS`] (and then it is remembered as offered).
    fn fresh(&mut self, event: &LearnEvent) -> bool {
        let key = u64::from(event.vni.get()) << 48 | event.mac.to_u64();
        // The high bits of a multiplicative hash mix the VNI and every MAC byte.
        let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let i = usize::try_from(h).unwrap_or(0) % self.slots.len();
        let (seen, at) = self.slots[i];
        if seen == key && event.at.saturating_sub(at) < REOFFER_MS {
            return false;
        }
        self.slots[i] = (key, event.at);
        true
    }
}

/// The queue from the workers to the learning thread.
#[derive(Debug)]
pub(super) struct LearnQueue {
    sender: SyncSender<LearnEvent>,
    /// Events dropped because the queue was full.
    full: AtomicU64,
}

impl LearnQueue {
    /// The queue and its receiving end.
    pub(super) fn new() -> (LearnQueue, Receiver<LearnEvent>) {
        let (sender, receiver) = sync_channel(LEARN_QUEUE);
        (
            LearnQueue {
                sender,
                full: AtomicU64::new(0),
            },
            receiver,
        )
    }

    /// Events dropped because the queue was full.
    pub(super) fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    fn offer(&self, event: LearnEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.full.fetch_add(1, Ordering::Relaxed);
            }
            // The learning thread is gone: the daemon is stopping.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// A worker's hooks: its own plugins for filtering; learn events of VNIs a learn plugin
/// decides go to the learning thread, the others are decided by the built-in policy.
#[derive(Debug)]
pub(super) struct WorkerHooks<'a> {
    pub(super) chain: &'a mut PluginChain,
    /// The VNIs (sorted) whose frames some plugin filters, and whose learning a plugin decides.
    pub(super) filtered: &'a [Vni],
    pub(super) deferred: &'a [Vni],
    pub(super) queue: &'a LearnQueue,
    pub(super) offered: &'a mut RecentOffers,
}

/// The VNIs (of `served`, sorted) for which a worker's `chain` filters, and those whose
/// learning a plugin of `catalog` decides (on the learning thread).
pub(super) fn hooked_vnis(
    chain: &PluginChain,
    catalog: &PluginChain,
    served: &[Vni],
) -> (Vec<Vni>, Vec<Vni>) {
    let mut filtered: Vec<Vni> = served
        .iter()
        .copied()
        .filter(|&n| chain.filters(n))
        .collect();
    let mut deferred: Vec<Vni> = served
        .iter()
        .copied()
        .filter(|&n| catalog.learns(n))
        .collect();
    filtered.sort_unstable();
    deferred.sort_unstable();
    (filtered, deferred)
}

impl Hooks for WorkerHooks<'_> {
    fn filters(&self, vni: Vni) -> bool {
        self.filtered.binary_search(&vni).is_ok()
    }

    fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        self.chain.filter(now, batch, verdicts);
    }
}

impl LearnPolicy for WorkerHooks<'_> {
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision {
        if self.deferred.binary_search(&event.vni).is_ok() {
            if self.offered.fresh(event) {
                self.queue.offer(*event);
            }
            LearnDecision::Defer
        } else {
            Builtin.decide_learn(event)
        }
    }
}

/// Workers never age entries (the aging thread does): the built-in answer, never asked.
impl AgePolicy for WorkerHooks<'_> {
    fn decide_age(&mut self, event: &AgeEvent) -> AgeDecision {
        Builtin.decide_age(event)
    }
}
