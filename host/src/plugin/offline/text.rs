//! `vtep plugin test`'s text output: a line per packet (number, time, verdict and reason, where
//! it was offered, its summary, what learning did) and the totals with the plugin's counters.

use std::fmt::Write;

use super::{FrameResult, Totals};
use crate::control::PluginReport;

/// One line of `vtep plugin test` about a frame: number, time, verdict (with reason), where it
/// was offered, its summary, and what learning did.
pub fn frame_line(f: &FrameResult) -> String {
    let verdict = match (f.verdict, &f.reason) {
        ("drop" | "pass", Some(reason)) => format!("{} {reason}", f.verdict),
        (v, _) => v.to_owned(),
    };
    let cached = if f.cached { " (cached)" } else { "" };
    let mut line = format!("{:>6} {:>12.6}  {verdict:<10}{cached}", f.number, f.time);
    match (f.vni, f.direction) {
        (Some(vni), Some(direction)) => {
            let _ = write!(line, "  vni {vni} {direction}  {}", f.summary);
        }
        _ => {
            let why = f.reason.as_deref().unwrap_or_default();
            let _ = write!(line, "  {why}");
            if !f.summary.is_empty() {
                let _ = write!(line, "  {}", f.summary);
            }
        }
    }
    if let Some(learn) = &f.learn {
        let _ = write!(line, "  [{learn}]");
    }
    line
}

/// The totals of `vtep plugin test`, and the plugin's counters.
pub fn totals(t: &Totals, plugin: Option<&PluginReport>) -> String {
    let mut out = String::new();
    let by_reason: Vec<String> = t
        .drops_by_reason
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    let _ = writeln!(
        out,
        "packets {}  offered {}  passed {}  dropped {}{}",
        t.packets,
        t.offered,
        t.passed,
        t.dropped,
        if by_reason.is_empty() {
            String::new()
        } else {
            format!(" (by reason {})", by_reason.join("  "))
        }
    );
    let _ = writeln!(
        out,
        "not offered: cut {}  malformed {}  not Ethernet {}  no VNI {}  not a unicast source {}",
        t.cut, t.malformed, t.other_link, t.no_vni, t.invalid_source
    );
    if !t.learning.is_empty() {
        let learning: Vec<String> = t.learning.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "learning: {}", learning.join("  "));
    }
    if let Some(why) = &t.unreadable {
        let _ = writeln!(out, "the capture ends early: {why}");
    }
    if let Some(p) = plugin {
        let c = |name: &str| p.calls.counters.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "plugin {} (interface {}): calls filter {}  learn {}  from cache {}  failures: traps {}  timeouts {}  out_of_memory {}  invalid {}",
            p.name,
            p.interface,
            c("filter_calls"),
            c("learn_calls"),
            c("cache_hits"),
            c("traps"),
            c("timeouts"),
            c("out_of_memory"),
            c("invalid"),
        );
        if !p.plugin_counters.is_empty() {
            let own: Vec<String> = p
                .plugin_counters
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "its counters: {}", own.join("  "));
        }
        if let Some(e) = &p.calls.last_error {
            let _ = writeln!(out, "last error: {e}");
        }
    }
    out
}
