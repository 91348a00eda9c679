//! `vtep run`'s BGP EVPN edge: a thread of its own, with its own tokio runtime, that keeps a
//! session to gobgpd's API and runs the [`Engine`] between it and the forwarding table.
//!
//! The session is supervised: gobgpd absent at start or gone later leaves the data path
//! forwarding with what it knows (remote entries stay), and the thread retries with backoff,
//! logging once per change of state. On every (re)connection it announces everything again,
//! reads the whole RIB (stale remote routes go, our own routes that are no longer true are
//! withdrawn) and follows the RIB's changes; every [`TICK`] it reads the table's journal of
//! local changes. Nothing here runs on a data path worker: routes reach the workers through
//! the table's writer and the per-VNI remote lists the [`Vtep`] control-plane interface swaps.
//! On SIGINT/SIGTERM the daemon withdraws its routes before it stops.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::{MissedTickBehavior, interval, sleep, timeout};

use super::Shared;
use crate::config::Evpn;
use crate::control::{EvpnPeerRow, EvpnReport, EvpnVniRow};
use crate::evpn::engine::Stale;
use crate::evpn::plan::PlanError;
use crate::evpn::plan::plans;
use crate::evpn::{BgpOp, Engine, Gobgp, Import, PeerSession, Received, RemoteEvent, VniExport};
use crate::sync::lock;
use crate::vtep::{VniStats, Vtep, VtepSettings};
use crate::wire::Vni;

/// How often the journal of local changes is read: a new local MAC is announced within this.
const TICK: Duration = Duration::from_millis(20);
/// How often gobgpd's BGP sessions are asked for (`vtep evpn show`).
const PEERS_EVERY: Duration = Duration::from_secs(1);
/// The first and the longest wait between connection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long gobgpd may take to answer one call (it is on this host: a stopped or wedged gobgpd
/// is treated as gone).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long withdrawing our routes may hold up the daemon's stop (thousands of routes: each
/// is one call).
const STOP_WITHDRAW: Duration = Duration::from_secs(5);
/// How long every BGP session of gobgpd stays up before routes the RIB lacks since a
/// (re)connection are removed, and how long they are kept at most.
const SWEEP_SETTLE: Duration = Duration::from_secs(3);
const SWEEP_HOLD: Duration = Duration::from_secs(60);

/// The state of the session to gobgpd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never reached yet.
    Connecting,
    Connected,
    /// Reached before, or never, and retrying.
    Unreachable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug)]
struct Session {
    state: State,
    since: Instant,
    last_error: Option<String>,
    asn: Option<u32>,
    peers: Vec<PeerSession>,
}

/// What the EVPN thread and the control socket share.
#[derive(Debug)]
pub(super) struct EvpnShared {
    gobgp: SocketAddr,
    router_id: Ipv4Addr,
    /// Configured, or `None`: gobgpd's own, asked at the first connection.
    asn: Option<u32>,
    config: Evpn,
    settings: VtepSettings,
    /// Made once the AS is known.
    engine: Mutex<Option<Engine>>,
    session: Mutex<Session>,
}

impl EvpnShared {
    pub(super) fn new(config: &Evpn, settings: &VtepSettings) -> EvpnShared {
        EvpnShared {
            gobgp: config.settings.gobgp,
            router_id: config.settings.router_id,
            asn: config.settings.asn,
            config: config.clone(),
            settings: settings.clone(),
            engine: Mutex::new(None),
            session: Mutex::new(Session {
                state: State::Connecting,
                since: Instant::now(),
                last_error: None,
                asn: config.settings.asn,
                peers: Vec::new(),
            }),
        }
    }

