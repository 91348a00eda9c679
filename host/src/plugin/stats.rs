//! A plugin's counters, kept by the host, from which its
//! [`PluginReport`](crate::control::PluginReport) (what `vtep plugin show`, `vtep plugin list`
//! and `vtep stats` print about it) is made.
//!
//! Each runner of a plugin (the instances one worker, or the learning and aging thread, calls)
//! counts into a [`Tally`] of its own, which the control plane reads at any time and adds up:
//! its locks are held for a few counter updates, never across a call into wasm, so that
//! `vtep stats` never waits for a plugin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::call_time::CallTimes;
use super::error::CallError;
use crate::control::CallReport;
use crate::sync;

/// Distinct drop reason codes counted apart; further codes share one counter.
const MAX_REASONS: usize = 64;

/// Counted by the host on each call.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginStats {
    pub(crate) filter_calls: u64,
    pub(crate) learn_calls: u64,
    pub(crate) age_calls: u64,
    /// Frames offered to the filter (called or answered from the cache).
    pub(crate) frames: u64,
    pub(crate) cache_hits: u64,
    /// Verdicts the cache had no room for.
    pub(crate) cache_full: u64,
    pub(crate) passed: u64,
    /// Drops by the plugin's reason code.
    drops: Vec<(u16, u64)>,
    drops_other: u64,
    /// Frames that got the `on_error` verdict (a failed call, or a detached plugin).
    pub(crate) error_verdicts: u64,
    pub(crate) traps: u64,
    pub(crate) timeouts: u64,
    pub(crate) out_of_memory: u64,
    pub(crate) invalid: u64,
    /// Instances created after a failure.
    pub(crate) recreated: u64,
    /// Time in calls (all hooks), and the longest call.
    pub(crate) call_time: Duration,
    pub(crate) call_max: Duration,
    /// Every call's time, as a histogram.
    call_times: CallTimes,
    /// Filter calls with one frame (a ping, an ARP exchange: the plugin's code and data are
    /// usually cold by then) and their time ...
    pub(crate) one_frame_calls: u64,
    pub(crate) one_frame_time: Duration,
    /// ... and with more (a busy port's batches), their frames and time.
    pub(crate) batch_calls: u64,
    pub(crate) batch_frames: u64,
    pub(crate) batch_time: Duration,
    pub(crate) last_error: Option<String>,
}

impl PluginStats {
    /// Adds `other`'s counts (another runner's) to these.
    pub(crate) fn merge(&mut self, other: &PluginStats) {
        self.filter_calls += other.filter_calls;
        self.learn_calls += other.learn_calls;
        self.age_calls += other.age_calls;
        self.frames += other.frames;
        self.cache_hits += other.cache_hits;
        self.cache_full += other.cache_full;
        self.passed += other.passed;
        for &(code, n) in &other.drops {
            match self.drops.iter().position(|(c, _)| *c == code) {
                Some(i) => self.drops[i].1 += n,
                None if self.drops.len() < MAX_REASONS => self.drops.push((code, n)),
                None => self.drops_other += n,
            }
        }
        self.drops_other += other.drops_other;
        self.error_verdicts += other.error_verdicts;
        self.traps += other.traps;
        self.timeouts += other.timeouts;
        self.out_of_memory += other.out_of_memory;
        self.invalid += other.invalid;
        self.recreated += other.recreated;
        self.call_time += other.call_time;
        self.call_max = self.call_max.max(other.call_max);
        self.call_times.merge(&other.call_times);
        self.one_frame_calls += other.one_frame_calls;
        self.one_frame_time += other.one_frame_time;
        self.batch_calls += other.batch_calls;
        self.batch_frames += other.batch_frames;
        self.batch_time += other.batch_time;
        if other.last_error.is_some() {
            self.last_error.clone_from(&other.last_error);
        }
    }

    pub(crate) fn count_drop(&mut self, code: u16) {
        if let Some((_, n)) = self.drops.iter_mut().find(|(c, _)| *c == code) {
            *n += 1;
        } else if self.drops.len() < MAX_REASONS {
            self.drops.push((code, 1));
        } else {
            self.drops_other += 1;
        }
    }

