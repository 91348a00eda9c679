//! The filter hook's per-frame cost: a batch of 32 frames from one port through the pipeline
//! with no plugin, with a plugin asked about every frame (no verdict cache), and with every
//! verdict answered from the cache; then what a failing plugin costs a batch: a trap (and the
//! re-creation of its instance), a loop (its budget, the interruption, the re-creation); and
//! the CPU time of the watchdog thread, busy and idle.
//!
//! Then how the filter path scales with the workers: 1, 2 and 3 threads, each a worker with
//! its own pipeline and its own copy of an uncached plugin (as the daemon runs them), against
//! the same threads sharing one copy behind a mutex (as the daemon did before); the cost of one
//! learn and one age decision; and the heap allocations a warm batch makes (counted on the
//! calling thread by `wasm_vtep_testkit::counting`; `tests/plugin_allocations.rs`
//! asserts there are none); and the time of a filter call of one frame and of 32, back to back
//! and 10 ms apart, as `vtep plugin show` reports it.
//!
//! The frames are known unicast, switched to another local port: the cheapest path through
//! the pipeline, so that the plugin's share stands out.

// The pipeline fixture of the plugin tests (it needs wasm-vtep's types, so it is not in the
// test kit); a bench target has no other way to a module under tests/.
#[path = "../tests/plugins/mod.rs"]
mod plugins;

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use wasm_vtep::config::{PluginSpec, Sandbox};
use wasm_vtep::fdb::{AgeEvent, AgePolicy, LearnEvent, LearnPolicy, Location, PortId};
use wasm_vtep::plugin::{Plugin, PluginChain, Runtime};
use wasm_vtep::vtep::{FilterBatch, Hooks, Outbox, Verdict, Vtep};
use wasm_vtep::wire::{MacAddr, Vni};
use wasm_vtep_testkit::counting::{self, Counting};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_testkit::vm::udp_broadcast;

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: u16 = 32;
/// The MAC every frame goes to, learned behind port 1.
const DST: [u8; 6] = [2, 0, 0, 0, 0xff, 0xfe];

/// 32 frames from 32 MACs on port 0 to DST, and a pipeline that knows DST behind port 1.
fn setup() -> (Vtep, Vec<Vec<u8>>) {
    let mut v = plugins::vtep();
    let mut announce = udp_broadcast(0xfffe, 53, 18);
    announce[..6].copy_from_slice(&[0xff; 6]);
    let mut out = Outbox::new();
    let _ = v.handle_port_frame(
        Instant::now(),
        PortId(1),
        &wasm_vtep::wire::VirtioNetHdr::NONE,
        &announce,
        &mut out,
    );
    let batch = (1..=BATCH)
        .map(|s| {
            let mut f = udp_broadcast(s, 53, 18);
            f[..6].copy_from_slice(&DST);
            f
        })
        .collect();
    (v, batch)
}

