//! From rounds to results: each case's run in one round flattened to named metrics, medians
//! with min-max over the rounds, ratios to the kernel, and the targets checked
//! against the medians of this one run.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cases::{BASELINE, PLUGIN_BASELINE, PLUGIN_CACHED, TUNNEL_GSO};
use crate::probe::{FanOutResult, LatencyResult, TcpResult, UdpResult};

/// Frame sizes of the UDP floods.
pub(crate) const FRAME_SIZES: [usize; 2] = [64, 1400];

/// One case in one round: everything measured, raw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseRun {
    pub(crate) round: usize,
    pub(crate) case: &'static str,
    pub(crate) backend: &'static str,
    /// Seconds since the Unix epoch when the case started.
    pub(crate) started_unix: f64,
    /// MACs host 2 had learned behind host 1 before the probes, for the learned-MACs cases.
    pub(crate) prelearned: Option<usize>,
    /// How quiet the machine was just before the case, and how long the case waited for it.
    pub(crate) quiet: Option<crate::probe::Quiet>,
    pub(crate) udp: Vec<UdpResult>,
    pub(crate) tcp: Vec<TcpResult>,
    /// TCP 1:N: one stream from VM1 to each of VM2, VM3 and VM4 at once.
    pub(crate) tcp_1n: FanOutResult,
    pub(crate) latency: LatencyResult,
    /// The larger of host 1's and host 2's daemons' resident memory once the overlay is up,
    /// before any probe (KiB).
    pub(crate) rss_idle_kib: Option<u64>,
    /// The larger of host 1's and host 2's daemons' peak resident memory over the probes (KiB).
    pub(crate) rss_peak_kib: Option<u64>,
    /// `vtep stats --json` of host 1's and host 2's daemons at the end (drops by reason, I/O
    /// counters).
    pub(crate) daemon_stats: Option<[serde_json::Value; 2]>,
}

impl CaseRun {
    /// The figures the summary takes medians of, by name.
    pub(crate) fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for u in &self.udp {
            let k = |name: &str| format!("udp{}_{name}", u.frame_len);
            m.insert(k("pps"), u.pps);
            m.insert(k("gbps"), u.gbps);
            m.insert(k("loss_pct"), u.loss_pct);
            m.insert(k("sent_pps"), u.sent as f64 / u.seconds);
            m.insert(k("vtep_cpu_s"), u.cpu.vtep_s);
            m.insert(
                k("vtep_us_per_pkt"),
                u.cpu.vtep_s * 1e6 / u.delivered as f64,
            );
            for (i, d) in u.cpu.daemons.iter().enumerate() {
                m.insert(k(&format!("vtep{}_cpu_s", i + 1)), d.total());
            }
            m.insert(
                k("machine_sys_softirq_s"),
                u.cpu.machine.system + u.cpu.machine.softirq,
            );
            m.insert(k("machine_busy_s"), u.cpu.machine.busy());
            m.insert(k("foreign_cpu_s"), u.cpu.foreign_s);
            m.insert(k("foreign_share"), u.cpu.foreign_s / (u.seconds * nproc()));
        }
        for t in &self.tcp {
            let dir = if t.reverse { "rev" } else { "fwd" };
            let tcp = tcp_prefix(t.streams);
            m.insert(format!("{tcp}_{dir}_gbps"), t.gbps);
            m.insert(format!("{tcp}_{dir}_vtep_cpu_s"), t.cpu.vtep_s);
            // CPU per gigabit moved, in ms: what the throughput cost.
            let gbits = t.gbps * t.seconds as f64;
            if gbits > 0.0 {
                m.insert(
                    format!("{tcp}_{dir}_cpu_ms_per_gbit"),
                    t.cpu.vtep_s * 1e3 / gbits,
                );
            }
        }
        let fan = &self.tcp_1n;
        m.insert(format!("{TCP_1N}_gbps"), fan.gbps);
        for f in &fan.flows {
            m.insert(format!("{TCP_1N}_{}_gbps", f.to), f.gbps);
        }
        m.insert(format!("{TCP_1N}_vtep_cpu_s"), fan.cpu.vtep_s);
        for (i, d) in fan.cpu.daemons.iter().enumerate() {
            m.insert(format!("{TCP_1N}_vtep{}_cpu_s", i + 1), d.total());
        }
        let gbits = fan.gbps * fan.seconds as f64;
        if gbits > 0.0 {
            m.insert(
                format!("{TCP_1N}_cpu_ms_per_gbit"),
                fan.cpu.vtep_s * 1e3 / gbits,
            );
        }
        m.insert(
            "lat_foreign_share".into(),
            self.latency.cpu.foreign_s
                / (self.latency.cpu.machine.busy() + self.latency.cpu.machine.idle).max(1e-9),
        );
        m.insert("lat_p50_us".into(), self.latency.p50_us);
        m.insert("lat_p99_us".into(), self.latency.p99_us);
        for (name, kib) in [
            ("rss_idle_mib", self.rss_idle_kib),
            ("rss_peak_mib", self.rss_peak_kib),
        ] {
            if let Some(kib) = kib {
                m.insert(name.into(), kib as f64 / 1024.0);
            }
        }
        m
    }
}

