//! `vtep plugin test`: a plugin run over captures, as a vendor's CI would run it. The captures
//! are real: tcpdump on a host's uplink while VM1 pings VM2 across two kernel VTEPs (VXLAN,
//! pcap), the same file as Wireshark's editcap writes it in pcapng, and tcpdump in VM1 with a
//! snapshot length that cuts the larger frames (plain Ethernet). vni-filter denies echo
//! requests: the decapsulated ones are dropped with its rule's reason, the rest pass;
//! `--expect-drop` makes the exit status say whether the count is what the CI expects. A
//! capture with damaged frames appended (too short, a VXLAN header without its I flag, VXLAN
//! with nothing inside) has them counted, and the good frames decided as before.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{Capture, Host, KernelVtep, Switch, Vm, ping_with, vtep_bin};

/// Echo requests: vni-filter's deny rule 1.
const DENY_ECHO: &str = r#"{"deny":[{"icmp_type":8}],"cache_secs":0}"#;
const PINGS: u32 = 3;

fn vtep_plugin_test(pcap: &Path, extra: &[&str]) -> Result<Output> {
    run_plugin("vni-filter", DENY_ECHO, pcap, extra)
}

fn run_plugin(plugin: &str, config: &str, pcap: &Path, extra: &[&str]) -> Result<Output> {
    let out = Command::new(vtep_bin()?)
        .args(["plugin", "test"])
        .arg(wasm(plugin))
        .arg("--pcap")
        .arg(pcap)
        .args(["--config", config])
        .args(extra)
        .output()
        .context("running vtep plugin test")?;
    Ok(out)
}

fn json_report(pcap: &Path, extra: &[&str]) -> Result<serde_json::Value> {
    let mut args = vec!["--json"];
    args.extend(extra);
    let out = vtep_plugin_test(pcap, &args)?;
    ensure!(
        out.status.success(),
        "vtep plugin test failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("its JSON")
}

fn total(report: &serde_json::Value, name: &str) -> u64 {
    report["totals"][name].as_u64().unwrap_or(u64::MAX)
}

/// Pcap records of `frames` appended to the pcap file `from`, into a new file.
fn with_frames_appended(from: &Path, frames: &[Vec<u8>]) -> Result<PathBuf> {
    let mut bytes = std::fs::read(from)?;
    for frame in frames {
        let len = u32::try_from(frame.len())?;
        // ts_sec, ts_usec (a second after the capture's start is fine), caplen, len.
        for field in [u32::MAX / 2, 0, len, len] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(frame);
    }
    let to = from.with_extension("damaged.pcap");
    std::fs::write(&to, bytes)?;
    Ok(to)
}

/// An Ethernet/IPv4/UDP packet to port 4789 carrying `vxlan` (checksums left zero: nothing
/// here checks them).
fn udp_4789(vxlan: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0x99, 2, 0, 0, 0, 0, 0x98, 0x08, 0x00];
    let total = u16::try_from(20 + 8 + vxlan.len()).unwrap_or(u16::MAX);
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[198, 18, 0, 9, 198, 18, 0, 2]);
    let udp_len = u16::try_from(8 + vxlan.len()).unwrap_or(u16::MAX);
    f.extend_from_slice(&[0x12, 0x34, 0x12, 0xb5]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(vxlan);
    f
}

