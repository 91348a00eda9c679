//! [`Runtime`]: the wasm engine every plugin runs on, the linker that offers them the host
//! functions and nothing else, and the watchdog that bounds the time of each call.
//!
//! Why epochs, not fuel: fuel counts instructions, not time. A budget in fuel must be
//! calibrated per machine and per kind of code, and some instructions cost far more time than
//! fuel: one `memory.fill` or `memory.copy` of megabytes is a single unit, and so is a call to
//! a host function such as `frame-bytes`, so a plugin that loops over them stalls the data path
//! for seconds within any fuel budget that lets ordinary code run. Fuel metering also slows all
//! plugin code. An epoch deadline is wall-clock: compiled code checks the engine's epoch at
//! function entries and loop back-edges (a load and a compare), and the
//! [`Watchdog`] advances it when a call overruns its deadline.

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::error::RuntimeError;
use super::host::{self, HostState};
use super::watchdog::Watchdog;

/// Work for the preparing thread: making a plugin's replacement instance.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The engine, linker and watchdog shared by every plugin, and a thread that prepares
/// replacement instances off the data path. Cheap to clone; the threads stop when the last
/// clone (plugins hold one) is dropped.
#[derive(Debug, Clone)]
pub struct Runtime(Arc<Inner>);

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    watchdog: Watchdog,
    /// Jobs for the preparing thread, which ends when this is dropped.
    prepare: Sender<Job>,
    started: Instant,
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Runtime")
            .field("watchdog", &self.watchdog)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine and the linker and starts the watchdog.
    pub fn new() -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // A trap's backtrace is not worth its cost: the log names the plugin and the trap.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let watchdog = Watchdog::start(engine.clone())
            .map_err(|e| RuntimeError(format!("the watchdog thread: {e}")))?;
        let (prepare, jobs) = channel::<Job>();
        std::thread::Builder::new()
            .name("vtep-plugin-prep".to_owned())
            // A job that panics is that job's loss (its caller asks again), not the thread's.
            .spawn(move || {
                for job in jobs {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("preparing a plugin instance panicked");
                    }
                }
            })
            .map_err(|e| RuntimeError(format!("the preparing thread: {e}")))?;
        Ok(Runtime(Arc::new(Inner {
            engine,
            linker,
            watchdog,
            prepare,
            started: Instant::now(),
        })))
    }

    /// Runs `job` on the preparing thread, after the jobs before it: for work the data path
    /// must not wait for (instantiating and initialising a plugin).
    pub(crate) fn prepare(&self, job: Job) {
        // The thread ends only with the runtime, which `self` keeps alive.
        let _ = self.0.prepare.send(job);
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.0.linker
    }

    pub(crate) fn watchdog(&self) -> &Watchdog {
        &self.0.watchdog
    }

    /// Where plugins' `now-ms` starts.
    pub(crate) fn started(&self) -> Instant {
        self.0.started
    }
}
