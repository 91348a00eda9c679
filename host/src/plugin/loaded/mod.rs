//! [`Plugin`]: one loaded plugin as one caller uses it: a worker (its filter), or the thread
//! that decides learning and aging. Each caller has its own instance, verdict cache and
//! counters; every caller of a plugin shares its compiled component ([`Loaded`]), its
//! detachment and its reports. Every failure becomes the plugin's `on_error` verdict: the
//! failed instance is replaced by a spare prepared beforehand off the data path (a trap costs
//! the caller a swap, not an instantiation and an `init`), and after `max_failures` failures in
//! a row the plugin is detached for every caller (never called again until it is reloaded).
//!
//! This module makes and copies a plugin and says what it implements; [`filter`] runs the
//! filter hook, [`decide`] the learn and age hooks, [`failure`] counts failures and revives
//! or detaches, [`report`] adds every caller's counts up.

mod decide;
mod failure;
mod filter;
mod report;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use self::failure::Spare;
use super::bindings::Version;
use super::bindings::wasm_vtep::plugin::types as wit;
use super::cache::VerdictCache;
use super::error::{CallError, LoadError};
use super::host::HostState;
use super::instance::{Instance, Pre};
use super::load;
use super::ratelimit::RateLimit;
use super::runtime::Runtime;
use super::stats::PluginStats;
use super::stats::Tally;
use crate::config::{OnError, PluginSpec};
use crate::sync;
use crate::wire::Vni;

pub use filter::MAX_FILTER_BATCH;

/// What every caller of one loaded plugin shares.
struct Loaded {
    spec: PluginSpec,
    name: Arc<str>,
    /// Holds the engine's threads alive as long as this plugin may run.
    runtime: Runtime,
    pre: Pre,
    hooks: wit::Hooks,
    /// Set once it failed `max_failures` times in a row (for any caller), with why.
    detached: Mutex<Option<String>>,
    is_detached: AtomicBool,
    /// Every caller's counts, for the reports; kept while the plugin is loaded, so that a
    /// caller replaced after a crash keeps its counts in the totals.
    tallies: Generation,
    /// The counts of the plugins this one was reloaded over, which the reports add to its own:
    /// counters and drop reasons go on across a reload. Only counts: gauges (memory, cached
    /// flows) are the running callers'.
    carried: Mutex<Carried>,
}

/// One loaded plugin's callers' tallies. Shared, not copied, by a reload that carries them
/// over: a caller of the old plugin restarted after the reload still adds its tally here.
type Generation = Arc<Mutex<Vec<Arc<Tally>>>>;

/// The counts carried over from earlier loads of a plugin.
#[derive(Debug, Default)]
struct Carried {
    /// Generations nobody can count into any more (their plugin is gone), added up once: a
    /// plugin reloaded every minute for a year costs its reports nothing more.
    frozen: PluginStats,
    frozen_counters: BTreeMap<String, u64>,
    /// Generations whose plugin still has callers.
    live: Vec<Generation>,
}

impl Carried {
    /// Folds the generations whose plugin is gone (this list holds the last reference, so no
    /// caller can push a tally or count into one) into the frozen sums.
    fn fold_finished(&mut self) {
        let (finished, live): (Vec<Generation>, Vec<Generation>) = core::mem::take(&mut self.live)
            .into_iter()
            .partition(|g| Arc::strong_count(g) == 1);
        self.live = live;
        for generation in finished {
            for t in sync::lock(&generation).iter() {
                self.frozen.merge(&t.stats());
                for (name, n) in t.counters().iter() {
                    *self.frozen_counters.entry(name.clone()).or_insert(0) += n;
                }
            }
        }
    }
}

