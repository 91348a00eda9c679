//! A [`Snapshot`] of the daemon's counters in the Prometheus exposition formats (text 0.0.4,
//! or OpenMetrics when the scraper asks for it), through `prometheus-client`'s encoders: every
//! counter `vtep stats` has, labelled by `vni`, `port`, `worker`, `reason` and `plugin`
//! instead of carrying them in its name, the FDB's entries per VNI and kind, each plugin's
//! state and call times (a histogram), the EVPN session, and the build. Names follow the
//! conventions: `wasm_vtep_` first, counters end in `_total` (the encoder adds it), base units
//! (bytes, seconds).
//!
//! Pure: the snapshot in, text out. Each scrape encodes a snapshot of its own, so the
//! collector holds no state between scrapes.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Snapshot;
use crate::io::{PortRxCounts, TxDrop, UnderlayRxCounts};
use crate::vtep::VniStats;

/// The prefix of every metric's name.
const PREFIX: &str = "wasm_vtep";

/// The two text formats a scraper can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `text/plain; version=0.0.4`: what every Prometheus reads, the default.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, when the `Accept` header asks for it.
    OpenMetrics,
}

impl Format {
    /// The format a request's `Accept` header asks for.
    pub(super) fn accepted(accept: Option<&str>) -> Format {
        let asks = |media: &str| {
            let mut parts = media.split(';').map(str::trim);
            parts.next() == Some("application/openmetrics-text")
                // `q=0` means "not this one".
                && !parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0))
        };
        match accept {
            Some(a) if a.split(',').any(asks) => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// `snapshot` in `format`.
pub(super) fn encode(snapshot: Snapshot, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry)?,
    }
    Ok(text)
}

/// Label pairs of one sample.
type Labels = Vec<(&'static str, String)>;

/// Writes one family: its name (without the prefix, nor `_total`), help, type and samples.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => sample.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
            _ => sample.encode_gauge(&value)?,
        }
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    family(encoder, name, help, MetricType::Counter, samples)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    family(encoder, name, help, MetricType::Gauge, samples)
}

/// Samples grouped by counter name (the families of names a table yields at run time).
type ByName = BTreeMap<String, Vec<(Labels, u64)>>;

fn add(by_name: &mut ByName, name: &str, labels: Labels, value: u64) {
    by_name
        .entry(name.to_owned())
        .or_default()
        .push((labels, value));
}

