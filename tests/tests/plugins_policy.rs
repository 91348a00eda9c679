//! Plugins deciding learning and aging, and plugins that misbehave, in the real daemon on a
//! real overlay: host 1 runs `vtep` with the plugin, hosts 2 and 3 the kernel's vxlan with
//! head-end replication, VMs ping VM1 on host 1.
//!
//! - `vni-filter` attached to VNI 5001 stops ICMP there while ARP passes, and VNI 5002 is
//!   untouched.
//! - `learn-guard` with a limit of 2 learns no third MAC, and learns nothing from a VTEP that is
//!   not on its list; frames still get through by flooding.
//! - `adaptive-aging` keeps a pinned MAC past the VNI's aging time while an unpinned one goes.
//! - A plugin that loops, one that traps and one that exhausts its memory are contained: the
//!   daemon lives, the frames get the `on_error` verdict, the counters say what happened, and a
//!   plugin that keeps failing is detached.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{Host, KernelVtep, Switch, Vm, VtepDaemon, ping, wait_until};

/// Host 1 (ours) with VM1; host 2 (kernel) with VMs 2, 3 and 4; host 3 (kernel) with VM5.
struct Lab {
    vm1: Vm,
    vms2: Vec<Vm>,
    vm5: Vm,
    host1: Host,
    _kernels: Vec<KernelVtep>,
    _hosts: Vec<Host>,
    _switch: Switch,
}

fn lab() -> Result<Lab> {
    let switch = Switch::new(1600)?;
    let host1 = Host::numbered(&switch, 1)?;
    let host2 = Host::numbered(&switch, 2)?;
    let host3 = Host::numbered(&switch, 3)?;
    let vm1 = Vm::numbered(&host1, 1)?;
    let vms2 = (2..=4)
        .map(|n| Vm::numbered(&host2, n))
        .collect::<Result<Vec<_>>>()?;
    let vm5 = Vm::numbered(&host3, 5)?;
    let addr = |h: &Host| IpAddr::from(h.ipv4());
    let mut k2 = KernelVtep::builder(5001)
        .remote(addr(&host1))
        .remote(addr(&host3));
    for vm in &vms2 {
        k2 = k2.port(vm);
    }
    let k2 = k2.create(&host2)?;
    let k3 = KernelVtep::builder(5001)
        .remote(addr(&host1))
        .remote(addr(&host2))
        .port(&vm5)
        .create(&host3)?;
    Ok(Lab {
        vm1,
        vms2,
        vm5,
        host1,
        _kernels: vec![k2, k3],
        _hosts: vec![host2, host3],
        _switch: switch,
    })
}

/// Our VTEP on host 1, VNI 5001 with head-end replication to hosts 2 and 3, then `extra`.
fn config(aging_secs: u32, extra: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\", \"198.18.0.3\"]\n\
         aging_secs = {aging_secs}\n{extra}"
    )
}

/// A `[[plugin]]` table. Policy tests give calls a generous budget (50 ms): a call that ran out
/// of time would fall back to the built-in policy, and a loaded machine running the debug build
/// must not make that happen by accident; the budget itself is tested with the looping plugin.
fn plugin(name: &str, crate_name: &str, body: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nbudget_us = 50000\n{body}\n",
        wasm(crate_name).display()
    )
}

fn show(daemon: &VtepDaemon, name: &str) -> Result<serde_json::Value> {
    let out = daemon.cli(&["plugin", "show", name, "--json"])?;
    serde_json::from_str(&out).context("plugin show --json")
}

fn counter(report: &serde_json::Value, name: &str) -> u64 {
    report["calls"]["counters"][name].as_u64().unwrap_or(0)
}

fn has(daemon: &VtepDaemon, vm: &Vm) -> Result<bool> {
    Ok(daemon.entry(5001, &vm.mac().to_string())?.is_some())
}

