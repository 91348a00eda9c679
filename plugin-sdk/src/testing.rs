//! The host's side of the `host` imports, run in this process, for unit tests of plugin logic
//! on the build machine (any target but wasm). Everything is per thread, as `cargo test` runs
//! each test on its own thread: tests never see each other's counters, clock or frames.
//!
//! A plugin test drives its type through [`crate::Plugin`] directly, with [`init`] to parse a
//! configuration exactly as the wasm glue does, and reads back what the plugin did with
//! [`counter`] and [`take_logs`].

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::types::Level;
use crate::{Plugin, parse_config};

thread_local! {
    static START: Instant = Instant::now();
    static CLOCK: Cell<Option<u64>> = const { Cell::new(None) };
    static COUNTERS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
    static FRAMES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Parses `config` (the JSON the host passes, `""` meaning no config) and calls
/// [`Plugin::init`], as the wasm glue does.
pub fn init<P: Plugin>(config: &str) -> Result<P, String> {
    P::init(&parse_config(config)?)
}

/// Sets this thread's clock to `ms` and stops it there: [`crate::now_ms`] returns `ms` until it
/// is set or advanced again.
pub fn set_now_ms(ms: u64) {
    CLOCK.with(|c| c.set(Some(ms)));
}

/// Moves this thread's stopped clock `ms` forward (from 0 if it was running).
pub fn advance_ms(ms: u64) {
    CLOCK.with(|c| c.set(Some(c.get().unwrap_or(0).saturating_add(ms))));
}

/// The value of counter `name` on this thread: 0 if it was never declared.
pub fn counter(name: &str) -> u64 {
    COUNTERS.with(|c| {
        c.borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |&(_, v)| v)
    })
}

/// Sets the batch [`crate::frame_bytes`] answers from.
pub fn set_frames(frames: Vec<Vec<u8>>) {
    FRAMES.with(|f| *f.borrow_mut() = frames);
}

/// The messages logged on this thread since the last call, oldest first.
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// The stand-ins the public functions of [`crate::host`] call off wasm.
pub(crate) mod imports {
    use super::*;

    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
        LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
    }

    pub(crate) fn now_ms() -> u64 {
        CLOCK.with(Cell::get).unwrap_or_else(|| {
            START.with(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX))
        })
    }

    pub(crate) fn counter(name: &str) -> u32 {
        COUNTERS.with(|c| {
            let mut c = c.borrow_mut();
            let index = match c.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    c.push((name.to_owned(), 0));
                    c.len() - 1
                }
            };
            u32::try_from(index).unwrap_or(u32::MAX)
        })
    }

    pub(crate) fn counter_add(id: u32, delta: u64) {
        COUNTERS.with(|c| {
            // An unknown id is ignored, as the host does.
            if let Some((_, v)) = c.borrow_mut().get_mut(id as usize) {
                *v = v.saturating_add(delta);
            }
        });
    }

    pub(crate) fn frame_bytes(index: u32) -> Vec<u8> {
        FRAMES.with(|f| f.borrow().get(index as usize).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counter, frame_bytes, log, now_ms};

    #[test]
    fn counters_are_declared_once_and_add_up() {
        let a = Counter::new("a");
        let b = Counter::new("b");
        assert_ne!(a, b);
        assert_eq!(Counter::new("a"), a);
        a.inc();
        a.add(41);
        assert_eq!(counter("a"), 42);
        assert_eq!(counter("b"), 0);
        assert_eq!(counter("never"), 0);
    }

    #[test]
    fn clock_runs_until_a_test_stops_it() {
        let t0 = now_ms();
        assert!(now_ms() >= t0);
        set_now_ms(1_000);
        assert_eq!(now_ms(), 1_000);
        advance_ms(500);
        assert_eq!(now_ms(), 1_500);
    }

    #[test]
    fn frames_and_logs_are_per_thread() {
        set_frames(vec![vec![1, 2, 3]]);
        assert_eq!(frame_bytes(0), [1, 2, 3]);
        assert!(frame_bytes(1).is_empty());
        assert!(frame_bytes(usize::MAX).is_empty());
        log(Level::Warn, "hello");
        assert_eq!(take_logs(), [(Level::Warn, "hello".to_owned())]);
        assert!(take_logs().is_empty());
        std::thread::spawn(|| assert!(frame_bytes(0).is_empty()))
            .join()
            .unwrap();
    }
}
