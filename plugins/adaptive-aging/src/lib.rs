//! `adaptive-aging`: a wasm-vtep plugin that decides aging: per-VNI aging times, more time
//! for entries that carried steady traffic, none for entries that only ever sent one frame,
//! and pinned MACs (a gateway) that never age out.
//!
//! Layer: a plugin (the `age` hook only). Contract: the host asks when a learned entry has
//! been idle for its VNI's aging time (the `aging_secs` of the VTEP's `[[vni]]`); the plugin
//! answers expire, or keep for N more seconds (then it is asked again). It can only lengthen
//! that time, so give the VNI the shortest aging you want and let `aging_secs` here extend it.
//!
//! Decision, in order:
//! 1. a pinned MAC: keep ([`PIN_RECHECK_SECS`]);
//! 2. one hit or none (learned from one frame, never refreshed): expire;
//! 3. idle less than this VNI's `aging_secs`: keep for the rest of it;
//! 4. steady (at least `steady_hits_per_idle_sec` hits per second of idleness) and idle less
//!    than `max_idle_secs`: keep `steady_keep_secs` more (at most until `max_idle_secs`). As
//!    idleness grows the ratio falls, so even a busy MAC that fell silent goes in the end;
//! 5. otherwise: expire.
//!
//! ```toml
//! [[plugin]]
//! name = "aging"
//! path = "target/wasm32-unknown-unknown/release/adaptive_aging.wasm"
//! vnis = [5001]
//! config = { aging_secs = { 5001 = 600 }, steady_keep_secs = 300, pinned = ["02:00:00:00:00:fe"] }
//! ```

use serde::Deserialize;
use wasm_vtep_plugin_sdk::{
    AgeDecision, AgeEvent, Counter, MacAddr, PerVni, Plugin, Value, from_config,
};

/// How long a pinned entry is kept before the host asks again (it is then kept again).
pub const PIN_RECHECK_SECS: u32 = 3600;

/// The defaults of the steady-traffic rule.
pub const DEFAULT_STEADY_HITS_PER_IDLE_SEC: f64 = 1.0;
/// See [`DEFAULT_STEADY_HITS_PER_IDLE_SEC`].
pub const DEFAULT_STEADY_KEEP_SECS: u32 = 300;
/// See [`DEFAULT_STEADY_HITS_PER_IDLE_SEC`].
pub const DEFAULT_MAX_IDLE_SECS: u32 = 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    aging_secs: PerVni<u32>,
    #[serde(default)]
    steady_hits_per_idle_sec: Option<f64>,
    #[serde(default)]
    steady_keep_secs: Option<u32>,
    #[serde(default)]
    max_idle_secs: Option<u32>,
    #[serde(default)]
    pinned: PerVni<Vec<MacAddr>>,
}

/// The plugin.
#[derive(Debug)]
pub struct AdaptiveAging {
    aging_secs: PerVni<u32>,
    steady_hits_per_idle_sec: f64,
    steady_keep_secs: u32,
    max_idle_ms: u64,
    pinned: PerVni<Vec<MacAddr>>,
    counters: Counters,
}

#[derive(Debug)]
struct Counters {
    kept_pinned: Counter,
    kept_aging: Counter,
    kept_steady: Counter,
    expired_one_hit: Counter,
    expired: Counter,
}

/// Whole seconds from `ms`, rounded up so that the entry is not asked about a moment too early;
/// at least 1.
fn secs_ceil(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
}

impl AdaptiveAging {
    fn decide(&self, e: &AgeEvent) -> (AgeDecision, Counter) {
        let c = &self.counters;
        if self
            .pinned
            .get(e.vni)
            .is_some_and(|macs| macs.contains(&e.mac))
        {
            return (AgeDecision::Keep(PIN_RECHECK_SECS), c.kept_pinned);
        }
        if e.hits <= 1 {
            return (AgeDecision::Expire, c.expired_one_hit);
        }
        if let Some(&aging) = self.aging_secs.get(e.vni) {
            let aging_ms = u64::from(aging) * 1000;
            if e.idle_ms < aging_ms {
                return (
                    AgeDecision::Keep(secs_ceil(aging_ms - e.idle_ms)),
                    c.kept_aging,
                );
            }
        }
        let idle_secs = e.idle_ms as f64 / 1000.0;
        let steady = f64::from(e.hits) >= self.steady_hits_per_idle_sec * idle_secs;
        if steady && e.idle_ms < self.max_idle_ms {
            let keep_ms =
                (u64::from(self.steady_keep_secs) * 1000).min(self.max_idle_ms - e.idle_ms);
            return (AgeDecision::Keep(secs_ceil(keep_ms)), c.kept_steady);
        }
        (AgeDecision::Expire, c.expired)
    }
}

impl Plugin for AdaptiveAging {
    fn init(config: &Value) -> Result<Self, String> {
        let raw: RawConfig = from_config(config)?;
        let ratio = raw
            .steady_hits_per_idle_sec
            .unwrap_or(DEFAULT_STEADY_HITS_PER_IDLE_SEC);
        if !(ratio.is_finite() && ratio > 0.0) {
            return Err(format!(
                "config.steady_hits_per_idle_sec: must be a positive number, not {ratio}"
            ));
        }
        let steady_keep_secs = raw.steady_keep_secs.unwrap_or(DEFAULT_STEADY_KEEP_SECS);
        if steady_keep_secs == 0 {
            return Err("config.steady_keep_secs: must be at least 1".into());
        }
        if let Some(bad) = raw.aging_secs.values().find(|&&a| a == 0) {
            return Err(format!(
                "config.aging_secs: {bad} s; an aging time is at least 1 s (to never age a MAC, pin it)"
            ));
        }
        if let Some(bad) = raw.pinned.values().flatten().find(|m| m.is_multicast()) {
            return Err(format!(
                "config.pinned: {bad} is a multicast address, which is never learned"
            ));
        }
        Ok(AdaptiveAging {
            aging_secs: raw.aging_secs,
            steady_hits_per_idle_sec: ratio,
            steady_keep_secs,
            max_idle_ms: u64::from(raw.max_idle_secs.unwrap_or(DEFAULT_MAX_IDLE_SECS)) * 1000,
            pinned: raw.pinned,
            counters: Counters {
                kept_pinned: Counter::new("kept_pinned"),
                kept_aging: Counter::new("kept_aging"),
                kept_steady: Counter::new("kept_steady"),
                expired_one_hit: Counter::new("expired_one_hit"),
                expired: Counter::new("expired"),
            },
        })
    }
}

impl wasm_vtep_plugin_sdk::Age for AdaptiveAging {
    fn age(&mut self, event: &AgeEvent) -> AgeDecision {
        let (decision, counter) = self.decide(event);
        counter.inc();
        decision
    }
}

wasm_vtep_plugin_sdk::export_plugin!(AdaptiveAging);

#[cfg(test)]
mod tests;