fn label(key: &'static str, value: impl ToString) -> (&'static str, String) {
    (key, value.to_string())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        // An info metric: `wasm_vtep_build_info`, a gauge of 1 in the 0.0.4 text.
        e.encode_descriptor(
            "build",
            "The daemon's version and the plugin interface versions it loads.",
            None,
            MetricType::Info,
        )?
        .encode_info(&vec![
            label("version", env!("CARGO_PKG_VERSION")),
            label("interfaces", crate::plugin::SUPPORTED_VERSIONS.join(",")),
        ])?;
        self.encode_pipeline(e)?;
        self.encode_io(e)?;
        self.encode_fdb(e)?;
        self.encode_plugins(e)?;
        if let Some(evpn) = &self.evpn {
            encode_evpn(e, evpn)?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// Per-VNI traffic and events, and the pipeline's drops by reason.
    fn encode_pipeline(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut by_name = ByName::new();
        for v in &self.vnis {
            for (name, n) in v.named() {
                add(&mut by_name, name, vec![label("vni", v.vni.get())], n);
            }
        }
        for (name, samples) in by_name {
            let help = format!("Per VNI: {}", described(&VniStats::DESCRIBED, &name));
            counter(e, &format!("vni_{name}"), &help, samples)?;
        }
        counter(
            e,
            "drops",
            "Frames and packets the pipeline dropped, by reason.",
            self.drops
                .iter()
                .map(|(r, n)| (vec![label("reason", r.name())], n)),
        )
    }

    /// The sockets' counters: per port and worker what the port sockets read, per worker what
    /// the underlay socket read and what was sent (drops by reason), and the daemon's own.
    fn encode_io(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut by_name = ByName::new();
        for (w, io) in self.workers.iter().enumerate() {
            let worker = || vec![label("worker", w)];
            for (p, counts) in io.ports.iter().enumerate() {
                let port = self
                    .port_names
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| p.to_string());
                for (name, n) in counts.named() {
                    let labels = vec![label("port", &port), label("worker", w)];
                    add(&mut by_name, name, labels, n);
                }
            }
            for (name, n) in io.rx.named() {
                add(&mut by_name, name, worker(), n);
            }
            for (name, n) in [
                ("port_tx_sent", io.tx.ports.sent),
                ("port_tx_batched", io.tx.ports.batched),
                ("underlay_tx_sent", io.tx.underlay.sent),
                ("underlay_tx_batched", io.tx.underlay.batched),
                ("underlay_tx_whole", io.tx.underlay.whole),
            ] {
                add(&mut by_name, name, worker(), n);
            }
            for reason in TxDrop::ALL {
                let labels = || vec![label("worker", w), label("reason", reason.as_str())];
                add(
                    &mut by_name,
                    "port_tx_dropped",
                    labels(),
                    io.tx.ports.dropped(reason),
                );
                add(
                    &mut by_name,
                    "underlay_tx_dropped",
                    labels(),
                    io.tx.underlay.dropped(reason),
                );
            }
        }
        let tables = PortRxCounts::DESCRIBED
            .into_iter()
            .chain(UnderlayRxCounts::DESCRIBED)
            .chain(TX_DESCRIBED);
        let tables: Vec<_> = tables.collect();
        for (name, samples) in by_name {
            counter(e, &name, &described(&tables, &name), samples)?;
        }
        counter(
            e,
            "learn_queue_full",
            "Learn events dropped because the learning thread's queue was full.",
            [(Labels::new(), self.learn_queue_full)],
        )?;
        counter(
            e,
            "worker_panics",
            "Worker panics survived (the worker was restarted).",
            [(Labels::new(), self.worker_panics)],
        )
    }

    /// The forwarding table's entries per VNI and kind (every configured VNI, zeros too).
    fn encode_fdb(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        gauge(
            e,
            "fdb_entries",
            "Forwarding table entries, per VNI and kind (local, remote, evpn).",
            self.fdb.iter().flat_map(|(vni, c)| {
                [("local", c.local), ("remote", c.remote), ("evpn", c.evpn)]
                    .map(|(kind, n)| (vec![label("vni", vni), label("kind", kind)], n))
            }),
        )?;
        gauge(
            e,
            "fdb_static_entries",
            "Of those, configured (static) entries, per VNI.",
            self.fdb
                .iter()
                .map(|(vni, c)| (vec![label("vni", vni)], c.is_static)),
        )
    }

    /// Per plugin: the host's counters of it, its own, its state and its call times.
    fn encode_plugins(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut by_name = ByName::new();
        let mut gauges = ByName::new();
        let mut drops = Vec::new();
        let mut own = Vec::new();
        for p in &self.plugins {
            let plugin = || vec![label("plugin", &p.name)];
            // `dropped` is the sum of the drops by reason, which are exported instead.
            for (name, &n) in p
                .calls
                .counters
                .iter()
                .filter(|(name, _)| *name != "dropped")
            {
                add(&mut by_name, name, plugin(), n);
            }
            add(&mut by_name, "cache_full", plugin(), p.calls.cache_full);
            for (reason, &n) in &p.calls.drops {
                drops.push((vec![label("plugin", &p.name), label("reason", reason)], n));
            }
            for (name, &n) in &p.plugin_counters {
                own.push((vec![label("plugin", &p.name), label("event", name)], n));
            }
            for (name, n) in [
                ("attached", u64::from(p.state == "attached")),
                ("memory_used_bytes", p.memory_used),
                ("memory_limit_bytes", p.memory_limit),
                ("cached_flows", p.cached_flows),
                ("failures_in_row", u64::from(p.failures_in_row)),
                ("logs_suppressed", p.logs_suppressed),
            ] {
                add(&mut gauges, name, plugin(), n);
            }
        }
        for (name, samples) in by_name {
            let help = format!("Per plugin: {name}, counted by the host (vtep stats).");
            counter(e, &format!("plugin_{name}"), &help, samples)?;
        }
        counter(
            e,
            "plugin_dropped_frames",
            "Frames a plugin's filter dropped, by the plugin's reason code.",
            drops,
        )?;
        counter(
            e,
            "plugin_events",
            "What a plugin counts itself: its declared counters, by name (event).",
            own,
        )?;
        for (name, samples) in gauges {
            let help = format!("Per plugin: {name} now.");
            gauge(e, &format!("plugin_{name}"), &help, samples)?;
        }
        let mut metric = e.encode_descriptor(
            "plugin_call_duration_seconds",
            "Time of each call into a plugin (every hook).",
            None,
            MetricType::Histogram,
        )?;
        for p in &self.plugins {
            let h = &p.calls.call_times;
            // The encoder takes each bucket's own calls and adds them up itself.
            let mut below = 0;
            let mut buckets: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .map(|b| {
                    let own = b.calls.saturating_sub(below);
                    below = b.calls;
                    (seconds(b.le_ns), own)
                })
                .collect();
            buckets.push((f64::INFINITY, h.calls.saturating_sub(below)));
            metric
                .encode_family(&vec![label("plugin", &p.name)])?
                .encode_histogram::<NoLabelSet>(seconds(h.sum_ns), h.calls, &buckets, None)?;
        }
        Ok(())
    }
}

