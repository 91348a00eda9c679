//! The counters `vtep stats` shows, gathered from where they are kept: each worker's published
//! pipeline and I/O counters, the learning and aging thread's, and the ports' sockets; added
//! up and named.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::io::{PortRxCounts, TransmitCounts, TxDrop, UnderlayRxCounts};
use crate::sync::lock;
use crate::vtep::{Drops, VniStats};

/// Every worker's pipeline counters as last published, and the learning and aging thread's
/// (deferred learning, expiries), added up.
pub(super) fn pipeline_counters(shared: &Shared) -> (Vec<VniStats>, Drops) {
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

/// One worker's I/O counters: what it sent, what its underlay socket read, and what each of
/// its port sockets read (by `PortId`).
#[derive(Debug, Clone, Default)]
pub(super) struct WorkerIo {
    pub(super) tx: TransmitCounts,
    pub(super) rx: UnderlayRxCounts,
    pub(super) ports: Vec<PortRxCounts>,
}

/// Every worker's I/O counters, the kernel's drops on each port socket read anew.
pub(super) fn worker_io(shared: &Shared) -> Vec<WorkerIo> {
    shared
        .workers
        .iter()
        .zip(&shared.ports)
        .map(|(w, ports)| {
            let (tx, rx) = {
                let w = lock(w);
                (w.tx, w.rx)
            };
            let ports = ports
                .iter()
                .map(|p| {
                    // Frames the kernel dropped because the data path fell behind
                    // (PACKET_STATISTICS).
                    let _ = p.refresh_kernel_drops();
                    p.rx_counts()
                })
                .collect();
            WorkerIo { tx, rx, ports }
        })
        .collect()
}

/// The I/O shell's counters, added up over the workers and flattened for `vtep stats`.
pub(super) fn io_counters(shared: &Shared) -> Vec<(String, u64)> {
    let workers = worker_io(shared);
    let mut tx = TransmitCounts::default();
    let mut rx = UnderlayRxCounts::default();
    let mut ports = PortRxCounts::default();
    for w in &workers {
        tx += w.tx;
        rx += w.rx;
        for &p in &w.ports {
            ports += p;
        }
    }
    let tables = ports.named().into_iter().chain(rx.named());
    let mut out: Vec<(String, u64)> = [
        ("port_tx_sent", tx.ports.sent),
        ("port_tx_batched", tx.ports.batched),
        ("underlay_tx_sent", tx.underlay.sent),
        ("underlay_tx_batched", tx.underlay.batched),
        ("underlay_tx_whole", tx.underlay.whole),
        ("learn_queue_full", shared.learn_queue.full()),
        (
            "worker_panics",
            shared.worker_panics.load(Ordering::Relaxed),
        ),
    ]
    .into_iter()
    .chain(tables)
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
    for (i, w) in workers.iter().enumerate() {
        let frames = w.ports.iter().map(|p| p.frames).sum();
        out.push((format!("worker{i}_port_rx_frames"), frames));
        out.push((format!("worker{i}_underlay_rx_datagrams"), w.rx.datagrams));
    }
    out
}
