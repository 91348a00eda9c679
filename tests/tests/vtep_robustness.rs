//! The `vtep` daemon when something inside it goes wrong or runs slow, on a real overlay
//! (namespaces, veths, an underlay bridge), as a user sees it:
//!
//! - A worker that panics is restarted: a ping running through it loses at most a few packets
//!   and every ping after the panics is answered; the daemon keeps running, `vtep stats` counts
//!   `worker_panics`, and its log says which worker panicked and why. A worker that panics five
//!   times within a minute stops the daemon with an error (a non-zero exit and one line saying
//!   so), for a service manager to restart it whole.
//! - A learn plugin that takes nearly its whole time budget on every decision, under a burst of
//!   20,000 new MACs, stalls neither the data path (a 10 ms ping keeps its latency and loses
//!   nothing) nor the control socket (`vtep stats` answers within 50 ms throughout): the
//!   workers hand the new MACs to the learning thread and forward at once.
//!
//! The daemon under test is built with the `fault-injection` feature, which adds the hidden
//! `vtep panic-worker N` (see `tests/run.sh`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use wasm_vtep::control::Request;
use wasm_vtep::wire::MacAddr;
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::tools::raw_frame::{ETHERTYPE_EXPERIMENTAL, ethernet};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP: &str = "239.1.1.100";
/// What the daemon logs (with the worker and the panic's message) when it restarts a worker.
const RESTARTED: &str = "panicked; restarted with fresh state";
/// The interval of the pings that watch the data path.
const PING_INTERVAL: Duration = Duration::from_millis(10);

/// A `vtep` configuration for `host`: underlay on its uplink (MTU 1600), two workers, VNI 5001
/// on `port` flooding to the group, then `extra` (e.g. `[[plugin]]` tables).
fn config(host: &Host, port: &str, extra: &str) -> String {
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
         [datapath]\nworkers = 2\n\n\
         [[vni]]\nid = {VNI}\nports = [\"{port}\"]\ngroup = \"{GROUP}\"\n\n{extra}",
        host.ipv4(),
        Host::UPLINK,
    )
}

/// Waits until the daemon's `worker_panics` counter is `n`.
fn wait_for_panics(daemon: &VtepDaemon, n: u64) -> Result<()> {
    wait_until(
        &format!("worker_panics = {n}"),
        Duration::from_secs(5),
        || Ok(daemon.io_counter("worker_panics")? >= n),
    )?;
    let now = daemon.io_counter("worker_panics")?;
    ensure!(now == n, "worker_panics went past {n}: {now}");
    Ok(())
}

