//! Human-readable output of replies: `fdb show` reads like `bridge fdb show`, `stats` like
//! `ip -s link`: one line per thing, zero counters left out of the drop list.

use std::fmt::Write;

use super::protocol::{EvpnReport, FdbRow, PluginReport, StatsReport};

/// `02:00:00:00:00:02 vni 5001 dst 198.18.0.2 learned age 12s` (or `static`, or `evpn`), one
/// line per entry.
pub fn fdb(rows: &[FdbRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let place = match (&r.remote, &r.port) {
            (Some(ip), _) => format!("dst {ip}"),
            (None, Some(port)) => format!("dev {port}"),
            (None, None) => "-".to_owned(),
        };
        let kind = if r.is_static {
            "static".to_owned()
        } else if r.kind == "evpn" {
            "evpn".to_owned()
        } else if r.sticky {
            format!("learned sticky age {}s", r.age_secs)
        } else {
            format!("learned age {}s", r.age_secs)
        };
        let _ = writeln!(out, "{} vni {} {place} {kind}", r.mac, r.vni);
    }
    out
}

/// The per-VNI counters `stats` lays out as a table of frames (or packets) and bytes.
const TRAFFIC: [&str; 8] = [
    "from_ports_frames",
    "from_ports_bytes",
    "to_underlay_packets",
    "to_underlay_bytes",
    "from_underlay_packets",
    "from_underlay_bytes",
    "to_ports_frames",
    "to_ports_bytes",
];

/// Per-VNI counters, then drops and I/O counters that are not zero.
pub fn stats(report: &StatsReport) -> String {
    let mut out = String::new();
    for v in &report.vnis {
        let c = |k: &str| v.counters.get(k).copied().unwrap_or(0);
        let _ = writeln!(out, "vni {}:", v.vni);
        let _ = writeln!(
            out,
            "    from ports    {:>12} frames {:>14} bytes\n    to underlay   {:>12} packets {:>13} bytes\n    from underlay {:>12} packets {:>13} bytes\n    to ports      {:>12} frames {:>14} bytes",
            c(TRAFFIC[0]),
            c(TRAFFIC[1]),
            c(TRAFFIC[2]),
            c(TRAFFIC[3]),
            c(TRAFFIC[4]),
            c(TRAFFIC[5]),
            c(TRAFFIC[6]),
            c(TRAFFIC[7]),
        );
        // Every other counter on one line, by name: a counter the daemon adds shows up here
        // without a change to this function.
        let events: Vec<String> = v
            .counters
            .iter()
            .filter(|(k, _)| !TRAFFIC.contains(&k.as_str()))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "    {}", events.join("  "));
    }
    let nonzero = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
    };
    let drops = nonzero(&report.drops);
    let _ = writeln!(
        out,
        "drops: {}",
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join("  ")
        }
    );
    let io = nonzero(&report.io);
    if !io.is_empty() {
        let _ = writeln!(out, "io: {}", io.join("  "));
    }
    for (name, counters) in &report.plugins {
        let c = nonzero(counters);
        let _ = writeln!(
            out,
            "plugin {name}: {}",
            if c.is_empty() {
                "no calls".to_owned()
            } else {
                c.join("  ")
            }
        );
    }
    out
}

/// One line per plugin: name, state, hooks, VNIs, calls, drops, failures.
pub fn plugin_list(reports: &[PluginReport]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no plugins\n");
    }
    for r in reports {
        let c = |k: &str| r.calls.counters.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{} {} hooks {} vnis {} calls {} dropped {} failures {}",
            r.name,
            r.state,
            join_or(&r.hooks, "none"),
            vnis(r.vnis.as_deref()),
            c("filter_calls") + c("learn_calls") + c("age_calls"),
            c("dropped"),
            c("traps") + c("timeouts") + c("out_of_memory") + c("invalid"),
        );
    }
    out
}

