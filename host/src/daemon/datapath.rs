//! The data path: two dedicated threads, one per direction, so that encapsulation and
//! decapsulation run in parallel on two cores.
//!
//! - `vtep-encap` reads the ports (a batch per `recvmmsg`), runs the batch through the pipeline
//!   and its plugins (one filter call per plugin per batch) under one lock, and sends what it
//!   produced (`sendmmsg`).
//! - `vtep-decap` does the same from the underlay socket.
//!
//! Each thread owns its receive buffers, outbox and transmitter, so steady-state forwarding
//! allocates nothing; the pipeline's lock is taken once per batch, not per frame. Threads poll
//! with a short timeout so that they notice the stop flag promptly.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Pipeline, Shared};
use crate::io::{DatagramBatch, MAX_BATCH, Port, RxBatch, TransmitCounts, Transmitter, UnderlayRx};
use crate::vtep::{Outbox, PortId};

/// How long a thread sleeps in `poll` before checking the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// The thread that moves frames from the ports into the pipeline.
pub(super) fn encap_loop(shared: Arc<Shared>) {
    let mut fds: Vec<libc::pollfd> = shared
        .ports
        .iter()
        .map(|p| libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut batch = RxBatch::new(MAX_BATCH);
    let mut out = Outbox::new();
    let mut tx = Transmitter::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if !wait(&mut fds) {
            continue;
        }
        let mut sent = TransmitCounts::default();
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let port = &shared.ports[i];
            let id = PortId(u16::try_from(i).unwrap_or(u16::MAX));
            // Bounded, so that one busy port cannot starve the others.
            for _ in 0..8 {
                match port.recv_batch(&mut batch) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!(port = port.name(), error = %e, "port receive failed");
                        break;
                    }
                }
                {
                    let now = Instant::now();
                    let mut guard = lock(&shared.pipeline);
                    let Pipeline { vtep, plugins } = &mut *guard;
                    vtep.handle_port_batch(now, id, &batch, &mut out, plugins);
                }
                sent += tx.transmit(&mut out, &shared.ports, &shared.underlay_tx);
            }
        }
        *lock(&shared.encap_tx) += sent;
    }
}

/// The thread that moves packets from the underlay into the pipeline.
/// Returns the socket when stopped, so that the caller can leave its groups.
pub(super) fn decap_loop(shared: Arc<Shared>, mut rx: UnderlayRx) -> UnderlayRx {
    let mut fds = [libc::pollfd {
        fd: rx.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut batch = DatagramBatch::new(MAX_BATCH);
    let mut out = Outbox::new();
    let mut tx = Transmitter::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if !wait(&mut fds) {
            continue;
        }
        let mut sent = TransmitCounts::default();
        for _ in 0..8 {
            match rx.recv_batch(&mut batch) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "underlay receive failed");
                    break;
                }
            }
            {
                let now = Instant::now();
                let mut guard = lock(&shared.pipeline);
                let Pipeline { vtep, plugins } = &mut *guard;
                vtep.handle_underlay_batch(now, &batch, &mut out, plugins);
            }
            sent += tx.transmit(&mut out, &shared.ports, &shared.underlay_tx);
        }
        *lock(&shared.decap_tx) += sent;
        *lock(&shared.underlay_rx) = rx.rx_counts();
    }
    rx
}

/// Waits for readable descriptors; false on timeout or interruption.
fn wait(fds: &mut [libc::pollfd]) -> bool {
    let timeout = i32::try_from(POLL_TIMEOUT.as_millis()).unwrap_or(100);
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd structs for the
    // duration of the call; poll writes only their `revents` fields.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
    rc > 0
}

/// Locks, ignoring poisoning: a panic elsewhere must not stop forwarding, and every value
/// behind these locks is valid after any partial update (counters, the pipeline's tables).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens every port; the caller keeps them in [`Shared`].
pub(super) fn open_ports(names: &[String]) -> Result<Vec<Port>, crate::io::SetupError> {
    names.iter().map(|n| Port::open(n)).collect()
}