    /// `vtep evpn show`; `vnis`: the pipeline's per-VNI counters (for the suppressed count).
    pub(super) fn report(&self, vnis: &[VniStats]) -> EvpnReport {
        let session = lock(&self.session);
        let mut report = EvpnReport {
            gobgp: self.gobgp.to_string(),
            session: session.state.name().to_owned(),
            session_secs: session.since.elapsed().as_secs(),
            last_error: session.last_error.clone(),
            asn: session.asn,
            router_id: self.router_id.to_string(),
            peers: session
                .peers
                .iter()
                .map(|p| EvpnPeerRow {
                    address: p.address.clone(),
                    state: p.state.clone(),
                })
                .collect(),
            vnis: Vec::new(),
            routes_received: 0,
            own_routes_read: 0,
            refused: Default::default(),
        };
        drop(session);
        let engine = lock(&self.engine);
        let Some(engine) = engine.as_ref() else {
            return report;
        };
        let counters = engine.counters();
        report.routes_received = counters.received;
        report.own_routes_read = counters.own;
        report.refused = counters.refused.clone();
        report.vnis = engine
            .summary()
            .into_iter()
            .map(|s| {
                let vni = s.plan.export.vni;
                EvpnVniRow {
                    vni: vni.get(),
                    rd: s.plan.export.rd.to_string(),
                    import_rt: strings(&s.plan.import),
                    export_rt: strings(&s.plan.export.route_targets),
                    inclusive_multicast: s.plan.has_ports,
                    local_routes: s.local_routes,
                    local_macs: s.local_macs,
                    flood: strings(&s.flood),
                    remote_vteps: strings(&s.remote_vteps),
                    remote_macs: s.remote_macs,
                    mac_ips: s.mac_ips,
                    suppressed: vnis
                        .iter()
                        .find(|v| v.vni == vni)
                        .map_or(0, |v| v.arp_suppressed),
                }
            })
            .collect();
        report
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// When the routes a new session did not find are removed: once every BGP session of gobgpd
/// has been up for [`SWEEP_SETTLE`] (its peers have sent their tables by then), or after
/// [`SWEEP_HOLD`] whatever the sessions do (a peer that does not come back takes its routes
/// with it).
#[derive(Debug)]
struct Sweep {
    started: Instant,
    /// Since when every session is up.
    all_up: Option<Instant>,
    done: bool,
}

impl Sweep {
    fn new() -> Sweep {
        Sweep {
            started: Instant::now(),
            all_up: None,
            done: false,
        }
    }

    /// Whether to sweep now, given whether every session is up; true once.
    fn due(&mut self, all_up: bool) -> bool {
        if self.done {
            return false;
        }
        let now = Instant::now();
        self.all_up = if all_up {
            Some(self.all_up.unwrap_or(now))
        } else {
            None
        };
        let settled = self
            .all_up
            .is_some_and(|t| now.duration_since(t) >= SWEEP_SETTLE);
        self.done = settled || now.duration_since(self.started) >= SWEEP_HOLD;
        self.done
    }
}

/// How a session ended.
enum End {
    /// The daemon is stopping.
    Stopped,
    /// gobgpd went away or misbehaved: retry.
    Lost(String),
    /// The configuration cannot be announced with gobgpd's AS: stop the daemon.
    Fatal(String),
}

impl From<crate::evpn::ClientError> for End {
    fn from(e: crate::evpn::ClientError) -> End {
        End::Lost(e.to_string())
    }
}

/// The EVPN thread: runs until the daemon stops.
pub(super) fn evpn_thread(shared: Arc<Shared>, evpn: Arc<EvpnShared>, vtep: Vtep) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            shared.fail(format!("evpn: starting its runtime: {e}"));
            return;
        }
    };
    let supervisor = Supervisor { shared, evpn, vtep };
    runtime.block_on(supervisor.run());
}

struct Supervisor {
    shared: Arc<Shared>,
    evpn: Arc<EvpnShared>,
    vtep: Vtep,
}

