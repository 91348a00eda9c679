//! The measurements run on each case: a UDP flood VM1 → VM2 per frame size, TCP bulk both
//! ways (iperf3), TCP 1:N (one iperf3 stream from VM1 to each of VM2, VM3 and VM4 at once:
//! one sender, three receivers behind two remote VTEPs), and a ping latency probe; each with
//! the CPU it cost.
//!
//! CPU accounting: the daemons' own time is exact per process (`/proc/<pid>/stat`, all
//! threads); the kernel's data plane has no process, so its cost is the machine-wide system +
//! softirq time over the same window, which also holds the socket work of the sender and the
//! receiver (and anything else the machine did). Both figures are kept for every case so that
//! like can be compared with like. The probes between VM1 and VM2 count the daemons of host 1
//! and host 2; the 1:N probe counts all three.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use wasm_vtep_tests::tools::cpu::ksoftirqd_pids;
use wasm_vtep_tests::*;

use crate::bed::Bed;

/// The UDP port the sink listens on in VM2.
const FLOOD_PORT: u16 = 9000;
/// Datagrams per `sendmmsg`.
const FLOOD_BATCH: usize = 64;
/// How long the sink keeps reading after the sender stops: what is still in the queues
/// between them arrives well within this.
pub(crate) const DRAIN: Duration = Duration::from_millis(250);
/// The latency probe's interval.
const PING_INTERVAL: Duration = Duration::from_millis(10);

/// How long each probe runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ProbeSettings {
    /// Seconds per UDP flood and per TCP direction.
    pub(crate) seconds: u64,
    /// Echo requests in the latency probe, 10 ms apart.
    pub(crate) pings: u32,
    /// The TCP sender's write size (iperf3 `-l`); `None`: iperf3's default (128 KiB). The
    /// kernel's figure depends on it: one sending CPU pays a system call per write (16.5 Gbit/s
    /// with 128 KiB writes, 32 with 1 MiB, on the development machine).
    pub(crate) tcp_write: Option<u32>,
}

/// CPU over one probe's window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuUse {
    /// What [`CpuUse::vtep_s`] covers: `"daemons"` (the `vtep` processes of host 1 and host 2,
    /// of all three hosts for the 1:N probe) or `"machine-wide system+softirq"` (the kernel's
    /// data plane has no process of its own).
    pub(crate) vtep_scope: &'static str,
    /// The VTEPs' CPU seconds, as `vtep_scope` says.
    pub(crate) vtep_s: f64,
    /// Each measured daemon's user and system time, in host order (empty for the kernel).
    pub(crate) daemons: Vec<TaskCpu>,
    /// The whole machine over the window.
    pub(crate) machine: MachineCpu,
    /// Machine-wide busy time not spent by this benchmark, the daemons or ksoftirqd: other
    /// people's work, the measure of how quiet the machine was.
    pub(crate) foreign_s: f64,
}

/// A CPU snapshot at the start of a window.
struct CpuMark {
    machine: MachineCpu,
    own: TaskCpu,
    reaped: TaskCpu,
    daemons: Vec<TaskCpu>,
    ksoftirqd: TaskCpu,
}

impl CpuMark {
    fn take(daemons: &[u32], ksoftirqd: &[u32]) -> Result<CpuMark> {
        Ok(CpuMark {
            machine: MachineCpu::read()?,
            own: TaskCpu::of_process(std::process::id())?,
            reaped: TaskCpu::of_reaped_children(),
            daemons: daemons
                .iter()
                .map(|&p| TaskCpu::of_process(p))
                .collect::<Result<_>>()?,
            ksoftirqd: ksoftirqd
                .iter()
                .filter_map(|&p| TaskCpu::of_process(p).ok())
                .fold(TaskCpu::default(), |a, b| a + b),
        })
    }

    /// The usage since this mark; `children` is CPU of helper processes still running (the
    /// iperf3 servers) over the window, counted as ours like those that exited in it.
    fn usage(&self, pids: &[u32], ksoftirqd: &[u32], children: f64) -> Result<CpuUse> {
        let now = CpuMark::take(pids, ksoftirqd)?;
        let machine = now.machine.since(&self.machine);
        let daemons: Vec<TaskCpu> = now
            .daemons
            .iter()
            .zip(&self.daemons)
            .map(|(n, b)| n.since(b))
            .collect();
        let daemons_total: f64 = daemons.iter().map(TaskCpu::total).sum();
        let ours = now.own.since(&self.own).total()
            + now.reaped.since(&self.reaped).total()
            + daemons_total
            + now.ksoftirqd.since(&self.ksoftirqd).total()
            + children;
        let (vtep_scope, vtep_s) = if pids.is_empty() {
            (
                "machine-wide system+softirq",
                machine.system + machine.softirq,
            )
        } else {
            ("daemons", daemons_total)
        };
        Ok(CpuUse {
            vtep_scope,
            vtep_s,
            daemons,
            machine,
            foreign_s: (machine.busy() - ours).max(0.0),
        })
    }
}