    pub(crate) fn count_failure(&mut self, error: &CallError) {
        match error {
            CallError::Trap(_) => self.traps += 1,
            CallError::Timeout(_) => self.timeouts += 1,
            CallError::OutOfMemory(_) => self.out_of_memory += 1,
            CallError::Invalid(_) => self.invalid += 1,
        }
    }

    pub(crate) fn time_call(&mut self, took: Duration) {
        self.call_time += took;
        self.call_max = self.call_max.max(took);
        self.call_times.record(took);
    }

    /// Times a filter call of `frames` frames (also in the time of all calls).
    pub(crate) fn time_filter(&mut self, took: Duration, frames: usize) {
        self.time_call(took);
        if frames == 1 {
            self.one_frame_calls += 1;
            self.one_frame_time += took;
        } else {
            self.batch_calls += 1;
            self.batch_frames += frames as u64;
            self.batch_time += took;
        }
    }

    fn calls(&self) -> u64 {
        self.filter_calls + self.learn_calls + self.age_calls
    }

    /// Drops by reason code (`"other"` for codes past the 64 counted apart).
    fn drops_by_reason(&self) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = self
            .drops
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect();
        if self.drops_other > 0 {
            m.insert("other".to_owned(), self.drops_other);
        }
        m
    }

    fn drops_total(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum::<u64>() + self.drops_other
    }

    /// The host's counters by name, as `vtep stats` lists them.
    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        [
            ("filter_calls", self.filter_calls),
            ("learn_calls", self.learn_calls),
            ("age_calls", self.age_calls),
            ("frames", self.frames),
            ("cache_hits", self.cache_hits),
            ("passed", self.passed),
            ("dropped", self.drops_total()),
            ("error_verdicts", self.error_verdicts),
            ("traps", self.traps),
            ("timeouts", self.timeouts),
            ("out_of_memory", self.out_of_memory),
            ("invalid", self.invalid),
            ("recreated", self.recreated),
            ("one_frame_calls", self.one_frame_calls),
            ("batch_calls", self.batch_calls),
            ("batch_frames", self.batch_frames),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub(crate) fn report(&self) -> CallReport {
        CallReport {
            counters: self.counters(),
            drops: self.drops_by_reason(),
            cache_full: self.cache_full,
            avg_call_ns: mean_ns(self.call_time, self.calls()),
            avg_one_frame_call_ns: mean_ns(self.one_frame_time, self.one_frame_calls),
            avg_batch_call_ns: mean_ns(self.batch_time, self.batch_calls),
            avg_batch_frame_ns: mean_ns(self.batch_time, self.batch_frames),
            max_call_ns: u64::try_from(self.call_max.as_nanos()).unwrap_or(u64::MAX),
            call_times: self.call_times.report(),
            last_error: self.last_error.clone(),
        }
    }
}

/// The mean of `n` calls that took `total`, in nanoseconds (0 for no call).
fn mean_ns(total: Duration, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        u64::try_from(total.as_nanos() / u128::from(n)).unwrap_or(u64::MAX)
    }
}

/// One runner's counts, shared between the runner and the control plane.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    stats: Mutex<PluginStats>,
    /// The counters the plugin declared (`counter`), in id order; every instance of the runner
    /// (a replacement too) declares them by name and finds the same ids.
    counters: Mutex<Vec<(String, u64)>>,
    pub(crate) memory_used: AtomicU64,
    pub(crate) cached_flows: AtomicU64,
    pub(crate) failures_in_row: AtomicU32,
    pub(crate) logs_suppressed: AtomicU64,
}

impl Tally {
    /// The host's counters; a panic elsewhere leaves plain counters, so poisoning is ignored.
    pub(crate) fn stats(&self) -> MutexGuard<'_, PluginStats> {
        sync::lock(&self.stats)
    }

    /// The plugin's own counters.
    pub(crate) fn counters(&self) -> MutexGuard<'_, Vec<(String, u64)>> {
        sync::lock(&self.counters)
    }

    /// Consecutive failures now.
    pub(crate) fn failures_in_row(&self) -> u32 {
        self.failures_in_row.load(Ordering::Relaxed)
    }
}
