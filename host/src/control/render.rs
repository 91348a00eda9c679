//! Human-readable output of replies: `fdb show` reads like `bridge fdb show`, `stats` like
//! `ip -s link`: one line per thing, zero counters left out of the drop list.

use std::fmt::Write;

use super::protocol::{FdbRow, StatsReport};

/// `02:00:00:00:00:02 vni 5001 dst 198.18.0.2 learned age 12s`, one line per entry.
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
        } else {
            format!("learned age {}s", r.age_secs)
        };
        let _ = writeln!(out, "{} vni {} {place} {kind}", r.mac, r.vni);
    }
    out
}

/// Per-VNI counters, then drops and I/O counters that are not zero.
pub fn stats(report: &StatsReport) -> String {
    let mut out = String::new();
    for v in &report.vnis {
        let c = |k: &str| v.counters.get(k).copied().unwrap_or(0);
        let _ = writeln!(out, "vni {}:", v.vni);
        let _ = writeln!(
            out,
            "    from ports    {:>12} frames {:>14} bytes\n    to underlay   {:>12} packets {:>13} bytes\n    from underlay {:>12} packets {:>13} bytes\n    to ports      {:>12} frames {:>14} bytes",
            c("from_ports_frames"),
            c("from_ports_bytes"),
            c("to_underlay_packets"),
            c("to_underlay_bytes"),
            c("from_underlay_packets"),
            c("from_underlay_bytes"),
            c("to_ports_frames"),
            c("to_ports_bytes"),
        );
        let _ = writeln!(
            out,
            "    floods {}  learned {}  moved {}  expired {}  learn_limit {}  learn_rejected {}",
            c("floods"),
            c("learned"),
            c("moved"),
            c("expired"),
            c("learn_limit"),
            c("learn_rejected"),
        );
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
    out
}
