//! What `vtep plugin show` and `vtep stats` read of a plugin: every caller's counts added up,
//! with the plugin's description and state.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Plugin;
use crate::control::PluginReport;
use crate::plugin::bindings::wasm_vtep::plugin::types as wit;
use crate::plugin::stats::PluginStats;

impl Plugin {
    /// What `vtep plugin show` prints: every caller's counts added up.
    pub fn report(&self) -> PluginReport {
        let loaded = &self.loaded;
        let mut stats = PluginStats::default();
        let mut plugin_counters = BTreeMap::new();
        // First the counts of the plugins it was reloaded over (counters and drops go on),
        // then its own callers', so that its own last error is the one shown.
        {
            let mut carried = loaded.carried();
            carried.fold_finished();
            stats.merge(&carried.frozen);
            for (name, n) in &carried.frozen_counters {
                *plugin_counters.entry(name.clone()).or_insert(0u64) += n;
            }
            for generation in &carried.live {
                for t in crate::sync::lock(generation).iter() {
                    stats.merge(&t.stats());
                    for (name, n) in t.counters().iter() {
                        *plugin_counters.entry(name.clone()).or_insert(0u64) += n;
                    }
                }
            }
        }
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
            interface: loaded.pre.version().as_str().to_owned(),
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
    pub fn counters(&self) -> (BTreeMap<String, u64>, Vec<(String, u64)>) {
        let report = self.report();
        (
            report.calls.counters,
            report.plugin_counters.into_iter().collect(),
        )
    }
}
