//! The data path: worker threads, each moving frames in both directions through its own
//! sockets: a share of every port's frames (`PACKET_FANOUT`) and a share of the underlay's
//! unicast datagrams (`SO_REUSEPORT`; the groups' datagrams go to the first worker, whose socket
//! joined them). With two or more workers, flows are spread over cores by a hash (see
//! `io::Steering`: by default one that sends both directions of a flow to one worker); one flow
//! stays on one worker each way, in order.
//!
//! Each worker owns its receive buffers, outbox and transmitter, so steady-state forwarding
//! allocates nothing; the forwarding table is shared without locks on lookups and refreshes. A
//! worker's own counters sit behind a lock of its own, which it takes once per batch and the
//! control plane only to read them.
//!
//! After a batch a worker keeps polling its sockets for `busy_poll` before it sleeps: under
//! steady traffic it is then rarely put to sleep and woken again, each of which costs tens of
//! microseconds on a virtual machine; it yields the CPU between polls, so that the VMs'
//! threads it serves still run.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Shared;
use crate::fdb::Builtin;
use crate::io::{
    DatagramBatch, MAX_BATCH, Port, RxBatch, Steering, TransmitCounts, Transmitter, UnderlayRx,
    UnderlayRxCounts,
};
use crate::vtep::{Hooks, Outbox, PortId, Vtep};

/// How long a worker sleeps in `poll` before checking the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// What a worker shares with the control plane.
#[derive(Debug)]
pub(super) struct WorkerState {
    /// The worker's pipeline: the shared tables, its own counters.
    pub(super) vtep: Vtep,
    /// What it sent.
    pub(super) tx: TransmitCounts,
    /// What its underlay socket received.
    pub(super) rx: UnderlayRxCounts,
}

/// One worker's loop. Returns its underlay socket when stopped, so that the caller can leave
/// the groups it joined.
pub(super) fn worker_loop(shared: Arc<Shared>, index: usize, mut rx: UnderlayRx) -> UnderlayRx {
    let ports = &shared.ports[index];
    let state = &shared.workers[index];
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
    let mut frames = RxBatch::new(MAX_BATCH);
    let mut datagrams = DatagramBatch::new(MAX_BATCH);
    let mut out = Outbox::new();
    let mut tx = Transmitter::new();
    let mut busy_until = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if !wait(&mut fds, busy_until) {
            busy_until = None;
            continue;
        }
        // One batch from each readable socket, then poll again: a busy direction never holds
        // back the other (a TCP flow's ACKs behind its data, when both directions share this
        // worker: in single netbench rounds one stream made 2.0 Gbit/s with eight batches a
        // turn, 5.4 with one).
        let mut sent = TransmitCounts::default();
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            match ports.get(i) {
                Some(port) => {
                    if !receive(port.recv_batch(&mut frames), port.name()) {
                        continue;
                    }
                    let now = Instant::now();
                    let id = PortId(u16::try_from(i).unwrap_or(u16::MAX));
                    with_hooks(&shared, |hooks| {
                        lock(state)
                            .vtep
                            .handle_port_batch(now, id, &frames, &mut out, hooks);
                    });
                }
                // The last descriptor is the underlay's.
                None => {
                    if !receive(rx.recv_batch(&mut datagrams), "underlay") {
                        continue;
                    }
                    let now = Instant::now();
                    with_hooks(&shared, |hooks| {
                        lock(state)
                            .vtep
                            .handle_underlay_batch(now, &datagrams, &mut out, hooks);
                    });
                }
            }
            sent += tx.transmit(&mut out, ports, &shared.underlay_tx);
        }
        let mut s = lock(state);
        s.tx += sent;
        s.rx = rx.rx_counts();
        busy_until = Some(Instant::now() + shared.busy_poll);
    }
    rx
}

/// Runs `f` with the pipeline's hooks: the shared plugins, or the built-in policy when no
/// plugin is configured (so that traffic then never touches the plugins' lock).
fn with_hooks(shared: &Shared, f: impl FnOnce(&mut dyn Hooks)) {
    if shared.plugins.runtime().is_some() {
        f(&mut shared.plugins.hooks());
    } else {
        f(&mut Builtin);
    }
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

/// Waits for readable descriptors: polls without sleeping until `busy_until`, yielding the CPU
/// between polls, then sleeps in `poll`. False on timeout or interruption.
fn wait(fds: &mut [libc::pollfd], busy_until: Option<Instant>) -> bool {
    if let Some(until) = busy_until {
        while Instant::now() < until {
            if poll(fds, 0) {
                return true;
            }
            std::thread::yield_now();
        }
    }
    poll(fds, i32::try_from(POLL_TIMEOUT.as_millis()).unwrap_or(100))
}

fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd structs for the
    // duration of the call; poll writes only their `revents` fields.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    rc > 0
}

/// Locks, ignoring poisoning: a panic elsewhere must not stop forwarding, and every value
/// behind these locks is valid after any partial update (counters, the pipeline's tables).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