fn nproc() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Median and range of one metric over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) rounds: usize,
}

impl Spread {
    /// `None` for no values.
    pub(crate) fn of(values: &[f64]) -> Option<Spread> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            rounds: n,
        })
    }
}

/// The metric prefix of a TCP probe with `streams` streams: `tcp` for one, `tcp4` for four.
pub(crate) fn tcp_prefix(streams: u32) -> String {
    if streams == 1 {
        "tcp".to_owned()
    } else {
        format!("tcp{streams}")
    }
}

/// The metric prefix of the 1:N probe: `tcp1n_gbps` (the sum), `tcp1n_vm2_gbps` (a flow),
/// `tcp1n_vtep_cpu_s`, `tcp1n_cpu_ms_per_gbit`.
pub(crate) const TCP_1N: &str = "tcp1n";

/// One case over all rounds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseSummary {
    pub(crate) case: &'static str,
    pub(crate) backend: &'static str,
    pub(crate) metrics: BTreeMap<String, Spread>,
    /// This case's median over the kernel's, per metric both have.
    pub(crate) ratio_to_kernel: BTreeMap<String, f64>,
}

impl CaseSummary {
    pub(crate) fn median(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).map(|s| s.median)
    }
}

/// Summaries in the order cases first ran.
pub(crate) fn summarize(runs: &[CaseRun]) -> Vec<CaseSummary> {
    let mut order: Vec<(&'static str, &'static str)> = Vec::new();
    for r in runs {
        if !order.iter().any(|(c, _)| *c == r.case) {
            order.push((r.case, r.backend));
        }
    }
    let mut out: Vec<CaseSummary> = order
        .into_iter()
        .map(|(case, backend)| {
            let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in runs.iter().filter(|r| r.case == case) {
                for (k, v) in r.metrics() {
                    values.entry(k).or_default().push(v);
                }
            }
            let metrics = values
                .into_iter()
                .filter_map(|(k, v)| Some((k, Spread::of(&v)?)))
                .collect();
            CaseSummary {
                case,
                backend,
                metrics,
                ratio_to_kernel: BTreeMap::new(),
            }
        })
        .collect();
    let kernel = out.iter().find(|s| s.case == BASELINE).cloned();
    if let Some(kernel) = kernel {
        for s in &mut out {
            s.ratio_to_kernel = s
                .metrics
                .iter()
                .filter_map(|(k, v)| {
                    let base = kernel.median(k)?;
                    (base != 0.0).then(|| (k.clone(), v.median / base))
                })
                .collect();
        }
    }
    out
}

/// One of the targets.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) target: &'static str,
    /// What was measured, in words and numbers.
    pub(crate) measured: String,
    /// `Some(met)`, or `None` when it could not be measured in this run.
    pub(crate) met: Option<bool>,
}

