//! The learning and aging thread: the one caller of the plugins' learn and age hooks. It
//! learns the events the workers defer to it (new MACs and moves on VNIs a learn plugin
//! decides, see `plugins::LearnQueue`) and runs the table's aging when it has work, at least
//! once a second; each aging pass handles a bounded number of entries.
//!
//! On a thread of its own, not on the tokio runtime that serves the control socket and the
//! signals: a plugin that takes its whole budget on every decision slows learning and aging,
//! never `vtep stats` or a SIGTERM. The table's writer lock is never held across a call (see
//! `fdb::Fdb::learn`, `fdb::Fdb::expire`). Supervised as the workers are: a panic is logged,
//! counted and the thread's loop restarted with fresh plugin copies.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::Shared;
use super::datapath::{Panics, panic_message};
use super::plugins::Caller;
use crate::fdb::{AgeDecision, AgeEvent, AgePolicy, LearnDecision, LearnEvent, LearnPolicy};
use crate::plugin::PluginChain;
use crate::sync::lock;
use crate::vtep::Vtep;

/// The longest the thread waits before looking at the stop flag and the aging queue again.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Deferred events learned in a row before the thread looks at aging again.
const LEARN_BURST: usize = 256;

/// The thread: runs [`policy_loop`] until the daemon stops, restarting it after a panic.
pub(super) fn policy_thread(
    shared: Arc<Shared>,
    mut vtep: Vtep,
    mut plugins: PluginChain,
    events: Receiver<LearnEvent>,
) {
    let mut panics = Panics::default();
    loop {
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            policy_loop(&shared, &mut vtep, &mut plugins, &events);
        }));
        let Err(payload) = run else {
            break; // stopped
        };
        if !panics.survive(&shared, "the learning and aging thread", payload.as_ref()) {
            break;
        }
        let fresh =
            std::panic::catch_unwind(AssertUnwindSafe(|| shared.plugins.copies(Caller::Policy)));
        match fresh {
            Ok(Ok(p)) => plugins = p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the learning thread's plugins could not be copied; it keeps the old ones");
            }
            Err(payload) => {
                let cause = panic_message(payload.as_ref());
                shared.fail(format!(
                    "the learning and aging thread could not be restarted: {cause}"
                ));
                break;
            }
        }
        vtep = vtep.renewed();
    }
}

/// Learns deferred events and ages, until the daemon stops. `vtep` counts what it learns and
/// expires.
fn policy_loop(
    shared: &Shared,
    vtep: &mut Vtep,
    plugins: &mut PluginChain,
    events: &Receiver<LearnEvent>,
) {
    let mailbox = shared.plugins.mailbox(usize::MAX);
    while !shared.stop.load(Ordering::Relaxed) {
        mailbox.deliver(plugins, shared.plugins.order());
        let now = Instant::now();
        let wait = vtep
            .poll_timeout()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(now))
            .min(MAX_WAIT);
        let received = events.recv_timeout(wait);
        // A reload's plugins are taken right before deciding, so that the events and the
        // aging pass after a wait meet the plugin of the latest reload.
        mailbox.deliver(plugins, shared.plugins.order());
        match received {
            Ok(event) => {
                let mut policy = UnlessStopping::new(plugins, &shared.stop);
                vtep.learn_deferred(&event, Instant::now(), &mut policy);
                for event in events.try_iter().take(LEARN_BURST - 1) {
                    vtep.learn_deferred(&event, Instant::now(), &mut policy);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // No worker can offer events any more: only aging is left to do.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = Instant::now();
        if vtep.poll_timeout().is_some_and(|t| t <= now) {
            vtep.handle_timeout_with(now, &mut UnlessStopping::new(plugins, &shared.stop));
        }
        lock(&shared.policy).copy_from(vtep);
    }
}

/// The plugins, until the daemon stops: then they are asked nothing more, so that a pass of
/// thousands of slow decisions does not hold up a SIGTERM (entries are kept, events rejected:
/// the table goes with the process anyway).
struct UnlessStopping<'a> {
    plugins: &'a mut PluginChain,
    stop: &'a AtomicBool,
}

impl<'a> UnlessStopping<'a> {
    fn new(plugins: &'a mut PluginChain, stop: &'a AtomicBool) -> UnlessStopping<'a> {
        UnlessStopping { plugins, stop }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl LearnPolicy for UnlessStopping<'_> {
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision {
        if self.stopping() {
            return LearnDecision::Reject;
        }
        self.plugins.decide_learn(event)
    }
}

impl AgePolicy for UnlessStopping<'_> {
    fn decide_age(&mut self, event: &AgeEvent) -> AgeDecision {
        if self.stopping() {
            return AgeDecision::KeepFor(1000);
        }
        self.plugins.decide_age(event)
    }
}
