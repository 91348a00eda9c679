//! `[metrics]`: the Prometheus endpoint. On each scrape the daemon's counters are gathered
//! into a [`Snapshot`] (as `vtep stats` gathers them, plus the FDB's size and the plugins'
//! state), [`exposition`] writes it in the format the scraper asked for, and [`http`] serves
//! it on the daemon's tokio runtime. Off by default: with no `[metrics]` section nothing
//! listens.

mod exposition;
mod http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::TcpListener;

use super::Shared;
use super::counters::{WorkerIo, pipeline_counters, worker_io};
use crate::control::{EvpnReport, PluginReport};
use crate::fdb::Location;
use crate::vtep::{Drops, VniStats};

/// Everything one scrape reports, gathered at once.
#[derive(Debug)]
struct Snapshot {
    /// Per VNI, the pipeline's counters (every worker's and the learning thread's).
    vnis: Vec<VniStats>,
    drops: Drops,
    /// Per worker, its sockets' counters.
    workers: Vec<WorkerIo>,
    /// The ports' names, by `PortId`.
    port_names: Vec<String>,
    learn_queue_full: u64,
    worker_panics: u64,
    /// The FDB's entries per VNI (every configured VNI).
    fdb: BTreeMap<u32, FdbCount>,
    plugins: Vec<PluginReport>,
    evpn: Option<EvpnReport>,
}

/// One VNI's forwarding table entries, by kind.
#[derive(Debug, Clone, Copy, Default)]
struct FdbCount {
    local: u64,
    remote: u64,
    /// Behind a remote VTEP, from an EVPN route.
    evpn: u64,
    /// Of all of them, the configured ones.
    is_static: u64,
}

/// The daemon's counters now.
fn snapshot(shared: &Shared) -> Snapshot {
    let (vnis, drops) = pipeline_counters(shared);
    let mut fdb: BTreeMap<u32, FdbCount> = vnis
        .iter()
        .map(|v| (v.vni.get(), FdbCount::default()))
        .collect();
    {
        let vtep = shared.control_vtep();
        for (entry, _) in vtep.fdb_entries(Instant::now()) {
            let count = fdb.entry(entry.vni.get()).or_default();
            match entry.location {
                Location::Remote(_) if entry.is_evpn => count.evpn += 1,
                Location::Remote(_) => count.remote += 1,
                Location::Port(_) => count.local += 1,
            }
            count.is_static += u64::from(entry.is_static);
        }
    }
    let plugins = shared.plugins.catalog().reports();
    let evpn = shared.evpn.as_ref().map(|e| e.report(&vnis));
    Snapshot {
        workers: worker_io(shared),
        port_names: shared.port_names.clone(),
        learn_queue_full: shared.learn_queue.full(),
        worker_panics: shared.worker_panics.load(Ordering::Relaxed),
        vnis,
        drops,
        fdb,
        plugins,
        evpn,
    }
}

/// Serves the endpoint on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let scrape: http::Scrape =
        Arc::new(move |format| exposition::encode(snapshot(&shared), format));
    http::serve(listener, scrape).await;
}
