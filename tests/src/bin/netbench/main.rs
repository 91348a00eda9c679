//! `netbench`: wasm-vtep against the Linux kernel's vxlan + bridge on the same topology
//! (network namespaces: three hosts, VM1 on host 1, VM2 and VM3 on host 2, VM4 on host 3), the
//! same traffic through each, kernel and wasm-vtep rounds alternating. Per case: UDP floods and
//! TCP bulk (one and four streams, both ways) from VM1 to VM2, TCP 1:N (one stream from VM1 to
//! each of VM2, VM3 and VM4 at once) and ping latency from VM1 to VM2. Writes `results.json`,
//! `chart.svg` and `PERFORMANCE.md` into a results folder, and in full mode the markdown to
//! `docs/PERFORMANCE.md` too.
//!
//! A benchmark, not a test: slow numbers never fail it. It fails only when something is
//! broken: a data plane that does not come up, a flood of which nothing arrives, a daemon that
//! does not exit cleanly.
//!
//! ```sh
//! cargo build --release --bin vtep
//! cargo run --release -p wasm-vtep-tests --bin netbench -- [--quick] [--rounds N] [--seconds S] [--out DIR]
//! ```
//!
//! Needs root (namespaces) and iproute2, iputils-ping, iperf3 and nstat.

mod bed;
mod cases;
mod chart;
mod probe;
mod report;
mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasm_vtep_tests::{IperfServer, vtep_bin};

use crate::bed::{Bed, DataPlane, VNI};
use crate::cases::{Backend, CASES, Case, PluginSupport, Variant, detect_plugins};
use crate::probe::ProbeSettings;
use crate::report::{Machine, Meta, Results};
use crate::summary::{CaseRun, FRAME_SIZES};