/// The BGP EVPN control plane: the session to gobgpd and the routes.
fn encode_evpn(e: &mut DescriptorEncoder<'_>, evpn: &crate::control::EvpnReport) -> fmt::Result {
    gauge(
        e,
        "evpn_session_up",
        "1 while the daemon is connected to gobgpd's API.",
        [(Labels::new(), u64::from(evpn.session == "connected"))],
    )?;
    let mut peers: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &evpn.peers {
        *peers.entry(p.state.as_str()).or_default() += 1;
    }
    gauge(
        e,
        "evpn_bgp_peers",
        "gobgpd's BGP sessions, by state.",
        peers
            .into_iter()
            .map(|(state, n)| (vec![label("state", state)], n)),
    )?;
    counter(
        e,
        "evpn_routes_received",
        "Remote EVPN route changes applied.",
        [(Labels::new(), evpn.routes_received)],
    )?;
    counter(
        e,
        "evpn_own_routes_read",
        "The daemon's own routes read back from the RIB (skipped).",
        [(Labels::new(), evpn.own_routes_read)],
    )?;
    counter(
        e,
        "evpn_routes_refused",
        "EVPN routes refused, by reason.",
        evpn.refused
            .iter()
            .map(|(reason, &n)| (vec![label("reason", reason)], n)),
    )?;
    let per_vni = |f: fn(&crate::control::EvpnVniRow) -> u64| {
        evpn.vnis
            .iter()
            .map(move |v| (vec![label("vni", v.vni)], f(v)))
    };
    gauge(
        e,
        "evpn_local_macs",
        "Local MACs announced (type 2), per VNI.",
        per_vni(|v| v.local_macs as u64),
    )?;
    gauge(
        e,
        "evpn_remote_macs",
        "Remote MACs from routes, per VNI.",
        per_vni(|v| v.remote_macs as u64),
    )?;
    gauge(
        e,
        "evpn_flood_vteps",
        "Remote VTEPs BUM frames go to (their type 3 routes), per VNI.",
        per_vni(|v| v.flood.len() as u64),
    )
}

/// What the sending side's counters count.
const TX_DESCRIBED: [(&str, &str); 7] = [
    ("port_tx_sent", "Frames sent to local ports."),
    (
        "port_tx_batched",
        "Of those, sends of several frames at once (merged super-frames).",
    ),
    (
        "port_tx_dropped",
        "Frames to local ports not sent, by reason.",
    ),
    ("underlay_tx_sent", "Packets sent into the underlay."),
    (
        "underlay_tx_batched",
        "Of those, sends of several packets at once (UDP GSO).",
    ),
    (
        "underlay_tx_whole",
        "Of the batched sends, super-frames that left encapsulated once (tunnel GSO).",
    ),
    (
        "underlay_tx_dropped",
        "Packets to the underlay not sent, by reason.",
    ),
];

/// The help text of counter `name` in `table`: its doc comment on one line, without the
/// markup of intra-doc links.
fn described(table: &[(&str, &str)], name: &str) -> String {
    let doc = table
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, doc)| doc);
    let help: String = doc.replace("[`", "").replace("`]", "").replace('`', "");
    match help.trim() {
        "" => format!("{name} (as vtep stats names it)."),
        help => help.to_owned(),
    }
}

/// Nanoseconds in seconds, the base unit.
fn seconds(ns: u64) -> f64 {
    // Exact up to 2^53 ns (104 days of calls); past that only the last digits round.
    #[allow(clippy::cast_precision_loss)]
    let s = ns as f64 / 1e9;
    s
}

