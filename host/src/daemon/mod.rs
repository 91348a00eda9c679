//! `vtep run`: wires the pipeline, the sockets and the control plane together.
//!
//! The data path runs on worker threads (see [`datapath`]), learning decisions of plugins and
//! aging on a thread of their own (see [`policy`]); tokio, on the main thread, runs the
//! control socket and the signal handlers, and never waits for a plugin. SIGINT and SIGTERM
//! stop the threads, leave the multicast groups, close every socket and remove the control
//! socket; a worker that keeps panicking stops the daemon with an error.
//!
//! Plugins are loaded (compiled, instantiated, initialised) before any socket is opened, so
//! that one that fails stops `vtep run` with its reason; a reload loads the new module and its
//! copies off the data path and each caller swaps its copy in between two batches (see
//! [`plugins`]).

pub mod answer;
mod datapath;
mod plugins;
mod policy;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::datapath::Published;
use self::plugins::{Caller, LearnQueue, Plugins};

use tokio::signal::unix::{SignalKind, signal};

use self::datapath::lock;
use crate::config::{Config, PluginSpec, Steering};
use crate::control::{Request, Response, server};
use crate::io::{
    Port, PortRxCounts, SetupError, TransmitCounts, TxDrop, UnderlayRx, UnderlayRxCounts,
    UnderlayTx, UnderlayTxConfig,
};
use crate::plugin::{LoadError, Plugin, PluginChain, Runtime, RuntimeError};
use crate::vtep::{Drops, SettingsError, VniStats, Vtep};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration does not make a pipeline.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A socket could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The control socket could not be bound.
    #[error("control socket {path}: {error}")]
    Control {
        /// Its path.
        path: String,
        /// What failed (in the message, not a separate cause: one line says it all).
        error: std::io::Error,
    },
    /// The runtime, a thread or a signal handler could not start.
    #[error("starting the daemon: {0}")]
    Runtime(std::io::Error),
    /// The plugin runtime could not start.
    #[error(transparent)]
    PluginRuntime(#[from] RuntimeError),
    /// A plugin could not be loaded or refused its configuration: it is not attached.
    #[error("plugin {name:?}: {error}")]
    Plugin {
        /// Its name.
        name: String,
        /// Why (in the message, not a separate cause: one line says it all).
        error: LoadError,
    },
    /// A worker's copies of the plugins could not be made.
    #[error("plugins for the workers: {0}")]
    PluginCopies(LoadError),
    /// A worker kept panicking: the daemon stopped so that a service manager restarts it.
    #[error("{0}")]
    Worker(String),
}

/// What the workers, the learning and aging thread and the control plane share.
#[derive(Debug)]
struct Shared {
    /// Each worker's counters, as it last published them.
    workers: Vec<Mutex<Published>>,
    /// The learning and aging thread's counters (what it learned and expired).
    policy: Mutex<Published>,
    /// The pipeline as the control plane uses it (the same tables): `fdb show/add/del`.
    control: Mutex<Vtep>,
    plugins: Plugins,
    /// Learn events the workers hand to the learning thread.
    learn_queue: LearnQueue,
    /// Each worker's sockets on the ports, indexed by worker, then `PortId`.
    ports: Vec<Vec<Port>>,
    port_names: Vec<String>,
    underlay_tx: UnderlayTx,
    busy_poll: Duration,
    stop: AtomicBool,
    /// Worker panics survived (each worker restarted).
    worker_panics: AtomicU64,
    /// Why the daemon must stop with an error, once a thread says so.
    failure: Mutex<Option<String>>,
    failed: tokio::sync::Notify,
    /// Per worker: panic at the next turn (`vtep panic-worker`, for tests).
    #[cfg(feature = "fault-injection")]
    faults: Vec<AtomicBool>,
}

