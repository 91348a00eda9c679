//! [`Runtime`]: the wasm engine every plugin runs on, the linker that offers them the host
//! functions and nothing else, and the epoch ticker that bounds the time of each call.
//!
//! Why epochs, not fuel: fuel counts instructions, not time. A budget in fuel must be
//! calibrated per machine and per kind of code, and one `memory.fill` or `memory.copy` of
//! megabytes costs a single unit; fuel metering also slows every plugin's code. An epoch
//! deadline is wall-clock: a thread increments the engine's epoch every `tick`, and compiled
//! code checks it at function entries and loop back-edges (a load and a compare). A call with a
//! budget of `b` is interrupted between `b` and `b + tick` after it starts. The ticker is the
//! cost: with the default 100 µs tick, 10,000 wake-ups a second (measured: about 1% of one
//! core), paid only while plugins are loaded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings;
use super::error::RuntimeError;
use super::host::HostState;

/// The epoch ticker's default period.
pub const DEFAULT_TICK: Duration = Duration::from_micros(100);

/// Builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    tick: Duration,
}

impl Default for RuntimeBuilder {
    fn default() -> RuntimeBuilder {
        RuntimeBuilder { tick: DEFAULT_TICK }
    }
}

impl RuntimeBuilder {
    /// The epoch ticker's period: a call is interrupted at most this long after its budget.
    /// Shorter is tighter and costs more wake-ups (at least 10 µs).
    pub fn with_tick(mut self, tick: Duration) -> RuntimeBuilder {
        self.tick = tick.max(Duration::from_micros(10));
        self
    }

    /// Creates the engine and the linker and starts the ticker.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // A trap's backtrace is not worth its cost: the log names the plugin and the trap.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let tick = self.tick;
            std::thread::Builder::new()
                .name("vtep-plugin-epoch".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError(format!("the epoch ticker: {e}")))?
        };
        Ok(Runtime(Arc::new(Inner {
            engine,
            linker,
            tick: self.tick,
            started: Instant::now(),
            stop,
            ticker: Mutex::new(Some(ticker)),
        })))
    }
}

/// The engine, linker and ticker shared by every plugin. Cheap to clone; the ticker stops when
/// the last clone (plugins hold one) is dropped.
#[derive(Debug, Clone)]
pub struct Runtime(Arc<Inner>);

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    tick: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runtime")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let ticker = self
            .ticker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = ticker {
            let _ = t.join();
        }
    }
}

impl Runtime {
    /// A runtime with the default tick.
    pub fn new() -> Result<Runtime, RuntimeError> {
        RuntimeBuilder::default().build()
    }

    /// Starts building one with other settings.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.0.linker
    }

    /// The ticker's period.
    pub fn tick(&self) -> Duration {
        self.0.tick
    }

    /// Where plugins' `now-ms` starts.
    pub(crate) fn started(&self) -> Instant {
        self.0.started
    }
}
