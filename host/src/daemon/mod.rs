//! `vtep run`: wires the pipeline, the sockets and the control plane together.
//!
//! The data path runs on worker threads (see `datapath`), learning decisions of plugins and
//! aging on a thread of their own (see `policy`); tokio, on the main thread, runs the
//! control socket and the signal handlers, and never waits for a plugin (a reload, by the
//! control socket or SIGHUP, runs on a blocking thread while signals stay answered). SIGINT and SIGTERM
//! stop the threads, leave the multicast groups, close every socket and remove the control
//! socket; SIGHUP reloads every plugin from the configuration file (as `vtep plugin reload`
//! does, one at a time, off the tokio thread); a worker that keeps panicking stops the daemon
//! with an error. A service manager is told when the daemon is ready, reloading and stopping
//! (`notify`).
//!
//! Plugins are loaded (compiled, instantiated, initialised) before any socket is opened, so
//! that one that fails stops `vtep run` with its reason; a reload loads the new module and its
//! copies off the data path and each caller swaps its copy in between two batches (see
//! `plugins`).
//!
//! The control socket's requests are answered by [`answer`], with the counters `counters`
//! gathers from the workers and the sockets.

pub mod answer;
mod counters;
mod datapath;
mod evpn;
mod metrics;
mod notify;
mod plugins;

pub use plugins::load_plugins;
mod policy;
mod worker_hooks;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::datapath::Published;
use self::plugins::{Caller, Plugins};
use self::worker_hooks::LearnQueue;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, Steering};
use crate::control::server;
use crate::io::{Port, SetupError, UnderlayRx, UnderlayTx, UnderlayTxConfig};
use crate::plugin::{LoadError, RuntimeError};
use crate::sync::lock;
use crate::vtep::{SettingsError, Vtep};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration does not make a pipeline.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A socket could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint {address}: {error}")]
    Metrics {
        /// `[metrics] listen`.
        address: std::net::SocketAddr,
        /// What failed.
        error: std::io::Error,
    },
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
    /// The configuration file the daemon was started with, if any: a plugin reload reads the
    /// plugin's section from it again.
    config_source: Option<std::path::PathBuf>,
    /// BGP EVPN, when configured: the session to gobgpd and the routes.
    evpn: Option<Arc<evpn::EvpnShared>>,
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
    // The metrics endpoint's address too: one another program holds stops the start.
    let metrics = match config.metrics {
        Some(address) => match runtime.block_on(tokio::net::TcpListener::bind(address)) {
            Ok(listener) => {
                tracing::info!(%address, "metrics endpoint listening (GET /metrics)");
                Some(listener)
            }
            Err(error) => {
                let _ = std::fs::remove_file(&config.socket);
                return Err(DaemonError::Metrics { address, error });
            }
        },
        None => None,
    };
    let result = run_bound(&config, settings, plugins, &runtime, listener, metrics);
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
    metrics: Option<tokio::net::TcpListener>,
) -> Result<(), DaemonError> {
    let local = settings.local;
    let ifname = config.underlay_interface.as_deref();
    let workers = config.datapath.worker_count();
    let steering = config.datapath.steering;
    let ports = datapath::open_ports(&config.ports, workers, steering)?;
    // The sender binds the source ports first: one that another program holds is swapped for
    // a free one, and the pipeline then picks among those it really has.
    let mut underlay_tx = UnderlayTx::open(
        &UnderlayTxConfig {
            local,
            dst_port: settings.dst_port,
            ttl: settings.ttl,
            multicast_if: ifname,
        },
        &mut settings.src_ports,
    )?;
    // The probe says why when the answer is no.
    settings.merge_udp = crate::io::kernel_takes_uso();
    if config.tunnel_gso {
        match underlay_tx.open_tunnel_tap(settings.ttl) {
            Ok(tap) => {
                settings.whole_super_frames = true;
                tracing::info!(%tap, "TCP super-frames leave encapsulated once (tunnel GSO)");
            }
            Err(reason) => tracing::info!(
                %reason,
                "no tunnel GSO: TCP super-frames are segmented in user space"
            ),
        }
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
    let evpn_vtep = vtep.worker();
    let (learn_queue, learn_events) = LearnQueue::new();
    let shared = Arc::new(Shared {
        workers: (0..workers).map(|_| Mutex::default()).collect(),
        policy: Mutex::default(),
        control: Mutex::new(vtep),
        plugins,
        config_source: config.source.clone(),
        evpn: config
            .evpn
            .as_ref()
            .map(|e| Arc::new(evpn::EvpnShared::new(e, &config.settings))),
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
    let evpn_thread = match &shared.evpn {
        Some(evpn) => {
            let (shared, evpn) = (Arc::clone(&shared), Arc::clone(evpn));
            Some(spawn("vtep-evpn", move || {
                evpn::evpn_thread(shared, evpn, evpn_vtep)
            })?)
        }
        None => None,
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
        let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
        let control = tokio::spawn(server::serve(listener, answer::handler(&shared)));
        let metrics = metrics.map(|l| tokio::spawn(metrics::serve(l, Arc::clone(&shared))));
        let tap_settings = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every.tick().await;
                    shared.underlay_tx.keep_tunnel_tap();
                }
            })
        };
        notify::ready();
        // A SIGHUP's reload runs off this thread (it compiles modules) while the signals and
        // the control socket stay answered; one at a time: a SIGHUP meanwhile is taken after.
        let mut reload: Option<tokio::task::JoinHandle<answer::Reloaded>> = None;
        let mut hup_pending = false;
        let result = loop {
            if hup_pending && reload.is_none() {
                hup_pending = false;
                tracing::info!("SIGHUP: reloading every plugin from the configuration file");
                notify::reloading();
                let shared = Arc::clone(&shared);
                reload = Some(tokio::task::spawn_blocking(move || {
                    answer::reload_all(&shared)
                }));
            }
            tokio::select! {
                _ = sighup.recv() => hup_pending = true,
                done = async {
                    match reload.as_mut() {
                        Some(running) => running.await,
                        None => std::future::pending().await,
                    }
                } => {
                    reload = None;
                    match done {
                        Ok(r) => {
                            tracing::info!(reloaded = r.ok, refused = r.refused, "plugins reloaded");
                            notify::reloaded(r.ok, r.refused);
                        }
                        Err(_) => {
                            tracing::error!("reloading the plugins panicked");
                            notify::reloaded(0, shared.plugins.order().len());
                        }
                    }
                }
                _ = sigint.recv() => {
                    tracing::info!("SIGINT: stopping");
                    break Ok(());
                }
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: stopping");
                    break Ok(());
                }
                () = shared.failed.notified() => {
                    let reason = lock(&shared.failure).clone().unwrap_or_default();
                    break Err(DaemonError::Worker(reason));
                }
            }
        };
        notify::stopping();
        control.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        tap_settings.abort();
        result
    });

    shared.stop.store(true, Ordering::Relaxed);
    // Joined first: the daemon exits only once our routes are withdrawn (or the withdrawal timed out).
    if let Some(thread) = evpn_thread
        && thread.join().is_err()
    {
        tracing::error!("the EVPN thread panicked");
    }
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
