//! The daemon's configuration: a TOML file (serde, unknown fields rejected) checked field by
//! field, then turned into the pipeline's [`VtepSettings`] with port names resolved to
//! [`PortId`]s. Every error names the field it is about, on one line.

mod build;
mod evpn;
mod file;
mod plugin;
mod plugin_spec;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fdb::PortId;
use crate::vtep::VtepSettings;

pub use evpn::{AdminNumber, DEFAULT_GOBGP, EvpnSettings, VniEvpnSettings};
pub use file::{
    ControlSection, DatapathSection, EvpnSection, PluginSection, StaticSection, UnderlaySection,
    VniEvpnSection, VniSection,
};
pub use plugin_spec::{
    DEFAULT_CACHE_ENTRIES, DEFAULT_INIT_BUDGET, DEFAULT_MAX_FAILURES, DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIME_BUDGET, OnError, PluginSpec, Sandbox,
};

/// The most source ports (so sockets) a VTEP may spread flows over: with the ports' and the
/// underlay's sockets it stays well inside the usual limit of 1024 open files.
pub const MAX_SOURCE_PORT_COUNT: usize = 256;

/// The most data path workers.
pub const MAX_WORKERS: usize = 64;
/// How long a worker keeps polling after traffic unless configured otherwise.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);
/// The longest busy poll allowed: beyond this a worker is effectively a spinning core.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(100);

/// Where the control socket lives unless the file says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/wasm-vtep/vtep.sock";

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The field, as a path into the file (`vni[1].ports`).
    pub field: String,
    /// What is wrong, in words.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The pipeline's settings.
    pub settings: VtepSettings,
    /// Port names, indexed by `PortId`.
    pub ports: Vec<String>,
    /// The interface on which multicast groups are joined and sent, if given.
    pub underlay_interface: Option<String>,
    /// Send TCP super-frames to one remote encapsulated once, through a tap with UDP-tunnel GSO
    /// (`[underlay] tunnel_gso`, off by default), when this kernel and host allow it.
    pub tunnel_gso: bool,
    /// The control socket's path.
    pub socket: PathBuf,
    /// The plugins, in the order they run.
    pub plugins: Vec<PluginSpec>,
    /// How the data path runs.
    pub datapath: DatapathSettings,
    /// BGP EVPN, if `[evpn]` is there.
    pub evpn: Option<Evpn>,
    /// Where the Prometheus endpoint listens (`[metrics] listen`); `None`: no endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    /// The file it was read from ([`Config::load`]; `None` when parsed from text): where a
    /// plugin reload reads the plugin's section again.
    pub source: Option<PathBuf>,
}

/// `[evpn]` and every VNI's `[vni.evpn]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evpn {
    /// `[evpn]`.
    pub settings: EvpnSettings,
    /// Per VNI, in the order of `Config::settings.vnis` (defaults where `[vni.evpn]` is
    /// omitted).
    pub vnis: Vec<VniEvpnSettings>,
}

/// `[datapath]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathSettings {
    /// Data path threads; `None`: as many as the CPUs the daemon may run on.
    pub workers: Option<usize>,
    /// How long a worker keeps polling its sockets after it found traffic before it sleeps:
    /// under steady traffic it then rarely sleeps and is rarely woken, which saves the
    /// wakeups' latency and cost; idle, it costs this much CPU per burst.
    pub busy_poll: Duration,
    /// Which worker reads which frame (with two workers or more).
    pub steering: Steering,
}

/// How the workers share the traffic (`[datapath] steering`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Steering {
    /// Both directions of a flow to one worker (by the BPF programs of `io::steering`): a
    /// reply finds the worker that sent the request still polling, while a single flow's two
    /// directions share that worker. netbench's `kernel-steering` case measures both modes
    /// (docs/PERFORMANCE.md).
    #[default]
    Symmetric,
    /// The kernel's own hashes: a port's frames by their flow hash, the underlay's datagrams
    /// by their outer addresses and ports, so that a flow's two directions usually run on two
    /// workers in parallel, and a reply usually wakes a sleeping one.
    Kernel,
}

impl DatapathSettings {
    /// How many workers to run: the configured number, else the CPUs available (at least 1).
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .min(MAX_WORKERS)
        })
    }
}

impl Config {
    /// Reads and validates a file. Relative plugin paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        let mut config = Config::parse(&text)?;
        config.source = Some(path.to_path_buf());
        let dir = path.parent().unwrap_or(Path::new(""));
        for p in &mut config.plugins {
            if p.path.is_relative() {
                p.path = dir.join(&p.path);
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text (no interface checks: see [`Config::check_interfaces`]).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: file::ConfigFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        build::build(file)
    }

    /// Checks that every port and the underlay interface exist on this host (in this network
    /// namespace), as `vtep check` and `vtep run` do, asking `exists` (the I/O layer's lookup:
    /// configuration does no I/O of its own).
    pub fn check_interfaces(&self, exists: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        for (i, name) in self.ports.iter().enumerate() {
            if !exists(name) {
                let field =
                    build::port_field(&self.settings, PortId(u16::try_from(i).unwrap_or(0)));
                return Err(ConfigError::new(
                    field,
                    format!("no such interface {name:?}"),
                ));
            }
        }
        if let Some(name) = self.underlay_interface.as_ref().filter(|n| !exists(n)) {
            return Err(ConfigError::new(
                "underlay.interface",
                format!("no such interface {name:?}"),
            ));
        }
        Ok(())
    }

    /// The port with this name.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        let i = self.ports.iter().position(|p| p == name)?;
        u16::try_from(i).ok().map(PortId)
    }
}

/// One line: the position, and serde's message (which names the field).
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let field = match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}")
        }
        None => "file".to_owned(),
    };
    ConfigError::new(field, e.message().trim().replace('\n', " "))
}

#[cfg(test)]
mod tests;
