//! [`Plugin`]: one loaded plugin as one caller uses it: a worker (its filter), or the thread
//! that decides learning and aging. Each caller has its own instance, verdict cache and
//! counters; every caller of a plugin shares its compiled component ([`Loaded`]), its
//! detachment and its reports. Every failure becomes the plugin's `on_error` verdict: the
//! failed instance is replaced by a spare prepared beforehand off the data path (a trap costs
//! the caller a swap, not an instantiation and an `init`), and after `max_failures` failures in
//! a row the plugin is detached for every caller (never called again until it is reloaded).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::bindings::PluginPre;
use super::bindings::wasm_vtep::plugin::types as wit;
use super::cache::{Cached, FlowKey, VerdictCache};
use super::convert;
use super::error::{CallError, LoadError};
use super::host::{HostState, RawFrame};
use super::instance::Instance;
use super::load;
use super::ratelimit::RateLimit;
use super::runtime::Runtime;
use super::stats::{PluginStats, Tally};
use crate::config::{OnError, PluginSpec};
use crate::control::PluginReport;
use crate::fdb::{AgeDecision, AgeEvent, LearnDecision, LearnEvent};
use crate::vtep::{FilterBatch, Verdict};
use crate::wire::Vni;

/// A keep decision is at least this long, so that a plugin cannot make aging spin.
const MIN_KEEP_MS: u64 = 1000;

/// Frames one filter call is given at most: a plugin's time budget holds for each call, so a
/// large batch (a GRO batch of 64 datagrams, each of 64 segments) is offered in calls of this
/// many frames rather than in one call that a plugin fast per frame could not finish in time.
pub const MAX_FILTER_BATCH: usize = 64;

/// What every caller of one loaded plugin shares.
struct Loaded {
    spec: PluginSpec,
    name: Arc<str>,
    /// Holds the engine's threads alive as long as this plugin may run.
    runtime: Runtime,
    pre: PluginPre<HostState>,
    version: String,
    hooks: wit::Hooks,
    /// Set once it failed `max_failures` times in a row (for any caller), with why.
    detached: Mutex<Option<String>>,
    is_detached: AtomicBool,
    /// Every caller's counts, for the reports; kept while the plugin is loaded, so that a
    /// caller replaced after a crash keeps its counts in the totals.
    tallies: Mutex<Vec<Arc<Tally>>>,
}

impl Loaded {
    fn tallies(&self) -> MutexGuard<'_, Vec<Arc<Tally>>> {
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn detached(&self) -> Option<String> {
        self.detached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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

/// A caller's replacement instance, made off the data path.
#[derive(Default)]
struct Spare {
    instance: Mutex<Option<Instance>>,
    /// A replacement is being made.
    pending: AtomicBool,
}

impl Spare {
    fn slot(&self) -> MutexGuard<'_, Option<Instance>> {
        self.instance.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The spare, if one is ready (the lock is only ever held to move an instance in or out).
    fn take(&self) -> Option<Instance> {
        self.slot().take()
    }
}

/// Clears a spare's `pending` flag when dropped: also when making the spare panicked, so that
/// the next failure asks for one again.
struct Pending<'a>(&'a AtomicBool);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
    // Scratch of one filter call, kept to reuse its memory.
    metas: Vec<wit::FrameMeta>,
    slots: Vec<usize>,
    raw: Vec<RawFrame>,
}

