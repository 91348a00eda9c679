//! Writing the results: the run's facts (machine, kernel, commit, conditions), the JSON file
//! with every round's raw numbers and the summary, and the markdown tables of
//! `docs/PERFORMANCE.md` (UDP floods, TCP bulk with one and four streams, TCP 1:N, latency).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::probe::ProbeSettings;
use crate::summary::{CaseRun, CaseSummary, FRAME_SIZES, Spread, TCP_1N, Target, fmt_num};

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    /// `/proc/loadavg` (1, 5, 15 min) just before the first round.
    pub(crate) loadavg_start: [f64; 3],
    /// The same after the last round (our own load included).
    pub(crate) loadavg_end: [f64; 3],
}

impl Machine {
    pub(crate) fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let load = loadavg();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            loadavg_start: load,
            loadavg_end: load,
        }
    }
}

/// `/proc/loadavg`'s three averages (zeros if unreadable).
pub(crate) fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text.split_whitespace().map(|s| s.parse().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
}

/// `git rev-parse --short HEAD` in `repo`, with `-dirty` if the work tree has changes.
pub(crate) fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{hash}-dirty"),
            _ => hash,
        },
        None => "unknown".into(),
    }
}

/// Everything about the run except its numbers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Meta {
    /// `YYYY-MM-DD HH:MM:SS UTC` at the start.
    pub(crate) date: String,
    pub(crate) mode: &'static str,
    pub(crate) rounds: usize,
    pub(crate) probes: ProbeSettings,
    pub(crate) machine: Machine,
    pub(crate) commit: String,
    pub(crate) vtep_bin: String,
    /// `available (<path>)`, `skipped: plugins not available (<why>)` or `not requested`.
    pub(crate) plugins: String,
    /// The share of the machine's CPU time during the UDP floods spent on other people's work.
    pub(crate) foreign_cpu_share: f64,
    /// Whether the machine counts as loaded: load average above 1 before the run, or more
    /// than 10% of CPU time elsewhere during the floods.
    pub(crate) loaded: bool,
    /// How long each case could wait for a quiet machine (0: it did not wait).
    pub(crate) wait_quiet_s: u64,
    /// Wall-clock time of the whole run.
    pub(crate) duration_s: f64,
}

/// The results file.
#[derive(Debug, Serialize)]
pub(crate) struct Results<'a> {
    pub(crate) meta: &'a Meta,
    pub(crate) targets: &'a [Target],
    pub(crate) summary: &'a [CaseSummary],
    pub(crate) runs: &'a [CaseRun],
}

/// How much of the machine other work took during the UDP floods: foreign CPU seconds over
/// (CPUs × flood seconds).
pub(crate) fn foreign_share(runs: &[CaseRun], nproc: usize) -> f64 {
    let (foreign, capacity) = runs
        .iter()
        .flat_map(|r| &r.udp)
        .fold((0.0, 0.0), |(f, c), u| {
            (f + u.cpu.foreign_s, c + u.seconds * nproc as f64)
        });
    if capacity > 0.0 {
        foreign / capacity
    } else {
        0.0
    }
}

pub(crate) fn write_json(path: &Path, results: &Results<'_>) -> Result<()> {
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// `median (min-max)` with `f` formatting each number.
fn spread(s: Option<&Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        Some(s) if s.rounds > 1 => format!("{} ({}-{})", f(s.median), f(s.min), f(s.max)),
        Some(s) => f(s.median),
        None => "-".into(),
    }
}

fn ratio(s: &CaseSummary, metric: &str) -> String {
    s.ratio_to_kernel
        .get(metric)
        .map_or("-".into(), |r| format!("{r:.2}x"))
}

