//! A plugin written as a vendor would, outside this workspace: `plugin-sdk/template` copied to
//! a directory of its own, its SDK dependency pointed at the SDK's path and nothing else of
//! this repository, built for wasm32 with its own `Cargo.toml` and lock file, then loaded by the
//! daemon on a real network. The template drops ARP frames from VTEPs it does not trust: with
//! an empty list VM1 never resolves VM2 behind the kernel's VTEP and the plugin counts the
//! drops; trusting that VTEP, the pings go through.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm_build;
use wasm_vtep_tests::{Host, KernelVtep, Switch, Vm, VtepDaemon, ping};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies the template out, points it at the SDK, builds it; returns the `.wasm`.
fn build_template_elsewhere() -> Result<PathBuf> {
    let root = workspace();
    let sdk = root.join("plugin-sdk");
    let dir = std::env::temp_dir().join(format!("wv-plugin-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&sdk.join("template"), &dir)?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    ensure!(
        text.contains("path = \"..\""),
        "the template names the SDK by path = \"..\""
    );
    std::fs::write(
        &manifest,
        text.replace(
            "path = \"..\"",
            &format!("path = {:?}", sdk.display().to_string()),
        ),
    )?;
    // A target directory of its own under this workspace's (kept between runs), so that it
    // never waits for the lock of the build that runs the tests.
    let target = root.join("target").join("plugin-template");
    let mut cmd = wasm_build(&dir, &target);
    let status = cmd.status().context("running cargo on the template")?;
    ensure!(status.success(), "building the template failed: {status}");
    // It resolved its own dependencies, outside this workspace.
    ensure!(dir.join("Cargo.lock").is_file(), "no Cargo.lock of its own");
    let wasm = target.join("wasm32-unknown-unknown/release/no_arp_from_remotes.wasm");
    ensure!(wasm.is_file(), "{} not built", wasm.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(wasm)
}

fn config(wasm: &Path, trusted: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"no-arp\"\npath = {:?}\nvnis = [5001]\nbudget_us = 50000\n\
         config = {{ trusted = [{trusted}] }}\n",
        wasm.display().to_string()
    )
}

fn dropped(daemon: &VtepDaemon) -> Result<u64> {
    let out = daemon.cli(&["plugin", "show", "no-arp", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&out).context("plugin show --json")?;
    Ok(report["calls"]["counters"]["dropped"].as_u64().unwrap_or(0))
}

#[test]
fn a_plugin_from_the_template_builds_outside_the_workspace_and_runs() -> Result<()> {
    let wasm = build_template_elsewhere()?;
    let switch = Switch::new(1600)?;
    let host1 = Host::numbered(&switch, 1)?;
    let host2 = Host::numbered(&switch, 2)?;
    let vm1 = Vm::numbered(&host1, 1)?;
    let vm2 = Vm::numbered(&host2, 2)?;
    let _kernel = KernelVtep::builder(5001)
        .remote(IpAddr::from(host1.ipv4()))
        .port(&vm2)
        .create(&host2)?;

    let daemon = VtepDaemon::start(&host1, &config(&wasm, ""))?;
    let stats = ping(&vm1, vm2.ipv4(), 2)?;
    ensure!(
        stats.received == 0,
        "ARP from an untrusted VTEP must not pass: {stats:?}"
    );
    ensure!(dropped(&daemon)? > 0, "the plugin counted no drop");
    daemon.stop()?;

    let daemon = VtepDaemon::start(&host1, &config(&wasm, "\"198.18.0.2\""))?;
    let stats = ping(&vm1, vm2.ipv4(), 3)?;
    ensure!(
        stats.all_received(),
        "trusted, the pings go through: {stats:?}"
    );
    ensure!(dropped(&daemon)? == 0, "nothing dropped when trusted");
    daemon.stop()
}
