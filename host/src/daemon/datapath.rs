//! The data path: worker threads, each moving frames in both directions through its own
//! sockets: a share of every port's frames (`PACKET_FANOUT`) and a share of the underlay's
//! unicast datagrams (`SO_REUSEPORT`; the groups' datagrams go to the first worker, whose socket
//! joined them). With two or more workers, flows are spread over cores by a hash (see
//! `config::Steering`: by default one that sends both directions of a flow to one worker); one flow
//! stays on one worker each way, in order.
//!
//! Each worker owns its pipeline, its plugins' copies, its receive buffers, outbox and
//! transmitter, so steady-state forwarding allocates nothing and takes no lock another worker
//! takes; the forwarding table is shared without locks on lookups and refreshes. A worker
//! publishes its counters for the control plane at most every [`PUBLISH_EVERY`] while busy and
//! whenever it is about to sleep, under a lock held for a copy: `vtep stats` never waits for a
//! batch or a plugin call.
//!
//! After a batch a worker keeps polling its sockets for `busy_poll` before it sleeps: under
//! steady traffic it is then rarely put to sleep and woken again, each of which costs tens of
//! microseconds on a virtual machine; it yields the CPU between polls, so that the VMs'
//! threads it serves still run.
//!
//! Supervision: a worker that panics is restarted on its thread with fresh state (pipeline
//! scratch, buffers, plugin copies) and its sockets, which stay in their fanout groups, so its
//! share of the flows is served again at once; the panic is logged with its cause and counted.
//! A worker that keeps panicking ([`MAX_PANICS`] within [`PANIC_WINDOW`]) stops the daemon with
//! an error instead, so that a service manager restarts the whole process: a bug that every
//! frame of some flow triggers is not retried forever.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;
use super::plugins::Caller;
use super::worker_hooks::{RecentOffers, WorkerHooks, hooked_vnis};
use crate::config::Steering;
use crate::fdb::PortId;
use crate::io::{
    DatagramBatch, MAX_BATCH, Port, RxBatch, TransmitCounts, Transmitter, UnderlayRx,
    UnderlayRxCounts,
};
use crate::plugin::PluginChain;
use crate::sync::lock;
use crate::vtep::{Drops, Outbox, VniStats, Vtep};
use crate::wire::Vni;

/// How long a worker sleeps in `poll` before checking the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often a busy worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Panics of one worker within [`PANIC_WINDOW`] after which the daemon stops.
const MAX_PANICS: usize = 5;
const PANIC_WINDOW: Duration = Duration::from_secs(60);

/// A pipeline's counters, as a worker (or the learning and aging thread) last published them.
#[derive(Debug, Default, Clone)]
pub(super) struct Published {
    pub(super) vnis: Vec<VniStats>,
    pub(super) drops: Drops,
    /// What it sent.
    pub(super) tx: TransmitCounts,
    /// What its underlay socket received.
    pub(super) rx: UnderlayRxCounts,
}

impl Published {
    /// Copies `vtep`'s counters in (no allocation once the VNIs are there).
    pub(super) fn copy_from(&mut self, vtep: &Vtep) {
        self.vnis.clear();
        self.vnis.extend(vtep.vni_stats().copied());
        self.drops = *vtep.drops();
    }
}

/// What a worker owns: everything a batch touches but the shared table and sockets.
struct Worker {
    vtep: Vtep,
    plugins: PluginChain,
    /// The VNIs its plugins filter, and those whose learning a plugin decides (sorted).
    filtered: Vec<Vni>,
    deferred: Vec<Vni>,
    /// The MACs it offered to the learning thread lately.
    offered: RecentOffers,
    frames: RxBatch,
    datagrams: DatagramBatch,
    out: Outbox,
    tx: Transmitter,
    sent: TransmitCounts,
}

