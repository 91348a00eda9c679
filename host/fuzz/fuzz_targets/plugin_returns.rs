//! What the host does with the values a plugin returns: filter results (as many as the frames,
//! or fewer, or more), verdicts with arbitrary drop reason codes and `cache-secs`, learn
//! decisions, and age decisions with arbitrary keep times.
//!
//! The route is a real plugin, not the conversion functions called directly. What the host
//! does with those values is private and spread over the calling code: the length check sits
//! in `Instance::filter`, the verdicts go into the verdict cache and the counters inside
//! `Plugin::filter_chunk`, keep times are converted inside `Plugin::age`; calling them without
//! wasm would mean cutting the plugin host apart for the fuzzer. Instead, the fixture plugin
//! `misbehave` has a `script` mode in which its returns are whatever the traffic says
//! (`plugins/misbehave`, `Mode::Script`): the filter's results come from the bytes of the
//! first frame it is given (their number, each verdict and reason code, each `cache-secs`),
//! learn decisions from the learned MAC's last octet, age decisions and keep times from the
//! aged MAC. This target makes that traffic from its input, so that it decides the values
//! the host gets back, through the host's own path: the component-model call, the checks,
//! the cache, the counters, the chain's combination of decisions, and the pipeline that
//! forwards, drops, learns and ages by them. The plugin is compiled and instantiated once
//! (per input would cost a compilation each: a few runs a second); the pipeline is built anew
//! for each input and the clock jumps past any cached verdict between inputs, so an input
//! sees the same host state whatever ran before it, except for one thing: a call that
//! failed leaves the spare instance to be remade on the runtime's thread, and if the next
//! failure comes before it is ready, the calls after it get the `on_error` verdict without
//! calling the plugin, as in the daemon.
//!
//! What this cannot reach: values the SDK cannot express. Its bindings only produce valid
//! enum and variant discriminants and well-formed lists, and a component returning an invalid
//! discriminant is refused by wasmtime's lifting before host code sees a value (the call
//! fails like a trap). Likewise `init`'s hook set is fixed per plugin at compile time
//! (`misbehave` declares all three hooks).
//!
//! The plugin module is `$WASM_VTEP_FUZZ_MISBEHAVE`, else the one `run.sh` builds into
//! `host/fuzz/target/plugins`. With `WASM_VTEP_FUZZ_REPORT` set, the plugin's counters (all
//! inputs so far) are printed after each input: run over a corpus (`plugin_returns -runs=0
//! DIR`), they show what it exercises (failed calls, re-created instances, cache hits, drop
//! codes, learn and age calls).
//!
//! Input: byte 0 picks the first batch's direction (bit 0: underlay, else port), its port
//! (bits 1-2: vm1 and vm2 on VNI 5001, vm3 on 5002, vm4 on 5003, which the plugin is not
//! attached to) and the seconds between the rounds (bits 3-7). Byte 1: frames per batch
//! (1 + (b & 0x7f) % 96, across the host's 64 frames per call) and, bit 7, the sending
//! remote. Bytes 2 to 49: eight MAC addresses. Then one byte per frame: source (bits 0-2) and
//! destination (bits 3-5) among those MACs, and the VNI of a datagram from the underlay (bits
//! 6-7: 5001, 5001, 5002, 5003). The rest (at most 1,400 bytes) is every frame's payload, the
//! plugin's script. Rounds: the batch, then the same frames from the other side (moves), then
//! aging after the gap and the first batch again (cache hits, refreshes), then aging a day
//! later.
//!
//! Checked besides "no panic": every frame the plugin was offered got exactly one verdict
//! (`frames = passed + dropped + error_verdicts` in its counters), the pipeline dropped as
//! filtered exactly the frames the plugin dropped, and an entry is sticky only if the plugin
//! said accept-sticky for its MAC. The counters and drop codes also go through the report
//! `vtep plugin show` prints and the `stats` reply of the control socket.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wasm_vtep::config::{OnError, PluginSpec, Sandbox};
use wasm_vtep::control::{Request, Response, render};
use wasm_vtep::daemon::answer::{self, Counters};
use wasm_vtep::fdb::PortId;
use wasm_vtep::plugin::{Plugin, PluginChain, Runtime};
use wasm_vtep::vtep::{DropReason, Outbox, VniSettings, Vtep, VtepSettings};
use wasm_vtep::wire::{VirtioNetHdr, Vni};

