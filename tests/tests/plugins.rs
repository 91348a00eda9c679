//! The daemon with wasm plugins on a real network: host 1 runs `vtep` with plugins, host 2 the
//! kernel's vxlan; VM1 pings VM2 across the underlay.
//!
//! - A filter plugin (vni-filter denying ICMP, `on_error = "drop"`) stops the pings and counts
//!   its drops per rule; `vtep plugin list/show` and `vtep stats` show it.
//! - `vtep plugin reload` under a ping flood swaps the plugin five times without losing a
//!   frame; a reload that fails (a module that refuses the configuration, a file that is not
//!   wasm) leaves the running plugin in place and says why; counters go on across a reload
//!   unless reset.
//! - A reload reads the plugin's section of the configuration file again (or takes
//!   `--config-json`); a section the plugin refuses, or a broken file, leaves the running one.

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{KernelPeer, VtepDaemon, ping};

fn config(plugins: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n{plugins}"
    )
}

fn show(daemon: &VtepDaemon, name: &str) -> Result<serde_json::Value> {
    let out = daemon.cli(&["plugin", "show", name, "--json"])?;
    serde_json::from_str(&out).context("plugin show --json")
}

fn counter(report: &serde_json::Value, name: &str) -> u64 {
    report["calls"]["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn a_filter_plugin_drops_and_counts_on_a_real_network() -> Result<()> {
    // Host 1 (198.18.0.1, our vtep) and host 2 (the kernel's vxlan), VM1 and VM2 on VNI 5001.
    let lab = KernelPeer::new()?;
    let plugin = format!(
        // A budget that starvation on two shared cores cannot overrun (the test is about rules,
        // not budgets): a timed-out call would drop the ARP too, by `on_error`.
        "[[plugin]]\nname = \"no-icmp\"\npath = \"{}\"\non_error = \"drop\"\nbudget_us = 50000\n\
         config = {{ deny = [{{ ip_proto = \"icmp\" }}] }}\n",
        wasm("vni-filter").display()
    );
    let daemon = VtepDaemon::start(&lab.host1, &config(&plugin))?;
    let stats = ping(&lab.vm1, lab.vm2.ipv4(), 3)?;
    ensure!(stats.received == 0, "ICMP must be filtered: {stats:?}");
    let report = show(&daemon, "no-icmp")?;
    ensure!(report["state"] == "attached" && report["hooks"][0] == "filter");
    // Rule 1 dropped the echo requests (from the port) and any replies (from the underlay).
    let dropped = report["calls"]["drops"]["1"].as_u64().unwrap_or(0);
    ensure!(dropped >= 3, "drops by rule: {}", report["calls"]);
    // ARP passed: the kernel's VTEP learned VM1, and ours VM2.
    ensure!(
        daemon.entry(5001, &lab.vm2.mac().to_string())?.is_some(),
        "VM2 learned through the ARP the filter passed"
    );
    let stats = daemon.stats()?;
    ensure!(stats["plugins"]["no-icmp"]["dropped"].as_u64() == Some(dropped));
    ensure!(daemon.drop_count("filtered")? >= 3);
    let listed = daemon.cli(&["plugin", "list"])?;
    ensure!(
        listed.starts_with("no-icmp attached hooks filter vnis all"),
        "{listed}"
    );
    let shown = daemon.cli(&["plugin", "show", "no-icmp"])?;
    ensure!(shown.contains("drops      by reason 1: "), "{shown}");
    daemon.stop()
}

/// The vni-filter section of the configuration, denying `deny` (a TOML array).
fn no_icmp_section(deny: &str) -> String {
    format!(
        "[[plugin]]\nname = \"no-icmp\"\npath = \"{}\"\non_error = \"drop\"\n\
         budget_us = 50000\nconfig = {{ deny = {deny} }}\n",
        wasm("vni-filter").display()
    )
}

fn drops_by_rule_1(daemon: &VtepDaemon) -> Result<u64> {
    Ok(show(daemon, "no-icmp")?["calls"]["drops"]["1"]
        .as_u64()
        .unwrap_or(0))
}

#[test]
fn a_reload_reads_the_plugins_section_again_and_keeps_the_running_one_on_a_bad_one() -> Result<()> {
    // Host 1 (198.18.0.1, our vtep) and host 2 (the kernel's vxlan), VM1 and VM2 on VNI 5001.
    let lab = KernelPeer::new()?;
    let daemon = VtepDaemon::start(
        &lab.host1,
        &config(&no_icmp_section("[{ ip_proto = \"icmp\" }]")),
    )?;
    let file = daemon.config_path().to_path_buf();
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 2)?.received == 0,
        "ICMP denied"
    );
    let dropped = drops_by_rule_1(&daemon)?;
    ensure!(dropped >= 2, "{dropped}");

    // The file now denies nothing: a reload reads it, and the pings pass; the drops counted
    // so far stay.
    std::fs::write(&file, config(&no_icmp_section("[]")))?;
    daemon.cli(&["plugin", "reload", "no-icmp"])?;
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 3)?.all_received(),
        "nothing denied now"
    );
    ensure!(drops_by_rule_1(&daemon)? == dropped, "drops carried over");

    // A configuration the plugin refuses: the reload fails naming the field, the running
    // plugin stays.
    std::fs::write(&file, config(&no_icmp_section("\"everything\"")))?;
    let bad = daemon.cli_output(&["plugin", "reload", "no-icmp"])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(!bad.status.success(), "a refused reload exits non-zero");
    ensure!(
        stderr.contains("not reloaded (the running one stays)") && stderr.contains("deny"),
        "{stderr}"
    );
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 2)?.all_received(),
        "the running one stayed"
    );

    // A file that is no configuration at all: refused the same way, naming the file.
    std::fs::write(&file, "[underlay\n")?;
    let bad = daemon.cli_output(&["plugin", "reload", "no-icmp"])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(!bad.status.success(), "a broken file is refused");
    ensure!(stderr.contains(&file.display().to_string()), "{stderr}");
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 2)?.all_received(),
        "the running one stayed"
    );

    // --config-json replaces the section's `config` (the rest of the section still from the
    // file, which must be readable again).
    std::fs::write(&file, config(&no_icmp_section("[]")))?;
    // --config-json instead of the file's table.
    daemon.cli(&[
        "plugin",
        "reload",
        "no-icmp",
        "--config-json",
        r#"{"deny": [{"ip_proto": "icmp"}]}"#,
    ])?;
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 2)?.received == 0,
        "ICMP denied again"
    );
    ensure!(
        drops_by_rule_1(&daemon)? >= dropped + 2,
        "counting on from before"
    );
    daemon.stop()
}