/// One UDP flood.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UdpResult {
    /// Ethernet frame length, FCS not counted.
    pub(crate) frame_len: usize,
    pub(crate) udp_payload_len: usize,
    /// The sender's running time.
    pub(crate) seconds: f64,
    /// Datagrams the sender's kernel accepted.
    pub(crate) sent: u64,
    pub(crate) send_errors: u64,
    /// Tagged datagrams the receiving application read in VM2.
    pub(crate) delivered: u64,
    /// Other datagrams on the sink's port.
    pub(crate) foreign_datagrams: u64,
    /// VM2's `UdpRcvbufErrors` growth: arrived at VM2 but dropped at the sink's full socket.
    pub(crate) rcvbuf_errors: u64,
    /// `delivered / seconds`.
    pub(crate) pps: f64,
    /// `pps` × frame bits, in Gbit/s.
    pub(crate) gbps: f64,
    /// `1 - delivered / sent`, in percent.
    pub(crate) loss_pct: f64,
    pub(crate) generator_cpu: TaskCpu,
    pub(crate) receiver_cpu: TaskCpu,
    pub(crate) cpu: CpuUse,
}

/// Floods VM2 from VM1 with `frame_len`-byte frames for the configured time.
pub(crate) fn udp(
    bed: &Bed,
    daemons: &[u32],
    frame_len: usize,
    s: &ProbeSettings,
) -> Result<UdpResult> {
    let tag = RandomState::new().hash_one(frame_len);
    let dst = SocketAddr::new(IpAddr::V4(bed.vm2.ipv4()), FLOOD_PORT);
    let ksoftirqd = ksoftirqd_pids();
    let counters = NetCounters::read(&bed.vm2)?;
    let sink = UdpSink::start(bed.vm2.netns(), FLOOD_PORT, tag)?;
    let mark = CpuMark::take(daemons, &ksoftirqd)?;
    let duration = Duration::from_secs(s.seconds);
    let flood = udp_flood(bed.vm1.netns(), dst, frame_len, duration, tag, FLOOD_BATCH)?;
    let cpu = mark.usage(daemons, &ksoftirqd, 0.0)?;
    std::thread::sleep(DRAIN);
    let sunk = sink.stop()?;
    let grew = NetCounters::read(&bed.vm2)?.since(&counters);

    ensure!(flood.sent > 0, "the generator sent nothing: {flood:?}");
    ensure!(
        sunk.received > 0,
        "nothing of {} {frame_len}-byte frames reached VM2: {sunk:?}",
        flood.sent
    );
    let seconds = flood.elapsed.as_secs_f64();
    let pps = sunk.received as f64 / seconds;
    Ok(UdpResult {
        frame_len,
        udp_payload_len: wasm_vtep_tests::tools::flood::udp_payload_len(frame_len)?,
        seconds,
        sent: flood.sent,
        send_errors: flood.send_errors,
        delivered: sunk.received,
        foreign_datagrams: sunk.foreign,
        rcvbuf_errors: grew.get("UdpRcvbufErrors"),
        pps,
        gbps: pps * frame_len as f64 * 8.0 / 1e9,
        loss_pct: 100.0 * flood.sent.saturating_sub(sunk.received) as f64 / flood.sent as f64,
        generator_cpu: flood.cpu,
        receiver_cpu: sunk.cpu,
        cpu,
    })
}

/// One TCP bulk transfer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TcpResult {
    /// `false`: VM1 sends to VM2; `true`: VM2 sends to VM1 (iperf3 `-R`).
    pub(crate) reverse: bool,
    /// Parallel streams (iperf3 `-P`).
    pub(crate) streams: u32,
    pub(crate) seconds: u64,
    /// What the receiver got, Gbit/s.
    pub(crate) gbps: f64,
    pub(crate) retransmits: Option<u64>,
    pub(crate) cpu: CpuUse,
}