/// The targets of the performance issue, each from this run's medians.
pub(crate) fn targets(summaries: &[CaseSummary], plugin_skip: Option<&str>) -> Vec<Target> {
    let get = |case: &str| summaries.iter().find(|s| s.case == case);
    let (kernel, wasm, plugin) = (get(BASELINE), get(PLUGIN_BASELINE), get(PLUGIN_CACHED));
    let ratio = |metric: &str| Some(wasm?.median(metric)? / kernel?.median(metric)?);
    // The same TCP ratios with `[underlay] tunnel_gso = true`, when that case ran.
    let whole = get(TUNNEL_GSO);
    let tunnel_ratios = |fwd: &str, rev: &str| {
        let k = kernel?;
        let w = whole?;
        Some((
            w.median(fwd)? / k.median(fwd)?,
            w.median(rev)? / k.median(rev)?,
        ))
    };
    let mut out = Vec::new();

    for (frame, want) in [(64, 2.0), (1400, 2.0)] {
        let target = if frame == 64 {
            "64-byte frames: wasm-vtep >= 2.0x the kernel's delivered packets/s"
        } else {
            "1400-byte frames: wasm-vtep >= 2.0x the kernel's delivered packets/s"
        };
        let metric = format!("udp{frame}_pps");
        out.push(match ratio(&metric) {
            Some(r) => Target {
                target,
                measured: format!(
                    "{r:.2}x ({} vs {} pkt/s)",
                    fmt_num(wasm.and_then(|s| s.median(&metric)).unwrap_or(0.0)),
                    fmt_num(kernel.and_then(|s| s.median(&metric)).unwrap_or(0.0))
                ),
                met: Some(r >= want),
            },
            None => unmeasured(target, "kernel or wasm-vtep not run"),
        });
    }

    for (target, tcp) in [
        (
            "TCP bulk: wasm-vtep >= 1.0x the kernel (both directions)",
            "tcp",
        ),
        (
            "TCP bulk, four streams: wasm-vtep >= 1.0x the kernel (both directions)",
            "tcp4",
        ),
    ] {
        let (fwd, rev) = (format!("{tcp}_fwd_gbps"), format!("{tcp}_rev_gbps"));
        out.push(match (ratio(&fwd), ratio(&rev)) {
            (Some(f), Some(r)) => {
                let whole = tunnel_ratios(&fwd, &rev);
                Target {
                    target,
                    measured: format!(
                        "VM1->VM2 {f:.2}x, VM2->VM1 {r:.2}x{}",
                        whole.map_or(String::new(), |(f, r)| format!(
                            "; with tunnel_gso {f:.2}x, {r:.2}x"
                        ))
                    ),
                    met: Some(
                        (f >= 1.0 && r >= 1.0) || whole.is_some_and(|(f, r)| f >= 1.0 && r >= 1.0),
                    ),
                }
            }
            _ => unmeasured(target, "kernel or wasm-vtep not run"),
        });
    }

    let target = "TCP 1:N (VM1 to VM2, VM3 and VM4 at once): wasm-vtep >= 1.0x the kernel";
    let total = format!("{TCP_1N}_gbps");
    out.push(match ratio(&total) {
        Some(r) => Target {
            target,
            measured: format!(
                "{r:.2}x ({:.2} vs {:.2} Gbit/s in all)",
                wasm.and_then(|s| s.median(&total)).unwrap_or(0.0),
                kernel.and_then(|s| s.median(&total)).unwrap_or(0.0)
            ),
            met: Some(r >= 1.0),
        },
        None => unmeasured(target, "kernel or wasm-vtep not run"),
    });

    let target = "vni-filter attached, cache on: within 10% of wasm-vtep without plugins";
    let plugin_ratios: Option<Vec<(usize, f64)>> = FRAME_SIZES
        .iter()
        .map(|f| {
            let m = format!("udp{f}_pps");
            Some((*f, plugin?.median(&m)? / wasm?.median(&m)?))
        })
        .collect();
    out.push(match plugin_ratios {
        Some(rs) => Target {
            target,
            measured: rs
                .iter()
                .map(|(f, r)| format!("{f} B: {r:.2}x"))
                .collect::<Vec<_>>()
                .join(", "),
            met: Some(rs.iter().all(|(_, r)| *r >= 0.9)),
        },
        None => unmeasured(
            target,
            &format!("skipped: {}", plugin_skip.unwrap_or("plugin case not run")),
        ),
    });

    let target = "Added latency: wasm-vtep p99 within 10 us of the kernel's";
    let p99 = |s: Option<&CaseSummary>| s?.median("lat_p99_us");
    out.push(match (p99(wasm), p99(kernel)) {
        (Some(w), Some(k)) => Target {
            target,
            measured: format!("{:+.0} us (p99 {w:.0} vs {k:.0} us)", w - k),
            met: Some(w - k <= 10.0),
        },
        _ => unmeasured(target, "kernel or wasm-vtep not run"),
    });

    let target = "Memory of an idle daemon with one VNI under 32 MiB RSS";
    let mib = |metric: &str| wasm?.median(metric);
    out.push(match (mib("rss_idle_mib"), mib("rss_peak_mib")) {
        (Some(idle), peak) => Target {
            target,
            measured: format!(
                "{idle:.1} MiB idle{}",
                peak.map_or(String::new(), |p| format!(
                    " ({p:.1} MiB at the peak of the probes)"
                ))
            ),
            met: Some(idle < 32.0),
        },
        _ => unmeasured(target, "wasm-vtep not run"),
    });
    out
}