fn plugin(runtime: &Runtime, name: &str, crate_name: &str, config: &str) -> PluginChain {
    let mut spec = PluginSpec::new(name, wasm(crate_name));
    spec.config = config.to_owned();
    spec.sandbox = Sandbox::new().with_max_failures(u32::MAX);
    let mut chain = PluginChain::new();
    let p = Plugin::load(runtime, spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    chain.push(p).expect("one plugin");
    chain
}

fn run(c: &mut Criterion, group: &str, id: &str, hooks: &mut impl Hooks) {
    let (mut v, frames) = setup();
    let batch = plugins::port_batch(&frames);
    let mut out = Outbox::new();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    g.bench_function(id, |b| {
        b.iter(|| {
            out.clear();
            v.handle_port_batch(
                Instant::now(),
                PortId(0),
                black_box(batch.as_slice()),
                &mut out,
                hooks,
            );
        });
    });
    g.finish();
}

fn filter(c: &mut Criterion, runtime: &Runtime) {
    run(c, "filter_batch32", "no_plugin", &mut PluginChain::new());
    for (id, crate_name, config) in [
        ("misbehave_pass_uncached", "misbehave", r#"{"mode":"pass"}"#),
        (
            "misbehave_pass_cached",
            "misbehave",
            r#"{"mode":"pass","cache_secs":3600}"#,
        ),
        (
            "vni_filter_acl_uncached",
            "vni-filter",
            r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":0}"#,
        ),
        (
            "vni_filter_acl_cached",
            "vni-filter",
            r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":3600}"#,
        ),
    ] {
        let mut chain = plugin(runtime, id, crate_name, config);
        run(c, "filter_batch32", id, &mut chain);
    }
}

/// A failing plugin: each batch costs the failure, the on_error verdicts and a fresh instance.
fn failing(c: &mut Criterion, runtime: &Runtime) {
    for (id, config, budget_us) in [
        ("trap", r#"{"mode":"trap"}"#, 500u64),
        ("loop_budget_100us", r#"{"mode":"loop"}"#, 100),
        ("loop_budget_500us", r#"{"mode":"loop"}"#, 500),
    ] {
        let mut spec = PluginSpec::new(id, wasm("misbehave"));
        spec.config = config.to_owned();
        spec.sandbox = Sandbox::new()
            .with_max_failures(u32::MAX)
            .with_time_budget(Duration::from_micros(budget_us));
        let mut chain = PluginChain::new();
        chain
            .push(Plugin::load(runtime, spec).expect("misbehave loads"))
            .expect("one plugin");
        let (mut v, frames) = setup();
        let batch = plugins::port_batch(&frames);
        let mut out = Outbox::new();
        let mut g = c.benchmark_group("failing_plugin_batch32");
        g.sample_size(20);
        g.bench_function(id, |b| {
            b.iter(|| {
                out.clear();
                v.handle_port_batch(
                    Instant::now(),
                    PortId(0),
                    batch.as_slice(),
                    &mut out,
                    &mut chain,
                );
            });
        });
        g.finish();
        let r = chain.get(id).expect("loaded").report();
        let c = |k: &str| r.calls.counters.get(k).copied().unwrap_or(0);
        println!(
            "{id}: {} calls, {} traps, {} timeouts, {} re-created, max call {} µs",
            c("filter_calls"),
            c("traps"),
            c("timeouts"),
            c("recreated"),
            r.calls.max_call_ns / 1000
        );
    }
}

/// The plugins one worker's pipeline calls: its own copy (as the daemon runs them) or a copy
/// shared with the other workers behind a mutex (as the daemon did before).
enum WorkerPlugins {
    Own(PluginChain),
    Shared(Arc<Mutex<PluginChain>>),
}

impl Hooks for WorkerPlugins {
    fn filters(&self, _: Vni) -> bool {
        true
    }

    fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        match self {
            WorkerPlugins::Own(chain) => chain.filter(now, batch, verdicts),
            WorkerPlugins::Shared(chain) => {
                let mut chain = chain.lock().unwrap_or_else(|e| e.into_inner());
                chain.filter(now, batch, verdicts);
            }
        }
    }
}

impl LearnPolicy for WorkerPlugins {
    fn decide_learn(&mut self, event: &LearnEvent) -> wasm_vtep::fdb::LearnDecision {
        wasm_vtep::fdb::Builtin.decide_learn(event)
    }
}

impl AgePolicy for WorkerPlugins {
    fn decide_age(&mut self, event: &AgeEvent) -> wasm_vtep::fdb::AgeDecision {
        wasm_vtep::fdb::Builtin.decide_age(event)
    }
}

/// Frames per second through `workers` threads, each a worker with its own pipeline and
/// `hooks(i)`, for `secs` seconds.
fn frames_per_sec(workers: usize, secs: f64, hooks: impl Fn(usize) -> WorkerPlugins) -> f64 {
    let (v, frames) = setup();
    let frames = Arc::new(frames);
    let start = Arc::new(Barrier::new(workers));
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let (mut v, frames, start) = (v.worker(), Arc::clone(&frames), Arc::clone(&start));
            let mut hooks = hooks(i);
            std::thread::spawn(move || {
                let batch = plugins::port_batch(&frames);
                let mut out = Outbox::new();
                start.wait();
                let began = Instant::now();
                let mut n = 0u64;
                while began.elapsed().as_secs_f64() < secs {
                    out.clear();
                    v.handle_port_batch(
                        Instant::now(),
                        PortId(0),
                        batch.as_slice(),
                        &mut out,
                        &mut hooks,
                    );
                    n += u64::from(BATCH);
                }
                n as f64 / began.elapsed().as_secs_f64()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap_or(0.0)).sum()
}

/// The uncached filter through 1, 2 and 3 workers: each its own copy, then one shared copy.
fn scaling(runtime: &Runtime) {
    let original = plugin(
        runtime,
        "scaling",
        "vni-filter",
        r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":0}"#,
    );
    let one = frames_per_sec(1, 3.0, |_| {
        WorkerPlugins::Own(original.copies(|_| true).expect("copies"))
    });
    for workers in 1..=3 {
        let own = frames_per_sec(workers, 3.0, |_| {
            WorkerPlugins::Own(original.copies(|_| true).expect("copies"))
        });
        let shared = Arc::new(Mutex::new(original.copies(|_| true).expect("copy")));
        let locked = frames_per_sec(workers, 3.0, |_| WorkerPlugins::Shared(Arc::clone(&shared)));
        println!(
            "filter scaling, vni-filter uncached, {workers} worker(s): own copies {:.0} frames/s \
             ({:.2}x of 1), one shared copy {:.0} frames/s",
            own,
            own / one,
            locked
        );
    }
}

/// One learn decision (learn-guard) and one age decision (adaptive-aging) through the chain.
fn decisions(c: &mut Criterion, runtime: &Runtime) {
    let vni = Vni::new(5001).expect("a VNI");
    let mut guard = plugin(
        runtime,
        "guard",
        "learn-guard",
        r#"{"max_macs":{"default":1000000}}"#,
    );
    let mut aging = plugin(
        runtime,
        "aging",
        "adaptive-aging",
        r#"{"steady_keep_secs":60}"#,
    );
    let fdb_vni = {
        let mut fdb = wasm_vtep::fdb::Fdb::new();
        fdb.add_vni(
            vni,
            wasm_vtep::fdb::VniTableSettings {
                aging_ms: 300_000,
                max_entries: 1 << 20,
            },
        )
        .expect("one VNI")
    };
    let mut g = c.benchmark_group("decision");
    let mut n = 0u64;
    g.bench_function("learn_guard_learn", |b| {
        b.iter(|| {
            n += 1;
            let event = LearnEvent {
                vni,
                idx: fdb_vni,
                mac: MacAddr::from_u64(0x0200_0000_0000 | (n & 0xffff)),
                new: Location::Port(PortId(0)),
                current: None,
                current_sticky: false,
                vni_entries: 0,
                at: 0,
            };
            black_box(guard.decide_learn(&event))
        });
    });
    g.bench_function("adaptive_aging_age", |b| {
        b.iter(|| {
            let event = AgeEvent {
                vni,
                mac: MacAddr::from_u64(0x0200_0000_0001),
                idle_ms: 300_000,
                hits: 100,
                location: Location::Port(PortId(0)),
            };
            black_box(aging.decide_age(&event))
        });
    });
    g.finish();
}

/// Heap allocations per warm batch of 32 through an uncached filter.
fn allocations(runtime: &Runtime) {
    for (id, crate_name, config) in [
        ("no_plugin", "", ""),
        ("misbehave_pass_uncached", "misbehave", r#"{"mode":"pass"}"#),
        (
            "misbehave_pass_uncached_reading_bytes",
            "misbehave",
            r#"{"mode":"pass","read_bytes":true}"#,
        ),
        (
            "vni_filter_acl_uncached",
            "vni-filter",
            r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":0}"#,
        ),
    ] {
        let mut chain = if crate_name.is_empty() {
            PluginChain::new()
        } else {
            plugin(runtime, id, crate_name, config)
        };
        let (mut v, frames) = setup();
        let batch = plugins::port_batch(&frames);
        let mut out = Outbox::new();
        let mut once = |chain: &mut PluginChain| {
            out.clear();
            v.handle_port_batch(Instant::now(), PortId(0), batch.as_slice(), &mut out, chain);
        };
        for _ in 0..100 {
            once(&mut chain); // warm: vectors at their size
        }
        const BATCHES: u64 = 1000;
        let n = counting::allocations(|| {
            for _ in 0..BATCHES {
                once(&mut chain);
            }
        });
        println!(
            "allocations per warm batch of 32, {id}: {:.2}",
            n as f64 / BATCHES as f64
        );
    }
}

/// Filter calls of one frame (as a ping or an ARP exchange makes them) and of 32, back to back
/// and 10 ms apart (the plugin's code and data, its store and the host's call path go cold in
/// the CPU's caches between calls): the mean time per call `vtep plugin show` reports for each.
fn call_sizes(runtime: &Runtime) {
    const CALLS: u32 = 300;
    for (frames, pause) in [
        (1, Duration::ZERO),
        (1, Duration::from_millis(10)),
        (32, Duration::ZERO),
        (32, Duration::from_millis(10)),
    ] {
        let mut chain = plugin(
            runtime,
            "call_sizes",
            "vni-filter",
            r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":0}"#,
        );
        let (mut v, all) = setup();
        let batch = plugins::port_batch(&all[..frames]);
        let mut out = Outbox::new();
        for _ in 0..CALLS {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            out.clear();
            v.handle_port_batch(
                Instant::now(),
                PortId(0),
                batch.as_slice(),
                &mut out,
                &mut chain,
            );
        }
        let calls = &chain.reports()[0].calls;
        let per_call = if frames == 1 {
            calls.avg_one_frame_call_ns
        } else {
            calls.avg_batch_call_ns
        };
        println!(
            "filter calls of {frames} frame(s), {}: {:.2} us per call (plugin show)",
            if pause.is_zero() {
                "back to back".to_owned()
            } else {
                format!("{} ms apart", pause.as_millis())
            },
            per_call as f64 / 1e3,
        );
    }
}

/// The watchdog thread's CPU time so far, in seconds, from /proc.
fn watchdog_cpu() -> Option<f64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let task = tasks.flatten().find(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vtep-plugin-wat")
    })?;
    let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// Runs `f` and prints the watchdog's share of one core meanwhile.
fn with_watchdog_cpu(what: &str, f: impl FnOnce()) {
    let (before, started) = (watchdog_cpu(), Instant::now());
    f();
    if let (Some(before), Some(after)) = (before, watchdog_cpu()) {
        println!(
            "watchdog thread, {what}: {:.2}% of one core over {:.1} s",
            100.0 * (after - before) / started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let runtime = Runtime::new().expect("the plugin runtime starts");
    let mut c = Criterion::default().configure_from_args();
    with_watchdog_cpu("plugins called without pause", || filter(&mut c, &runtime));
    failing(&mut c, &runtime);
    decisions(&mut c, &runtime);
    c.final_summary();
    allocations(&runtime);
    call_sizes(&runtime);
    scaling(&runtime);
    with_watchdog_cpu("idle", || std::thread::sleep(Duration::from_secs(3)));
}