impl Loaded {
    fn tallies(&self) -> MutexGuard<'_, Vec<Arc<Tally>>> {
        sync::lock(&self.tallies)
    }

    fn carried(&self) -> MutexGuard<'_, Carried> {
        sync::lock(&self.carried)
    }

    fn detached(&self) -> Option<String> {
        sync::lock(&self.detached).clone()
    }

    /// A fresh instance counting into `tally`, initialised with the plugin's configuration.
    fn instantiate(&self, tally: &Arc<Tally>, budget: Duration) -> Result<Instance, CallError> {
        let state = HostState::new(
            Arc::clone(&self.name),
            self.spec.sandbox.memory_limit(),
            self.runtime.started(),
            Arc::clone(tally),
        );
        let mut instance = Instance::new(&self.runtime, &self.pre, state, budget)?;
        match instance.init(&self.spec.config, budget)? {
            Ok(_) => Ok(instance),
            Err(refusal) => Err(CallError::Invalid(format!("init refused: {refusal}"))),
        }
    }
}

/// A loaded plugin as one caller uses it.
pub struct Plugin {
    loaded: Arc<Loaded>,
    instance: Option<Instance>,
    spare: Arc<Spare>,
    tally: Arc<Tally>,
    cache: VerdictCache,
    budget: Duration,
    error_log: RateLimit,
    scratch: filter::Scratch,
}

