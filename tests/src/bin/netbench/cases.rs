//! What is measured: the cases (a data plane and how it is set up) and, for the plugin cases,
//! how the `[[plugin]]` section is written and whether the daemon takes it.
//!
//! To add a case, add a [`Variant`] if needed and a line to [`CASES`]; [`crate::bed`] sets it
//! up and every probe runs on it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use wasm_vtep_tests::{Host, vtep_check};

/// The data plane on both hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The kernel's `vxlan` device and a bridge on each host.
    Kernel,
    /// The `vtep` daemon on each host.
    WasmVtep,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::WasmVtep => "wasm-vtep",
        }
    }
}

/// How a backend is set up beyond the plain two-host overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Nothing more.
    Plain,
    /// The `vni-filter` plugin attached to the VNI on both daemons, its verdict cache on or off,
    /// on `workers` workers (0: the daemon's default, the CPUs).
    VniFilter { cache: bool, workers: u8 },
    /// This many extra MACs learned behind VM1 (so in both tables) before the probes.
    LearnedMacs(u32),
    /// The daemons with these lines added to their `[underlay]` section and this
    /// `[datapath]` section (each may be empty).
    Config {
        underlay: &'static str,
        datapath: &'static str,
    },
}

/// One row of the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Case {
    /// Its name in the JSON, the table and `--cases`.
    pub(crate) id: &'static str,
    pub(crate) backend: Backend,
    pub(crate) variant: Variant,
}

/// Every case, in the order they run within a backend's turn. The first case of each backend
/// is the reference of the ratios: `kernel` for all, `wasm-vtep` for the plugin target.
pub(crate) const CASES: &[Case] = &[
    Case {
        id: "kernel",
        backend: Backend::Kernel,
        variant: Variant::Plain,
    },
    Case {
        id: "wasm-vtep",
        backend: Backend::WasmVtep,
        variant: Variant::Plain,
    },
    Case {
        id: "wasm-vtep+vni-filter",
        backend: Backend::WasmVtep,
        variant: Variant::VniFilter {
            cache: true,
            workers: 0,
        },
    },
    Case {
        id: "wasm-vtep+vni-filter(no-cache)",
        backend: Backend::WasmVtep,
        variant: Variant::VniFilter {
            cache: false,
            workers: 0,
        },
    },
    // How the uncached filter scales with the workers (each calls its own plugin instance).
    Case {
        id: "wasm-vtep+vni-filter(no-cache,1-worker)",
        backend: Backend::WasmVtep,
        variant: Variant::VniFilter {
            cache: false,
            workers: 1,
        },
    },
    Case {
        id: "wasm-vtep+vni-filter(no-cache,3-workers)",
        backend: Backend::WasmVtep,
        variant: Variant::VniFilter {
            cache: false,
            workers: 3,
        },
    },
    Case {
        id: "wasm-vtep+10k-macs",
        backend: Backend::WasmVtep,
        variant: Variant::LearnedMacs(10_000),
    },
    // The kernel's hashes spread the workers' reads, so that a flow's two directions usually
    // run on two workers.
    Case {
        id: "wasm-vtep(kernel-steering)",
        backend: Backend::WasmVtep,
        variant: Variant::Config {
            underlay: "",
            datapath: "steering = \"kernel\"",
        },
    },
    // TCP super-frames to one remote encapsulated once and sent whole through the daemon's
    // tunnel-GSO tap (`[underlay] tunnel_gso`, off by default), not segmented here.
    Case {
        id: TUNNEL_GSO,
        backend: Backend::WasmVtep,
        variant: Variant::Config {
            underlay: "tunnel_gso = true",
            datapath: "",
        },
    },
];

/// The case every ratio is taken against.
pub(crate) const BASELINE: &str = "kernel";
/// The case the plugin target is taken against.
pub(crate) const PLUGIN_BASELINE: &str = "wasm-vtep";
/// The case with TCP super-frames sent whole (`[underlay] tunnel_gso = true`), shown beside
/// wasm-vtep's defaults in the TCP targets.
pub(crate) const TUNNEL_GSO: &str = "wasm-vtep(tunnel-gso)";
/// The plugin case the plugin target is about.
pub(crate) const PLUGIN_CACHED: &str = "wasm-vtep+vni-filter";