/// Everything about one plugin, one topic a line.
pub fn plugin_show(r: &PluginReport) -> String {
    let c = |k: &str| r.calls.counters.get(k).copied().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "plugin {} ({})", r.name, r.path);
    let _ = writeln!(out, "    interface  wasm-vtep:plugin@{}", r.interface);
    match &r.detached_reason {
        Some(why) => {
            let _ = writeln!(out, "    state      detached: {why}");
        }
        None => {
            let _ = writeln!(out, "    state      {}", r.state);
        }
    }
    let _ = writeln!(out, "    hooks      {}", join_or(&r.hooks, "none"));
    let _ = writeln!(out, "    vnis       {}", vnis(r.vnis.as_deref()));
    let _ = writeln!(
        out,
        "    sandbox    memory {} KiB of {} KiB, budget {} µs per call, on_error {}, detached after {} failures in a row ({} now)",
        r.memory_used / 1024,
        r.memory_limit / 1024,
        r.budget_us,
        r.on_error,
        r.max_failures,
        r.failures_in_row,
    );
    let _ = writeln!(
        out,
        "    calls      filter {}  learn {}  age {}  time per call {:.1} µs (max {:.1} µs)",
        c("filter_calls"),
        c("learn_calls"),
        c("age_calls"),
        r.calls.avg_call_ns as f64 / 1000.0,
        r.calls.max_call_ns as f64 / 1000.0,
    );
    let per_call = |calls: &str, ns: u64| {
        if c(calls) == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} µs", ns as f64 / 1000.0)
        }
    };
    let _ = writeln!(
        out,
        "    filter     one frame {} per call ({} calls)  batches {} per call ({} calls, {} a frame)",
        per_call("one_frame_calls", r.calls.avg_one_frame_call_ns),
        c("one_frame_calls"),
        per_call("batch_calls", r.calls.avg_batch_call_ns),
        c("batch_calls"),
        if c("batch_calls") == 0 {
            "-".to_owned()
        } else {
            format!("{:.2} µs", r.calls.avg_batch_frame_ns as f64 / 1000.0)
        },
    );
    let _ = writeln!(
        out,
        "    frames     {}  passed {}  dropped {}  from cache {}  cached flows {}",
        c("frames"),
        c("passed"),
        c("dropped"),
        c("cache_hits"),
        r.cached_flows,
    );
    if !r.calls.drops.is_empty() {
        let by: Vec<String> = r
            .calls
            .drops
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(out, "    drops      by reason {}", by.join("  "));
    }
    let _ = writeln!(
        out,
        "    failures   traps {}  timeouts {}  out_of_memory {}  invalid {}  on_error verdicts {}  instances re-created {}",
        c("traps"),
        c("timeouts"),
        c("out_of_memory"),
        c("invalid"),
        c("error_verdicts"),
        c("recreated"),
    );
    if let Some(e) = &r.calls.last_error {
        let _ = writeln!(out, "    last error {e}");
    }
    if !r.plugin_counters.is_empty() {
        let own: Vec<String> = r
            .plugin_counters
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "    counters   {}", own.join("  "));
    }
    out
}

fn join_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(",")
    }
}

fn vnis(list: Option<&[u32]>) -> String {
    match list {
        None => "all".to_owned(),
        Some(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    }
}

/// `vtep evpn show`: the session, then one block per VNI, then refusals if any.
pub fn evpn(r: &EvpnReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gobgpd {}: {} for {}s",
        r.gobgp, r.session, r.session_secs
    );
    if let Some(e) = &r.last_error {
        let _ = writeln!(out, "    last error: {e}");
    }
    let asn = r
        .asn
        .map_or("(gobgpd's, not known yet)".to_owned(), |a| a.to_string());
    let _ = writeln!(out, "    asn {asn} router-id {}", r.router_id);
    for p in &r.peers {
        let _ = writeln!(out, "    peer {} {}", p.address, p.state);
    }
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_owned()
        } else {
            l.join(" ")
        }
    };
    for v in &r.vnis {
        let _ = writeln!(out, "vni {}:", v.vni);
        let _ = writeln!(
            out,
            "    rd {} import-rt {} export-rt {}",
            v.rd,
            list(&v.import_rt),
            list(&v.export_rt)
        );
        let _ = writeln!(
            out,
            "    local: {} routes ({} MACs{})",
            v.local_routes,
            v.local_macs,
            if v.inclusive_multicast {
                ", type 3"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "    flood to: {}", list(&v.flood));
        let _ = writeln!(out, "    remote VTEPs: {}", list(&v.remote_vteps));
        let _ = writeln!(
            out,
            "    remote MACs {}  MAC/IP bindings {}  ARP/ND answered {}",
            v.remote_macs, v.mac_ips, v.suppressed
        );
    }
    let _ = writeln!(
        out,
        "routes received {}  own read back {}",
        r.routes_received, r.own_routes_read
    );
    for (reason, n) in &r.refused {
        let _ = writeln!(out, "    refused {reason}: {n}");
    }
    out
}