impl Shared {
    /// The control plane's pipeline: the same tables as the workers'.
    fn control_vtep(&self) -> MutexGuard<'_, Vtep> {
        lock(&self.control)
    }

    /// Stops the daemon with `reason` as its error.
    fn fail(&self, reason: String) {
        lock(&self.failure).get_or_insert(reason);
        self.failed.notify_one();
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let settings = config.settings.clone();
    settings.validate()?;
    let (plugin_runtime, chain) = load_plugins(&config.plugins)?;
    // Kept as templates: every caller's copies are made from them, and the loaded copies'
    // instances go with `chain`.
    let plugins = Plugins::new(&chain, plugin_runtime, config.datapath.worker_count());
    drop(chain);
    // The control socket first: a second daemon for the same socket stops here, before it has
    // touched a port or joined a group.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let listener = runtime
        .block_on(async { server::bind(&config.socket) })
        .map_err(|error| DaemonError::Control {
            path: config.socket.display().to_string(),
            error,
        })?;
    let result = run_bound(&config, settings, plugins, &runtime, listener);
    // On every way out, setup failures included: the socket is ours to remove.
    let _ = std::fs::remove_file(&config.socket);
    result
}

/// The daemon once its control socket is bound: sockets, workers, control plane, until a
/// signal; then an orderly stop.
fn run_bound(
    config: &Config,
    mut settings: crate::vtep::VtepSettings,
    plugins: Plugins,
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::UnixListener,
) -> Result<(), DaemonError> {
    let local = settings.local;
    let ifname = config.underlay_interface.as_deref();
    let workers = config.datapath.worker_count();
    let steering = config.datapath.steering;
    let ports = datapath::open_ports(&config.ports, workers, steering)?;
    // The sender binds the source ports first: one that another program holds is swapped for
    // a free one, and the pipeline then picks among those it really has.
    let underlay_tx = UnderlayTx::open(
        &UnderlayTxConfig {
            local,
            dst_port: settings.dst_port,
            ttl: settings.ttl,
            multicast_if: ifname,
        },
        &mut settings.src_ports,
    )?;
    settings.merge_udp = crate::io::kernel_takes_uso();
    if !settings.merge_udp {
        tracing::info!("this kernel takes no UDP super-frames on ports: UDP is delivered unmerged");
    }
    let vtep = Vtep::new(settings, Instant::now())?;
    let rxs = (0..workers)
        .map(|_| UnderlayRx::open(local, config.settings.dst_port, workers > 1))
        .collect::<Result<Vec<_>, _>>()?;
    if workers > 1 && steering == Steering::Symmetric {
        rxs[0].steer(workers)?;
    }
    // Several VNIs may flood to one group, but a socket joins a group once: a second
    // IP_ADD_MEMBERSHIP for it fails with EADDRINUSE. The first worker's socket joins: the
    // group's datagrams go to it alone.
    let mut groups: Vec<IpAddr> = vtep.groups().map(|(_, g)| g).collect();
    groups.sort_unstable();
    groups.dedup();
    for &g in &groups {
        rxs[0].join(g, ifname)?;
        tracing::info!(group = %g, interface = ifname.unwrap_or("(routed)"), "joined group");
    }
    // Every caller's copies of the plugins, made before any thread runs.
    let copies = (0..workers)
        .map(|_| plugins.copies(Caller::Worker))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::PluginCopies)?;
    let policy_plugins = plugins
        .copies(Caller::Policy)
        .map_err(DaemonError::PluginCopies)?;
    let policy_vtep = vtep.worker();
    let (learn_queue, learn_events) = LearnQueue::new();
    let shared = Arc::new(Shared {
        workers: (0..workers).map(|_| Mutex::default()).collect(),
        policy: Mutex::default(),
        control: Mutex::new(vtep),
        plugins,
        learn_queue,
        ports,
        port_names: config.ports.clone(),
        underlay_tx,
        busy_poll: config.datapath.busy_poll,
        stop: AtomicBool::new(false),
        worker_panics: AtomicU64::new(0),
        failure: Mutex::new(None),
        failed: tokio::sync::Notify::new(),
        #[cfg(feature = "fault-injection")]
        faults: (0..workers).map(|_| AtomicBool::new(false)).collect(),
    });

    let threads = rxs
        .into_iter()
        .zip(copies)
        .enumerate()
        .map(|(i, (rx, plugins))| {
            let shared = Arc::clone(&shared);
            spawn(&format!("vtep-worker-{i}"), move || {
                datapath::worker_thread(shared, i, rx, plugins)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let policy = {
        let shared = Arc::clone(&shared);
        spawn("vtep-learn-age", move || {
            policy::policy_thread(shared, policy_vtep, policy_plugins, learn_events);
        })?
    };
    tracing::info!(
        local = %local,
        ports = ?config.ports,
        workers,
        socket = %config.socket.display(),
        "vtep running"
    );

    let result = runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
        let control = tokio::spawn(server::serve(listener, control_handler(&shared)));
        let result = tokio::select! {
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping");
                Ok(())
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping");
                Ok(())
            }
            () = shared.failed.notified() => {
                let reason = lock(&shared.failure).clone().unwrap_or_default();
                Err(DaemonError::Worker(reason))
            }
        };
        control.abort();
        result
    });

    shared.stop.store(true, Ordering::Relaxed);
    if policy.join().is_err() {
        tracing::error!("the learning and aging thread panicked");
    }
    for (i, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(rx) if i == 0 => {
                for &g in &groups {
                    match rx.leave(g, ifname) {
                        Ok(()) => tracing::info!(group = %g, "left group"),
                        Err(e) => tracing::warn!(group = %g, error = %e, "leaving group failed"),
                    }
                }
            }
            Ok(_) => {}
            // Closing the socket (it went with the thread) leaves its groups all the same.
            Err(_) => tracing::error!(worker = i, "a worker's thread panicked"),
        }
    }
    tracing::info!("stopped");
    result
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, DaemonError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(DaemonError::Runtime)
}