impl core::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.loaded.spec.name)
            .field("version", &self.loaded.pre.version())
            .field("detached", &self.loaded.detached())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads, compiles, instantiates and initialises the plugin `spec` describes, with a spare
    /// instance. This is the slow part (milliseconds to a second): do it off the data path.
    pub fn load(runtime: &Runtime, spec: PluginSpec) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(&spec.path).map_err(|error| LoadError::Read {
            path: spec.path.clone(),
            error,
        })?;
        Plugin::from_bytes(runtime, spec, &bytes)
    }

    /// As [`Plugin::load`], with the module's bytes at hand (`spec.path` is only shown).
    pub fn from_bytes(
        runtime: &Runtime,
        spec: PluginSpec,
        bytes: &[u8],
    ) -> Result<Plugin, LoadError> {
        let (component, version) = load::compile(runtime.engine(), bytes)?;
        let link = |e: wasmtime::Error| {
            LoadError::Link(format!(
                "{e:#} (a plugin may import only wasm-vtep:plugin/host: build it for \
                 wasm32-unknown-unknown, without WASI)"
            ))
        };
        let pre = runtime.linker().instantiate_pre(&component).map_err(link)?;
        let pre = Pre::new(version, pre).map_err(link)?;
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let tally = Arc::new(Tally::default());
        let state = HostState::new(
            Arc::clone(&name),
            spec.sandbox.memory_limit(),
            runtime.started(),
            Arc::clone(&tally),
        );
        let init_budget = spec.sandbox.init_budget();
        let mut instance =
            Instance::new(runtime, &pre, state, init_budget).map_err(LoadError::Instantiate)?;
        let hooks = instance
            .init(&spec.config, init_budget)
            .map_err(LoadError::InitCall)?
            .map_err(LoadError::Init)?;
        let loaded = Arc::new(Loaded {
            spec,
            name,
            runtime: runtime.clone(),
            pre,
            hooks,
            detached: Mutex::new(None),
            is_detached: AtomicBool::new(false),
            tallies: Generation::default(),
            carried: Mutex::new(Carried::default()),
        });
        Plugin::with_instance(loaded, tally, instance)
    }

    /// Another caller's copy of this plugin: the same compiled component, detachment and
    /// reports; its own instance (and spare, both made now: call it off the data path),
    /// verdict cache and counters.
    pub fn another(&self) -> Result<Plugin, LoadError> {
        let tally = Arc::new(Tally::default());
        let budget = self.loaded.spec.sandbox.init_budget();
        let instance = self
            .loaded
            .instantiate(&tally, budget)
            .map_err(LoadError::InitCall)?;
        Plugin::with_instance(Arc::clone(&self.loaded), tally, instance)
    }

    fn with_instance(
        loaded: Arc<Loaded>,
        tally: Arc<Tally>,
        instance: Instance,
    ) -> Result<Plugin, LoadError> {
        let spare = loaded
            .instantiate(&tally, loaded.spec.sandbox.init_budget())
            .map_err(LoadError::InitCall)?;
        loaded.tallies().push(Arc::clone(&tally));
        tally
            .memory_used
            .store(instance.memory_used() as u64, Ordering::Relaxed);
        Ok(Plugin {
            budget: loaded.spec.sandbox.time_budget(),
            cache: VerdictCache::new(loaded.spec.cache_entries),
            instance: Some(instance),
            spare: Arc::new(Spare::ready(spare)),
            tally,
            loaded,
            error_log: RateLimit::new(1, 5),
            scratch: filter::Scratch::default(),
        })
    }

    /// This plugin without instances, sharing its compiled component, detachment and reports:
    /// what the daemon keeps to report on the plugin and to make copies from, never called.
    /// Its own counts (none: it is never called) are not in the reports.
    pub fn template(&self) -> Plugin {
        Plugin {
            loaded: Arc::clone(&self.loaded),
            instance: None,
            spare: Arc::default(),
            tally: Arc::default(),
            cache: VerdictCache::new(0),
            budget: self.budget,
            error_log: RateLimit::new(1, 5),
            scratch: filter::Scratch::default(),
        }
    }

    /// Makes this plugin's reports go on from `old`'s counts (its callers' and what it carried
    /// itself): for a reload that keeps the counters. The old callers keep counting into
    /// their tallies until they are swapped out, and those counts are kept too.
    pub fn carry_counts_from(&self, old: &Plugin) {
        if Arc::ptr_eq(&self.loaded, &old.loaded) {
            return;
        }
        let (frozen, frozen_counters, mut live) = {
            let mut from = old.loaded.carried();
            from.fold_finished();
            (
                from.frozen.clone(),
                from.frozen_counters.clone(),
                from.live.clone(),
            )
        };
        live.push(Arc::clone(&old.loaded.tallies));
        let mut into = self.loaded.carried();
        into.frozen.merge(&frozen);
        for (name, n) in frozen_counters {
            *into.frozen_counters.entry(name).or_insert(0) += n;
        }
        into.live.extend(live);
    }

    /// Its configured name.
    pub fn name(&self) -> &str {
        &self.loaded.spec.name
    }

    /// What it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.loaded.spec
    }

    /// The runtime it runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.loaded.runtime
    }

    /// Detached after too many failures, and why.
    pub fn detached(&self) -> Option<String> {
        self.loaded.detached()
    }

    fn is_detached(&self) -> bool {
        self.loaded.is_detached.load(Ordering::Relaxed)
    }

    /// Whether its interface version shows frames' [`Details`](crate::wire::Details) (0.2.0 on).
    fn shows_details(&self) -> bool {
        self.loaded.pre.version() != Version::V0_1
    }

    fn implements(&self, hook: wit::Hooks) -> bool {
        self.loaded.hooks.contains(hook)
    }

    /// Whether it implements the filter hook (a worker then needs a copy of it).
    pub fn has_filter(&self) -> bool {
        self.implements(wit::Hooks::FILTER)
    }

    /// Whether it implements the learn or the age hook (the learning and aging thread then
    /// needs a copy of it).
    pub fn has_learn_or_age(&self) -> bool {
        self.implements(wit::Hooks::LEARN) || self.implements(wit::Hooks::AGE)
    }

    /// Whether its learn hook decides learning on `vni`.
    pub fn learns(&self, vni: Vni) -> bool {
        self.implements(wit::Hooks::LEARN) && self.loaded.spec.attached_to(vni)
    }

    /// Whether its filter wants frames of `vni`: it implements `filter` and is attached to the
    /// VNI, and is either live or detached with `on_error = "drop"` (then it drops them).
    pub fn filters(&self, vni: Vni) -> bool {
        self.has_filter()
            && self.loaded.spec.attached_to(vni)
            && (!self.is_detached() || self.loaded.spec.on_error == OnError::Drop)
    }

    /// Shows the live instance's memory in the reports.
    pub(super) fn note_memory(&self) {
        if let Some(i) = &self.instance {
            self.tally
                .memory_used
                .store(i.memory_used() as u64, Ordering::Relaxed);
        }
    }
}

/// A copy that is gone holds no memory and caches no verdict: its counts stay in the totals,
/// its gauges do not.
impl Drop for Plugin {
    fn drop(&mut self) {
        self.tally.memory_used.store(0, Ordering::Relaxed);
        self.tally.cached_flows.store(0, Ordering::Relaxed);
    }
}