impl Supervisor {
    async fn run(self) {
        self.vtep.journal_local_changes(true);
        if let Some(asn) = self.evpn.asn
            && let Err(e) = self.make_engine(asn)
        {
            self.shared.fail(format!("evpn: {e}"));
            return;
        }
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.session(&mut backoff).await {
                End::Stopped => break,
                End::Fatal(reason) => {
                    self.shared.fail(reason);
                    break;
                }
                End::Lost(error) => self.set_state(State::Unreachable, Some(error)),
            }
            if !self.idle(backoff).await {
                break;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Resolves when the daemon stops.
    async fn stopped(&self) {
        while !self.stopping() {
            sleep(TICK).await;
        }
    }

    /// `f`, unless the daemon stops first or gobgpd takes longer than [`CALL_TIMEOUT`].
    async fn call<T, E: Into<End>>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, End> {
        tokio::select! {
            out = timeout(CALL_TIMEOUT, f) => match out {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(End::Lost(format!("gobgpd did not answer {what} within {CALL_TIMEOUT:?}"))),
            },
            () = self.stopped() => Err(End::Stopped),
        }
    }

    /// Makes the engine for `asn`, reading every local entry.
    fn make_engine(&self, asn: u32) -> Result<(), PlanError> {
        let (import, plans) = plans(
            &self.evpn.settings,
            &self.evpn.config,
            asn,
            self.evpn.router_id,
        )?;
        let mut engine = Engine::new(self.evpn.settings.local, import, plans);
        engine.local_changes(&self.vtep, Instant::now(), true);
        *lock(&self.evpn.engine) = Some(engine);
        lock(&self.evpn.session).asn = Some(asn);
        Ok(())
    }

    /// Runs `f` on the engine (made before any session is served).
    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine, &Vtep) -> T) -> Option<T> {
        lock(&self.evpn.engine).as_mut().map(|e| f(e, &self.vtep))
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let mut session = lock(&self.evpn.session);
        let old = session.state;
        if old != state {
            session.state = state;
            session.since = Instant::now();
            match (old, state) {
                (_, State::Connected) => {
                    tracing::info!(gobgp = %self.evpn.gobgp, "connected to gobgpd: routes announced, RIB read")
                }
                (State::Connecting, _) => tracing::warn!(
                    gobgp = %self.evpn.gobgp,
                    error = error.as_deref().unwrap_or(""),
                    "gobgpd is not reachable: forwarding goes on with static and known entries, retrying"
                ),
                _ => tracing::warn!(
                    gobgp = %self.evpn.gobgp,
                    error = error.as_deref().unwrap_or(""),
                    "lost gobgpd: forwarding goes on with the routes known, retrying"
                ),
            }
        }
        if error.is_some() {
            session.last_error = error;
        }
        if state != State::Connected {
            session.peers.clear();
        }
    }

