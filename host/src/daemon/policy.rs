//! The learning and aging thread: the one caller of the plugins' learn and age hooks. It
//! learns the events the workers defer to it (new MACs and moves on VNIs a learn plugin
//! decides, see `plugins::LearnQueue`) and runs the table's aging when it has work, at least
//! once a second; each aging pass handles a bounded number of entries.
//!
//! On a thread of its own, not on the tokio runtime that serves the control socket and the
//! signals: a plugin that takes its whole budget on every decision slows learning and aging,
//! never `vtep stats` or a SIGTERM. The table's writer lock is never held across a call (see
//! `fdb::Fdb::learn`, `fdb::Fdb::expire`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::Shared;
use super::datapath::lock;
use crate::fdb::LearnEvent;
use crate::plugin::PluginChain;
use crate::vtep::Vtep;

/// The longest the thread waits before looking at the stop flag and the aging queue again.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Deferred events learned in a row before the thread looks at aging again.
const LEARN_BURST: usize = 256;

/// Runs until the daemon stops. `vtep` counts what it learns and expires.
pub(super) fn policy_loop(
    shared: Arc<Shared>,
    mut vtep: Vtep,
    mut plugins: PluginChain,
    events: Receiver<LearnEvent>,
) {
    let mailbox = shared.plugins.mailbox(usize::MAX);
    while !shared.stop.load(Ordering::Relaxed) {
        mailbox.deliver(&mut plugins);
        let now = Instant::now();
        let wait = vtep
            .poll_timeout()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(now))
            .min(MAX_WAIT);
        match events.recv_timeout(wait) {
            Ok(event) => {
                vtep.learn_deferred(&event, &mut plugins);
                for event in events.try_iter().take(LEARN_BURST - 1) {
                    vtep.learn_deferred(&event, &mut plugins);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // No worker can offer events any more: only aging is left to do.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = Instant::now();
        if vtep.poll_timeout().is_some_and(|t| t <= now) {
            vtep.handle_timeout_with(now, &mut plugins);
        }
        lock(&shared.policy).copy_from(&vtep);
    }
}