#[cfg(test)]
mod tests {
    use super::super::{FdbCount, WorkerIo};
    use super::*;
    use crate::vtep::Drops;
    use crate::wire::Vni;

    fn snapshot() -> Snapshot {
        let vni = Vni::new(5001).expect("a VNI");
        let mut stats = VniStats::new(vni);
        stats.floods = 3;
        let mut io = WorkerIo::default();
        io.ports.push(crate::io::PortRxCounts {
            frames: 7,
            ..Default::default()
        });
        io.tx.underlay.record_drops(TxDrop::TooBig, 2);
        Snapshot {
            vnis: vec![stats],
            drops: Drops::default(),
            workers: vec![io],
            port_names: vec!["vm1".to_owned()],
            learn_queue_full: 0,
            worker_panics: 1,
            fdb: [(
                5001,
                FdbCount {
                    local: 1,
                    ..FdbCount::default()
                },
            )]
            .into(),
            plugins: Vec::new(),
            evpn: None,
        }
    }

    #[test]
    fn counters_carry_their_labels_and_units_in_both_formats() {
        let text = encode(snapshot(), Format::Prometheus).expect("encodes");
        for line in [
            "# TYPE wasm_vtep_vni_floods_total counter",
            "wasm_vtep_vni_floods_total{vni=\"5001\"} 3",
            "wasm_vtep_port_rx_frames_total{port=\"vm1\",worker=\"0\"} 7",
            "wasm_vtep_underlay_tx_dropped_total{worker=\"0\",reason=\"too_big\"} 2",
            "wasm_vtep_worker_panics_total 1",
            "wasm_vtep_fdb_entries{vni=\"5001\",kind=\"local\"} 1",
            "# HELP wasm_vtep_vni_floods_total Per VNI: Frames flooded (broadcast, multicast or unknown unicast).",
            "# HELP wasm_vtep_port_rx_kernel_drops_total Frames the kernel dropped because the socket's receive buffer was full, as of the last read of the socket's statistics (PACKET_STATISTICS, by Port::refresh_kernel_drops).",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let open = encode(snapshot(), Format::OpenMetrics).expect("encodes");
        assert!(open.contains("# TYPE wasm_vtep_vni_floods counter\n"));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn the_evpn_session_and_routes_have_their_families() {
        use crate::control::{EvpnPeerRow, EvpnReport, EvpnVniRow};
        let peer = |state: &str| EvpnPeerRow {
            address: "198.18.0.9".to_owned(),
            state: state.to_owned(),
        };
        let mut snap = snapshot();
        snap.evpn = Some(EvpnReport {
            gobgp: "127.0.0.1:50051".to_owned(),
            session: "connected".to_owned(),
            session_secs: 5,
            last_error: None,
            asn: Some(65000),
            router_id: "198.18.0.1".to_owned(),
            peers: vec![peer("established"), peer("established"), peer("active")],
            vnis: vec![EvpnVniRow {
                vni: 5001,
                rd: "198.18.0.1:5001".to_owned(),
                import_rt: vec!["65000:5001".to_owned()],
                export_rt: vec!["65000:5001".to_owned()],
                inclusive_multicast: true,
                local_routes: 2,
                local_macs: 1,
                flood: vec!["198.18.0.2".to_owned()],
                remote_vteps: vec!["198.18.0.2".to_owned()],
                remote_macs: 3,
                mac_ips: 0,
                suppressed: 0,
            }],
            routes_received: 7,
            own_routes_read: 2,
            refused: [("bad_nexthop".to_owned(), 1)].into(),
        });
        let text = encode(snap, Format::Prometheus).expect("encodes");
        for line in [
            "wasm_vtep_evpn_session_up 1",
            "wasm_vtep_evpn_bgp_peers{state=\"active\"} 1",
            "wasm_vtep_evpn_bgp_peers{state=\"established\"} 2",
            "wasm_vtep_evpn_routes_received_total 7",
            "wasm_vtep_evpn_routes_refused_total{reason=\"bad_nexthop\"} 1",
            "wasm_vtep_evpn_remote_macs{vni=\"5001\"} 3",
            "wasm_vtep_evpn_flood_vteps{vni=\"5001\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert_eq!(Format::accepted(None), Format::Prometheus);
        assert_eq!(
            Format::accepted(Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")),
            Format::Prometheus
        );
        assert_eq!(
            Format::accepted(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::accepted(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Prometheus
        );
    }
}