/// The lines of `log` that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Two hosts running `vtep` with two workers each, VM1 behind host 1 and VM2 behind host 2. A
/// ping from VM1 to VM2 every 10 ms runs while worker 0, then worker 1 of host 1 is made to
/// panic: whichever of them forwards the ping, it is restarted at once.
#[test]
fn a_panicking_worker_is_restarted_and_traffic_goes_on() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    let mut d1 = VtepDaemon::start(&h1, &config(&h1, "vm1", ""))?;
    let d2 = VtepDaemon::start(&h2, &config(&h2, "vm2", ""))?;
    // Addresses resolved and MACs learned: the pings below measure forwarding alone.
    let warm = ping(&vm1, vm2.ipv4(), 3)?;
    ensure!(warm.all_received(), "warm-up ping:\n{}", warm.output);
    ensure!(d1.io_counter("worker_panics")? == 0);

    const COUNT: u32 = 400;
    let started = Instant::now();
    let (pings, replies, last_panic) = std::thread::scope(|s| -> Result<_> {
        let pinger = s.spawn(|| ping_replies(&vm1, vm2.ipv4(), COUNT, PING_INTERVAL));
        // A second of pings before the first panic.
        std::thread::sleep(Duration::from_secs(1));
        for worker in [0u64, 1] {
            d1.cli(&["panic-worker", &worker.to_string()])?;
            wait_for_panics(&d1, worker + 1)?;
        }
        let last_panic = started.elapsed();
        let (pings, replies) = pinger.join().expect("the ping thread")?;
        Ok((pings, replies, last_panic))
    })?;

    // Request `seq` leaves no earlier than `(seq - 1) * 10 ms` after ping starts (ping may pace
    // slower than asked, never faster), and ping starts after `started`: requests from `after`
    // on all left once both workers had been restarted.
    let after = u32::try_from(last_panic.as_millis() / PING_INTERVAL.as_millis())? + 2;
    ensure!(
        after + 100 <= COUNT,
        "the panics took until request {after} of {COUNT}: too few pings after them"
    );
    let lost: Vec<u32> = (1..=COUNT)
        .filter(|seq| !replies.iter().any(|r| r.seq == *seq))
        .collect();
    let rtts: Vec<Duration> = replies.iter().map(|r| r.rtt).collect();
    let slow: Vec<(u32, Duration)> = replies
        .iter()
        .filter(|r| r.rtt >= Duration::from_millis(5))
        .map(|r| (r.seq, r.rtt))
        .collect();
    eprintln!(
        "panics done {:.0} ms into the ping (request {after}); lost {lost:?}; p50 {:?} p99 {:?}; \
         replies of 5 ms or more: {slow:?}",
        last_panic.as_secs_f64() * 1000.0,
        percentile(&rtts, 50),
        percentile(&rtts, 99),
    );
    ensure!(
        pings.transmitted == COUNT && lost.len() <= 3,
        "at most 3 of {COUNT} pings lost around the panics: lost {lost:?}\n{}",
        pings.output
    );
    ensure!(
        lost.iter().all(|&seq| seq < after),
        "every ping after the panics (from request {after}) is answered: lost {lost:?}"
    );

    // Still running, both panics counted, and said in the log with their cause.
    ensure!(
        d1.process().try_status()?.is_none(),
        "the daemon exited:\n{}",
        d1.process().log_tails()
    );
    ensure!(d1.io_counter("worker_panics")? == 2);
    let log = d1.process().stderr();
    for worker in 0..2 {
        let cause = format!("injected fault (vtep panic-worker {worker})");
        let said = lines_with(&log, &[RESTARTED, "worker", &cause]);
        ensure!(
            said.len() == 1,
            "one log line says worker {worker} panicked, why, and that it was restarted: \
             {said:?}\n{}",
            d1.process().log_tails()
        );
    }
    ensure!(
        lines_with(&log, &[RESTARTED]).len() == 2,
        "two restarts logged:\n{log}"
    );
    // A worker that does not exist is refused, and nothing else happens.
    let refused = d1.cli_output(&["panic-worker", "2"])?;
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && err.contains("no worker 2"),
        "panic-worker 2 with two workers: {err}"
    );
    ensure!(d1.io_counter("worker_panics")? == 2);

    // And the restarted daemon still stops cleanly.
    d1.stop()?;
    d2.stop()
}

/// Five panics of one worker within a minute stop the daemon with an error; four do not.
#[test]
fn a_worker_that_keeps_panicking_stops_the_daemon_with_an_error() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let h1 = Host::numbered(&underlay, 1)?;
    let _vm1 = Vm::numbered(&h1, 1)?;
    let mut d1 = VtepDaemon::start(&h1, &config(&h1, "vm1", ""))?;
    let socket = d1.socket().to_owned();
    for n in 1..=4 {
        d1.cli(&["panic-worker", "0"])?;
        wait_for_panics(&d1, n)?;
    }
    ensure!(
        d1.process().try_status()?.is_none(),
        "four panics do not stop the daemon:\n{}",
        d1.process().log_tails()
    );
    ensure!(!d1.process().stderr().contains("panicked 5 times"));

    d1.cli(&["panic-worker", "0"])?;
    let status = d1.process().wait(Duration::from_secs(10))?;
    let log = d1.process().stderr();
    ensure!(
        !status.success(),
        "the daemon exits with an error after the fifth panic: {status}\n{log}"
    );
    let reason = "worker 0 panicked 5 times within 60s, the last: injected fault \
                  (vtep panic-worker 0)";
    ensure!(
        log.lines()
            .any(|l| l.starts_with("vtep: ") && l.contains(reason)),
        "the daemon's last word says why: {reason:?}\n{log}"
    );
    ensure!(
        lines_with(&log, &[RESTARTED]).len() == 4,
        "four restarts before it gave up:\n{log}"
    );
    ensure!(!socket.exists(), "the control socket is removed");
    Ok(())
}