#[test]
fn learn_guard_limits_macs_and_trusts_only_listed_vteps() -> Result<()> {
    let lab = lab()?;
    let guard = plugin(
        "guard",
        "learn-guard",
        "config = { max_macs = 2, allowed_remotes = [\"198.18.0.2\"] }",
    );
    let daemon = VtepDaemon::start(&lab.host1, &config(300, &guard))?;
    // VM2 (host 2) pings VM1: VM2 and VM1 (local) fill the limit of 2; VM3 and VM4 come after.
    for vm in &lab.vms2 {
        ensure!(
            ping(vm, lab.vm1.ipv4(), 2)?.all_received(),
            "{} pings VM1",
            vm.mac()
        );
    }
    ensure!(has(&daemon, &lab.vm1)? && has(&daemon, &lab.vms2[0])?);
    ensure!(
        !has(&daemon, &lab.vms2[1])? && !has(&daemon, &lab.vms2[2])?,
        "no third MAC is learned past the limit of 2"
    );
    // VM5 sits behind host 3, which is not on the list: forwarded, never learned.
    ensure!(
        ping(&lab.vm5, lab.vm1.ipv4(), 2)?.all_received(),
        "VM5 still reaches VM1"
    );
    ensure!(
        !has(&daemon, &lab.vm5)?,
        "nothing learned from an unlisted VTEP"
    );
    let report = show(&daemon, "guard")?;
    ensure!(
        report["hooks"] == serde_json::json!(["learn"]),
        "{}",
        report["hooks"]
    );
    ensure!(daemon.vni_counter(5001, "learn_rejected")? >= 2);
    ensure!(
        counter(&report, "learn_calls") >= 4,
        "{}",
        report["calls"]["counters"]
    );
    // The plugin's own counters, one per rejection kind, add up to at least the two refusals.
    let own = report["plugin_counters"]
        .as_object()
        .context("plugin_counters")?;
    let rejections: u64 = own
        .iter()
        .filter(|(k, _)| k.contains("reject"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    ensure!(
        rejections >= 2,
        "the plugin counted its rejections: {own:?}"
    );
    daemon.stop()
}

#[test]
fn a_filter_on_one_vni_leaves_the_other_vni_alone() -> Result<()> {
    let switch = Switch::new(1600)?;
    let host1 = Host::numbered(&switch, 1)?;
    let host2 = Host::numbered(&switch, 2)?;
    // VNI 5001: VM1 (ours) and VM2 (kernel); VNI 5002: VM6 (ours) and VM7 (kernel).
    let (vm1, vm6) = (Vm::numbered(&host1, 1)?, Vm::numbered(&host1, 6)?);
    let (vm2, vm7) = (Vm::numbered(&host2, 2)?, Vm::numbered(&host2, 7)?);
    let h1 = IpAddr::from(host1.ipv4());
    let _k1 = KernelVtep::builder(5001)
        .remote(h1)
        .port(&vm2)
        .create(&host2)?;
    let _k2 = KernelVtep::builder(5002)
        .remote(h1)
        .port(&vm7)
        .create(&host2)?;
    let filter = plugin(
        "no-icmp",
        "vni-filter",
        "vnis = [5001]\nconfig = { deny = [{ ip_proto = \"icmp\" }] }",
    );
    let text = format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[vni]]\nid = 5002\nports = [\"vm6\"]\nremotes = [\"198.18.0.2\"]\n{filter}"
    );
    let daemon = VtepDaemon::start(&host1, &text)?;
    ensure!(
        ping(&vm1, vm2.ipv4(), 2)?.received == 0,
        "ICMP on VNI 5001 is filtered"
    );
    // ARP on VNI 5001 passed the filter: VM2 was learned from its reply.
    ensure!(
        daemon.entry(5001, &vm2.mac().to_string())?.is_some(),
        "ARP passes on 5001"
    );
    ensure!(
        ping(&vm6, vm7.ipv4(), 2)?.all_received(),
        "VNI 5002 is not filtered"
    );
    let report = show(&daemon, "no-icmp")?;
    ensure!(
        report["vnis"] == serde_json::json!([5001]),
        "{}",
        report["vnis"]
    );
    daemon.stop()
}

#[test]
fn adaptive_aging_keeps_a_pinned_mac_past_the_aging_time() -> Result<()> {
    let lab = lab()?;
    let (vm2, vm3) = (&lab.vms2[0], &lab.vms2[1]);
    let aging = plugin(
        "aging",
        "adaptive-aging",
        &format!(
            "config = {{ pinned = [\"{}\"], steady_hits_per_idle_sec = 1000 }}",
            vm2.mac()
        ),
    );
    let daemon = VtepDaemon::start(&lab.host1, &config(2, &aging))?;
    ensure!(ping(vm2, lab.vm1.ipv4(), 1)?.all_received());
    ensure!(ping(vm3, lab.vm1.ipv4(), 1)?.all_received());
    ensure!(has(&daemon, vm2)? && has(&daemon, vm3)?);
    // VM3 is idle past the 2 s aging time and not pinned: it goes.
    wait_until("VM3's entry ages out", Duration::from_secs(8), || {
        Ok(!has(&daemon, vm3)?)
    })?;
    // Well past the aging time, the pinned VM2 is still there.
    std::thread::sleep(Duration::from_secs(2));
    let entry = daemon
        .entry(5001, &vm2.mac().to_string())?
        .context("VM2 pinned")?;
    ensure!(
        entry.age_secs >= 3,
        "idle for longer than the aging time: {entry:?}"
    );
    let report = show(&daemon, "aging")?;
    ensure!(
        counter(&report, "age_calls") >= 2,
        "{}",
        report["calls"]["counters"]
    );
    let pinned = report["plugin_counters"]["kept_pinned"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        pinned >= 1,
        "the plugin counted its pinned keeps: {}",
        report["plugin_counters"]
    );
    daemon.stop()
}

/// One misbehaving plugin on the filter hook: the daemon survives, frames get `on_error`, the
/// failure is counted under `failure`, and after `max_failures` the plugin is detached.
fn contained(mode: &str, failure: &str, on_error: &str) -> Result<()> {
    // The default budget (500 µs) for the loop and the trap, so that the test shows a looping
    // plugin stopped within it; growing 4 MiB takes longer than that, so the memory case gets
    // the time to hit its cap.
    let budget = if mode == "grow" { 200_000 } else { 500 };
    let lab = lab()?;
    let vm2 = &lab.vms2[0];
    let table = format!(
        "[[plugin]]\nname = \"bad\"\npath = \"{}\"\non_error = \"{on_error}\"\n\
         max_failures = 3\nmemory_mib = 4\nbudget_us = {budget}\nconfig = {{ mode = \"{mode}\" }}\n",
        wasm("misbehave").display()
    );
    let daemon = VtepDaemon::start(&lab.host1, &config(300, &table))?;
    let pings = ping(&lab.vm1, vm2.ipv4(), 2)?;
    match on_error {
        "pass" => ensure!(
            pings.all_received(),
            "{mode}: frames pass on error: {pings:?}"
        ),
        _ => ensure!(
            pings.received == 0,
            "{mode}: frames dropped on error: {pings:?}"
        ),
    }
    let report = show(&daemon, "bad")?;
    ensure!(
        counter(&report, failure) >= 1,
        "{mode}: {}",
        report["calls"]["counters"]
    );
    // Keep failing: detached after 3 failures in a row, visibly, and traffic flows on.
    let _ = ping(&lab.vm1, vm2.ipv4(), 3)?;
    wait_until("the plugin is detached", Duration::from_secs(5), || {
        Ok(show(&daemon, "bad")?["state"] == "detached")
    })?;
    let listed = daemon.cli(&["plugin", "list"])?;
    ensure!(listed.contains("detached"), "{listed}");
    if on_error == "pass" {
        ensure!(
            ping(&lab.vm1, vm2.ipv4(), 2)?.all_received(),
            "traffic after detaching"
        );
    }
    daemon.stop()
}

#[test]
fn a_looping_plugin_is_stopped_and_detached() -> Result<()> {
    contained("loop", "timeouts", "pass")
}

#[test]
fn a_trapping_plugin_is_contained_and_its_frames_dropped_when_asked() -> Result<()> {
    contained("trap", "traps", "drop")
}

#[test]
fn a_plugin_that_exhausts_its_memory_is_contained() -> Result<()> {
    contained("grow", "out_of_memory", "pass")
}