/// Loads every configured plugin, in order, as `vtep run` does before it opens a socket (and
/// `vtep check` to check them); the first that fails is the error. No plugins: no runtime.
pub fn load_plugins(specs: &[PluginSpec]) -> Result<(Option<Runtime>, PluginChain), DaemonError> {
    let mut chain = PluginChain::new();
    if specs.is_empty() {
        return Ok((None, chain)); // no ticker, no engine: plugins cost nothing
    }
    let runtime = Runtime::new()?;
    for spec in specs {
        let name = spec.name.clone();
        let started = Instant::now();
        let plugin = Plugin::load(&runtime, spec.clone()).map_err(|error| DaemonError::Plugin {
            name: name.clone(),
            error,
        })?;
        let report = plugin.report();
        tracing::info!(
            plugin = name,
            path = %spec.path.display(),
            interface = report.interface,
            hooks = ?report.hooks,
            took_ms = started.elapsed().as_millis(),
            "plugin attached"
        );
        // Names are unique: the configuration checked them.
        let _ = chain.push(plugin);
    }
    Ok((Some(runtime), chain))
}

fn control_handler(shared: &Arc<Shared>) -> server::Handler {
    let shared = Arc::clone(shared);
    Arc::new(move |request| match request {
        Request::PluginReload { name, path } => reload(&shared, &name, path),
        #[cfg(feature = "fault-injection")]
        Request::PanicWorker { worker } => match shared.faults.get(worker) {
            Some(fault) => {
                fault.store(true, Ordering::Relaxed);
                Response::Ok(serde_json::Value::Null)
            }
            None => Response::Error(format!("no worker {worker}")),
        },
        request => {
            let io = io_counters(&shared);
            let (vnis, drops) = pipeline_counters(&shared);
            let counters = answer::Counters { vnis, drops };
            let vtep = shared.control_vtep();
            // The catalog's plugins are never called, so its lock is never held long.
            let plugins = request.concerns_plugins().then(|| shared.plugins.catalog());
            answer::handle(
                request,
                &vtep,
                &counters,
                plugins.as_deref(),
                &shared.port_names,
                &io,
                Instant::now(),
            )
        }
    })
}

/// Every worker's pipeline counters as last published, and the learning and aging thread's
/// (deferred learning, expiries), added up.
fn pipeline_counters(shared: &Shared) -> (Vec<VniStats>, Drops) {
    let policy = lock(&shared.policy);
    let mut vnis = policy.vnis.clone();
    let mut drops = policy.drops;
    drop(policy);
    for w in &shared.workers {
        let w = lock(w);
        if vnis.is_empty() {
            vnis.clone_from(&w.vnis);
            drops += &w.drops;
            continue;
        }
        for (sum, s) in vnis.iter_mut().zip(&w.vnis) {
            sum.merge(s);
        }
        drops += &w.drops;
    }
    (vnis, drops)
}