/// wasm-vtep against the kernel's vxlan: UDP floods, TCP bulk and latency, same topology.
#[derive(Debug, Parser)]
#[command(name = "netbench")]
struct Args {
    /// Short mode for CI: 1 round, 2 s per probe; writes no docs/PERFORMANCE.md.
    #[arg(long)]
    quick: bool,
    /// Rounds per backend (default 5; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per UDP flood and per TCP direction (default 5; 2 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Measure only on a quiet machine: refuse to start unless the load average is at most 1
    /// and the machine is under 15% busy over 5 s, and refuse to write the report to docs if
    /// other work ran meanwhile (its results folder is written all the same).
    #[arg(long)]
    quiet_check: bool,
    /// The TCP sender's write size in bytes (iperf3 `-l`; default: iperf3's, 128 KiB).
    #[arg(long)]
    tcp_write: Option<u32>,
    /// Results folder (default target/netbench/<UTC timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these cases (comma-separated ids; default all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// The vni-filter plugin component (default: $VNI_FILTER_WASM, else the newest
    /// vni_filter.wasm under target/).
    #[arg(long)]
    vni_filter: Option<PathBuf>,
    /// Before each case, wait up to this many seconds for the machine to be quiet (under 15%
    /// of CPU time busy; default 60, 0 with --quick). The case runs either way.
    #[arg(long)]
    wait_quiet: Option<u64>,
    /// Where to write the markdown besides the results folder (default docs/PERFORMANCE.md
    /// in full mode, nowhere else with --quick).
    #[arg(long)]
    docs: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let now = SystemTime::now();
    let (date, stamp) = report::utc(now);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo.join(dir),
        None => repo.join("target"),
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    let seconds = args.seconds.unwrap_or(if args.quick { 2 } else { 5 });
    if rounds == 0 || seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    let probes = ProbeSettings {
        seconds,
        pings: u32::try_from(seconds * 100).unwrap_or(u32::MAX),
        tcp_write: args.tcp_write,
    };
    let wait_quiet =
        Duration::from_secs(args.wait_quiet.unwrap_or(if args.quick { 0 } else { 60 }));
    let cases = select_cases(&args.cases)?;
    let vni_filter = args
        .vni_filter
        .clone()
        .or_else(|| std::env::var_os("VNI_FILTER_WASM").map(PathBuf::from));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target.join("netbench").join(&stamp));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    preflight()?;
    let vtep = vtep_bin()?;

    let mut machine = Machine::read();
    if args.quiet_check {
        probe::check_quiet(machine.nproc, machine.loadavg_start[0])?;
    }
    eprintln!(
        "netbench: {rounds} round(s) x {seconds} s, cases {}, vtep {}, load average {:.2}",
        cases.iter().map(|c| c.id).collect::<Vec<_>>().join(" "),
        vtep.display(),
        machine.loadavg_start[0],
    );

    let mut plugins: Option<PluginSupport> = None;
    let mut runs = Vec::new();
    for round in 0..rounds {
        // ABBA: kernel first in even rounds, wasm-vtep first in odd ones.
        let order = if round % 2 == 0 {
            [Backend::Kernel, Backend::WasmVtep]
        } else {
            [Backend::WasmVtep, Backend::Kernel]
        };
        for backend in order {
            let todo: Vec<&Case> = cases.iter().filter(|c| c.backend == backend).collect();
            if todo.is_empty() {
                continue;
            }
            let bed = Bed::build().context("building the topology")?;
            if plugins.is_none() && todo.iter().any(|c| c.needs_plugins()) {
                let base = Bed::daemon_config(&bed.h1, &[bed.vm1.host_port()]);
                let found = detect_plugins(&bed.h1, &base, vni_filter.as_deref(), &target, VNI)?;
                if let PluginSupport::Unavailable { reason } = &found {
                    eprintln!("netbench: skipped: plugins not available ({reason})");
                }
                plugins = Some(found);
            }
            for case in todo {
                let wasm = match (&plugins, case.needs_plugins()) {
                    (_, false) => None,
                    (Some(PluginSupport::Available { wasm }), true) => Some(wasm.clone()),
                    (_, true) => continue,
                };
                let quiet = if wait_quiet.is_zero() {
                    None
                } else {
                    Some(probe::wait_quiet(wait_quiet, machine.nproc)?)
                };
                eprintln!(
                    "netbench: round {}/{rounds}: {}{}",
                    round + 1,
                    case.id,
                    quiet.map_or(String::new(), |q| format!(
                        " (waited {:.0} s for quiet; {:.0}% busy)",
                        q.waited_s,
                        q.busy_share * 100.0
                    ))
                );
                let mut run = run_case(&bed, case, round, wasm.as_deref(), &probes)
                    .with_context(|| format!("round {}, case {}", round + 1, case.id))?;
                run.quiet = quiet;
                eprintln!("netbench:   {}", one_line(&run));
                runs.push(run);
            }
        }
    }
    machine.loadavg_end = report::loadavg();

    let summaries = summary::summarize(&runs);
    let plugin_skip = match &plugins {
        Some(PluginSupport::Unavailable { .. }) => Some("plugins not available"),
        _ => None,
    };
    let targets = summary::targets(&summaries, plugin_skip);
    let foreign_cpu_share = report::foreign_share(&runs, machine.nproc);
    let meta = Meta {
        date,
        mode: if args.quick { "quick" } else { "full" },
        rounds,
        probes,
        commit: report::commit(&repo),
        vtep_bin: vtep.display().to_string(),
        plugins: match &plugins {
            Some(PluginSupport::Available { wasm }) => format!("available ({})", wasm.display()),
            Some(PluginSupport::Unavailable { reason }) => {
                format!("skipped: plugins not available ({reason})")
            }
            None => "not requested".into(),
        },
        loaded: machine.loadavg_start[0] > 1.0 || foreign_cpu_share > 0.10,
        foreign_cpu_share,
        wait_quiet_s: wait_quiet.as_secs(),
        machine,
        duration_s: started.elapsed().as_secs_f64(),
    };

    let results = Results {
        meta: &meta,
        targets: &targets,
        summary: &summaries,
        runs: &runs,
    };
    report::write_json(&out.join("results.json"), &results)?;
    let subtitle = format!(
        "commit {}, {}, {} x {}, kernel {}{}",
        meta.commit,
        meta.date,
        meta.machine.nproc,
        meta.machine.cpu_model,
        meta.machine.kernel,
        if meta.loaded { ", machine loaded" } else { "" }
    );
    chart::draw(&out.join("chart.svg"), &summaries, &subtitle)?;
    let md = report::markdown(&meta, &summaries, &targets);
    std::fs::write(out.join("PERFORMANCE.md"), &md)?;
    let docs = match (&args.docs, args.quick) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(repo.join("docs").join("PERFORMANCE.md")),
        (None, true) => None,
    };
    if args.quiet_check && meta.loaded {
        bail!(
            "{}: not writing {} (--quiet-check); the run is in {}",
            probe::not_quiet(meta.machine.loadavg_start[0], meta.foreign_cpu_share)
                .unwrap_or_else(|| "other work ran during the run".to_owned()),
            docs.as_ref()
                .map_or("the report".to_owned(), |d| d.display().to_string()),
            out.display()
        );
    }
    if let Some(docs) = &docs {
        if let Some(dir) = docs.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(docs, &md).with_context(|| format!("writing {}", docs.display()))?;
    }

    println!("{md}");
    eprintln!(
        "netbench: done in {:.0} s; results in {}{}",
        meta.duration_s,
        out.display(),
        docs.map(|d| format!(", table in {}", d.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// The cases named in `--cases`, in [`CASES`] order; all of them when none is named.
fn select_cases(names: &[String]) -> Result<Vec<Case>> {
    for n in names {
        if !CASES.iter().any(|c| c.id == n) {
            let known: Vec<&str> = CASES.iter().map(|c| c.id).collect();
            bail!("unknown case {n:?}; known: {}", known.join(", "));
        }
    }
    Ok(CASES
        .iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.id))
        .copied()
        .collect())
}

/// Root and the tools, checked before anything is built.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("netbench builds network namespaces: run it as root");
    }
    for tool in ["ip", "ping", "iperf3", "nstat"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        if !found {
            bail!("{tool} is not on the PATH (tests/setup.sh installs it)");
        }
    }
    Ok(())
}

