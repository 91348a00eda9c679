//! Where the harness finds things on disk: the `vtep` binary under test and the directory that
//! keeps each run's process logs and packet captures for debugging.
//!
//! Both derive from the running test executable (`<target>/<profile>/deps/<test>-<hash>`), so a
//! test built by `cargo test --release` finds the release `vtep` and a debug test the debug one,
//! with whatever target directory cargo used.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Locates the `vtep` daemon built from this workspace.
///
/// In order: `$VTEP_BIN` if set; `vtep` in the profile directory of the running test
/// executable (or beside the running binary, for the demo and netbench); `$CARGO_TARGET_DIR` (or `<workspace>/target`) + `/debug/vtep` or `/release/vtep`
/// matching how the tests were built. Cargo does not build another package's binaries for a
/// test run, so a missing binary is an error that says how to build it (and a stale one is
/// possible: rebuild after changing the daemon).
pub fn vtep_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("VTEP_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("VTEP_BIN={} does not name a file", path.display());
        }
        return Ok(path);
    }
    let path = profile_dir().join("vtep");
    if path.is_file() {
        return Ok(path);
    }
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    bail!(
        "the vtep binary is not built: {} does not exist; run `cargo build{release} --bin vtep` \
         (or set VTEP_BIN to its path)",
        path.display()
    )
}

/// The directory for this test process's logs and captures: `<profile>/wv-netlogs/<pid>/`.
///
/// Created on first use. Directories of finished runs (whose pid is gone) are removed at that
/// moment once they are an hour old: a failed run's logs stay for reading after the test
/// binaries that `cargo test` runs next, and nothing grows without bound.
pub fn artifacts_dir() -> Result<&'static Path> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir);
    }
    let root = profile_dir().join("wv-netlogs");
    remove_dead_runs(&root);
    let dir = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(DIR.get_or_init(|| dir))
}

/// A fresh path in [`artifacts_dir`] for `<label>-<n>.<ext>`.
pub(crate) fn artifact_path(label: &str, ext: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(artifacts_dir()?.join(format!("{label}-{n}.{ext}")))
}

/// How long the logs of a finished run are kept.
const KEEP_FINISHED_RUNS: Duration = Duration::from_secs(3600);

fn remove_dead_runs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > KEEP_FINISHED_RUNS));
        if old && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `<target>/<profile>`: the parent of the running executable's `deps/` (tests, benches) or
/// `examples/` directory; otherwise the target directory plus the profile tests were built in.
fn profile_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        // A test or example runs from `<profile>/deps` or `<profile>/examples`; a binary of
        // this workspace (the demo, netbench) from `<profile>` itself, beside `vtep`.
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("deps" | "examples") => {
                if let Some(profile) = dir.parent() {
                    return profile.to_path_buf();
                }
            }
            _ if dir.join("vtep").is_file() => return dir.to_path_buf(),
            _ => {}
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir), // join keeps an absolute path as it is
        None => workspace.join("target"),
    };
    target.join(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

/// What `build` makes, made once per test binary however many tests ask (the tests of one
/// binary run on threads of one process and would otherwise build into one place at once);
/// every caller gets its result, a failure as its message.
pub fn built_once(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    build: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    cell.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_is_where_cargo_puts_binaries() {
        let dir = profile_dir();
        // This very test executable is built in its `deps/` (a fresh clone has nothing else
        // there yet, so nothing but the executable can be relied on).
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            exe.parent(),
            Some(dir.join("deps").as_path()),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn vtep_bin_is_found_or_says_how_to_build_it() {
        match vtep_bin() {
            Ok(path) => assert!(
                path.is_file() && path.ends_with("vtep"),
                "{}",
                path.display()
            ),
            Err(e) => assert!(e.to_string().contains("cargo build"), "{e:#}"),
        }
    }

    #[test]
    fn artifact_paths_are_distinct_and_inside_the_run_directory() {
        let a = artifact_path("ns/x y", "log").unwrap();
        let b = artifact_path("ns/x y", "log").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap(), artifacts_dir().unwrap());
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("ns_x_y-")
        );
    }
}
