//! The systemd service as a packager ships it (`host/debian/wasm-vtep.service`): systemd's own
//! checker accepts it (`systemd-analyze verify`, with the binary it names and the man page it
//! points to, both from this build), its exposure stays at the hardened level measured when it
//! was written (`systemd-analyze security --offline`: 2.0), and what its hardening leaves the
//! daemon is enough: run as `nobody` with CAP_NET_RAW and CAP_NET_ADMIN and no other
//! capability (as `DynamicUser` with those ambient capabilities runs it), it loads a plugin
//! and forwards VM1's pings to VM2 behind the kernel's VTEP. Not covered here (no systemd runs
//! in the tests): the system call filter, the namespaces and the file system view.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{KernelPeer, VtepDaemon, ping, vtep_bin};

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/debian/wasm-vtep.service")
}

/// A directory of this test's own under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wv-unit-{}-{name}", std::process::id()))
}

/// The unit with its binary at this build's, written under `dir`, and a MANPATH under `dir`
/// holding `vtep man`'s page (systemd-analyze runs `man` on `Documentation=man:`).
fn unit_of_this_build(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let bin = vtep_bin()?;
    let text = std::fs::read_to_string(unit_file())?;
    let unit = dir.join("wasm-vtep.service");
    std::fs::create_dir_all(dir.join("man/man8"))?;
    std::fs::write(
        &unit,
        text.replace("/usr/bin/vtep", &bin.display().to_string()),
    )?;
    let page = Command::new(&bin).arg("man").output()?;
    ensure!(page.status.success(), "vtep man");
    std::fs::write(dir.join("man/man8/vtep.8"), page.stdout)?;
    Ok((unit, dir.join("man")))
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_hardened() -> Result<()> {
    let dir = scratch("verify");
    let (unit, manpath) = unit_of_this_build(&dir)?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", &manpath)
        // `Documentation=man:vtep(8)` is looked up with man-db's `man` where it is installed.
        .arg(if Command::new("man").arg("-w").output().is_ok() {
            "--man=yes"
        } else {
            "--man=no"
        })
        .output()
        .context("running systemd-analyze (systemd)")?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // Exposure on systemd's 0-10 scale, times ten: fails above 2.0.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.0:\n{report}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_daemon_runs_with_two_capabilities_and_no_root() -> Result<()> {
    let bed = KernelPeer::new()?;
    let (host1, vm1, vm2) = (&bed.host1, &bed.vm1, &bed.vm2);
    let dir = scratch("run");
    // With a plugin: wasmtime compiles and runs it as that user too.
    let config = format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"acl\"\npath = {:?}\nvnis = [5001]\nconfig = {{ allow = [] }}\n",
        wasm("vni-filter").display().to_string()
    );
    let daemon = VtepDaemon::start_unprivileged(host1, &config, &dir)?;
    // What the kernel says of the daemon's process: not root, and its capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    // CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
    let wanted = format!("{:016x}", (1u64 << 12) | (1 << 13));
    ensure!(
        field("Uid:").starts_with("65534") && field("CapEff:") == wanted,
        "the daemon runs as uid {} with capabilities {} (wanted {wanted})",
        field("Uid:"),
        field("CapEff:")
    );
    let stats = ping(vm1, vm2.ipv4(), 3)?;
    ensure!(
        stats.all_received(),
        "pings through the unprivileged daemon: {stats:?}"
    );
    let acl = daemon.cli(&["plugin", "show", "acl", "--json"])?;
    let acl: serde_json::Value = serde_json::from_str(&acl)?;
    ensure!(
        acl["calls"]["counters"]["filter_calls"].as_u64() > Some(0),
        "the plugin filtered as that user: {}",
        acl["calls"]
    );
    daemon.stop()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
