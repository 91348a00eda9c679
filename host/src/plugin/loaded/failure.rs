//! What a failure costs, and how a caller recovers: every failed call is counted (and logged,
//! rate-limited); the failed instance is replaced by a spare made beforehand off the data path
//! (a trap costs the caller a swap, not an instantiation and an `init`), and after
//! `max_failures` failures in a row the plugin is detached for every caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{Loaded, Plugin};
use crate::plugin::error::CallError;
use crate::plugin::instance::Instance;
use crate::plugin::ratelimit::RateLimit;
use crate::plugin::stats::Tally;
use crate::sync;

/// A caller's replacement instance, made off the data path.
#[derive(Default)]
pub(super) struct Spare {
    instance: Mutex<Option<Instance>>,
    /// A replacement is being made.
    pending: AtomicBool,
}

impl Spare {
    /// A spare that is ready.
    pub(super) fn ready(instance: Instance) -> Spare {
        Spare {
            instance: Mutex::new(Some(instance)),
            pending: AtomicBool::new(false),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Instance>> {
        sync::lock(&self.instance)
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

impl Plugin {
    /// Puts the spare in if no instance is live (and has another made, off the data path).
    /// True if an instance is live: false if detached or no spare was ready.
    pub(super) fn revive(&mut self) -> bool {
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

    /// A call succeeded: the failures in a row start again from zero.
    pub(super) fn succeeded(&self) {
        self.tally.failures_in_row.store(0, Ordering::Relaxed);
        self.note_memory();
    }

    /// Counts and logs a failure and puts the spare in the failed instance's place (unless
    /// the plugin is now detached), then has another spare made off the data path. Without a
    /// spare ready (failures faster than instances are made), calls get the `on_error` verdict
    /// until one is.
    pub(super) fn failed(&mut self, hook: &str, error: CallError) {
        self.instance = None;
        let log = &mut self.error_log;
        fail(&self.loaded, &self.tally, hook, &error, Some(log));
        self.revive();
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
        let mut detached = sync::lock(&loaded.detached);
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