const NAME: &str = "script";
const LOCAL: [u8; 4] = [198, 18, 0, 1];
const REMOTES: [[u8; 4]; 2] = [[198, 18, 0, 2], [198, 18, 0, 3]];
/// The VNI of each port, by `PortId`.
const PORT_VNIS: [u32; 4] = [5001, 5001, 5002, 5003];
const PORT_NAMES: [&str; 4] = ["vm1", "vm2", "vm3", "vm4"];
/// The most frames per batch: more than one filter call's 64.
const MAX_FRAMES: usize = 96;
const MAX_SCRIPT: usize = 1400;
/// The last round is this long after the first.
const ROUNDS_SPAN: Duration = Duration::from_secs(100_000);
/// Between inputs the clock jumps past the longest `cache-secs` and the rounds.
const BETWEEN_INPUTS: Duration = Duration::from_secs(u32::MAX as u64 + 2 * 100_032);

struct State {
    plugins: PluginChain,
    clock: Instant,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn module() -> PathBuf {
    std::env::var_os("WASM_VTEP_FUZZ_MISBEHAVE").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/plugins/wasm32-unknown-unknown/release/misbehave.wasm"
            ))
        },
        PathBuf::from,
    )
}

fn load() -> State {
    let path = module();
    if !path.exists() {
        eprintln!(
            "plugin_returns: no plugin module at {} (host/fuzz/run.sh builds it; or set \
             WASM_VTEP_FUZZ_MISBEHAVE to a misbehave.wasm)",
            path.display()
        );
        std::process::exit(2);
    }
    let runtime = Runtime::new().expect("the plugin runtime starts");
    let mut spec = PluginSpec::new(NAME, path);
    spec.config = r#"{"mode":"script"}"#.to_owned();
    spec.vnis = Some(vec![vni(5001), vni(5002)]);
    spec.on_error = OnError::Pass;
    // Generous budgets (an instrumented host on a busy machine; 65,536 results take a while),
    // never detached (that would end the fuzzing), a small cache (full and swept often).
    spec.sandbox = Sandbox::new()
        .with_time_budget(Duration::from_millis(200))
        .with_init_budget(Duration::from_secs(2))
        .with_max_failures(u32::MAX);
    spec.cache_entries = 16;
    let plugin = Plugin::load(&runtime, spec).expect("the misbehave plugin loads");
    let mut plugins = PluginChain::new();
    plugins.push(plugin).expect("one plugin");
    State {
        plugins,
        clock: Instant::now(),
    }
}

fn vni(id: u32) -> Vni {
    Vni::new(id).expect("a valid VNI")
}

fn vtep(now: Instant) -> Vtep {
    let mut s = VtepSettings::new(IpAddr::from(LOCAL));
    for id in [5001, 5002, 5003] {
        let ports = (0u16..)
            .zip(PORT_VNIS)
            .filter(|&(_, v)| v == id)
            .map(|(p, _)| PortId(p))
            .collect();
        let mut v = VniSettings::new(vni(id), ports);
        v.remotes = REMOTES.iter().map(|&r| IpAddr::from(r)).collect();
        v.aging = Duration::from_secs(2);
        v.max_entries = 8;
        s.vnis.push(v);
    }
    Vtep::new(s, now).expect("valid fuzz settings")
}

/// The input, decoded.
struct Traffic {
    from_underlay: bool,
    port: PortId,
    gap: Duration,
    remote: IpAddr,
    /// Each frame's bytes, and the VNI it has when it comes from the underlay.
    frames: Vec<(Vec<u8>, u32)>,
}

impl Traffic {
    fn decode(data: &[u8]) -> Option<Traffic> {
        let (&flags, rest) = data.split_first()?;
        let (&count, rest) = rest.split_first()?;
        let n = 1 + usize::from(count & 0x7f) % MAX_FRAMES;
        let pool = rest.get(..48)?;
        let macs: Vec<[u8; 6]> = pool
            .chunks_exact(6)
            .map(|m| m.try_into().expect("six bytes"))
            .collect();
        let rest = &rest[48..];
        let descriptors = rest.get(..n)?;
        let script = &rest[n..];
        let script = &script[..script.len().min(MAX_SCRIPT)];
        let frames = descriptors
            .iter()
            .map(|&d| {
                let mut f = Vec::with_capacity(14 + script.len());
                f.extend_from_slice(&macs[usize::from((d >> 3) & 7)]);
                f.extend_from_slice(&macs[usize::from(d & 7)]);
                f.extend_from_slice(&[0x88, 0xb5]);
                f.extend_from_slice(script);
                (f, [5001, 5001, 5002, 5003][usize::from(d >> 6)])
            })
            .collect();
        Some(Traffic {
            from_underlay: flags & 1 == 1,
            port: PortId(u16::from((flags >> 1) & 3)),
            gap: Duration::from_secs(u64::from(flags >> 3)),
            remote: IpAddr::from(REMOTES[usize::from(count >> 7)]),
            frames,
        })
    }

