//! The daemon's plugins and who calls them. Each worker calls its own copy of every plugin
//! (its own instances, verdict cache and counters: see `plugin::Plugin::another`), so that
//! filtering scales with the workers and no lock is shared between them on the way. Learning
//! and aging decisions are made on one more copy, by the learning and aging thread (see
//! `policy`): a learn plugin's state (say, a MAC's move history) is then one state whatever
//! worker saw the frame, and no worker ever waits for a learn or age call.
//!
//! A worker hands the learn events of VNIs that a learn plugin decides to that thread through
//! a bounded queue ([`LearnQueue`]) and forwards the frame at once; a full queue drops the
//! event (counted), and the MAC's next frame offers it again.
//!
//! A reload loads the new plugin and its copies off the data path, then leaves each caller its
//! copy in a [`Mailbox`], which the caller takes between two batches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::fdb::{
    AgeDecision, AgeEvent, AgePolicy, Builtin, LearnDecision, LearnEvent, LearnPolicy,
};
use crate::plugin::{LoadError, Plugin, PluginChain, Runtime};
use crate::vtep::{FilterBatch, Hooks, Verdict};
use crate::wire::Vni;

/// Learn events waiting for the learning thread, at most: a burst of new MACs beyond this (the
/// thread waits for a slow plugin) is not learned at once, and each MAC's next frame offers
/// it again.
const LEARN_QUEUE: usize = 4096;

/// The loaded plugins, as the control plane sees them.
#[derive(Debug)]
pub(super) struct Plugins {
    /// One copy of each plugin, never called: its reports add up every caller's counts, and
    /// reloads and new callers copy it.
    catalog: Mutex<PluginChain>,
    /// One per worker, then one for the learning and aging thread.
    mailboxes: Vec<Mailbox>,
    /// The runtime, if any plugin is configured (reloads compile on it).
    runtime: Option<Runtime>,
}

/// Plugins left for one caller by a reload, to swap in between two batches.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    pending: AtomicBool,
    plugins: Mutex<Vec<Plugin>>,
}

impl Mailbox {
    /// Swaps the plugins left here into `chain`; a relaxed load when there are none.
    pub(super) fn deliver(&self, chain: &mut PluginChain) -> bool {
        if !self.pending.swap(false, Ordering::Acquire) {
            return false;
        }
        let plugins = core::mem::take(&mut *lock(&self.plugins));
        for p in plugins {
            // Dropped here, on the caller's thread: its instances are the caller's.
            let _ = chain.replace(p);
        }
        true
    }

    fn post(&self, plugin: Plugin) {
        lock(&self.plugins).push(plugin);
        self.pending.store(true, Ordering::Release);
    }
}

impl Plugins {
    /// The plugins of `catalog`, with a mailbox for each of `workers` workers and for the
    /// learning and aging thread.
    pub(super) fn new(catalog: PluginChain, runtime: Option<Runtime>, workers: usize) -> Plugins {
        Plugins {
            catalog: Mutex::new(catalog),
            mailboxes: (0..=workers).map(|_| Mailbox::default()).collect(),
            runtime,
        }
    }

    /// The catalog, locked: for reports (never held across a plugin call: its plugins are
    /// never called).
    pub(super) fn catalog(&self) -> MutexGuard<'_, PluginChain> {
        lock(&self.catalog)
    }

    /// The runtime, if plugins are configured.
    pub(super) fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// A new caller's copies of every plugin (instantiated now: off the data path).
    pub(super) fn copies(&self) -> Result<PluginChain, LoadError> {
        self.catalog().copies(|_| true)
    }

    /// Worker `i`'s mailbox; the last one is the learning and aging thread's.
    pub(super) fn mailbox(&self, i: usize) -> &Mailbox {
        // There is one per caller; an index past them is the last one's.
        &self.mailboxes[i.min(self.mailboxes.len() - 1)]
    }

    /// Puts `plugin` in the place of the one with its name, for every caller: makes each
    /// caller's copy first (the slow part), then leaves them in the mailboxes. The old
    /// catalog copy is returned to be dropped by the caller.
    pub(super) fn replace(&self, plugin: Plugin) -> Result<Option<Plugin>, LoadError> {
        let copies = self
            .mailboxes
            .iter()
            .map(|_| plugin.another())
            .collect::<Result<Vec<_>, _>>()?;
        let old = self.catalog().replace(plugin).ok();
        for (mailbox, copy) in self.mailboxes.iter().zip(copies) {
            mailbox.post(copy);
        }
        Ok(old)
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
}

/// The VNIs (of `served`, sorted) for which `chain` filters, and those whose learning it
/// decides.
pub(super) fn hooked_vnis(chain: &PluginChain, served: &[Vni]) -> (Vec<Vni>, Vec<Vni>) {
    let mut filtered: Vec<Vni> = served
        .iter()
        .copied()
        .filter(|&n| chain.filters(n))
        .collect();
    let mut deferred: Vec<Vni> = served
        .iter()
        .copied()
        .filter(|&n| chain.learns(n))
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
            self.queue.offer(*event);
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

/// Locks, ignoring poisoning: the plugins behind these locks stay usable after a panic
/// elsewhere (a failed instance is replaced anyway).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
