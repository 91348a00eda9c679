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
//! Why not a periodic ticker: a thread that wakes every 100 µs takes a share of a core all the
//! time, and its period adds to every budget (`host/benches/plugin.rs` prints this thread's
//! share of a core, busy and idle, to compare with). This one sleeps until the earliest
//! deadline in flight. While calls keep coming it lingers (sleeps one budget at a time) rather
//! than waiting to be woken; after a while without calls it parks, and the next call unparks
//! it.
//!
//! Why a [`Slot`] per caller: the data path's workers call plugins at once, each its own
//! instance. A call writes its deadline and counts itself in its own slot (its own cache
//! line) and reads one flag that changes only when the thread parks or wakes: no lock and no
//! write to memory another worker writes. The thread reads every slot when it wakes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;

use crate::sync;

/// How often a call still in flight past its deadline is poked again (it may be in host code,
/// where the epoch is not checked, and will be interrupted when it is back in wasm).
const REPOKE: Duration = Duration::from_micros(200);
/// Lingering periods without any call after which the thread parks.
const IDLE_PERIODS: u32 = 64;
/// A slot's deadline while no call is in flight.
const IDLE: u64 = 0;

/// One caller's calls (an instance's): the deadline of the call in flight and a count of calls.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Slot {
    /// Nanoseconds after the watchdog's start at which the call in flight must be
    /// interrupted; [`IDLE`] while none is.
    deadline: AtomicU64,
    /// Calls made (wrapping): the thread lingers while this moves.
    calls: AtomicU64,
    /// The budget of the last call: how long the thread lingers between wake-ups.
    budget: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    /// Every caller's slot; a caller that is gone leaves a dead `Weak`, pruned by the thread.
    slots: Mutex<Vec<Weak<Slot>>>,
    /// When the thread wakes by itself, in slot nanoseconds (`u64::MAX`: parked until a call
    /// unparks it). A call with an earlier deadline unparks it. Written by the thread only.
    sleeping_until: AtomicU64,
    stop: AtomicBool,
    /// What slot deadlines count from.
    epoch: Instant,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Vec<Weak<Slot>>> {
        sync::lock(&self.slots)
    }

    fn nanos(&self, t: Instant) -> u64 {
        // At least 1: zero is `IDLE`. 584 years of uptime fit.
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
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
    slot: &'a Slot,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.slot.deadline.store(IDLE, Ordering::Release);
    }
}

impl Watchdog {
    /// Starts the thread that interrupts `engine`'s calls.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Vec::new()),
            sleeping_until: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
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

    /// A slot for one caller's calls (an instance's); takes the watchdog's lock once.
    pub(crate) fn slot(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.shared.slots().push(Arc::downgrade(&slot));
        slot
    }

    /// Registers a call through `slot` that must be interrupted at `deadline`.
    pub(crate) fn call<'a>(&self, slot: &'a Slot, deadline: Instant) -> Call<'a> {
        let now = Instant::now();
        let budget = deadline.saturating_duration_since(now);
        slot.budget.store(
            u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        slot.calls.fetch_add(1, Ordering::Relaxed);
        // Sequentially consistent with the thread's own pair (it sets `sleeping_until`, then
        // looks at the slots again): either it sees this deadline before it sleeps, or this
        // call sees that it sleeps past the deadline and wakes it.
        let deadline = self.shared.nanos(deadline);
        slot.deadline.store(deadline, Ordering::SeqCst);
        if deadline < self.shared.sleeping_until.load(Ordering::SeqCst)
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
        Call { slot }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// What the thread saw of the slots at one wake-up.
#[derive(Debug, Default)]
struct Seen {
    /// The earliest deadline in flight not yet past, in slot nanoseconds.
    next: Option<u64>,
    /// Some call in flight is past its deadline.
    overdue: bool,
    /// Sum of the slots' call counts.
    calls: u64,
    /// The shortest budget of a slot: how long to linger.
    linger: u64,
}

fn look(shared: &Shared, now: u64) -> Seen {
    let mut seen = Seen {
        linger: u64::MAX,
        ..Seen::default()
    };
    let mut slots = shared.slots();
    slots.retain(|w| w.strong_count() > 0);
    for slot in slots.iter().filter_map(Weak::upgrade) {
        seen.calls = seen.calls.wrapping_add(slot.calls.load(Ordering::Relaxed));
        let budget = slot.budget.load(Ordering::Relaxed);
        if budget > 0 {
            seen.linger = seen.linger.min(budget);
        }
        match slot.deadline.load(Ordering::SeqCst) {
            IDLE => {}
            d if d <= now => seen.overdue = true,
            d => seen.next = Some(seen.next.map_or(d, |n: u64| n.min(d))),
        }
    }
    seen
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
    let repoke = u64::try_from(REPOKE.as_nanos()).unwrap_or(u64::MAX);
    let mut idle = 0;
    let mut calls = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = shared.nanos(Instant::now());
        let seen = look(shared, now);
        if seen.overdue {
            engine.increment_epoch();
        }
        idle = if seen.calls == calls { idle + 1 } else { 0 };
        calls = seen.calls;
        let until = match (seen.next, seen.overdue) {
            (Some(t), true) => t.min(now.saturating_add(repoke)),
            (Some(t), false) => t,
            (None, true) => now.saturating_add(repoke),
            // Calls keep coming: a new one's deadline is at least a budget away.
            (None, false) if idle < IDLE_PERIODS && seen.linger < u64::MAX => {
                now.saturating_add(seen.linger.max(repoke))
            }
            (None, false) => u64::MAX,
        };
        shared.sleeping_until.store(until, Ordering::SeqCst);
        // A call that registered before it could see `until` is seen here.
        let again = look(shared, now);
        if again.overdue || again.next.is_some_and(|d| d < until) {
            continue;
        }
        if until == u64::MAX {
            std::thread::park();
            idle = 0;
        } else {
            std::thread::park_timeout(Duration::from_nanos(until.saturating_sub(now)));
        }
        shared.sleeping_until.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the thread settle, then says whether it is parked and whether a call is in flight.
    fn settled(w: &Watchdog, slot: &Slot) -> (bool, bool) {
        std::thread::sleep(Duration::from_millis(20));
        (
            w.shared.sleeping_until.load(Ordering::SeqCst) == u64::MAX,
            slot.deadline.load(Ordering::SeqCst) != IDLE,
        )
    }

    #[test]
    fn calls_are_tracked_and_the_epoch_advances_only_past_a_deadline() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let w = Watchdog::start(engine).unwrap();
        let slot = w.slot();
        {
            let _far = w.call(&slot, Instant::now() + Duration::from_secs(60));
            assert_eq!(
                settled(&w, &slot),
                (false, true),
                "sleeps until the deadline"
            );
        }
        assert!(!settled(&w, &slot).1, "a call that returns is forgotten");
        // A call with an earlier deadline than the thread's wake-up wakes it; its budget (1 ms)
        // is how long the thread lingers once calls stop, 64 times, before it parks.
        drop(w.call(&slot, Instant::now() + Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(64 + 100));
        assert_eq!(settled(&w, &slot), (true, false));
        let overdue = w.call(&slot, Instant::now());
        assert_eq!(settled(&w, &slot), (false, true), "woken by the call");
        drop(overdue);
        // A slot whose caller is gone is forgotten.
        drop(slot);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            w.shared.slots().iter().all(|s| s.strong_count() == 0) || w.shared.slots().is_empty()
        );
        drop(w); // joins the thread
    }
}