    fn batch(&self, vtep: &mut Vtep, now: Instant, underlay: bool, plugins: &mut PluginChain) {
        let mut out = Outbox::new();
        if underlay {
            let datagrams: Vec<Vec<u8>> = self
                .frames
                .iter()
                .map(|(f, v)| {
                    let mut d = vec![0x08, 0, 0, 0];
                    d.extend_from_slice(&v.to_be_bytes()[1..]);
                    d.push(0);
                    d.extend_from_slice(f);
                    d
                })
                .collect();
            let batch: Vec<(IpAddr, &[u8])> = datagrams
                .iter()
                .map(|d| (self.remote, d.as_slice()))
                .collect();
            vtep.handle_underlay_batch(now, batch.as_slice(), &mut out, plugins);
        } else {
            let batch: Vec<(VirtioNetHdr, &[u8])> = self
                .frames
                .iter()
                .map(|(f, _)| (VirtioNetHdr::NONE, f.as_slice()))
                .collect();
            vtep.handle_port_batch(now, self.port, batch.as_slice(), &mut out, plugins);
        }
    }
}

fn counters(plugins: &PluginChain) -> BTreeMap<String, u64> {
    plugins
        .get(NAME)
        .expect("the plugin is in the chain")
        .report()
        .calls
        .counters
}

fn report_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("WASM_VTEP_FUZZ_REPORT").is_some())
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: &str) -> u64 {
    let get = |m: &BTreeMap<String, u64>| m.get(name).copied().unwrap_or(0);
    get(after) - get(before)
}

fuzz_target!(|data: &[u8]| {
    let Some(traffic) = Traffic::decode(data) else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(load);
    let t1 = state.clock;
    state.clock = match state.clock.checked_add(BETWEEN_INPUTS) {
        Some(t) => t,
        // After some two billion inputs: a fresh plugin, so no cached verdict outlives it.
        None => {
            *state = load();
            state.clock
        }
    };
    let plugins = &mut state.plugins;
    let before = counters(plugins);

    let mut v = vtep(t1);
    traffic.batch(&mut v, t1, traffic.from_underlay, plugins);
    traffic.batch(&mut v, t1, !traffic.from_underlay, plugins);
    let t2 = t1 + traffic.gap;
    v.handle_timeout_with(t2, plugins);
    traffic.batch(&mut v, t2, traffic.from_underlay, plugins);
    let t3 = t1 + ROUNDS_SPAN;
    v.handle_timeout_with(t3, plugins);

    let after = counters(plugins);
    if report_wanted() {
        eprintln!("plugin_returns: {after:?}");
    }
    let frames = delta(&before, &after, "frames");
    let dropped = delta(&before, &after, "dropped");
    let decided =
        delta(&before, &after, "passed") + dropped + delta(&before, &after, "error_verdicts");
    assert_eq!(frames, decided, "frames offered vs. verdicts: {after:?}");
    assert_eq!(
        v.drops().get(DropReason::Filtered),
        dropped,
        "the pipeline's filtered drops vs. the plugin's drops"
    );
    for (e, _) in v.fdb_entries(t3) {
        assert!(
            !e.is_sticky || e.mac.0[5] % 3 == 2,
            "{} is sticky, but the plugin never said accept-sticky for it",
            e.mac
        );
    }

    // What `vtep plugin show` and `vtep stats` make of the counts and the drop codes.
    let report = plugins.get(NAME).expect("the plugin").report();
    let _ = render::plugin_show(&report);
    serde_json::to_vec(&report).expect("the report serialises");
    let stats = Counters {
        vnis: v.vni_stats().cloned().collect(),
        drops: *v.drops(),
    };
    let ports: Vec<String> = PORT_NAMES.iter().map(|&p| p.to_owned()).collect();
    let reply = answer::handle(Request::Stats, &v, &stats, Some(&*plugins), &ports, &[], t3);
    assert!(matches!(reply, Response::Ok(_)), "stats failed: {reply:?}");
});
