//! A plugin written as a vendor would, outside this workspace: `plugin-sdk/template` copied to
//! a directory of its own, its SDK dependency pointed at the SDK as `cargo package` makes it
//! (the crate as it would be published) and nothing else of this repository, built for wasm32
//! with its own `Cargo.toml`, then loaded by the daemon on a real network. The template drops ARP frames from VTEPs it does not trust: with
//! an empty list VM1 never resolves VM2 behind the kernel's VTEP and the plugin counts the
//! drops; trusting that VTEP, the pings go through.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm_build;
use wasm_vtep_tests::{KernelPeer, VtepDaemon, ping};

/// Copies the template's files, not what a build in place left (`target/`, a lock file).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "target" || entry.file_name() == "Cargo.lock" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The SDK's version: the first `version = "..."` of its manifest (its `[package]` table's).
fn sdk_version(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("plugin-sdk/Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"'))
        .map(str::to_owned)
        .context("no version in plugin-sdk/Cargo.toml")
}

/// The SDK as it would be published: `cargo package` (which also builds it alone), unpacked
/// under `target_dir`.
fn packaged_sdk(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["package", "--allow-dirty", "-p", "wasm-vtep-plugin-sdk"])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("running cargo package")?;
    ensure!(status.success(), "cargo package failed: {status}");
    let version = sdk_version(root)?;
    let dir = target_dir.join(format!("package/wasm-vtep-plugin-sdk-{version}"));
    ensure!(
        dir.join("Cargo.toml").is_file(),
        "{} not unpacked",
        dir.display()
    );
    Ok(dir)
}

/// Copies the template out, points it at the packaged SDK, builds it; returns the `.wasm`.
fn build_template_elsewhere() -> Result<PathBuf> {
    let root = wasm_vtep_testkit::workspace();
    // A target directory of its own under this workspace's (kept between runs), so that it
    // never waits for the lock of the build that runs the tests.
    let target = root.join("target").join("plugin-template");
    let sdk = packaged_sdk(&root, &target)?;
    let dir = std::env::temp_dir().join(format!("wv-plugin-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root.join("plugin-sdk").join("template"), &dir)?;
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
    // Dependency versions pinned as this workspace's are (the template resolves only what it
    // uses), so that the build is the same offline and tomorrow.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let mut cmd = wasm_build(&dir, &target);
    let status = cmd.status().context("running cargo on the template")?;
    ensure!(status.success(), "building the template failed: {status}");
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

/// The plugin's own counter `dropped` (its `Counter::new("dropped")`), and the host's count of
/// frames it dropped with reason 1.
fn dropped(daemon: &VtepDaemon) -> Result<(u64, u64)> {
    let out = daemon.cli(&["plugin", "show", "no-arp", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&out).context("plugin show --json")?;
    Ok((
        report["plugin_counters"]["dropped"].as_u64().unwrap_or(0),
        report["calls"]["drops"]["1"].as_u64().unwrap_or(0),
    ))
}

#[test]
fn a_plugin_from_the_template_builds_outside_the_workspace_and_runs() -> Result<()> {
    let wasm = build_template_elsewhere()?;
    let bed = KernelPeer::new()?;
    let (host1, vm1, vm2) = (&bed.host1, &bed.vm1, &bed.vm2);

    let daemon = VtepDaemon::start(host1, &config(&wasm, ""))?;
    let stats = ping(vm1, vm2.ipv4(), 2)?;
    ensure!(
        stats.received == 0,
        "ARP from an untrusted VTEP must not pass: {stats:?}"
    );
    let (own, by_reason) = dropped(&daemon)?;
    ensure!(
        own > 0 && own == by_reason,
        "drops (none cached, so each counted by both): its counter {own}, by reason 1 {by_reason}"
    );
    daemon.stop()?;

    let daemon = VtepDaemon::start(host1, &config(&wasm, "\"198.18.0.2\""))?;
    let stats = ping(vm1, vm2.ipv4(), 3)?;
    ensure!(
        stats.all_received(),
        "trusted, the pings go through: {stats:?}"
    );
    ensure!(dropped(&daemon)? == (0, 0), "nothing dropped when trusted");
    daemon.stop()
}