impl Worker {
    fn new(shared: &Shared, vtep: Vtep, plugins: PluginChain) -> Worker {
        let mut w = Worker {
            vtep,
            plugins,
            filtered: Vec::new(),
            deferred: Vec::new(),
            offered: RecentOffers::default(),
            frames: RxBatch::new(MAX_BATCH),
            datagrams: DatagramBatch::new(MAX_BATCH),
            out: Outbox::new(),
            tx: Transmitter::new(),
            sent: TransmitCounts::default(),
        };
        w.plugins_changed(shared);
        w
    }

    /// Recomputes which VNIs the plugins hook.
    fn plugins_changed(&mut self, shared: &Shared) {
        let served: Vec<Vni> = self.vtep.vni_stats().map(|s| s.vni).collect();
        (self.filtered, self.deferred) =
            hooked_vnis(&self.plugins, &shared.plugins.catalog(), &served);
    }

    /// The same worker with fresh state after a panic: a new pipeline (its counters carried
    /// over), buffers and plugin copies; the old ones may hold whatever the panic left.
    fn restarted(self, shared: &Shared) -> Worker {
        let vtep = self.vtep.renewed();
        let plugins = match shared.plugins.copies(Caller::Worker) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "a restarted worker's plugins could not be copied; it keeps the old ones");
                self.plugins
            }
        };
        let mut w = Worker::new(shared, vtep, plugins);
        w.sent = self.sent;
        w
    }

    fn publish(&self, to: &Mutex<Published>, rx: &UnderlayRx) {
        let mut p = lock(to);
        p.copy_from(&self.vtep);
        p.tx = self.sent;
        p.rx = rx.rx_counts();
    }
}

/// One worker's thread: runs the worker, restarting it after a panic. Returns its underlay
/// socket when stopped, so that the caller can leave the groups it joined.
pub(super) fn worker_thread(
    shared: Arc<Shared>,
    index: usize,
    mut rx: UnderlayRx,
    plugins: PluginChain,
) -> UnderlayRx {
    let vtep = shared.control_vtep().worker();
    let mut worker = Worker::new(&shared, vtep, plugins);
    let mut panics = Panics::default();
    loop {
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            worker_loop(&shared, index, &mut rx, &mut worker);
        }));
        let Err(payload) = run else {
            break; // stopped
        };
        let what = format!("worker {index}");
        if !panics.survive(&shared, &what, payload.as_ref()) {
            break;
        }
        // Restarting may panic too (a panic left the plugins' state odd): then the daemon
        // stops rather than leave this worker's sockets unread in their fanout groups.
        match std::panic::catch_unwind(AssertUnwindSafe(|| worker.restarted(&shared))) {
            Ok(w) => worker = w,
            Err(payload) => {
                let cause = panic_message(payload.as_ref());
                shared.fail(format!("worker {index} could not be restarted: {cause}"));
                break;
            }
        }
    }
    rx
}

/// A thread's recent panics: how it is decided whether one more is survived.
#[derive(Debug, Default)]
pub(super) struct Panics(Vec<Instant>);

impl Panics {
    /// Logs and counts a panic of `what`; false if it is one too many (then the daemon is
    /// told to stop with an error).
    pub(super) fn survive(
        &mut self,
        shared: &Shared,
        what: &str,
        payload: &(dyn std::any::Any + Send),
    ) -> bool {
        let cause = panic_message(payload);
        shared.worker_panics.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.0.retain(|t| now.duration_since(*t) < PANIC_WINDOW);
        self.0.push(now);
        if self.0.len() >= MAX_PANICS {
            let reason = format!(
                "{what} panicked {} times within {}s, the last: {cause}",
                self.0.len(),
                PANIC_WINDOW.as_secs()
            );
            tracing::error!("{reason}; stopping the daemon");
            shared.fail(reason);
            return false;
        }
        tracing::error!(thread = what, cause, "panicked; restarted with fresh state");
        true
    }
}