impl core::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.loaded.spec.name)
            .field("version", &self.loaded.version)
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
        let pre = PluginPre::new(pre).map_err(link)?;
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
            version,
            hooks,
            detached: Mutex::new(None),
            is_detached: AtomicBool::new(false),
            tallies: Mutex::new(Vec::new()),
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
            spare: Arc::new(Spare {
                instance: Mutex::new(Some(spare)),
                pending: AtomicBool::new(false),
            }),
            tally,
            loaded,
            error_log: RateLimit::new(1, 5),
            metas: Vec::new(),
            slots: Vec::new(),
            raw: Vec::new(),
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
            metas: Vec::new(),
            slots: Vec::new(),
            raw: Vec::new(),
        }
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

    /// Decides the frames of `batch` on its VNIs that are still `Pass`, in calls of at most
    /// [`MAX_FILTER_BATCH`] frames; frames with a live cached verdict are answered without a
    /// call. After a failed call, the rest of the batch gets the `on_error` verdict without
    /// calls: a batch waits for at most one budget per plugin.
    pub fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        let detached = self.is_detached();
        let bypassed = detached && self.loaded.spec.on_error == OnError::Pass;
        if !self.has_filter() || bypassed {
            return; // as `filters` says: nothing to decide
        }
        self.metas.clear();
        self.slots.clear();
        let tally = Arc::clone(&self.tally);
        let mut stats = tally.stats();
        // An empty cache is not looked up: no flow key is hashed for plugins that never cache.
        let cached_any = self.cache.len() > 0;
        for (i, verdict) in verdicts.iter_mut().enumerate() {
            if *verdict == Verdict::Drop {
                continue; // an earlier plugin dropped it
            }
            let Some(frame) = batch.frame(i) else {
                continue;
            };
            if !self.loaded.spec.attached_to(frame.vni) {
                continue;
            }
            stats.frames += 1;
            if detached {
                *verdict = error_verdict(&mut stats, self.loaded.spec.on_error);
                continue;
            }
            if cached_any && let Some(cached) = self.cache.get(&FlowKey::of(&frame), now) {
                stats.cache_hits += 1;
                *verdict = apply(&mut stats, cached);
                continue;
            }
            self.metas.push(convert::frame_meta(&frame));
            self.slots.push(i);
        }
        drop(stats);
        let mut failed = false;
        let mut start = 0;
        while start < self.metas.len() {
            let end = (start + MAX_FILTER_BATCH).min(self.metas.len());
            if failed || !self.revive() {
                let mut stats = tally.stats();
                for &slot in &self.slots[start..end] {
                    if let Some(v) = verdicts.get_mut(slot) {
                        *v = error_verdict(&mut stats, self.loaded.spec.on_error);
                    }
                }
            } else {
                failed = !self.filter_chunk(now, batch, start..end, verdicts);
            }
            start = end;
        }
        self.tally
            .cached_flows
            .store(self.cache.len() as u64, Ordering::Relaxed);
    }

    /// One filter call for the selected frames `range`; false if it failed (its frames then
    /// got the `on_error` verdict).
    fn filter_chunk(
        &mut self,
        now: Instant,
        batch: &dyn FilterBatch,
        range: core::ops::Range<usize>,
        verdicts: &mut [Verdict],
    ) -> bool {
        let Some(instance) = self.instance.as_mut() else {
            return false;
        };
        self.raw.clear();
        for &slot in &self.slots[range.clone()] {
            // Every slot was a frame of the batch a moment ago.
            let bytes = batch.frame(slot).map_or(&[][..], |f| f.bytes);
            self.raw.push(RawFrame::new(bytes));
        }
        let started = Instant::now();
        // SAFETY: every RawFrame in `raw` was made from a slice of `batch`, which this
        // function borrows for its whole duration, so they outlive the call.
        let result =
            unsafe { instance.filter(&self.metas[range.clone()], &mut self.raw, self.budget) };
        let took = started.elapsed();
        self.raw.clear();
        let mut stats = self.tally.stats();
        stats.filter_calls += 1;
        stats.time_call(took);
        match result {
            Ok(results) => {
                self.tally.failures_in_row.store(0, Ordering::Relaxed);
                for (r, &slot) in results.iter().zip(&self.slots[range]) {
                    let cached = match r.verdict {
                        wit::Verdict::Pass => Cached::Pass,
                        wit::Verdict::Drop(code) => Cached::Drop(code),
                    };
                    if r.cache_secs > 0
                        && let Some(frame) = batch.frame(slot)
                        && !self
                            .cache
                            .insert(FlowKey::of(&frame), cached, r.cache_secs, now)
                    {
                        stats.cache_full += 1;
                    }
                    if let Some(v) = verdicts.get_mut(slot) {
                        *v = apply(&mut stats, cached);
                    }
                }
                drop(stats);
                self.note_memory();
                true
            }
            Err(e) => {
                for &slot in &self.slots[range] {
                    if let Some(v) = verdicts.get_mut(slot) {
                        *v = error_verdict(&mut stats, self.loaded.spec.on_error);
                    }
                }
                drop(stats);
                self.failed("filter", e);
                false
            }
        }
    }

    /// Its learn decision, or `None` if it has none to give (not attached, no learn hook, or
    /// failed or detached with `on_error = "pass"`; with `"drop"`, a failure rejects).
    pub fn learn(&mut self, event: &LearnEvent) -> Option<LearnDecision> {
        if !self.learns(event.vni) {
            return None;
        }
        let on_error = match self.loaded.spec.on_error {
            OnError::Pass => None,
            OnError::Drop => Some(LearnDecision::Reject),
        };
        if !self.revive() {
            return on_error; // detached, or no instance ready
        }
        let instance = self.instance.as_mut()?;
        let started = Instant::now();
        let result = instance.learn(convert::learn_event(event), self.budget);
        let took = started.elapsed();
        {
            let mut stats = self.tally.stats();
            stats.learn_calls += 1;
            stats.time_call(took);
        }
        match result {
            Ok(d) => {
                self.succeeded();
                Some(convert::learn_decision(d))
            }
            Err(e) => {
                self.failed("learn", e);
                on_error
            }
        }
    }

    /// Its age decision, or `None` if it has none to give (then the entry expires).
    pub fn age(&mut self, event: &AgeEvent) -> Option<AgeDecision> {
        if !self.implements(wit::Hooks::AGE) || !self.loaded.spec.attached_to(event.vni) {
            return None;
        }
        if !self.revive() {
            return None;
        }
        let instance = self.instance.as_mut()?;
        let started = Instant::now();
        let result = instance.age(convert::age_event(event), self.budget);
        let took = started.elapsed();
        {
            let mut stats = self.tally.stats();
            stats.age_calls += 1;
            stats.time_call(took);
        }
        match result {
            Ok(wit::AgeDecision::Expire) => {
                self.succeeded();
                Some(AgeDecision::Expire)
            }
            Ok(wit::AgeDecision::Keep(secs)) => {
                self.succeeded();
                Some(AgeDecision::KeepFor(
                    (u64::from(secs) * 1000).max(MIN_KEEP_MS),
                ))
            }
            Err(e) => {
                self.failed("age", e);
                None
            }
        }
    }

    /// What `vtep plugin show` prints: every caller's counts added up.
    pub fn report(&self) -> PluginReport {
        let loaded = &self.loaded;
        let mut stats = PluginStats::default();
        let mut plugin_counters = std::collections::BTreeMap::new();
        let (mut memory_used, mut cached_flows, mut logs_suppressed, mut failures_in_row) =
            (0, 0, 0, 0);
        for t in loaded.tallies().iter() {
            stats.merge(&t.stats());
            for (name, n) in t.counters().iter() {
                *plugin_counters.entry(name.clone()).or_insert(0u64) += n;
            }
            memory_used += t.memory_used.load(Ordering::Relaxed);
            cached_flows += t.cached_flows.load(Ordering::Relaxed);
            logs_suppressed += t.logs_suppressed.load(Ordering::Relaxed);
            failures_in_row = t.failures_in_row().max(failures_in_row);
        }
        let mut hooks = Vec::new();
        for (flag, name) in [
            (wit::Hooks::FILTER, "filter"),
            (wit::Hooks::LEARN, "learn"),
            (wit::Hooks::AGE, "age"),
        ] {
            if loaded.hooks.contains(flag) {
                hooks.push(name.to_owned());
            }
        }
        let detached = loaded.detached();
        PluginReport {
            name: loaded.spec.name.clone(),
            path: loaded.spec.path.display().to_string(),
            interface: loaded.version.clone(),
            state: if detached.is_some() {
                "detached"
            } else {
                "attached"
            }
            .to_owned(),
            detached_reason: detached,
            hooks,
            vnis: loaded
                .spec
                .vnis
                .as_ref()
                .map(|v| v.iter().map(|n| n.get()).collect()),
            on_error: loaded.spec.on_error.as_str().to_owned(),
            memory_limit: loaded.spec.sandbox.memory_limit() as u64,
            memory_used,
            budget_us: u64::try_from(loaded.spec.sandbox.time_budget().as_micros())
                .unwrap_or(u64::MAX),
            max_failures: loaded.spec.sandbox.max_failures(),
            failures_in_row,
            cached_flows,
            logs_suppressed,
            calls: stats.report(),
            plugin_counters,
        }
    }

    /// The host's counters and the plugin's own, every caller's added up, for `vtep stats`.
    pub fn counters(&self) -> (std::collections::BTreeMap<String, u64>, Vec<(String, u64)>) {
        let report = self.report();
        (
            report.calls.counters,
            report.plugin_counters.into_iter().collect(),
        )
    }

    /// Puts the spare in if no instance is live (and has another made, off the data path).
    /// True if an instance is live: false if detached or no spare was ready.
    fn revive(&mut self) -> bool {
        if self.is_detached() {
            return false;
        }
        if self.instance.is_none() {
            self.instance = self.spare.take();
            if self.instance.is_some() {
                self.tally.stats().recreated += 1;
                self.note_memory();
            }
            self.prepare_spare();
        }
        self.instance.is_some()
    }

    /// Has the preparing thread make a spare instance if none is ready or on its way.
    fn prepare_spare(&self) {
        if self.spare.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (loaded, spare, tally) = (
            Arc::clone(&self.loaded),
            Arc::clone(&self.spare),
            Arc::clone(&self.tally),
        );
        self.loaded.runtime.prepare(Box::new(move || {
            let pending = Pending(&spare.pending);
            if spare.slot().is_some() || loaded.is_detached.load(Ordering::Relaxed) {
                return;
            }
            // `init` under its own budget, as at load: this is off the data path.
            match loaded.instantiate(&tally, loaded.spec.sandbox.init_budget()) {
                Ok(instance) => {
                    // Cleared before the spare is there: a caller that takes it at once and
                    // asks for the next one is not told that one is on its way already.
                    drop(pending);
                    *spare.slot() = Some(instance);
                }
                // Counted as a failure of the caller; its next call asks again.
                Err(e) => fail(&loaded, &tally, "instantiate", &e, None),
            }
        }));
    }

    fn succeeded(&self) {
        self.tally.failures_in_row.store(0, Ordering::Relaxed);
        self.note_memory();
    }

    fn note_memory(&self) {
        if let Some(i) = &self.instance {
            self.tally
                .memory_used
                .store(i.memory_used() as u64, Ordering::Relaxed);
        }
    }

    /// Counts and logs a failure and puts the spare in the failed instance's place (unless
    /// the plugin is now detached), then has another spare made off the data path. Without a
    /// spare ready (failures faster than instances are made), calls get the `on_error` verdict
    /// until one is.
    fn failed(&mut self, hook: &str, error: CallError) {
        self.instance = None;
        let log = &mut self.error_log;
        fail(&self.loaded, &self.tally, hook, &error, Some(log));
        self.revive();
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

/// Counts a failure of a caller of `loaded`, logs it (at most as often as `log` allows;
/// always when it detaches the plugin), and detaches the plugin once it has failed
/// `max_failures` times in a row.
fn fail(
    loaded: &Loaded,
    tally: &Tally,
    hook: &str,
    error: &CallError,
    log: Option<&mut RateLimit>,
) {
    let message = format!("{hook}: {error}");
    let in_a_row = tally.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut stats = tally.stats();
        stats.count_failure(error);
        stats.last_error = Some(message.clone());
    }
    let max = loaded.spec.sandbox.max_failures();
    let name = &*loaded.name;
    let on_error = loaded.spec.on_error.as_str();
    if in_a_row >= max {
        let mut detached = loaded
            .detached
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if detached.is_none() {
            let reason = format!("{max} failures in a row, the last {message}");
            tracing::error!(
                plugin = name,
                on_error,
                "plugin detached: {reason}; `vtep plugin reload {name}` attaches it again"
            );
            *detached = Some(reason);
            loaded.is_detached.store(true, Ordering::Relaxed);
        }
    } else if let Some(suppressed) = log.and_then(|l| l.allow(Instant::now())) {
        tracing::warn!(
            plugin = name,
            suppressed,
            in_a_row,
            on_error,
            "plugin failed: {message}; its instance is replaced"
        );
    }
}

fn apply(stats: &mut PluginStats, cached: Cached) -> Verdict {
    match cached {
        Cached::Pass => {
            stats.passed += 1;
            Verdict::Pass
        }
        Cached::Drop(code) => {
            stats.count_drop(code);
            Verdict::Drop
        }
    }
}

fn error_verdict(stats: &mut PluginStats, on_error: OnError) -> Verdict {
    stats.error_verdicts += 1;
    match on_error {
        OnError::Pass => Verdict::Pass,
        OnError::Drop => Verdict::Drop,
    }
}
