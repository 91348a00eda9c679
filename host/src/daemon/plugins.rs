//! The daemon's plugins, shared by its workers: one instance of each plugin (so that a learning
//! policy's state, say a MAC's move history, is one state whatever worker saw the frame), behind
//! a lock that a worker takes only when a batch has frames on a VNI a plugin filters, or when
//! the forwarding table asks a learn or age question (a new MAC or a move, not a refresh).
//!
//! Which VNIs are filtered is read without the lock, from a snapshot made when plugins are
//! loaded or reloaded, so that traffic on other VNIs never touches the lock at all.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::fdb::{AgeDecision, AgeEvent, AgePolicy, LearnDecision, LearnEvent, LearnPolicy};
use crate::plugin::{Plugin, PluginChain, Runtime};
use crate::vtep::{FilterBatch, Hooks, Verdict};
use crate::wire::Vni;

/// The loaded plugins.
#[derive(Debug)]
pub(super) struct Plugins {
    chain: Mutex<PluginChain>,
    /// The VNIs (of those served) whose frames some plugin filters, sorted.
    filtered: ArcSwap<Vec<Vni>>,
    /// The VNIs served, to recompute `filtered`.
    served: Vec<Vni>,
    /// The runtime, if any plugin is configured (reloads compile on it).
    runtime: Option<Runtime>,
}

impl Plugins {
    pub(super) fn new(chain: PluginChain, runtime: Option<Runtime>, served: Vec<Vni>) -> Plugins {
        let filtered = ArcSwap::from_pointee(filtered_vnis(&chain, &served));
        Plugins {
            chain: Mutex::new(chain),
            filtered,
            served,
            runtime,
        }
    }

    /// The chain, locked. A panic in another holder leaves it usable (plugins are re-created
    /// on failure anyway), so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, PluginChain> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runtime, if plugins are configured.
    pub(super) fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// Puts `plugin` in the place of the one with its name (between two batches of any
    /// worker) and returns the old one, to be dropped outside the lock.
    pub(super) fn replace(&self, plugin: Plugin) -> Option<Plugin> {
        let mut chain = self.lock();
        let old = chain.replace(plugin).ok();
        self.filtered
            .store(Arc::new(filtered_vnis(&chain, &self.served)));
        old
    }

    /// The hooks a worker passes to the pipeline.
    pub(super) fn hooks(&self) -> SharedHooks<'_> {
        SharedHooks { plugins: self }
    }
}

fn filtered_vnis(chain: &PluginChain, served: &[Vni]) -> Vec<Vni> {
    let mut v: Vec<Vni> = served
        .iter()
        .copied()
        .filter(|&n| chain.filters(n))
        .collect();
    v.sort_unstable();
    v
}

/// The plugins as one worker's pipeline hooks.
#[derive(Debug)]
pub(super) struct SharedHooks<'a> {
    plugins: &'a Plugins,
}

impl Hooks for SharedHooks<'_> {
    fn filters(&self, vni: Vni) -> bool {
        self.plugins.filtered.load().binary_search(&vni).is_ok()
    }

    fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        self.plugins.lock().filter(now, batch, verdicts);
    }
}

impl LearnPolicy for SharedHooks<'_> {
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision {
        self.plugins.lock().decide_learn(event)
    }
}

impl AgePolicy for SharedHooks<'_> {
    fn decide_age(&mut self, event: &AgeEvent) -> AgeDecision {
        self.plugins.lock().decide_age(event)
    }
}