/// `vtep plugin reload`: loads the plugin anew (from `path`, or where it was loaded from) off
/// the data path, so that traffic keeps flowing meanwhile; then swaps it in between two
/// batches. If the new one fails to load, the running one stays.
fn reload(shared: &Shared, name: &str, path: Option<String>) -> Response {
    let no_such = || Response::Error(format!("no plugin named {name:?}"));
    let Some(runtime) = shared.plugins.runtime() else {
        return no_such();
    };
    let spec = shared.plugins.catalog().get(name).map(|p| p.spec().clone());
    let Some(mut spec) = spec else {
        return no_such();
    };
    if let Some(p) = path {
        spec.path = PathBuf::from(p);
    }
    let started = Instant::now();
    let path = spec.path.display().to_string();
    let plugin = match Plugin::load(runtime, spec) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(plugin = name, path, error = %e, "plugin reload failed; the running one stays");
            return Response::Error(format!(
                "plugin {name:?} not reloaded (the running one stays): {e}"
            ));
        }
    };
    let report = plugin.report();
    match shared.plugins.replace(plugin) {
        Ok(old) => drop(old), // outside the lock
        Err(e) => {
            tracing::warn!(plugin = name, path, error = %e, "plugin reload failed; the running one stays");
            return Response::Error(format!(
                "plugin {name:?} not reloaded (the running one stays): {e}"
            ));
        }
    }
    tracing::info!(
        plugin = name,
        path,
        took_ms = started.elapsed().as_millis(),
        "plugin reloaded"
    );
    match serde_json::to_value(report) {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e.to_string()),
    }
}

/// The I/O shell's counters, added up over the workers and flattened for `vtep stats`.
fn io_counters(shared: &Shared) -> Vec<(String, u64)> {
    let mut tx = TransmitCounts::default();
    let mut rx = UnderlayRxCounts::default();
    for w in &shared.workers {
        let w = lock(w);
        tx += w.tx;
        rx.datagrams += w.rx.datagrams;
        rx.coalesced += w.rx.coalesced;
        rx.truncated += w.rx.truncated;
    }
    let mut ports = PortRxCounts::default();
    for p in shared.ports.iter().flatten() {
        // Frames the kernel dropped because the data path fell behind (PACKET_STATISTICS).
        let _ = p.refresh_kernel_drops();
        let c = p.rx_counts();
        ports.frames += c.frames;
        ports.truncated += c.truncated;
        ports.rejected += c.rejected;
        ports.malformed += c.malformed;
        ports.link_down += c.link_down;
        ports.kernel_drops += c.kernel_drops;
        ports.gso += c.gso;
        ports.csum_partial += c.csum_partial;
    }
    let mut out: Vec<(String, u64)> = [
        ("port_rx_frames", ports.frames),
        ("port_rx_truncated", ports.truncated),
        ("port_rx_rejected", ports.rejected),
        ("port_rx_malformed", ports.malformed),
        ("port_link_down", ports.link_down),
        ("port_rx_kernel_drops", ports.kernel_drops),
        ("port_rx_gso", ports.gso),
        ("port_rx_csum_partial", ports.csum_partial),
        ("underlay_rx_datagrams", rx.datagrams),
        ("underlay_rx_coalesced", rx.coalesced),
        ("underlay_rx_truncated", rx.truncated),
        ("port_tx_sent", tx.ports.sent),
        ("port_tx_batched", tx.ports.batched),
        ("underlay_tx_sent", tx.underlay.sent),
        ("underlay_tx_batched", tx.underlay.batched),
        ("learn_queue_full", shared.learn_queue.full()),
        (
            "worker_panics",
            shared.worker_panics.load(Ordering::Relaxed),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for reason in TxDrop::ALL {
        out.push((
            format!("port_tx_{}", reason.as_str()),
            tx.ports.dropped(reason),
        ));
        out.push((
            format!("underlay_tx_{}", reason.as_str()),
            tx.underlay.dropped(reason),
        ));
    }
    // Each worker's share of what was read, to see how steering spread the traffic.
    for (i, (w, ports)) in shared.workers.iter().zip(&shared.ports).enumerate() {
        let frames = ports.iter().map(|p| p.rx_counts().frames).sum();
        out.push((format!("worker{i}_port_rx_frames"), frames));
        out.push((
            format!("worker{i}_underlay_rx_datagrams"),
            lock(w).rx.datagrams,
        ));
    }
    out
}
