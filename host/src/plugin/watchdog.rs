//! [`Watchdog`]: interrupts plugin calls that run past their deadline, with one thread that
//! sleeps until the earliest deadline of the calls in flight, and not at all when none is.
//!
//! Mechanism: every store runs with an epoch deadline of one tick and a deadline callback.
//! When a call's deadline passes and the call is still in flight, the watchdog increments the
//! engine's epoch; compiled code notices at its next function entry or loop back-edge and runs
//! the callback, which interrupts the call if its own deadline has passed and otherwise lets it
//! go on until the next increment (an increment for another call's deadline). A call is thus
//! interrupted within the thread's wake-up latency of its budget.
//!
//! Why not a periodic ticker: measured here (2-core VM), a thread that wakes every 100 µs costs
//! 20% of a core all the time, and its period adds to every budget. This one sleeps until the
//! earliest deadline in flight. While calls keep coming it lingers (sleeps one budget at a
//! time) rather than waiting to be woken, so that a call costs two uncontended lock operations
//! and no system call; after a while without calls it waits for the next one, which wakes it.
//! Cost: at most one wake-up per budget while plugins are being called, none when idle.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often a call still in flight past its deadline is poked again (it may be in host code,
/// where the epoch is not checked, and will be interrupted when it is back in wasm).
const REPOKE: Duration = Duration::from_micros(200);
/// Lingering periods without any call after which the thread waits to be woken.
const IDLE_PERIODS: u32 = 64;

#[derive(Debug, Default)]
struct State {
    /// Calls in flight: id and deadline.
    calls: Vec<(u64, Instant)>,
    next_id: u64,
    /// Calls registered since the thread last woke.
    registered: u64,
    /// The budget of the last call registered: how long the thread lingers.
    linger: Duration,
    /// When the thread will wake by itself; `None` while it waits for a call.
    sleeping_until: Option<Instant>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The watchdog of one engine.
#[derive(Debug)]
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A call in flight; dropping it ends the call for the watchdog.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        if let Some(i) = s.calls.iter().position(|(id, _)| *id == self.id) {
            s.calls.swap_remove(i);
        }
    }
}

impl Watchdog {
    /// Starts the thread that interrupts `engine`'s calls.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("vtep-plugin-watchdog".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || watch(&shared, &engine)
            })?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// Registers a call that must be interrupted at `deadline`.
    pub(crate) fn call(&self, deadline: Instant) -> Call<'_> {
        let mut s = self.shared.lock();
        let id = s.next_id;
        s.next_id = s.next_id.wrapping_add(1);
        s.registered += 1;
        s.linger = deadline.saturating_duration_since(Instant::now());
        s.calls.push((id, deadline));
        // Wake the thread only if it would otherwise sleep past this deadline.
        let wake = s.sleeping_until.is_none_or(|t| deadline < t);
        if wake {
            // Set now, so that the calls that follow before the thread runs do not wake it again.
            s.sleeping_until = Some(deadline);
        }
        drop(s);
        if wake {
            self.shared.wake.notify_one();
        }
        Call {
            shared: &self.shared,
            id,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: sleeps until the earliest deadline in flight, then pokes the engine if a call
/// is still running past its deadline.
fn watch(shared: &Shared, engine: &Engine) {
    // Wake at the deadline, not up to the default 50 µs of timer slack after it.
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and changes only this thread's
    // timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut s = shared.lock();
    let mut idle = 0;
    while !s.stop {
        let now = Instant::now();
        let overdue = s.calls.iter().any(|(_, d)| *d <= now);
        if overdue {
            engine.increment_epoch();
        }
        idle = if s.registered == 0 { idle + 1 } else { 0 };
        s.registered = 0;
        let next = s.calls.iter().map(|(_, d)| *d).filter(|d| *d > now).min();
        let until = match (next, overdue) {
            (Some(t), true) => Some(t.min(now + REPOKE)),
            (Some(t), false) => Some(t),
            (None, true) => Some(now + REPOKE),
            // Calls keep coming: a new one's deadline is at least a budget away.
            (None, false) if idle < IDLE_PERIODS => Some(now + s.linger.max(REPOKE)),
            (None, false) => None,
        };
        s.sleeping_until = until;
        s = match until {
            Some(t) => {
                shared
                    .wake
                    .wait_timeout(s, t.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared.wake.wait(s).unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's state, once it has settled.
    fn settled(w: &Watchdog) -> (usize, Option<Instant>) {
        std::thread::sleep(Duration::from_millis(20));
        let s = w.shared.lock();
        (s.calls.len(), s.sleeping_until)
    }

    #[test]
    fn calls_are_tracked_and_the_epoch_advances_only_past_a_deadline() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let w = Watchdog::start(engine).unwrap();
        {
            let _far = w.call(Instant::now() + Duration::from_secs(60));
            let (calls, until) = settled(&w);
            assert_eq!(calls, 1);
            assert!(until.is_some(), "sleeps until the deadline");
        }
        assert_eq!(settled(&w).0, 0, "a call that returns is forgotten");
        // Past its deadline and still in flight: poked (again and again, until it returns).
        let overdue = w.call(Instant::now());
        let (_, until) = settled(&w);
        assert!(until.is_some_and(|t| t <= Instant::now() + REPOKE));
        drop(overdue);
        // Without calls the thread lingers a while, then waits to be woken.
        std::thread::sleep(REPOKE * (IDLE_PERIODS + 10));
        assert_eq!(settled(&w), (0, None));
        drop(w); // joins the thread
    }
}
