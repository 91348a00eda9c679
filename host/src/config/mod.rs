//! The daemon's configuration: a TOML file (serde, unknown fields rejected) checked field by
//! field, then turned into the pipeline's [`VtepSettings`] with port names resolved to
//! [`PortId`]s. Every error names the field it is about, on one line.

mod file;
mod plugin;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{
    ControlSection, DatapathSection, PluginSection, StaticSection, UnderlaySection, VniSection,
};

use crate::fdb::{Location, PortId};
use crate::io::Steering;
use crate::plugin::PluginSpec;
use crate::vtep::{
    DEFAULT_DST_PORT, DEFAULT_MAX_ENTRIES, DEFAULT_MTU, DEFAULT_SRC_PORTS, DEFAULT_TTL,
    SourcePorts, StaticEntry, VniSettings, VtepSettings,
};
use crate::wire::{MacAddr, Vni};

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
    fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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
    /// The control socket's path.
    pub socket: PathBuf,
    /// The plugins, in the order they run.
    pub plugins: Vec<PluginSpec>,
    /// How the data path runs.
    pub datapath: DatapathSettings,
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
        build(file)
    }

    /// Checks that every port and the underlay interface exist on this host (in this network
    /// namespace), as `vtep check` and `vtep run` do.
    pub fn check_interfaces(&self) -> Result<(), ConfigError> {
        for (i, name) in self.ports.iter().enumerate() {
            if !interface_exists(name) {
                let field = port_field(&self.settings, PortId(u16::try_from(i).unwrap_or(0)));
                return Err(ConfigError::new(
                    field,
                    format!("no such interface {name:?}"),
                ));
            }
        }
        if let Some(name) = self
            .underlay_interface
            .as_ref()
            .filter(|n| !interface_exists(n))
        {
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

fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call, and
    // if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// The `vni[i].ports` field a port was configured in, for error messages.
fn port_field(settings: &VtepSettings, port: PortId) -> String {
    settings
        .vnis
        .iter()
        .position(|v| v.ports.contains(&port))
        .map_or_else(|| "vni.ports".to_owned(), |i| format!("vni[{i}].ports"))
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

fn build(file: file::ConfigFile) -> Result<Config, ConfigError> {
    let u = &file.underlay;
    let local: IpAddr = parse_addr("underlay.local", &u.local)?;
    if local.is_unspecified() || local.is_multicast() {
        return Err(ConfigError::new(
            "underlay.local",
            format!("{local} is not a unicast address"),
        ));
    }
    let family_check = |field: &str, ip: IpAddr| {
        if ip.is_ipv4() == local.is_ipv4() {
            Ok(ip)
        } else {
            Err(ConfigError::new(
                field,
                format!("{ip} is not in the family of underlay.local ({local})"),
            ))
        }
    };
    let mut settings = VtepSettings::new(local);
    settings.dst_port = u.port.unwrap_or(DEFAULT_DST_PORT);
    if settings.dst_port == 0 {
        return Err(ConfigError::new("underlay.port", "0 is not a port"));
    }
    settings.mtu = u.mtu.unwrap_or(DEFAULT_MTU);
    let min_mtu = if local.is_ipv4() { 64 } else { 84 };
    if settings.mtu < min_mtu {
        return Err(ConfigError::new(
            "underlay.mtu",
            format!(
                "{} is too small for VXLAN over {} (at least {min_mtu})",
                settings.mtu,
                if local.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
        ));
    }
    settings.ttl = u.ttl.unwrap_or(DEFAULT_TTL);
    if settings.ttl == 0 {
        return Err(ConfigError::new(
            "underlay.ttl",
            "0 would never leave the host",
        ));
    }
    let [lo, hi] = u
        .source_ports
        .unwrap_or([*DEFAULT_SRC_PORTS.start(), *DEFAULT_SRC_PORTS.end()]);
    if lo == 0 || lo > hi {
        return Err(ConfigError::new(
            "underlay.source_ports",
            format!("[{lo}, {hi}] is not a range of ports (low <= high, low > 0)"),
        ));
    }
    let count = u.source_port_count.unwrap_or(SourcePorts::DEFAULT_COUNT);
    if !(1..=MAX_SOURCE_PORT_COUNT).contains(&count) {
        return Err(ConfigError::new(
            "underlay.source_port_count",
            format!("{count} is outside 1..={MAX_SOURCE_PORT_COUNT}"),
        ));
    }
    settings.src_ports = SourcePorts::spread(lo..=hi, count)
        .map_err(|e| ConfigError::new("underlay.source_ports", e.to_string()))?;
    if settings.src_ports.contains(settings.dst_port) {
        return Err(ConfigError::new(
            "underlay.source_ports",
            format!(
                "source port {} is also underlay.port: its socket would take the VTEP's traffic",
                settings.dst_port
            ),
        ));
    }

    let mut ports: Vec<String> = Vec::new();
    for (i, v) in file.vni.iter().enumerate() {
        let field = |name: &str| format!("vni[{i}].{name}");
        let vni = match Vni::new(v.id) {
            Ok(vni) if v.id >= 1 => vni,
            _ => {
                return Err(ConfigError::new(
                    field("id"),
                    format!("{} is outside 1..=16777215", v.id),
                ));
            }
        };
        if let Some(j) = settings
            .vnis
            .iter()
            .position(|s: &VniSettings| s.vni == vni)
        {
            return Err(ConfigError::new(
                field("id"),
                format!("VNI {vni} is already vni[{j}]"),
            ));
        }
        let mut port_ids = Vec::with_capacity(v.ports.len());
        for name in &v.ports {
            if name.is_empty() || name.len() > 15 {
                return Err(ConfigError::new(
                    field("ports"),
                    format!("{name:?} is not an interface name (1 to 15 characters)"),
                ));
            }
            if let Some(j) = ports.iter().position(|p| p == name) {
                let other = port_field(&settings, PortId(u16::try_from(j).unwrap_or(0)));
                let problem = if other == field("ports") {
                    format!("port {name:?} is listed twice")
                } else {
                    format!("port {name:?} is already on {other}")
                };
                return Err(ConfigError::new(field("ports"), problem));
            }
            let id = u16::try_from(ports.len())
                .map_err(|_| ConfigError::new(field("ports"), "more than 65536 ports"))?;
            ports.push(name.clone());
            port_ids.push(PortId(id));
        }
        let mut s = VniSettings::new(vni, port_ids);
        if let Some(g) = &v.group {
            let g = family_check(&field("group"), parse_addr(&field("group"), g)?)?;
            if !g.is_multicast() {
                return Err(ConfigError::new(
                    field("group"),
                    format!("{g} is not a multicast address"),
                ));
            }
            s.group = Some(g);
        }
        for (k, r) in v.remotes.iter().enumerate() {
            let f = format!("vni[{i}].remotes[{k}]");
            let r = family_check(&f, parse_addr(&f, r)?)?;
            if r.is_multicast() || r.is_unspecified() {
                return Err(ConfigError::new(f, format!("{r} is not a unicast address")));
            }
            if r == local {
                return Err(ConfigError::new(
                    f,
                    format!("{r} is this VTEP's own address"),
                ));
            }
            s.remotes.push(r);
        }
        if let Some(secs) = v.aging_secs {
            if secs == 0 {
                return Err(ConfigError::new(
                    field("aging_secs"),
                    "0 would expire entries at once",
                ));
            }
            s.aging = Duration::from_secs(secs);
        }
        s.learning = v.learning.unwrap_or(true);
        s.max_entries = v.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
        s.strict_reserved = v.strict_reserved.unwrap_or(false);
        for (k, st) in v.statics.iter().enumerate() {
            let f = |name: &str| format!("vni[{i}].static[{k}].{name}");
            let mac: MacAddr = st
                .mac
                .parse()
                .map_err(|e| ConfigError::new(f("mac"), format!("{:?}: {e}", st.mac)))?;
            if !mac.is_valid_unicast() {
                return Err(ConfigError::new(
                    f("mac"),
                    format!("{mac} is not a unicast MAC"),
                ));
            }
            let location = match (&st.remote, &st.port) {
                (Some(r), None) => {
                    Location::Remote(family_check(&f("remote"), parse_addr(&f("remote"), r)?)?)
                }
                (None, Some(p)) => {
                    let pos = v.ports.iter().position(|q| q == p).ok_or_else(|| {
                        ConfigError::new(f("port"), format!("{p:?} is not among vni[{i}].ports"))
                    })?;
                    Location::Port(s.ports[pos])
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("vni[{i}].static[{k}]"),
                        "give exactly one of `remote` and `port`",
                    ));
                }
            };
            s.statics.push(StaticEntry { mac, location });
        }
        settings.vnis.push(s);
    }
    if settings.vnis.is_empty() {
        return Err(ConfigError::new(
            "vni",
            "no VNI configured: add a [[vni]] table",
        ));
    }
    // The checks above are the file-level form of these; this catches anything they missed.
    settings
        .validate()
        .map_err(|e| ConfigError::new("config", e.to_string()))?;
    let plugins = plugin::build(&file.plugin, &settings.vnis)?;
    let datapath = datapath(file.datapath.as_ref())?;
    Ok(Config {
        plugins,
        datapath,
        settings,
        ports,
        underlay_interface: file.underlay.interface.clone(),
        socket: file
            .control
            .and_then(|c| c.socket)
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from),
    })
}

fn datapath(d: Option<&DatapathSection>) -> Result<DatapathSettings, ConfigError> {
    let workers = d.and_then(|d| d.workers);
    if let Some(n) = workers
        && !(1..=MAX_WORKERS).contains(&n)
    {
        return Err(ConfigError::new(
            "datapath.workers",
            format!("{n} is outside 1..={MAX_WORKERS}"),
        ));
    }
    let busy_poll = d
        .and_then(|d| d.busy_poll_us)
        .map_or(DEFAULT_BUSY_POLL, Duration::from_micros);
    if busy_poll > MAX_BUSY_POLL {
        return Err(ConfigError::new(
            "datapath.busy_poll_us",
            format!(
                "{} is more than {}",
                busy_poll.as_micros(),
                MAX_BUSY_POLL.as_micros()
            ),
        ));
    }
    let steering = match d.and_then(|d| d.steering.as_deref()) {
        None | Some("symmetric") => Steering::Symmetric,
        Some("kernel") => Steering::Kernel,
        Some(other) => {
            return Err(ConfigError::new(
                "datapath.steering",
                format!("{other:?} is neither \"symmetric\" nor \"kernel\""),
            ));
        }
    };
    Ok(DatapathSettings {
        workers,
        busy_poll,
        steering,
    })
}

fn parse_addr(field: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(field, format!("{s:?} is not an IP address")))
}

#[cfg(test)]
mod tests;