    /// Waits `backoff` (keeping the local state current, its operations dropped: the next
    /// session announces everything); false if the daemon is stopping.
    async fn idle(&self, backoff: Duration) -> bool {
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            self.with_engine(|engine, vtep| {
                engine.local_changes(vtep, Instant::now(), false);
                engine.clear_ops();
            });
            sleep(TICK).await;
        }
        !self.stopping()
    }

    /// One session, from connecting to its end.
    async fn session(&self, backoff: &mut Duration) -> End {
        match self.serve(backoff).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn serve(&self, backoff: &mut Duration) -> Result<std::convert::Infallible, End> {
        let mut gobgp = self
            .call("a connection", Gobgp::connect(self.evpn.gobgp))
            .await?;
        if lock(&self.evpn.engine).is_none() {
            let asn = self.call("GetBgp", gobgp.asn()).await?;
            if asn == 0 {
                return Err(End::Lost("gobgpd has no AS yet".to_owned()));
            }
            self.make_engine(asn)
                .map_err(|e| End::Fatal(format!("evpn: {e}")))?;
        }
        let (import, exports) = self
            .with_engine(|engine, _| {
                let exports: HashMap<Vni, VniExport> =
                    engine.exports().map(|e| (e.vni, e.clone())).collect();
                (engine.import().clone(), exports)
            })
            .ok_or_else(|| End::Fatal("evpn: no engine".to_owned()))?;
        let end = match self
            .sync_and_follow(&mut gobgp, &import, &exports, backoff)
            .await
        {
            Ok(never) => match never {},
            Err(end) => end,
        };
        if matches!(end, End::Stopped) {
            // Whichever call the stop interrupted: what we announced goes before we do.
            self.withdraw_all(&mut gobgp, &exports).await;
        }
        Err(end)
    }

    /// Announces everything, reads the RIB, then follows both sides until the session ends.
    async fn sync_and_follow(
        &self,
        gobgp: &mut Gobgp,
        import: &Import,
        exports: &HashMap<Vni, VniExport>,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, End> {
        let mut watch = gobgp.watch();
        self.with_engine(|engine, vtep| {
            engine.local_changes(vtep, Instant::now(), false);
            engine.connected();
        });
        // What we hold and the RIB lacks is kept for now: a gobgpd that has just restarted
        // has not heard from its peers yet. The sweep comes once they are all up.
        let rib = self.call("WatchEvent", watch.snapshot(import)).await?;
        self.resync(rib, Stale::Keep);
        let ops = self
            .with_engine(|engine, _| engine.take_ops())
            .unwrap_or_default();
        self.send(gobgp, exports, ops).await?;
        self.set_state(State::Connected, None);
        *backoff = MIN_BACKOFF;

        let mut sweep = Sweep::new();
        let mut tick = interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut peers = interval(PEERS_EVERY);
        peers.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = watch.next(import) => {
                    let batch = batch?.ok_or_else(|| End::Lost("gobgpd ended the watch".to_owned()))?;
                    let ops = self.with_engine(|engine, vtep| {
                        for received in batch {
                            match received {
                                Ok(event) => engine.remote(vtep, event),
                                Err(e) => engine.refused(&e),
                            }
                        }
                        engine.flush_remotes(vtep);
                        engine.take_ops()
                    }).unwrap_or_default();
                    self.send(gobgp, exports, ops).await?;
                }
                _ = tick.tick() => {
                    if self.stopping() {
                        return Err(End::Stopped);
                    }
                    let ops = self.with_engine(|engine, vtep| {
                        engine.local_changes(vtep, Instant::now(), false);
                        engine.take_ops()
                    }).unwrap_or_default();
                    self.send(gobgp, exports, ops).await?;
                }
                _ = peers.tick() => {
                    let list = self.call("ListPeer", gobgp.peers()).await?;
                    let all_up = list.iter().all(|p| p.state == "established");
                    lock(&self.evpn.session).peers = list;
                    if sweep.due(all_up) {
                        let rib = self.call("ListPath", gobgp.list(import)).await?;
                        self.resync(rib, Stale::Remove);
                        let ops = self.with_engine(|engine, _| engine.take_ops()).unwrap_or_default();
                        self.send(gobgp, exports, ops).await?;
                    }
                }
            }
        }
    }

    /// Applies a full read of the RIB.
    fn resync(&self, rib: Vec<Received>, stale: Stale) {
        self.with_engine(|engine, vtep| {
            let mut routes = Vec::with_capacity(rib.len());
            for received in rib {
                match received {
                    Ok(RemoteEvent::Advertised(route)) => routes.push(route),
                    Ok(RemoteEvent::Withdrawn(_)) => {}
                    Err(e) => engine.refused(&e),
                }
            }
            engine.resync(vtep, &routes, stale);
            engine.flush_remotes(vtep);
        });
        release_freed_memory();
    }

    /// Withdraws every route we announce, within [`STOP_WITHDRAW`] (the daemon is stopping).
    async fn withdraw_all(&self, gobgp: &mut Gobgp, exports: &HashMap<Vni, VniExport>) {
        let ops = self
            .with_engine(|engine, _| {
                engine.withdraw_all();
                engine.take_ops()
            })
            .unwrap_or_default();
        let withdraw = async {
            for op in ops {
                if let Some(call) = apply(gobgp, exports, op) {
                    call.await?;
                }
            }
            Ok::<(), crate::evpn::ClientError>(())
        };
        match timeout(STOP_WITHDRAW, withdraw).await {
            Ok(Ok(())) => tracing::info!("routes withdrawn from gobgpd"),
            Ok(Err(e)) => tracing::warn!(error = %e, "withdrawing the routes failed"),
            Err(_) => tracing::warn!("gobgpd did not take every withdrawal before the stop"),
        }
    }

    /// Carries out `ops` on gobgpd, in order, each call within [`CALL_TIMEOUT`].
    async fn send(
        &self,
        gobgp: &mut Gobgp,
        exports: &HashMap<Vni, VniExport>,
        ops: Vec<BgpOp>,
    ) -> Result<(), End> {
        for op in ops {
            if let Some(call) = apply(gobgp, exports, op) {
                self.call("AddPath/DeletePath", call).await?;
            }
        }
        Ok(())
    }
}

/// Gives the heap's free pages back to the system after a full read of the RIB: decoding
/// gobgpd's paths takes about a kilobyte each, freed at once but kept by the allocator (20,000
/// routes: 41 MB RSS without this, 29 MB with it).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live
    // allocation and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The call that carries out `op` (none for a VNI we do not export: cannot happen, the engine
/// names only its own).
fn apply<'a>(
    gobgp: &'a mut Gobgp,
    exports: &'a HashMap<Vni, VniExport>,
    op: BgpOp,
) -> Option<impl Future<Output = Result<(), crate::evpn::ClientError>> + 'a> {
    let (BgpOp::Add(vni, route) | BgpOp::Delete(vni, route)) = op;
    let export = exports.get(&vni)?;
    Some(async move {
        match op {
            BgpOp::Add(..) => gobgp.add(export, &route).await,
            BgpOp::Delete(..) => gobgp.delete(export, &route).await,
        }
    })
}