#[test]
fn a_plugin_decides_captured_frames_offline() -> Result<()> {
    let switch = Switch::new(1600)?;
    let host1 = Host::numbered(&switch, 1)?;
    let host2 = Host::numbered(&switch, 2)?;
    let vm1 = Vm::numbered(&host1, 1)?;
    let vm2 = Vm::numbered(&host2, 2)?;
    let _k1 = KernelVtep::builder(5001)
        .remote(IpAddr::from(host2.ipv4()))
        .port(&vm1)
        .create(&host1)?;
    let _k2 = KernelVtep::builder(5001)
        .remote(IpAddr::from(host1.ipv4()))
        .port(&vm2)
        .create(&host2)?;

    // VXLAN on host2's uplink, and VM1's own frames cut at 100 bytes.
    let underlay = Capture::start(host2.netns(), Host::UPLINK, "udp port 4789")?;
    let plain = Capture::start_with(vm1.netns(), Vm::IFACE, "", &["-s", "100"])?;
    let count = PINGS.to_string();
    let stats = ping_with(&vm1, vm2.ipv4(), PINGS, &["-s", "300", "-c", &count])?;
    ensure!(stats.all_received(), "the pings cross: {stats:?}");
    let underlay = underlay.stop()?;
    let plain = plain.stop()?;

    // The VXLAN capture: echo requests (VM1 to VM2) dropped by rule 1, the rest passed.
    let report = json_report(&underlay.pcap, &[])?;
    let frames = report["frames"].as_array().context("frames")?;
    let echo_requests = frames
        .iter()
        .filter(|f| {
            f["summary"]
                .as_str()
                .is_some_and(|s| s.contains("type 8 code 0"))
        })
        .count();
    ensure!(
        echo_requests == PINGS as usize
            && total(&report, "dropped") == u64::from(PINGS)
            && report["totals"]["drops_by_reason"]["1"] == u64::from(PINGS),
        "echo requests {echo_requests}, totals {}",
        report["totals"]
    );
    ensure!(
        frames
            .iter()
            .all(|f| f["vni"] == 5001 && f["direction"] == "from-underlay"),
        "every frame decapsulated onto VNI 5001, from the underlay"
    );
    ensure!(
        total(&report, "passed") >= u64::from(PINGS) + 2,
        "echo replies and ARP pass: {}",
        report["totals"]
    );
    ensure!(
        report["plugin"]["interface"] == "0.2.0"
            && report["plugin"]["calls"]["counters"]["filter_calls"] == total(&report, "offered"),
        "the plugin's report: {}",
        report["plugin"]
    );
    // The same capture in pcapng, as Wireshark's editcap writes it: the same verdicts.
    let pcapng = underlay.pcap.with_extension("pcapng");
    let out = Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&underlay.pcap)
        .arg(&pcapng)
        .output()
        .context("running editcap (wireshark-common)")?;
    ensure!(
        out.status.success(),
        "editcap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = json_report(&pcapng, &[])?;
    let verdicts = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (f["verdict"].to_string(), f["summary"].to_string()))
            .collect()
    };
    ensure!(
        verdicts(&again) == verdicts(&report),
        "pcapng and pcap decided alike"
    );
    // ... at the same times (pcapng's are in its interface's resolution: microseconds here).
    let times = |r: &serde_json::Value| -> Vec<String> {
        r["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("{:.6}", f["time"].as_f64().unwrap_or(-1.0)))
            .collect()
    };
    let last = report["frames"][frames.len() - 1]["time"]
        .as_f64()
        .unwrap_or(0.0);
    ensure!(
        times(&again) == times(&report) && last > 0.3,
        "pcap times {:?}, pcapng times {:?}",
        times(&report),
        times(&again)
    );

    // A plugin whose every call fails: its frames get the on_error verdict, and the run fails
    // unless told to accept that.
    let out = run_plugin("misbehave", r#"{"mode":"trap"}"#, &underlay.pcap, &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("calls failed"),
        "a trapping plugin fails the run: {stderr}"
    );
    let out = run_plugin(
        "misbehave",
        r#"{"mode":"trap"}"#,
        &underlay.pcap,
        &["--allow-failures", "--on-error", "drop"],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("drop on_error"),
        "accepted failures, each frame dropped by on_error:\n{text}"
    );

    // Expectations: met, exit 0 and a text report; missed, exit non-zero saying why.
    let drops = PINGS.to_string();
    let out = vtep_plugin_test(&underlay.pcap, &["--expect-drop", &drops])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("drop 1") && text.contains("dropped 3"),
        "expectation met:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vtep_plugin_test(&underlay.pcap, &["--expect-drop", "4"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("expected 4 frames dropped, 3 were"),
        "expectation missed: {stderr}"
    );

    // Plain frames: offered on --vni from port 0; the 342-byte echo frames were cut at 100.
    let without_vni = json_report(&plain.pcap, &[])?;
    ensure!(
        total(&without_vni, "offered") == 0 && total(&without_vni, "no_vni") > 0,
        "no VNI, nothing offered: {}",
        without_vni["totals"]
    );
    let on_vni = json_report(&plain.pcap, &["--vni", "5001"])?;
    ensure!(
        total(&on_vni, "cut") == 2 * u64::from(PINGS)
            && total(&on_vni, "offered") >= 2
            && total(&on_vni, "dropped") == 0,
        "requests and replies cut, ARP offered and passed: {}",
        on_vni["totals"]
    );

    // Damaged frames appended: counted as malformed, the rest decided as before.
    let damaged = with_frames_appended(
        &underlay.pcap,
        &[
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], // 12 bytes: no EtherType
            udp_4789(&[0, 0, 0, 0, 0, 0x13, 0x89, 0, 2, 0, 0, 0]), // no I flag
            udp_4789(&[0x08, 0, 0, 0, 0, 0x13]),      // header cut short
            udp_4789(&[0x08, 0, 0, 0, 0, 0x13, 0x89, 0, 2, 0, 0, 0]), // nothing inside
        ],
    )?;
    let report = json_report(&damaged, &[])?;
    ensure!(
        total(&report, "malformed") == 4 && total(&report, "dropped") == u64::from(PINGS),
        "damaged frames counted, good ones decided: {}",
        report["totals"]
    );
    Ok(())
}