impl Case {
    pub(crate) fn needs_plugins(&self) -> bool {
        matches!(self.variant, Variant::VniFilter { .. })
    }
}

/// The configuration of a [`Variant::VniFilter`] case: its `[datapath]` workers (if not the
/// default) and its `[[plugin]]` section.
pub(crate) fn vni_filter_section(wasm: &Path, vni: u32, cache: bool, workers: u8) -> String {
    let datapath = if workers > 0 {
        format!("[datapath]\nworkers = {workers}\n\n")
    } else {
        String::new()
    };
    datapath + &plugin_section(wasm, vni, cache)
}

/// The `[[plugin]]` section that attaches `vni-filter` to VNI `vni` with an ACL that the
/// benchmark's traffic never matches (it denies SSH and lets the rest through), so that the
/// filter decides every frame and drops none. With `cache`, its verdicts are cacheable per flow
/// (the plugin's default of 10 s); without, it asks the host to cache nothing (`cache_secs =
/// 0`), so that every frame costs a plugin call.
fn plugin_section(wasm: &Path, vni: u32, cache: bool) -> String {
    let cache_secs = if cache { "" } else { "\ncache_secs = 0" };
    format!(
        "[[plugin]]\nname = \"vni-filter\"\npath = {:?}\nvnis = [{vni}]\n\n\
         [plugin.config]\ndeny = [{{ dst_port = 22 }}]\ndefault = \"allow\"{cache_secs}\n",
        wasm.display().to_string()
    )
}

/// Whether the plugin cases can run, and if not why.
#[derive(Debug, Clone)]
pub(crate) enum PluginSupport {
    Available { wasm: PathBuf },
    Unavailable { reason: String },
}

/// Finds the `vni-filter` component (`explicit`, else the newest `vni_filter.wasm` or
/// `vni-filter.wasm` under the target directory) and asks `vtep check` on `host` whether a
/// configuration with it attached is accepted. `base` is a complete configuration without
/// plugins for that host.
pub(crate) fn detect_plugins(
    host: &Host,
    base: &str,
    explicit: Option<&Path>,
    target_dir: &Path,
    vni: u32,
) -> Result<PluginSupport> {
    let wasm = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => find_component(target_dir),
    };
    // Without a component the check still tells whether the daemon knows [[plugin]] at all.
    let probe_path = wasm
        .clone()
        .unwrap_or_else(|| target_dir.join("vni_filter.wasm"));
    let config = format!("{base}\n{}", plugin_section(&probe_path, vni, true));
    let (ok, _, stderr) = vtep_check(host, &config)?;
    let reason = stderr.lines().next().unwrap_or("").trim().to_owned();
    Ok(match (ok, wasm) {
        (true, Some(wasm)) => PluginSupport::Available { wasm },
        (true, None) => PluginSupport::Unavailable {
            reason: "no vni-filter component found (build plugins/vni-filter or pass \
                     --vni-filter PATH)"
                .into(),
        },
        (false, Some(_)) => PluginSupport::Unavailable {
            reason: format!("`vtep check` refuses the [[plugin]] section: {reason}"),
        },
        (false, None) => PluginSupport::Unavailable {
            reason: format!(
                "no vni-filter component found, and `vtep check` refuses [[plugin]]: {reason}"
            ),
        },
    })
}

/// The newest `vni_filter.wasm` / `vni-filter.wasm` at most four levels under `dir`, skipping
/// cargo's intermediate directories.
fn find_component(dir: &Path) -> Option<PathBuf> {
    fn walk(dir: &Path, depth: u32, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let skip = ["deps", "build", "incremental", ".fingerprint", "wv-netlogs"];
                if depth > 0 && !skip.contains(&name.as_ref()) {
                    walk(&path, depth - 1, best);
                }
            } else if name == "vni_filter.wasm" || name == "vni-filter.wasm" {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                    *best = Some((modified, path));
                }
            }
        }
    }
    let mut best = None;
    walk(dir, 4, &mut best);
    best.map(|(_, p)| p)
}