/// New source MACs behind a remote host, one frame each: `count` frames from
/// 02:aa:00:00:00:01, 02:aa:00:00:00:02, ... to `dst`, sent from `vm`'s `eth0` in bursts of
/// `burst` every `every`.
fn new_macs(vm: &Vm, dst: MacAddr, count: u32, burst: u32, every: Duration) -> Result<()> {
    let socket = PacketSocket::open(vm, Vm::IFACE)?;
    let start = Instant::now();
    let mut sent = 0u32;
    let mut bursts = 0u32;
    while sent < count {
        for _ in 0..burst.min(count - sent) {
            sent += 1;
            let [_, _, hi, lo] = sent.to_be_bytes();
            let src = MacAddr([0x02, 0xaa, 0, 0, hi, lo]);
            socket.send(&ethernet(dst, src, ETHERTYPE_EXPERIMENTAL, &[0; 46]))?;
        }
        bursts += 1;
        if let Some(wait) = (start + every * bursts).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// What `vtep stats --json` says about learning, at one moment.
#[derive(Debug, Clone, Copy)]
struct Learning {
    /// VNI 5001's `learn_deferred`: learn events the workers handed to the learning thread.
    deferred: u64,
    /// VNI 5001's `learned`.
    learned: u64,
    /// `learn_queue_full`: events dropped because the learning thread's queue was full.
    queue_full: u64,
    /// The plugin's `learn_calls` and `timeouts`.
    calls: u64,
    timeouts: u64,
}

/// Runs `work` while asking `daemon` for `vtep stats` every 50 ms over the control socket,
/// each request timed from connect to parsed answer in this process (no CLI start-up in the
/// measurement) and checked to hold `plugin`'s counters; returns what `work` returned and the
/// time of each request.
fn while_polling_stats<T: Send>(
    daemon: &VtepDaemon,
    plugin: &str,
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<(T, Vec<Duration>)> {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let poller = s.spawn(|| -> Result<Vec<Duration>> {
            let mut took = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let stats = daemon.request(&Request::Stats)?;
                took.push(t.elapsed());
                ensure!(stats["plugins"][plugin].is_object(), "{stats}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(took)
        });
        let worked = work();
        done.store(true, Ordering::Relaxed);
        let polled = poller.join().expect("the stats thread");
        Ok((worked?, polled?))
    })
}

/// The topology of the tests with a busy plugin: host 1 (for `vtep`) with VM1, host 2 running
/// the kernel's vxlan with VM2 and VM3 (the source of new MACs). Fields drop in order: the
/// kernel VTEP and VMs before their hosts, the hosts before the underlay.
struct BusyLab {
    _kernel: KernelVtep,
    vm3: Vm,
    vm2: Vm,
    vm1: Vm,
    h2: Host,
    h1: Host,
    _underlay: Switch,
}

impl BusyLab {
    fn new() -> Result<BusyLab> {
        let underlay = Switch::new(1600)?;
        let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
        let vm1 = Vm::numbered(&h1, 1)?;
        let (vm2, vm3) = (Vm::numbered(&h2, 2)?, Vm::numbered(&h2, 3)?);
        let kernel = KernelVtep::builder(VNI)
            .group(GROUP.parse()?)
            .port(&vm2)
            .port(&vm3)
            .create(&h2)?;
        Ok(BusyLab {
            _kernel: kernel,
            vm3,
            vm2,
            vm1,
            h2,
            h1,
            _underlay: underlay,
        })
    }
}

/// Held by each test whose plugin keeps a core busy (a learning or aging thread spinning in a
/// slow plugin): two of them at once would take both cores of a two-core machine from the data
/// path they check.
fn one_busy_plugin_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static BUSY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    BUSY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn learning(daemon: &VtepDaemon, plugin: &str) -> Result<Learning> {
    let stats = daemon.stats()?;
    let vni = stats["vnis"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["vni"] == VNI))
        .context("VNI 5001 in stats")?;
    let n = |v: &serde_json::Value, what: &str| v.as_u64().with_context(|| what.to_owned());
    Ok(Learning {
        deferred: n(&vni["counters"]["learn_deferred"], "learn_deferred")?,
        learned: n(&vni["counters"]["learned"], "learned")?,
        queue_full: n(&stats["io"]["learn_queue_full"], "learn_queue_full")?,
        calls: n(&stats["plugins"][plugin]["learn_calls"], "learn_calls")?,
        timeouts: n(&stats["plugins"][plugin]["timeouts"], "timeouts")?,
    })
}

/// Host 1 runs `vtep` with a learn plugin that spins 4 ms on every decision, within a budget
/// of 5 ms; host 2 the kernel's vxlan with VM2 and VM3. VM3 sends one frame from each of
/// 20,000 new MACs to VM1 (5,000 a second), so host 1 has 20,000 learn decisions to make: 80 s
/// of plugin time. Meanwhile VM1 pings VM2 every 10 ms and `vtep stats` is asked every 50 ms.
#[test]
fn a_slow_learn_plugin_stalls_neither_forwarding_nor_the_control_socket() -> Result<()> {
    let _busy = one_busy_plugin_at_a_time();
    const PLUGIN: &str = "slow-learn";
    const MACS: u32 = 20_000;
    const PINGS: u32 = 500;
    let lab = BusyLab::new()?;
    let (h1, h2, vm1, vm2, vm3) = (&lab.h1, &lab.h2, &lab.vm1, &lab.vm2, &lab.vm3);
    let plugin = format!(
        "[[plugin]]\nname = \"{PLUGIN}\"\npath = \"{}\"\nvnis = [{VNI}]\nbudget_us = 5000\n\
         config = {{ mode = \"slow\", hook = \"learn\", slow_ms = 4 }}\n",
        wasm("misbehave").display()
    );
    let d1 = VtepDaemon::start(&h1, &config(h1, "vm1", &plugin))?;

    // VM1 and VM2 talk first, so that both are learned (on host 1 through the plugin).
    let warm = ping(&vm1, vm2.ipv4(), 3)?;
    ensure!(warm.all_received(), "warm-up ping:\n{}", warm.output);
    wait_until("VM1 and VM2 learned", Duration::from_secs(5), || {
        Ok(d1.entry(VNI, &vm1.mac().to_string())?.is_some()
            && d1.entry(VNI, &vm2.mac().to_string())?.is_some())
    })?;
    let before = learning(&d1, PLUGIN)?;
    let window = Instant::now();
    ensure!(
        before.calls >= 2,
        "the plugin decided VM1 and VM2: {before:?}"
    );

    let ((pings, replies), stats_calls) = while_polling_stats(&d1, PLUGIN, || {
        std::thread::scope(|s| {
            let pinger = s.spawn(|| ping_replies(&vm1, vm2.ipv4(), PINGS, PING_INTERVAL));
            // The new MACs from 0.3 s into the ping on, for 4 s: the ping (at least 5 s) spans
            // them.
            std::thread::sleep(Duration::from_millis(300));
            let sent = new_macs(vm3, vm1.mac(), MACS, 50, PING_INTERVAL);
            let pinged = pinger.join().expect("the ping thread");
            sent?;
            pinged
        })
    })?;
    let after = learning(&d1, PLUGIN)?;
    let window = window.elapsed();
    let report: serde_json::Value =
        serde_json::from_str(&d1.cli(&["plugin", "show", PLUGIN, "--json"])?)?;

    let rtts: Vec<Duration> = replies.iter().map(|r| r.rtt).collect();
    let (p50, p99) = (percentile(&rtts, 50), percentile(&rtts, 99));
    let slowest = stats_calls.iter().max().copied().unwrap_or_default();
    eprintln!(
        "over {window:?}: ping p50 {p50:?} p99 {p99:?} max {:?}; {} stats calls, slowest {slowest:?}; \
         learn_deferred +{} learned +{} learn_queue_full +{} learn_calls +{} timeouts +{}; \
         plugin max call {} µs, state {}",
        rtts.iter().max(),
        stats_calls.len(),
        after.deferred - before.deferred,
        after.learned - before.learned,
        after.queue_full - before.queue_full,
        after.calls - before.calls,
        after.timeouts - before.timeouts,
        report["calls"]["max_call_ns"].as_u64().unwrap_or(0) / 1000,
        report["state"],
    );

    // The plugin really was slow: a learn decision took at least 3 ms (it spins until its
    // millisecond clock has moved 4 times), so a worker that waited for it would show.
    let max_call = Duration::from_nanos(report["calls"]["max_call_ns"].as_u64().unwrap_or(0));
    ensure!(
        max_call >= Duration::from_millis(3),
        "the plugin's longest call: {max_call:?}"
    );
    // The new MACs went to the learning thread, which kept deciding them through the plugin.
    ensure!(
        after.deferred - before.deferred >= u64::from(MACS) * 9 / 10,
        "most of the {MACS} new MACs were handed to the learning thread: {before:?} -> {after:?}"
    );
    ensure!(
        after.calls - before.calls >= 500 && after.learned - before.learned >= 250,
        "the learning thread decided and learned new MACs meanwhile: {before:?} -> {after:?}"
    );
    // 80 s of decisions fit neither in the 4,096 places of the queue nor in the seconds the
    // test lasts: the excess is dropped and counted rather than waited for.
    ensure!(
        after.queue_full > before.queue_full,
        "the queue is bounded: {before:?} -> {after:?}"
    );

    // The data path did not wait for any of it.
    ensure!(
        pings.all_received() && replies.len() == PINGS as usize,
        "no ping lost:\n{}",
        pings.output
    );
    let p99 = p99.context("no ping answered")?;
    ensure!(
        p99 < Duration::from_millis(5),
        "ping p99 {p99:?} (p50 {p50:?})"
    );
    // Nor did the control socket.
    ensure!(
        stats_calls.len() >= 40,
        "stats asked throughout: {} calls",
        stats_calls.len()
    );
    ensure!(
        slowest < Duration::from_millis(50),
        "every stats call answered within 50 ms: slowest {slowest:?} of {stats_calls:?}"
    );
    // The first new MAC (first in the queue) is in the table, behind host 2; VM1 and VM2 stayed
    // where they were learned.
    let first = d1
        .entry(VNI, "02:aa:00:00:00:01")?
        .context("the first new MAC learned")?;
    ensure!(first.remote == Some(h2.ipv4().to_string()), "{first:?}");
    ensure!(d1.entry(VNI, &vm1.mac().to_string())?.is_some());
    let vm2_row = d1
        .entry(VNI, &vm2.mac().to_string())?
        .context("VM2 learned")?;
    ensure!(vm2_row.remote == Some(h2.ipv4().to_string()), "{vm2_row:?}");

    let stopping = Instant::now();
    d1.stop()?;
    eprintln!("stopped in {:?}", stopping.elapsed());
    Ok(())
}

/// An age plugin that takes 4 ms of its 5 ms budget on every decision, over 2,000 entries that
/// come due every second (aging 1 s, kept 1 s at a time: the aging thread never catches up),
/// holds up neither forwarding, nor `vtep stats`, nor a SIGTERM: aging runs on a thread of its
/// own, without the table's lock during a call, and a stopping daemon asks the plugin nothing
/// more.
#[test]
fn a_slow_age_plugin_stalls_neither_forwarding_nor_the_control_socket_nor_a_stop() -> Result<()> {
    let _busy = one_busy_plugin_at_a_time();
    const PLUGIN: &str = "slow-age";
    const MACS: u32 = 2_000;
    const PINGS: u32 = 300;
    let lab = BusyLab::new()?;
    let (h1, vm1, vm2, vm3) = (&lab.h1, &lab.vm1, &lab.vm2, &lab.vm3);
    // `aging_secs` belongs to the `[[vni]]` table the configuration ends with.
    let extra = format!(
        "aging_secs = 1\n\n[[plugin]]\nname = \"{PLUGIN}\"\npath = \"{}\"\nvnis = [{VNI}]\n\
         budget_us = 5000\nconfig = {{ mode = \"slow\", hook = \"age\", slow_ms = 4, keep_secs = 1 }}\n",
        wasm("misbehave").display()
    );
    let d1 = VtepDaemon::start(&h1, &config(h1, "vm1", &extra))?;
    let warm = ping(&vm1, vm2.ipv4(), 3)?;
    ensure!(warm.all_received(), "warm-up ping:\n{}", warm.output);
    new_macs(vm3, vm1.mac(), MACS, 100, PING_INTERVAL)?;
    let age_calls = |d: &VtepDaemon| -> Result<u64> {
        d.stats()?["plugins"][PLUGIN]["age_calls"]
            .as_u64()
            .context("age_calls")
    };
    // The entries come due a second after they were learned: aging is busy from then on.
    wait_until("the plugin deciding aging", Duration::from_secs(10), || {
        Ok(age_calls(&d1)? >= 100)
    })?;
    let before = age_calls(&d1)?;

    let ((pings, replies), stats_calls) = while_polling_stats(&d1, PLUGIN, || {
        ping_replies(&vm1, vm2.ipv4(), PINGS, PING_INTERVAL)
    })?;
    let during = age_calls(&d1)? - before;
    let report: serde_json::Value =
        serde_json::from_str(&d1.cli(&["plugin", "show", PLUGIN, "--json"])?)?;
    let max_call = Duration::from_nanos(report["calls"]["max_call_ns"].as_u64().unwrap_or(0));
    let rtts: Vec<Duration> = replies.iter().map(|r| r.rtt).collect();
    let (p50, p99) = (percentile(&rtts, 50), percentile(&rtts, 99));
    let slowest = stats_calls.iter().max().copied().unwrap_or_default();
    eprintln!(
        "age calls during the ping {during}, plugin max call {max_call:?}; ping p50 {p50:?} \
         p99 {p99:?}; {} stats calls, slowest {slowest:?}",
        stats_calls.len()
    );
    // The plugin was slow and kept deciding all along.
    ensure!(
        max_call >= Duration::from_millis(3),
        "longest call {max_call:?}"
    );
    ensure!(during >= 200, "age decisions during the ping: {during}");
    // Neither the data path nor the control socket waited for it.
    ensure!(
        pings.all_received() && replies.len() == PINGS as usize,
        "no ping lost:\n{}",
        pings.output
    );
    let p99 = p99.context("no ping answered")?;
    ensure!(
        p99 < Duration::from_millis(5),
        "ping p99 {p99:?} (p50 {p50:?})"
    );
    ensure!(stats_calls.len() >= 30, "{} stats calls", stats_calls.len());
    ensure!(
        slowest < Duration::from_millis(50),
        "every stats call answered within 50 ms: slowest {slowest:?}"
    );
    // A SIGTERM in the middle of a pass of 2,000 slow decisions (8 s of them) stops the daemon
    // at once: the plugin is asked nothing more once it is stopping.
    let stopping = Instant::now();
    d1.stop()?;
    let took = stopping.elapsed();
    eprintln!("stopped in {took:?}");
    ensure!(took < Duration::from_secs(2), "stopping took {took:?}");
    Ok(())
}
