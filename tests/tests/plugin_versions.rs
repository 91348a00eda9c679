//! Plugins of two interface versions side by side in one daemon, on a real network: the
//! example `legacy-port-guard`, built by wit-bindgen from the frozen 0.1.0 WIT (as a plugin of
//! SDK 0.1 was), and `vni-filter` built with the current SDK (0.2.0). The old one is shown
//! the fields it knows (it drops UDP to port 9 by `dst-port`) and the bytes it asks for (it
//! reads ARP opcodes with `frame-bytes`); the new one decides on fields only 0.2.0 has (it
//! drops echo requests marked DSCP 46, by `icmp` and `dscp`). VM2 is behind the kernel's VTEP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{KernelPeer, UdpSink, Vm, VtepDaemon, ping, ping_with, udp_flood};

fn config() -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"legacy\"\npath = {:?}\nvnis = [5001]\nbudget_us = 50000\n\
         config = {{ drop_udp_ports = [9] }}\n\
         [[plugin]]\nname = \"acl\"\npath = {:?}\nvnis = [5001]\nbudget_us = 50000\n\
         config = {{ deny = [{{ icmp_type = 8, dscp = 46 }}] }}\n",
        wasm("legacy-port-guard").display().to_string(),
        wasm("vni-filter").display().to_string(),
    )
}

fn show(daemon: &VtepDaemon, name: &str) -> Result<serde_json::Value> {
    let out = daemon.cli(&["plugin", "show", name, "--json"])?;
    serde_json::from_str(&out).with_context(|| format!("plugin show {name} --json: {out}"))
}

fn drops(report: &serde_json::Value, reason: &str) -> u64 {
    report["calls"]["drops"][reason].as_u64().unwrap_or(0)
}

/// Floods VM2's UDP `port` from VM1 for a moment; the datagrams VM2 read.
fn udp_to(vm1: &Vm, vm2: &Vm, port: u16) -> Result<u64> {
    let tag = u64::from(port) << 32 | 0x7665;
    let sink = UdpSink::start(vm2.netns(), port, tag)?;
    let dst = SocketAddr::new(IpAddr::from(vm2.ipv4()), port);
    udp_flood(vm1.netns(), dst, 128, Duration::from_millis(200), tag, 8)?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(sink.stop()?.received)
}

#[test]
fn a_0_1_0_plugin_and_a_0_2_0_plugin_run_side_by_side() -> Result<()> {
    let bed = KernelPeer::new()?;
    let (host1, vm1, vm2) = (&bed.host1, &bed.vm1, &bed.vm2);
    let daemon = VtepDaemon::start(host1, &config())?;

    let legacy = show(&daemon, "legacy")?;
    let acl = show(&daemon, "acl")?;
    ensure!(
        legacy["interface"] == "0.1.0" && acl["interface"] == "0.2.0",
        "interfaces: legacy {}, acl {}",
        legacy["interface"],
        acl["interface"]
    );

    // Plain pings pass both; the old plugin saw VM2's ARP reply in its bytes.
    let stats = ping(vm1, vm2.ipv4(), 3)?;
    ensure!(stats.all_received(), "plain pings pass: {stats:?}");
    let legacy = show(&daemon, "legacy")?;
    ensure!(
        legacy["plugin_counters"]["arp-replies"].as_u64() >= Some(1),
        "the 0.1.0 plugin read an ARP reply's opcode from its bytes: {}",
        legacy["plugin_counters"]
    );

    // Echo requests with DSCP 46 (TOS 0xb8): the 0.2.0 plugin drops them by its new fields.
    let marked = ping_with(vm1, vm2.ipv4(), 3, &["-Q", "184"])?;
    ensure!(
        marked.received == 0,
        "DSCP 46 echo requests dropped: {marked:?}"
    );
    let acl = show(&daemon, "acl")?;
    ensure!(drops(&acl, "1") >= 3, "acl drops: {}", acl["calls"]);
    let stats = ping(vm1, vm2.ipv4(), 2)?;
    ensure!(stats.all_received(), "unmarked pings still pass: {stats:?}");

    // UDP to port 9 dropped by the 0.1.0 plugin's port rule; to port 10, delivered.
    let to_discard = udp_to(vm1, vm2, 9)?;
    let to_other = udp_to(vm1, vm2, 10)?;
    let legacy = show(&daemon, "legacy")?;
    ensure!(
        to_discard == 0 && to_other > 0,
        "UDP to port 9: {to_discard} delivered (expected none); to port 10: {to_other}"
    );
    let udp_dropped = legacy["plugin_counters"]["udp-dropped"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        drops(&legacy, "1") > 0 && drops(&legacy, "1") == udp_dropped,
        "legacy drops by reason 1: {}, its own counter: {udp_dropped}",
        drops(&legacy, "1")
    );
    daemon.stop()
}