/// The markdown report.
pub(crate) fn markdown(meta: &Meta, summaries: &[CaseSummary], targets: &[Target]) -> String {
    let mut md = String::new();
    let m = &meta.machine;
    let w = &mut md;
    let _ = writeln!(w, "# Performance: wasm-vtep against the kernel's vxlan\n");
    let _ = writeln!(
        w,
        "Written by `cargo run --release -p wasm-vtep-tests --bin netbench` \
         (`tests/src/bin/netbench/`); the raw numbers of every round are in the run's \
         `results.json`. Three hosts on an underlay switch (MTU 1600): VM1 on host 1, VM2 and \
         VM3 on host 2, VM4 on host 3 (MTU 1500, offloads on), VNI 5001 flooding to \
         239.1.1.100, a VTEP on every host. Every probe but TCP 1:N runs between VM1 and VM2 \
         and counts the daemons of hosts 1 and 2 only. The topology is built afresh for each \
         backend in each round, and kernel and wasm-vtep take turns (kernel first in even \
         rounds, wasm-vtep first in odd ones) so that drift hits both.\n"
    );
    let conditions = if meta.loaded {
        "**measured while the machine was loaded**"
    } else {
        "quiet"
    };
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {} |", meta.date);
    let _ = writeln!(w, "| commit | `{}` |", meta.commit);
    let _ = writeln!(
        w,
        "| machine | {}, nproc {}, kernel {} |",
        m.cpu_model, m.nproc, m.kernel
    );
    let _ = writeln!(
        w,
        "| run | {} mode: {} round(s), {} s per UDP flood and per TCP direction, {} pings \
         10 ms apart; {:.0} s in all |",
        meta.mode, meta.rounds, meta.probes.seconds, meta.probes.pings, meta.duration_s
    );
    let waited = if meta.wait_quiet_s > 0 {
        format!(
            "; each case first waited up to {} s for the machine to be under {:.0}% busy",
            meta.wait_quiet_s,
            crate::probe::QUIET_BELOW * 100.0
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        w,
        "| conditions | {conditions}: load average {:.2} before the run; {:.0}% of CPU time \
         during the floods went to other work{waited} |",
        m.loadavg_start[0],
        meta.foreign_cpu_share * 100.0
    );
    let _ = writeln!(w, "| plugins | {} |\n", meta.plugins);

    let _ = writeln!(w, "## Targets (medians of this run)\n");
    let _ = writeln!(w, "| target | measured | met |\n|---|---|---|");
    for t in targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(w, "| {} | {} | {met} |", t.target, t.measured);
    }

    let _ = writeln!(
        w,
        "\n## UDP floods, VM1 to VM2\n\n\
         One `sendmmsg` sender (batches of 64, one connected socket) in VM1 for the whole \
         flood; delivered = datagrams the receiving application read with `recvmmsg` in VM2 \
         (until {} ms after the sender stopped), per second of sending. \
         Gbit/s counts Ethernet frame bits (FCS not included). Loss = 1 - delivered / sent. \
         VTEP CPU: the two daemons' utime+stime for wasm-vtep; for the kernel, which has no \
         process, machine-wide system+softirq time (marked \\*), which also holds the sender's \
         and receiver's socket work; the machine-wide figure is given for every case. Per \
         host: each daemon's median. CPU us/pkt: VTEP CPU over delivered packets. Cells: \
         median (min-max).\n",
        crate::probe::DRAIN.as_millis()
    );
    let _ = writeln!(
        w,
        "| case | frame | delivered pkt/s | vs kernel | Gbit/s | sent pkt/s | loss | VTEP CPU s | \
         per host (h1, h2) | CPU us/pkt | machine sys+softirq s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for frame in FRAME_SIZES {
        for s in summaries {
            let k = |name: &str| format!("udp{frame}_{name}");
            let get = |name: &str| s.metrics.get(&k(name));
            if get("pps").is_none() {
                continue;
            }
            let star = if s.backend == "kernel" { "\\*" } else { "" };
            let per_host = match (get("vtep1_cpu_s"), get("vtep2_cpu_s")) {
                (Some(a), Some(b)) => format!("{:.2}, {:.2}", a.median, b.median),
                _ => "-".into(),
            };
            let _ = writeln!(
                w,
                "| {} | {frame} B | {} | {} | {} | {} | {} | {}{star} | {per_host} | {}{star} | {} |",
                s.case,
                spread(get("pps"), fmt_num),
                ratio(s, &k("pps")),
                spread(get("gbps"), |v| format!("{v:.3}")),
                spread(get("sent_pps"), fmt_num),
                spread(get("loss_pct"), |v| format!("{v:.1}%")),
                spread(get("vtep_cpu_s"), |v| format!("{v:.2}")),
                spread(get("vtep_us_per_pkt"), |v| format!("{v:.1}")),
                spread(get("machine_sys_softirq_s"), |v| format!("{v:.2}")),
            );
        }
    }

    let writes = meta.probes.tcp_write.map_or_else(
        || "iperf3's default 128 KiB writes".to_owned(),
        |l| format!("{l}-byte writes"),
    );
    for (title, tcp) in [("one stream", "tcp"), ("four streams, iperf3 -P 4", "tcp4")] {
        let _ = writeln!(
            w,
            "\n## TCP bulk (iperf3, {title}, {} s each way, {writes})\n",
            meta.probes.seconds
        );
        tcp_table(w, summaries, tcp);
    }

    let _ = writeln!(
        w,
        "\n## TCP 1:N (VM1 to VM2 and VM3 behind host 2 and VM4 behind host 3, one stream \
         each, at once)\n\n\
         Three iperf3 clients in VM1 started together, one TCP stream each to a server in \
         VM2, VM3 and VM4, {} s, {writes}: one sender, three receivers behind two remote \
         VTEPs. Total: the sum of what the three receivers got. VTEP CPU: the three daemons' \
         utime+stime for wasm-vtep; for the kernel machine-wide system+softirq time \
         (marked \\*).\n",
        meta.probes.seconds
    );
    fan_out_table(w, summaries);

    let _ = writeln!(
        w,
        "\n## Latency (ping VM1 to VM2, {} requests 10 ms apart per round)\n",
        meta.probes.pings
    );
    let _ = writeln!(
        w,
        "| case | p50 us | p99 us | p99 minus kernel's | other work on the machine |\n\
         |---|---|---|---|---|"
    );
    let kernel_p99 = summaries
        .iter()
        .find(|s| s.backend == "kernel")
        .and_then(|s| s.median("lat_p99_us"));
    for s in summaries {
        let g = |n: &str| s.metrics.get(n);
        let added = match (s.median("lat_p99_us"), kernel_p99) {
            (Some(p), Some(k)) => format!("{:+.0} us", p - k),
            _ => "-".into(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {added} | {} |",
            s.case,
            spread(g("lat_p50_us"), |v| format!("{v:.0}")),
            spread(g("lat_p99_us"), |v| format!("{v:.0}")),
            spread(g("lat_foreign_share"), |v| format!("{:.0}%", v * 100.0)),
        );
    }
    let _ = writeln!(
        w,
        "\n## Reading the numbers\n\n\
         - The kernel's data plane runs inside the sender's own system calls (veth, bridge, \
         vxlan, underlay and the far host's receive path, in softirq on the sending CPU), so \
         it paces the sender and loses next to nothing: its delivered rate is what one \
         sending CPU can push through the whole path. wasm-vtep's sender only hands frames to \
         host 1's packet socket, so it can send faster than the daemon reads; what the daemon \
         cannot take is dropped at that socket (`port_rx_kernel_drops` in the daemons' stats \
         in results.json).\n\
         - wasm-vtep carries a flow's back-to-back datagrams as one UDP GSO packet across the \
         underlay and hands consecutive equal-sized datagrams of a flow (and consecutive TCP \
         segments) to the receiving VM merged into one super-frame with a `virtio_net_hdr`; \
         the VM's kernel cuts it back into the same datagrams before its sockets see them. \
         This is the receive offload (GRO) the kernel applies to TCP everywhere and to UDP \
         on devices where forwarding GRO is turned on; the kernel's vxlan + bridge here does \
         neither for UDP, so its floods cost one pass per datagram.\n\
         - Every host, every VM and every data path run on the same two cores: a user-space \
         VTEP's copies and wakeups compete with the VMs for them, where the kernel's vxlan \
         runs the whole path inside the sender's system calls without a copy (TCP super-frames \
         cross the kernel path whole).\n\
         - `wasm-vtep` runs with the default `steering = \"symmetric\"`: both directions \
         of a flow on one worker per host, so that a reply finds that worker still polling \
         (the latency probe) but a single TCP stream's data and ACKs share it. \
         `wasm-vtep(kernel-steering)` leaves the choice of worker to the kernel's hashes, \
         which usually split a flow's two directions over two workers.\n\
         - On a kernel with tick-based CPU accounting (no `CONFIG_IRQ_TIME_ACCOUNTING`), \
         softirq work is charged to whichever task it interrupts: the daemons' CPU includes \
         the kernel work that their own sends and receives set off.\n\
         - Every hop is a software queue on shared CPUs: other work on the machine moves \
         these numbers, which is why the conditions row says how much there was."
    );
    md
}

/// `YYYY-MM-DD HH:MM:SS UTC` and `YYYYMMDDTHHMMSSZ` for `t`.
pub(crate) fn utc(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC"),
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

/// The TCP table of the probes whose metrics start with `tcp` (`tcp`, `tcp4`).
fn tcp_table(w: &mut String, summaries: &[CaseSummary], tcp: &str) {
    let _ = writeln!(
        w,
        "| case | VM1 to VM2 Gbit/s | vs kernel | VM2 to VM1 Gbit/s | vs kernel | \
         VTEP CPU s (to, from) | CPU ms per Gbit (to, from) |\n|---|---|---|---|---|---|---|"
    );
    for s in summaries {
        let g = |n: &str| s.metrics.get(n);
        if g(&format!("{tcp}_fwd_gbps")).is_none() {
            continue;
        }
        let star = if s.backend == "kernel" { "\\*" } else { "" };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {}, {}{star} | {}, {}{star} |",
            s.case,
            spread(g(&format!("{tcp}_fwd_gbps")), |v| format!("{v:.2}")),
            ratio(s, &format!("{tcp}_fwd_gbps")),
            spread(g(&format!("{tcp}_rev_gbps")), |v| format!("{v:.2}")),
            ratio(s, &format!("{tcp}_rev_gbps")),
            spread(g(&format!("{tcp}_fwd_vtep_cpu_s")), |v| format!("{v:.2}")),
            spread(g(&format!("{tcp}_rev_vtep_cpu_s")), |v| format!("{v:.2}")),
            spread(g(&format!("{tcp}_fwd_cpu_ms_per_gbit")), |v| format!(
                "{v:.1}"
            )),
            spread(g(&format!("{tcp}_rev_cpu_ms_per_gbit")), |v| format!(
                "{v:.1}"
            )),
        );
    }
}

/// The TCP 1:N table.
fn fan_out_table(w: &mut String, summaries: &[CaseSummary]) {
    let _ = writeln!(
        w,
        "| case | total Gbit/s | vs kernel | per flow Gbit/s (VM2, VM3, VM4) | VTEP CPU s | \
         CPU ms per Gbit |\n|---|---|---|---|---|---|"
    );
    for s in summaries {
        let g = |n: &str| s.metrics.get(&format!("{TCP_1N}_{n}"));
        if g("gbps").is_none() {
            continue;
        }
        let star = if s.backend == "kernel" { "\\*" } else { "" };
        let flows: Vec<String> = ["vm2", "vm3", "vm4"]
            .iter()
            .map(|vm| g(&format!("{vm}_gbps")).map_or("-".into(), |f| format!("{:.2}", f.median)))
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {}{star} | {}{star} |",
            s.case,
            spread(g("gbps"), |v| format!("{v:.2}")),
            ratio(s, &format!("{TCP_1N}_gbps")),
            flows.join(", "),
            spread(g("vtep_cpu_s"), |v| format!("{v:.2}")),
            spread(g("cpu_ms_per_gbit"), |v| format!("{v:.1}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        let at = |s| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0).0, "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400).1, "20000229T000000Z");
        assert_eq!(at(1_763_960_000).0, "2025-11-24 04:53:20 UTC");
    }
}
