//! [`Plugin`]: one loaded plugin as the pipeline uses it. It owns the compiled component, the
//! live instance, the verdict cache and the counters, and turns every failure into the
//! plugin's `on_error` verdict: the failed instance is replaced by a fresh one, and after
//! `max_failures` failures in a row the plugin is detached (never called again until it is
//! reloaded).

use std::sync::Arc;
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
use super::spec::{OnError, PluginSpec};
use super::stats::{PluginReport, PluginStats};
use crate::fdb::{AgeDecision, AgeEvent, LearnDecision, LearnEvent};
use crate::vtep::{FilterBatch, Verdict};
use crate::wire::Vni;

/// A keep decision is at least this long, so that a plugin cannot make aging spin.
const MIN_KEEP_MS: u64 = 1000;

/// A loaded plugin.
pub struct Plugin {
    spec: PluginSpec,
    name: Arc<str>,
    /// Holds the engine's ticker alive as long as this plugin may run.
    runtime: Runtime,
    pre: PluginPre<HostState>,
    version: String,
    hooks: wit::Hooks,
    instance: Option<Instance>,
    /// The store's state while no instance is live (a re-creation failed).
    spare: Option<HostState>,
    detached: Option<String>,
    failures_in_row: u32,
    stats: PluginStats,
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
            .field("name", &self.spec.name)
            .field("version", &self.version)
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads, compiles, instantiates and initialises the plugin `spec` describes. This is
    /// the slow part (milliseconds to a second): do it off the data path.
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
        let state = HostState::new(
            Arc::clone(&name),
            spec.sandbox.memory_limit(),
            runtime.started(),
        );
        let init_budget = spec.sandbox.init_budget();
        let mut instance = Instance::new(runtime, &pre, state, init_budget)
            .map_err(|(e, _)| LoadError::Instantiate(e))?;
        let hooks = instance
            .init(&spec.config, init_budget)
            .map_err(LoadError::InitCall)?
            .map_err(LoadError::Init)?;
        Ok(Plugin {
            budget: spec.sandbox.time_budget(),
            cache: VerdictCache::new(spec.cache_entries),
            spec,
            name,
            runtime: runtime.clone(),
            pre,
            version,
            hooks,
            instance: Some(instance),
            spare: None,
            detached: None,
            failures_in_row: 0,
            stats: PluginStats::default(),
            error_log: RateLimit::new(1, 5),
            metas: Vec::new(),
            slots: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Its configured name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The runtime it runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Detached after too many failures, and why.
    pub fn detached(&self) -> Option<&str> {
        self.detached.as_deref()
    }

    /// Whether its filter wants frames of `vni`: it implements `filter` and is attached to the
    /// VNI, and is either live or detached with `on_error = "drop"` (then it drops them).
    pub fn filters(&self, vni: Vni) -> bool {
        self.hooks.contains(wit::Hooks::FILTER)
            && self.spec.attached_to(vni)
            && (self.detached.is_none() || self.spec.on_error == OnError::Drop)
    }

    /// Decides the frames of `batch` on its VNIs that are still `Pass`, in one call; frames
    /// with a live cached verdict are answered without a call.
    pub fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        let bypassed = self.detached.is_some() && self.spec.on_error == OnError::Pass;
        if !self.hooks.contains(wit::Hooks::FILTER) || bypassed {
            return; // as `filters` says: nothing to decide
        }
        self.metas.clear();
        self.slots.clear();
        self.raw.clear();
        // An empty cache is not looked up: no flow key is hashed for plugins that never cache.
        let cached_any = self.cache.len() > 0;
        for (i, verdict) in verdicts.iter_mut().enumerate() {
            if *verdict == Verdict::Drop {
                continue; // an earlier plugin dropped it
            }
            let Some(frame) = batch.frame(i) else {
                continue;
            };
            if !self.spec.attached_to(frame.vni) {
                continue;
            }
            self.stats.frames += 1;
            if self.detached.is_some() {
                *verdict = self.error_verdict();
                continue;
            }
            if cached_any && let Some(cached) = self.cache.get(&FlowKey::of(&frame), now) {
                self.stats.cache_hits += 1;
                *verdict = self.apply(cached);
                continue;
            }
            self.metas.push(convert::frame_meta(&frame));
            self.slots.push(i);
            self.raw.push(RawFrame::new(frame.bytes));
        }
        if self.metas.is_empty() {
            return;
        }
        self.revive();
        let result = match self.instance.as_mut() {
            Some(instance) => {
                self.stats.filter_calls += 1;
                let started = Instant::now();
                // SAFETY: every RawFrame in `raw` was made from a slice of `batch`, which this
                // function borrows for its whole duration, so they outlive the call.
                let result = unsafe { instance.filter(&self.metas, &mut self.raw, self.budget) };
                self.stats.time_call(started.elapsed());
                Some(result)
            }
            None => None,
        };
        self.raw.clear();
        match result {
            Some(Ok(results)) => {
                self.failures_in_row = 0;
                for (k, r) in results.iter().enumerate() {
                    let cached = match r.verdict {
                        wit::Verdict::Pass => Cached::Pass,
                        wit::Verdict::Drop(code) => Cached::Drop(code),
                    };
                    let slot = self.slots[k];
                    if r.cache_secs > 0
                        && let Some(frame) = batch.frame(slot)
                        && !self
                            .cache
                            .insert(FlowKey::of(&frame), cached, r.cache_secs, now)
                    {
                        self.stats.cache_full += 1;
                    }
                    verdicts[slot] = self.apply(cached);
                }
            }
            Some(Err(e)) => {
                self.failed("filter", e);
                self.error_verdicts(verdicts);
                self.revive();
            }
            None => self.error_verdicts(verdicts),
        }
    }

    /// Its learn decision, or `None` if it has none to give (not attached, no learn hook, or
    /// failed or detached with `on_error = "pass"`; with `"drop"`, a failure rejects).
    pub fn learn(&mut self, event: &LearnEvent) -> Option<LearnDecision> {
        if !self.hooks.contains(wit::Hooks::LEARN) || !self.spec.attached_to(event.vni) {
            return None;
        }
        let on_error = match self.spec.on_error {
            OnError::Pass => None,
            OnError::Drop => Some(LearnDecision::Reject),
        };
        self.revive();
        let Some(instance) = self.instance.as_mut() else {
            return on_error; // detached, or its instance could not be re-created
        };
        let started = Instant::now();
        let result = instance.learn(convert::learn_event(event), self.budget);
        self.stats.learn_calls += 1;
        self.stats.time_call(started.elapsed());
        match result {
            Ok(d) => {
                self.failures_in_row = 0;
                Some(convert::learn_decision(d))
            }
            Err(e) => {
                self.failed("learn", e);
                self.revive();
                on_error
            }
        }
    }

    /// Its age decision, or `None` if it has none to give (then the entry expires).
    pub fn age(&mut self, event: &AgeEvent) -> Option<AgeDecision> {
        if !self.hooks.contains(wit::Hooks::AGE) || !self.spec.attached_to(event.vni) {
            return None;
        }
        self.revive();
        let instance = self.instance.as_mut()?;
        let started = Instant::now();
        let result = instance.age(convert::age_event(event), self.budget);
        self.stats.age_calls += 1;
        self.stats.time_call(started.elapsed());
        match result {
            Ok(wit::AgeDecision::Expire) => {
                self.failures_in_row = 0;
                Some(AgeDecision::Expire)
            }
            Ok(wit::AgeDecision::Keep(secs)) => {
                self.failures_in_row = 0;
                Some(AgeDecision::KeepFor(
                    (u64::from(secs) * 1000).max(MIN_KEEP_MS),
                ))
            }
            Err(e) => {
                self.failed("age", e);
                self.revive();
                None
            }
        }
    }

    /// What `vtep plugin show` prints.
    pub fn report(&self) -> PluginReport {
        let state = self
            .instance
            .as_ref()
            .map(Instance::state)
            .or(self.spare.as_ref());
        let mut hooks = Vec::new();
        for (flag, name) in [
            (wit::Hooks::FILTER, "filter"),
            (wit::Hooks::LEARN, "learn"),
            (wit::Hooks::AGE, "age"),
        ] {
            if self.hooks.contains(flag) {
                hooks.push(name.to_owned());
            }
        }
        PluginReport {
            name: self.spec.name.clone(),
            path: self.spec.path.display().to_string(),
            interface: self.version.clone(),
            state: if self.detached.is_some() {
                "detached"
            } else {
                "attached"
            }
            .to_owned(),
            detached_reason: self.detached.clone(),
            hooks,
            vnis: self
                .spec
                .vnis
                .as_ref()
                .map(|v| v.iter().map(|n| n.get()).collect()),
            on_error: self.spec.on_error.as_str().to_owned(),
            memory_limit: self.spec.sandbox.memory_limit() as u64,
            memory_used: state.map_or(0, |s| s.limiter.used() as u64),
            budget_us: u64::try_from(self.spec.sandbox.time_budget().as_micros())
                .unwrap_or(u64::MAX),
            max_failures: self.spec.sandbox.max_failures(),
            failures_in_row: self.failures_in_row,
            cached_flows: self.cache.len() as u64,
            logs_suppressed: state.map_or(0, HostState::logs_suppressed),
            calls: self.stats.report(),
            plugin_counters: state
                .map(|s| s.counters.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Re-creates the instance (and re-initialises it, under the call budget: this runs on
    /// the data path) if the last one failed. True if an instance is live: false if detached
    /// or re-creation failed.
    fn revive(&mut self) -> bool {
        if self.detached.is_some() {
            return false;
        }
        if self.instance.is_none() {
            let state = self.spare.take().unwrap_or_else(|| {
                HostState::new(
                    Arc::clone(&self.name),
                    self.spec.sandbox.memory_limit(),
                    self.runtime.started(),
                )
            });
            match Instance::new(&self.runtime, &self.pre, state.renew(), self.budget) {
                Ok(mut instance) => match instance.init(&self.spec.config, self.budget) {
                    Ok(Ok(_)) => {
                        self.stats.recreated += 1;
                        self.instance = Some(instance);
                    }
                    Ok(Err(refusal)) => {
                        self.spare = Some(instance.into_state());
                        let e =
                            CallError::Invalid(format!("init refused on re-creation: {refusal}"));
                        self.failed("init", e);
                    }
                    Err(e) => {
                        self.spare = Some(instance.into_state());
                        self.failed("init", e);
                    }
                },
                Err((e, state)) => {
                    self.spare = Some(*state);
                    self.failed("instantiate", e);
                }
            }
        }
        self.instance.is_some()
    }

    /// Counts and logs a failure, drops the instance, and detaches the plugin once it has
    /// failed `max_failures` times in a row.
    fn failed(&mut self, hook: &str, error: CallError) {
        self.stats.count_failure(&error);
        self.failures_in_row += 1;
        if let Some(instance) = self.instance.take() {
            self.spare = Some(instance.into_state());
        }
        let message = format!("{hook}: {error}");
        let max = self.spec.sandbox.max_failures();
        if self.failures_in_row >= max {
            let reason = format!("{max} failures in a row, the last {message}");
            tracing::error!(
                plugin = %self.name,
                on_error = self.spec.on_error.as_str(),
                "plugin detached: {reason}; `vtep plugin reload {}` attaches it again",
                self.name
            );
            self.detached = Some(reason);
        } else if let Some(suppressed) = self.error_log.allow(Instant::now()) {
            tracing::warn!(
                plugin = %self.name,
                suppressed,
                in_a_row = self.failures_in_row,
                on_error = self.spec.on_error.as_str(),
                "plugin failed: {message}; its instance is re-created"
            );
        }
        self.stats.last_error = Some(message);
    }

    fn apply(&mut self, cached: Cached) -> Verdict {
        match cached {
            Cached::Pass => {
                self.stats.passed += 1;
                Verdict::Pass
            }
            Cached::Drop(code) => {
                self.stats.count_drop(code);
                Verdict::Drop
            }
        }
    }

    fn error_verdict(&mut self) -> Verdict {
        self.stats.error_verdicts += 1;
        match self.spec.on_error {
            OnError::Pass => Verdict::Pass,
            OnError::Drop => Verdict::Drop,
        }
    }

    /// Gives the frames of the failed call the `on_error` verdict.
    fn error_verdicts(&mut self, verdicts: &mut [Verdict]) {
        for k in 0..self.slots.len() {
            let v = self.error_verdict();
            if let Some(slot) = verdicts.get_mut(self.slots[k]) {
                *slot = v;
            }
        }
    }

    /// The host's counters and the plugin's own, for `vtep stats`.
    pub fn counters(&self) -> (std::collections::BTreeMap<String, u64>, Vec<(String, u64)>) {
        let state = self
            .instance
            .as_ref()
            .map(Instance::state)
            .or(self.spare.as_ref());
        (
            self.stats.counters(),
            state.map(|s| s.counters.clone()).unwrap_or_default(),
        )
    }
}
