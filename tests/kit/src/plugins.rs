//! The example plugins the tests and benches load, built by the test run itself (never
//! committed): `cargo build --target wasm32-unknown-unknown --release` once per test binary,
//! into the workspace's `target/plugins` so that it never waits on the lock of the build that
//! runs the tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The plugin crates, by package name.
pub const PLUGINS: [&str; 5] = [
    "misbehave",
    "vni-filter",
    "learn-guard",
    "adaptive-aging",
    "legacy-port-guard",
];

/// `cargo build --target wasm32-unknown-unknown --release` in `dir`, into `target`, with none
/// of the outer cargo's settings for the host build (they must not leak into the wasm build).
pub fn wasm_build(dir: &Path, target: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .args(["build", "--target", "wasm32-unknown-unknown", "--release"])
        .arg("--target-dir")
        .arg(target);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Builds every plugin (once per process) and returns the directory of the `.wasm` files.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = crate::workspace();
        let target = root.join("target").join("plugins");
        let mut cmd = wasm_build(&root, &target);
        for p in PLUGINS {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed: {status}");
        target.join("wasm32-unknown-unknown").join("release")
    })
}

/// The `.wasm` of plugin crate `name` (e.g. `"misbehave"`).
pub fn wasm(name: &str) -> PathBuf {
    built().join(format!("{}.wasm", name.replace('-', "_")))
}