/// The text a panic was raised with.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// One worker's loop, until the daemon stops.
fn worker_loop(shared: &Shared, index: usize, rx: &mut UnderlayRx, w: &mut Worker) {
    let ports = &shared.ports[index];
    let published = &shared.workers[index];
    let mailbox = shared.plugins.mailbox(index);
    let mut fds: Vec<libc::pollfd> = ports
        .iter()
        .map(|p| p.as_raw_fd())
        .chain([rx.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut busy_until = None;
    let mut last_publish = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        #[cfg(feature = "fault-injection")]
        if shared.faults[index].swap(false, Ordering::Relaxed) {
            panic!("injected fault (vtep panic-worker {index})");
        }
        if !poll_busy(&mut fds, busy_until) {
            // About to sleep: what it counted so far is what the control plane sees meanwhile.
            w.publish(published, rx);
            last_publish = Instant::now();
            busy_until = None;
            if !poll(
                &mut fds,
                i32::try_from(POLL_TIMEOUT.as_millis()).unwrap_or(100),
            ) {
                // Idle: a reload's plugins are taken all the same, and the old ones dropped.
                if mailbox.deliver(&mut w.plugins, shared.plugins.order()) {
                    w.plugins_changed(shared);
                }
                continue;
            }
        }
        // A reload's plugins are taken now, right before frames are read, so that a worker that
        // was asleep when `vtep plugin reload` answered handles what woke it with the new
        // plugin (a frame already queued when the reload is posted may still meet the old).
        if mailbox.deliver(&mut w.plugins, shared.plugins.order()) {
            w.plugins_changed(shared);
        }
        // One batch from each readable socket, then poll again: a busy direction never holds
        // back the other (a TCP flow's ACKs behind its data, when both directions share this
        // worker; netbench's TCP cases show the difference).
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let Worker {
                vtep,
                plugins,
                filtered,
                deferred,
                offered,
                frames,
                datagrams,
                out,
                tx,
                sent,
            } = &mut *w;
            let mut hooks = WorkerHooks {
                chain: plugins,
                filtered,
                deferred,
                queue: &shared.learn_queue,
                offered,
            };
            match ports.get(i) {
                Some(port) => {
                    if !receive(port.recv_batch(frames), port.name()) {
                        continue;
                    }
                    let now = Instant::now();
                    let id = PortId(u16::try_from(i).unwrap_or(u16::MAX));
                    vtep.handle_port_batch(now, id, &*frames, out, &mut hooks);
                }
                // The last descriptor is the underlay's.
                None => {
                    if !receive(rx.recv_batch(datagrams), "underlay") {
                        continue;
                    }
                    let now = Instant::now();
                    vtep.handle_underlay_batch(now, &*datagrams, out, &mut hooks);
                }
            }
            *sent += tx.transmit(out, ports, &shared.underlay_tx);
        }
        let now = Instant::now();
        if now.duration_since(last_publish) >= PUBLISH_EVERY {
            w.publish(published, rx);
            last_publish = now;
        }
        busy_until = Some(now + shared.busy_poll);
    }
    w.publish(published, rx);
}

/// Whether a receive delivered something; logs errors other than "nothing left".
fn receive(result: io::Result<usize>, from: &str) -> bool {
    match result {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => {
            tracing::warn!(socket = from, error = %e, "receive failed");
            false
        }
    }
}

/// Polls without sleeping until `busy_until`, yielding the CPU between polls. False if
/// nothing became readable by then.
fn poll_busy(fds: &mut [libc::pollfd], busy_until: Option<Instant>) -> bool {
    if let Some(until) = busy_until {
        loop {
            if poll(fds, 0) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }
    false
}

fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd structs for the
    // duration of the call; poll writes only their `revents` fields.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    rc > 0
}

/// Opens each port once per worker; with more than one worker each port's sockets form a fanout
/// group. Returns the sockets by worker, then port.
pub(super) fn open_ports(
    names: &[String],
    workers: usize,
    steering: Steering,
) -> Result<Vec<Vec<Port>>, crate::io::SetupError> {
    let mut by_worker: Vec<Vec<Port>> = (0..workers).map(|_| Vec::new()).collect();
    for name in names {
        let mut group = None;
        for sockets in &mut by_worker {
            let port = Port::open(name)?;
            if workers > 1 {
                group = Some(port.join_fanout(group, steering)?);
            }
            sockets.push(port);
        }
    }
    Ok(by_worker)
}