/// iperf3 from VM1 to `server` in VM2 (or back with `reverse`), `streams` at once.
pub(crate) fn tcp(
    bed: &Bed,
    daemons: &[u32],
    server: &IperfServer,
    (reverse, streams): (bool, u32),
    s: &ProbeSettings,
) -> Result<TcpResult> {
    let ksoftirqd = ksoftirqd_pids();
    let opts = IperfOptions {
        reverse,
        streams,
        port: server.port(),
        length: s.tcp_write,
        ..IperfOptions::tcp(Duration::from_secs(s.seconds))
    };
    let server_pid = server.process().pid();
    let server_before = TaskCpu::of_process(server_pid)?;
    let mark = CpuMark::take(daemons, &ksoftirqd)?;
    let report = iperf3(&bed.vm1, bed.vm2.ipv4(), &opts)?;
    // The client has exited and been reaped by now: its time is among the reaped children's.
    let server_cpu = TaskCpu::of_process(server_pid)?
        .since(&server_before)
        .total();
    let cpu = mark.usage(daemons, &ksoftirqd, server_cpu)?;
    ensure!(
        report.received_bytes > 0,
        "TCP{} moved nothing",
        if reverse { " back" } else { "" }
    );
    Ok(TcpResult {
        reverse,
        streams,
        seconds: s.seconds,
        gbps: report.received_bps / 1e9,
        retransmits: report.retransmits,
        cpu,
    })
}

/// One flow of the 1:N probe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlowResult {
    /// The receiving VM, `vm2`, `vm3` or `vm4`.
    pub(crate) to: String,
    /// The number of the host it is on.
    pub(crate) host: u8,
    /// What this receiver got, Gbit/s.
    pub(crate) gbps: f64,
    pub(crate) retransmits: Option<u64>,
}

/// The 1:N probe: one TCP stream from VM1 to each target at the same time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FanOutResult {
    pub(crate) seconds: u64,
    /// What the receivers got together (the sum of the flows), Gbit/s.
    pub(crate) gbps: f64,
    /// Each flow, in target order.
    pub(crate) flows: Vec<FlowResult>,
    /// The VTEPs of all three hosts (for the daemons, all three processes).
    pub(crate) cpu: CpuUse,
}

/// One iperf3 TCP stream from VM1 to each of `targets` (a VM and the server running in it),
/// all at once: the clients run on their own threads, started together, each for the
/// configured time; `daemons` are the pids of every daemon on the way.
pub(crate) fn tcp_fan_out(
    bed: &Bed,
    daemons: &[u32],
    targets: &[(&Vm, &IperfServer, u8)],
    s: &ProbeSettings,
) -> Result<FanOutResult> {
    let ksoftirqd = ksoftirqd_pids();
    let servers_cpu = || -> Result<Vec<TaskCpu>> {
        targets
            .iter()
            .map(|(_, server, _)| TaskCpu::of_process(server.process().pid()))
            .collect()
    };
    let servers_before = servers_cpu()?;
    let mark = CpuMark::take(daemons, &ksoftirqd)?;
    let reports: Vec<Result<IperfReport>> = std::thread::scope(|scope| {
        let clients: Vec<_> = targets
            .iter()
            .map(|(vm, server, _)| {
                let opts = IperfOptions {
                    port: server.port(),
                    length: s.tcp_write,
                    ..IperfOptions::tcp(Duration::from_secs(s.seconds))
                };
                scope.spawn(move || iperf3(&bed.vm1, vm.ipv4(), &opts))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an iperf3 client thread panicked")))
            })
            .collect()
    });
    // The clients have exited and been reaped by now: their time is among the reaped
    // children's.
    let servers_used: f64 = servers_cpu()?
        .iter()
        .zip(&servers_before)
        .map(|(now, before)| now.since(before).total())
        .sum();
    let cpu = mark.usage(daemons, &ksoftirqd, servers_used)?;
    let mut flows = Vec::new();
    for ((vm, _, host), report) in targets.iter().zip(reports) {
        let to = vm.host_port().to_owned();
        let report = report.with_context(|| format!("the 1:N flow to {to}"))?;
        ensure!(report.received_bytes > 0, "TCP 1:N moved nothing to {to}");
        flows.push(FlowResult {
            to,
            host: *host,
            gbps: report.received_bps / 1e9,
            retransmits: report.retransmits,
        });
    }
    Ok(FanOutResult {
        seconds: s.seconds,
        gbps: flows.iter().map(|f| f.gbps).sum(),
        flows,
        cpu,
    })
}

/// The latency probe's figures, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencyResult {
    pub(crate) sent: u32,
    pub(crate) received: u32,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) min_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
    /// Wake-ups dominate this probe's tail, so other work on the machine shows here first.
    pub(crate) cpu: CpuUse,
}

