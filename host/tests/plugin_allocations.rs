//! The plugin path allocates nothing once warm: a batch through an uncached filter (with and
//! without reading frame bytes), a cached filter whose full cache evicts on every batch, and a
//! learn and an age decision make no heap allocation on the calling thread.
//!
//! Counted by `wasm_vtep_testkit::counting`, on the calling thread only.

mod plugins;

use std::time::{Duration, Instant};

use wasm_vtep::config::{PluginSpec, Sandbox};
use wasm_vtep::control::PluginReport;
use wasm_vtep::fdb::{AgeEvent, LearnEvent, Location, PortId};
use wasm_vtep::plugin::{Plugin, PluginChain, Runtime};
use wasm_vtep::vtep::{Outbox, Vtep};
use wasm_vtep::wire::{MacAddr, Vni};
use wasm_vtep_testkit::counting::{Counting, allocations};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_testkit::vm::udp_broadcasts;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn plugin(runtime: &Runtime, crate_name: &str, config: &str, cache_entries: usize) -> Plugin {
    let mut spec = PluginSpec::new(crate_name, wasm(crate_name));
    spec.config = config.to_owned();
    spec.cache_entries = cache_entries;
    // Time is not the subject: a budget no debug build on a busy machine overruns, since a
    // failed call's replacement instance would allocate (and the tests check none failed).
    spec.sandbox = Sandbox::new()
        .with_time_budget(Duration::from_secs(5))
        .with_max_failures(u32::MAX);
    Plugin::load(runtime, spec).unwrap_or_else(|e| panic!("{crate_name}: {e}"))
}

/// Runs `batches` (each a port batch of frames from port 0) through a pipeline with `plugin`,
/// `step` apart on the pipeline's clock: the first `warm` of them untouched, then counts what
/// the rest allocate. Returns that count, and the plugin's report at the end.
fn batch_allocations(
    plugin: Plugin,
    batches: &[Vec<Vec<u8>>],
    warm: usize,
    step: Duration,
) -> (u64, PluginReport) {
    let name = plugin.name().to_owned();
    let mut chain = PluginChain::new();
    chain.push(plugin).expect("one plugin");
    let mut v: Vtep = plugins::vtep();
    let mut out = Outbox::new();
    let views: Vec<_> = batches.iter().map(|b| plugins::port_batch(b)).collect();
    let mut now = Instant::now();
    let mut run = |batch: &[_]| {
        out.clear();
        now += step;
        v.handle_port_batch(now, PortId(0), batch, &mut out, &mut chain);
    };
    for batch in &views[..warm] {
        run(batch);
    }
    let n = allocations(|| {
        for batch in &views[warm..] {
            run(batch);
        }
    });
    let report = chain.get(&name).expect("the plugin").report();
    assert_no_failure(&report);
    (n, report)
}

/// Every call succeeded: an allocation count is only meaningful for calls that did.
fn assert_no_failure(report: &PluginReport) {
    let failures = [
        "error_verdicts",
        "traps",
        "timeouts",
        "out_of_memory",
        "invalid",
    ]
    .map(|c| (c, report.calls.counters.get(c).copied().unwrap_or(0)));
    assert!(failures.iter().all(|(_, n)| *n == 0), "{failures:?}");
}

/// 32 frames from the same 32 MACs and flows, `n` times.
fn same_flows(n: usize) -> Vec<Vec<Vec<u8>>> {
    vec![udp_broadcasts(1, 32, 53); n]
}

#[test]
fn an_uncached_filter_allocates_nothing_per_batch() {
    let runtime = Runtime::new().expect("the runtime starts");
    for (crate_name, config) in [
        ("misbehave", r#"{"mode":"pass"}"#),
        ("misbehave", r#"{"mode":"pass","read_bytes":true}"#),
        (
            "vni-filter",
            r#"{"deny":[{"ip_proto":"icmp"},{"dst_port":22}],"cache_secs":0}"#,
        ),
    ] {
        let p = plugin(&runtime, crate_name, config, 1024);
        let (n, report) = batch_allocations(p, &same_flows(200), 100, Duration::ZERO);
        assert_eq!(report.calls.counters.get("filter_calls"), Some(&200));
        assert_eq!(
            n, 0,
            "{crate_name} {config}: {n} allocations in 100 batches"
        );
    }
}

#[test]
fn a_full_verdict_cache_evicts_and_refuses_without_allocating() {
    let runtime = Runtime::new().expect("the runtime starts");
    // 16 entries, and every batch brings 32 flows never seen before (from the same MACs, so
    // that the forwarding table does not grow): the cache is full after the first half of a
    // batch and refuses the rest.
    let batches: Vec<_> = (0..200u16)
        .map(|i| udp_broadcasts(1, 32, 1000 + i))
        .collect();
    let config = r#"{"mode":"pass","cache_secs":1}"#;
    // Batches 2 s apart: every entry has expired by the next batch, which sweeps them all out
    // before it caches its own.
    let p = plugin(&runtime, "misbehave", config, 16);
    let (n, report) = batch_allocations(p, &batches, 100, Duration::from_secs(2));
    assert_eq!(n, 0, "expiring: {n} allocations in 100 batches");
    // Each batch: 16 cached after the sweep, 16 refused (a full cache sweeps once a second).
    assert_eq!(report.calls.cache_full, 200 * 16);
    assert_eq!(report.cached_flows, 16);
    // Batches 1 ms apart: nothing expires, and a full cache refuses.
    let p = plugin(&runtime, "misbehave", config, 16);
    let (n, report) = batch_allocations(p, &batches, 100, Duration::from_millis(1));
    assert_eq!(n, 0, "refusing: {n} allocations in 100 batches");
    assert_eq!(report.calls.cache_full, 16 + 199 * 32);
}

#[test]
fn learn_and_age_decisions_allocate_nothing() {
    let runtime = Runtime::new().expect("the runtime starts");
    let vni = Vni::new(5001).expect("a VNI");
    let mut guard = plugin(
        &runtime,
        "learn-guard",
        r#"{"max_macs":{"default":1000000}}"#,
        16,
    );
    let mut aging = plugin(&runtime, "adaptive-aging", r#"{"steady_keep_secs":60}"#, 16);
    let idx = {
        let mut fdb = wasm_vtep::fdb::Fdb::new();
        let settings = wasm_vtep::fdb::VniTableSettings {
            aging_ms: 300_000,
            max_entries: 1 << 20,
        };
        fdb.add_vni(vni, settings).expect("one VNI")
    };
    let learn = |n: u64| LearnEvent {
        vni,
        idx,
        mac: MacAddr::from_u64(0x0200_0000_0000 | n),
        new: Location::Port(PortId(0)),
        current: None,
        current_sticky: false,
        vni_entries: 0,
        at: 0,
    };
    let age = AgeEvent {
        vni,
        mac: MacAddr::from_u64(0x0200_0000_0001),
        idle_ms: 300_000,
        hits: 100,
        location: Location::Port(PortId(0)),
    };
    // Warm: the plugins' own tables grow to their size for these MACs.
    for n in 0..100 {
        assert!(guard.learn(&learn(n)).is_some());
        assert!(aging.age(&age).is_some());
    }
    let n = allocations(|| {
        for n in 0..100 {
            std::hint::black_box(guard.learn(&learn(n)));
            std::hint::black_box(aging.age(&age));
        }
    });
    assert_no_failure(&guard.report());
    assert_no_failure(&aging.report());
    assert_eq!(n, 0, "{n} allocations in 100 learn and 100 age decisions");
}