#[test]
fn reloads_under_traffic_lose_no_frame_and_a_failed_one_changes_nothing() -> Result<()> {
    // Host 1 (198.18.0.1, our vtep) and host 2 (the kernel's vxlan), VM1 and VM2 on VNI 5001.
    let lab = KernelPeer::new()?;
    let misbehave = wasm("misbehave");
    let plugin = format!(
        "[[plugin]]\nname = \"gate\"\npath = \"{}\"\nconfig = {{ mode = \"pass\" }}\n",
        misbehave.display()
    );
    let daemon = VtepDaemon::start(&lab.host1, &config(&plugin))?;
    ensure!(ping(&lab.vm1, lab.vm2.ipv4(), 2)?.all_received(), "warm-up");
    // 300 pings 10 ms apart (3 s) while the plugin is reloaded five times.
    let flood = lab
        .vm1
        .netns()
        .command("ping")
        .args(["-n", "-q", "-c", "300", "-i", "0.01", "-W", "1"])
        .arg(lab.vm2.ipv4().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the ping flood")?;
    for _ in 0..5 {
        let out = daemon.cli(&["plugin", "reload", "gate"])?;
        ensure!(out.starts_with("plugin gate reloaded from "), "{out}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = flood.wait_with_output().context("the ping flood")?;
    let summary = String::from_utf8_lossy(&out.stdout);
    ensure!(
        summary.contains("300 packets transmitted, 300 received"),
        "frames lost during the reloads: {summary}"
    );
    // The counters go on across a reload; asked to, a reload starts them from zero (a stray
    // ARP or ND frame at most after it).
    let before = counter(&show(&daemon, "gate")?, "frames");
    daemon.cli(&["plugin", "reload", "gate"])?;
    let kept = counter(&show(&daemon, "gate")?, "frames");
    ensure!(
        before > 50 && kept >= before,
        "{before} frames before the reload, {kept} after"
    );
    daemon.cli(&["plugin", "reload", "gate", "--reset-counters"])?;
    let fresh = show(&daemon, "gate")?;
    ensure!(
        counter(&fresh, "frames") <= 5,
        "after --reset-counters: {fresh:#}"
    );
    // A module that refuses the configuration, then a file that is not wasm: refused, and
    // the running plugin stays.
    let vni_filter = wasm("vni-filter");
    let bad = daemon.cli_output(&[
        "plugin",
        "reload",
        "gate",
        "--path",
        &vni_filter.display().to_string(),
    ])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(!bad.status.success(), "a failed reload exits non-zero");
    ensure!(
        stderr.contains("not reloaded (the running one stays): plugin init failed"),
        "{stderr}"
    );
    let config = daemon.config_path().display().to_string();
    let bad = daemon.cli_output(&["plugin", "reload", "gate", "--path", &config])?;
    ensure!(
        String::from_utf8_lossy(&bad.stderr).contains("not a WebAssembly module"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let report = show(&daemon, "gate")?;
    ensure!(report["path"] == misbehave.display().to_string());
    ensure!(report["state"] == "attached");
    ensure!(
        ping(&lab.vm1, lab.vm2.ipv4(), 2)?.all_received(),
        "still forwarding"
    );
    let report = show(&daemon, "gate")?;
    ensure!(
        counter(&report, "filter_calls") > 0,
        "the new plugin is called"
    );
    ensure!(
        daemon
            .cli_output(&["plugin", "show", "nope"])?
            .status
            .code()
            == Some(1)
    );
    daemon.stop()
}
