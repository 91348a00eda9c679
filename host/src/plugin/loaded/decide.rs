//! The learn and age hooks as the learning and aging thread uses them: an FDB event in, the
//! plugin's decision out, or `None` when it has none to give (the table then decides as it
//! would without plugins).

use std::time::Instant;

use super::Plugin;
use crate::config::OnError;
use crate::fdb::{AgeDecision, AgeEvent, LearnDecision, LearnEvent};
use crate::plugin::bindings::wasm_vtep::plugin::types as wit;
use crate::plugin::convert;

/// A keep decision is at least this long, so that a plugin cannot make aging spin.
const MIN_KEEP_MS: u64 = 1000;

impl Plugin {
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
}