/// `ping -i 0.01` from VM1 to VM2: round-trip percentiles.
pub(crate) fn latency(bed: &Bed, daemons: &[u32], s: &ProbeSettings) -> Result<LatencyResult> {
    let ksoftirqd = ksoftirqd_pids();
    let mark = CpuMark::take(daemons, &ksoftirqd)?;
    let (stats, rtts) = ping_samples(&bed.vm1, bed.vm2.ipv4(), s.pings, PING_INTERVAL)?;
    let cpu = mark.usage(daemons, &ksoftirqd, 0.0)?;
    let mut us: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    if us.is_empty() {
        bail!("no ping answered:\n{}", stats.output);
    }
    us.sort_by(f64::total_cmp);
    Ok(LatencyResult {
        sent: stats.transmitted,
        received: stats.received,
        p50_us: percentile(&us, 50),
        p99_us: percentile(&us, 99),
        min_us: us[0],
        max_us: us[us.len() - 1],
        mean_us: us.iter().sum::<f64>() / us.len() as f64,
        cpu,
    })
}

/// How long [`wait_quiet`] samples the machine at a time.
const QUIET_SAMPLE: Duration = Duration::from_secs(1);
/// The busy share under which the machine counts as quiet (between cases nothing of ours
/// runs, so all of it is other work).
pub(crate) const QUIET_BELOW: f64 = 0.15;

/// How long `--quiet-check` samples the machine before the run.
const QUIET_CHECK: Duration = Duration::from_secs(5);
/// The 1-minute load average above which the machine does not count as quiet (the
/// benchmark's own processes are gone between runs; builds and tests keep it above one).
pub(crate) const QUIET_LOAD: f64 = 1.0;

/// Why the machine is not quiet enough to measure on, if it is not: the 1-minute `load` and
/// the `busy_share` (0..1 of all CPUs) over a sample.
pub(crate) fn not_quiet(load: f64, busy_share: f64) -> Option<String> {
    let busy = busy_share >= QUIET_BELOW;
    let loaded = load > QUIET_LOAD;
    (busy || loaded).then(|| {
        format!(
            "the machine is not quiet: load average {load:.2} (at most {QUIET_LOAD:.1}), \
             {:.0}% of its CPU time busy (under {:.0}%)",
            busy_share * 100.0,
            QUIET_BELOW * 100.0
        )
    })
}

/// `--quiet-check` before the run: samples the machine for [`QUIET_CHECK`]; an error if it is
/// not quiet.
pub(crate) fn check_quiet(nproc: usize, load: f64) -> Result<()> {
    let before = MachineCpu::read()?;
    std::thread::sleep(QUIET_CHECK);
    let busy = MachineCpu::read()?.since(&before).busy();
    let busy_share = busy / (QUIET_CHECK.as_secs_f64() * nproc as f64);
    match not_quiet(load, busy_share) {
        Some(why) => bail!(
            "{why}: --quiet-check measures only on a quiet machine; stop the other work \
             (builds, tests) and run it again"
        ),
        None => Ok(()),
    }
}

/// What [`wait_quiet`] saw before a case.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Quiet {
    /// Seconds spent waiting.
    pub(crate) waited_s: f64,
    /// The machine's busy share (0..1 of all CPUs) over the last sample.
    pub(crate) busy_share: f64,
}

/// Samples the machine's busy time a second at a time until under [`QUIET_BELOW`] of its
/// CPUs are busy, for at most `max`; returns what it saw (the case runs either way).
pub(crate) fn wait_quiet(max: Duration, nproc: usize) -> Result<Quiet> {
    let start = std::time::Instant::now();
    loop {
        let before = MachineCpu::read()?;
        std::thread::sleep(QUIET_SAMPLE);
        let busy = MachineCpu::read()?.since(&before).busy();
        let busy_share = busy / (QUIET_SAMPLE.as_secs_f64() * nproc as f64);
        if busy_share < QUIET_BELOW || start.elapsed() >= max {
            return Ok(Quiet {
                waited_s: start.elapsed().as_secs_f64(),
                busy_share,
            });
        }
    }
}

/// The nearest-rank `p`th percentile of sorted, non-empty `v`.
fn percentile(v: &[f64], p: usize) -> f64 {
    let rank = (p * v.len()).div_ceil(100);
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_means_a_low_load_and_an_idle_machine() {
        assert_eq!(not_quiet(0.6, 0.02), None);
        let busy = not_quiet(0.6, 0.40).expect("busy");
        assert!(busy.contains("40% of its CPU time busy"), "{busy}");
        let loaded = not_quiet(1.8, 0.0).expect("loaded");
        assert!(loaded.contains("load average 1.80"), "{loaded}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), 50.0);
        assert_eq!(percentile(&v, 99), 99.0);
        assert_eq!(percentile(&v, 100), 100.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0), 1.0);
        let v: Vec<f64> = (1..=500).map(f64::from).collect();
        assert_eq!(percentile(&v, 99), 495.0);
    }
}
