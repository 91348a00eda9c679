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

/// The I/O shell's counters, added up over the workers and flattened for `vtep stats`.
pub(super) fn io_counters(shared: &Shared) -> Vec<(String, u64)> {
    let mut tx = TransmitCounts::default();
    let mut rx = UnderlayRxCounts::default();
    for w in &shared.workers {
        let w = lock(w);
        tx += w.tx;
        rx += w.rx;
    }
    let mut ports = PortRxCounts::default();
    for p in shared.ports.iter().flatten() {
        // Frames the kernel dropped because the data path fell behind (PACKET_STATISTICS).
        let _ = p.refresh_kernel_drops();
        ports += p.rx_counts();
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