/// Sets up `case` on `bed`, runs every probe, tears it down.
fn run_case(
    bed: &Bed,
    case: &Case,
    round: usize,
    vni_filter: Option<&Path>,
    probes: &ProbeSettings,
) -> Result<CaseRun> {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut plane = match (case.backend, case.variant, vni_filter) {
        (Backend::Kernel, Variant::VniFilter { .. }, _) => {
            bail!("the kernel has no plugins")
        }
        (Backend::Kernel, ..) => DataPlane::kernel(bed)?,
        (Backend::WasmVtep, Variant::VniFilter { cache, workers }, Some(wasm)) => {
            DataPlane::daemons(bed, &cases::vni_filter_section(wasm, VNI, cache, workers))?
        }
        (Backend::WasmVtep, Variant::VniFilter { .. }, None) => {
            bail!("no vni-filter component")
        }
        (Backend::WasmVtep, Variant::Config { underlay, datapath }, _) => {
            let datapath = if datapath.is_empty() {
                String::new()
            } else {
                format!("[datapath]\n{datapath}\n")
            };
            DataPlane::daemons_with(bed, underlay, &datapath)?
        }
        (Backend::WasmVtep, ..) => DataPlane::daemons(bed, "")?,
    };
    bed.wait_ready()?;
    let prelearned = match case.variant {
        Variant::LearnedMacs(n) => Some(bed::prelearn(bed, &plane, n)?),
        _ => None,
    };
    let pids = plane.daemon_pids();
    let rss_idle_kib = rss_kib(&pids, "VmRSS:");
    let udp = FRAME_SIZES
        .iter()
        .map(|f| settle_then(|| probe::udp(bed, &pids, *f, probes)))
        .collect::<Result<Vec<_>>>()?;
    let server = IperfServer::start(&bed.vm2)?;
    // One stream, then four (iperf3 -P 4), each both ways.
    let tcp = [(false, 1), (true, 1), (false, 4), (true, 4)]
        .into_iter()
        .map(|how| settle_then(|| probe::tcp(bed, &pids, &server, how, probes)))
        .collect::<Result<Vec<_>>>()?;
    drop(server);
    // 1:N: VM1 to VM2, VM3 and VM4 at once, a server in each, every daemon counted.
    let fan = bed.fan_out_targets();
    let servers = fan
        .iter()
        .map(|(vm, _)| IperfServer::start(*vm))
        .collect::<Result<Vec<_>>>()?;
    let targets: Vec<_> = fan
        .iter()
        .zip(&servers)
        .map(|(&(vm, host), server)| (vm, server, host))
        .collect();
    let all_pids = plane.all_daemon_pids();
    let tcp_1n = settle_then(|| probe::tcp_fan_out(bed, &all_pids, &targets, probes))?;
    drop(servers);
    let latency = settle_then(|| probe::latency(bed, &pids, probes))?;
    let rss_peak_kib = rss_kib(&pids, "VmHWM:");
    let daemon_stats = plane.stats()?;
    plane.finish()?;
    Ok(CaseRun {
        round,
        case: case.id,
        backend: case.backend.name(),
        started_unix,
        prelearned,
        quiet: None,
        udp,
        tcp,
        tcp_1n,
        latency,
        rss_idle_kib,
        rss_peak_kib,
        daemon_stats,
    })
}

/// The largest of the processes' `field` (kB) in `/proc/PID/status` (`VmRSS:` now, `VmHWM:` the
/// peak), or `None` without processes.
fn rss_kib(pids: &[u32], field: &str) -> Option<u64> {
    pids.iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .max()
}

/// Lets the queues of the previous probe drain before the next starts.
fn settle_then<T>(probe: impl FnOnce() -> Result<T>) -> Result<T> {
    std::thread::sleep(Duration::from_millis(300));
    probe()
}

/// A progress line for one case.
fn one_line(r: &CaseRun) -> String {
    let mut parts: Vec<String> = r
        .udp
        .iter()
        .map(|u| {
            format!(
                "{} B {} pkt/s ({:.0}% lost)",
                u.frame_len,
                summary::fmt_num(u.pps),
                u.loss_pct
            )
        })
        .collect();
    for t in &r.tcp {
        let dir = if t.reverse { "<-" } else { "->" };
        parts.push(format!("tcp x{} {dir} {:.2} Gbit/s", t.streams, t.gbps));
    }
    parts.push(format!(
        "tcp 1:N {:.2} Gbit/s ({})",
        r.tcp_1n.gbps,
        r.tcp_1n
            .flows
            .iter()
            .map(|f| format!("{} {:.2}", f.to, f.gbps))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    parts.push(format!(
        "ping p50/p99 {:.0}/{:.0} us",
        r.latency.p50_us, r.latency.p99_us
    ));
    parts.join(", ")
}