fn unmeasured(target: &'static str, why: &str) -> Target {
    Target {
        target,
        measured: format!("not measured ({why})"),
        met: None,
    }
}

/// A count with thousands separators, e.g. `71,234`.
pub(crate) fn fmt_num(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn thousands() {
        assert_eq!(fmt_num(0.4), "0");
        assert_eq!(fmt_num(999.0), "999");
        assert_eq!(fmt_num(71234.4), "71,234");
        assert_eq!(fmt_num(1234567.0), "1,234,567");
    }

    fn summary(case: &'static str, pairs: &[(&str, f64)]) -> CaseSummary {
        CaseSummary {
            case,
            backend: "x",
            metrics: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Spread::of(&[*v]).unwrap()))
                .collect(),
            ratio_to_kernel: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_judge_medians() {
        let all = |pps64, pps1400, (fwd, rev), (fwd4, rev4), fan, p99| {
            vec![
                ("udp64_pps", pps64),
                ("udp1400_pps", pps1400),
                ("tcp_fwd_gbps", fwd),
                ("tcp_rev_gbps", rev),
                ("tcp4_fwd_gbps", fwd4),
                ("tcp4_rev_gbps", rev4),
                ("tcp1n_gbps", fan),
                ("lat_p99_us", p99),
            ]
        };
        let mut wasm = all(210.0, 110.0, (5.0, 4.0), (9.0, 7.0), 12.0, 108.0);
        wasm.extend([("rss_idle_mib", 6.5), ("rss_peak_mib", 40.0)]);
        let s = vec![
            summary(
                "kernel",
                &all(100.0, 100.0, (5.0, 5.0), (8.0, 8.0), 10.0, 100.0),
            ),
            summary("wasm-vtep", &wasm),
            summary(
                "wasm-vtep+vni-filter",
                &[("udp64_pps", 200.0), ("udp1400_pps", 90.0)],
            ),
            summary(
                "wasm-vtep(tunnel-gso)",
                &[("tcp_fwd_gbps", 6.0), ("tcp_rev_gbps", 5.5)],
            ),
        ];
        let t = targets(&s, None);
        let met: Vec<Option<bool>> = t.iter().map(|t| t.met).collect();
        assert_eq!(
            met,
            [
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(true)
            ]
        );
        assert_eq!(
            t[2].measured,
            "VM1->VM2 1.00x, VM2->VM1 0.80x; with tunnel_gso 1.20x, 1.10x"
        );
        assert_eq!(t[3].measured, "VM1->VM2 1.12x, VM2->VM1 0.88x");
        assert_eq!(t[4].measured, "1.20x (12.00 vs 10.00 Gbit/s in all)");
        assert_eq!(
            t[7].measured,
            "6.5 MiB idle (40.0 MiB at the peak of the probes)"
        );
        assert!(t[0].measured.starts_with("2.10x"), "{}", t[0].measured);
        assert_eq!(t[6].measured, "+8 us (p99 108 vs 100 us)");

        let t = targets(&s[..2], Some("plugins not available"));
        assert_eq!(t[5].met, None);
        assert!(t[5].measured.contains("plugins not available"));
    }
}
