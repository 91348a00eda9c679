//! The filter hook as one caller uses it: a batch's frames are answered from the verdict
//! cache where it can, and the rest are marshalled into calls of at most [`MAX_FILTER_BATCH`]
//! frames whose verdicts (and what they say to cache) are applied back to the batch. A failed
//! call gives its frames, and the rest of the batch, the plugin's `on_error` verdict.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Plugin;
use crate::config::OnError;
use crate::plugin::bindings::wasm_vtep::plugin::types as wit;
use crate::plugin::cache::{Cached, FlowKey};
use crate::plugin::convert;
use crate::plugin::host::RawFrame;
use crate::plugin::stats::PluginStats;
use crate::vtep::{FilterBatch, Verdict};
use crate::wire::Details;

/// Frames one filter call is given at most: a plugin's time budget holds for each call, so a
/// large batch (a GRO batch of 64 datagrams, each of 64 segments) is offered in calls of this
/// many frames rather than in one call that a plugin fast per frame could not finish in time.
pub const MAX_FILTER_BATCH: usize = 64;

/// What one filter call is made of, kept from call to call to reuse its memory.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The metadata of the frames to ask about.
    metas: Vec<wit::FrameMeta>,
    /// Their indices in the batch.
    slots: Vec<usize>,
    /// Their details (as far as the plugin's interface version shows them), for their flow keys.
    details: Vec<Details>,
    /// Their bytes, lent for one call.
    raw: Vec<RawFrame>,
}

impl Plugin {
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
        self.scratch.metas.clear();
        self.scratch.slots.clear();
        self.scratch.details.clear();
        let detailed = self.shows_details();
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
            let details = if detailed {
                Details::parse(frame.bytes, frame.meta)
            } else {
                Details::default()
            };
            if cached_any && let Some(cached) = self.cache.get(&FlowKey::of(&frame, details), now) {
                stats.cache_hits += 1;
                *verdict = apply(&mut stats, cached);
                continue;
            }
            self.scratch
                .metas
                .push(convert::frame_meta(&frame, &details));
            self.scratch.slots.push(i);
            self.scratch.details.push(details);
        }
        drop(stats);
        let mut failed = false;
        let mut start = 0;
        while start < self.scratch.metas.len() {
            let end = (start + MAX_FILTER_BATCH).min(self.scratch.metas.len());
            if failed || !self.revive() {
                let mut stats = tally.stats();
                for &slot in &self.scratch.slots[start..end] {
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
        let scratch = &mut self.scratch;
        scratch.raw.clear();
        for &slot in &scratch.slots[range.clone()] {
            // Every slot was a frame of the batch a moment ago.
            let bytes = batch.frame(slot).map_or(&[][..], |f| f.bytes);
            scratch.raw.push(RawFrame::new(bytes));
        }
        let started = Instant::now();
        // SAFETY: every RawFrame in `raw` was made from a slice of `batch`, which this
        // function borrows for its whole duration, so they outlive the call.
        let result = unsafe {
            instance.filter(&scratch.metas[range.clone()], &mut scratch.raw, self.budget)
        };
        let took = started.elapsed();
        scratch.raw.clear();
        let mut stats = self.tally.stats();
        stats.filter_calls += 1;
        stats.time_filter(took, range.len());
        match result {
            Ok(results) => {
                self.tally.failures_in_row.store(0, Ordering::Relaxed);
                let selected = scratch.slots[range.clone()]
                    .iter()
                    .zip(&scratch.details[range]);
                for (r, (&slot, &details)) in results.iter().zip(selected) {
                    let cached = match r.verdict {
                        wit::Verdict::Pass => Cached::Pass,
                        wit::Verdict::Drop(code) => Cached::Drop(code),
                    };
                    if r.cache_secs > 0
                        && let Some(frame) = batch.frame(slot)
                        && !self.cache.insert(
                            FlowKey::of(&frame, details),
                            cached,
                            r.cache_secs,
                            now,
                        )
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
                for &slot in &scratch.slots[range] {
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
}

/// The verdict a cached or fresh answer gives, counted.
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

/// The `on_error` verdict, counted.
fn error_verdict(stats: &mut PluginStats, on_error: OnError) -> Verdict {
    stats.error_verdicts += 1;
    match on_error {
        OnError::Pass => Verdict::Pass,
        OnError::Drop => Verdict::Drop,
    }
}
