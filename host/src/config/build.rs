//! From the file's sections to a validated [`Config`]: one function per section (`[underlay]`,
//! each `[[vni]]` and its static entries, `[datapath]`), each returning the first problem as a
//! [`ConfigError`] that names its field. Plugins are built in `plugin.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::file::{
    ConfigFile, DatapathSection, MetricsSection, StaticSection, UnderlaySection, VniSection,
};
use super::{
    Config, ConfigError, DEFAULT_BUSY_POLL, DEFAULT_SOCKET, DatapathSettings, Evpn, MAX_BUSY_POLL,
    MAX_SOURCE_PORT_COUNT, MAX_WORKERS, Steering, evpn, plugin,
};
use crate::fdb::{Location, PortId};
use crate::vtep::{
    DEFAULT_DST_PORT, DEFAULT_MAX_ENTRIES, DEFAULT_MTU, DEFAULT_SRC_PORTS, DEFAULT_TTL,
    SourcePorts, StaticEntry, VniSettings, VtepSettings,
};
use crate::wire::{MacAddr, Vni};

pub(super) fn build(file: ConfigFile) -> Result<Config, ConfigError> {
    let mut settings = underlay(&file.underlay)?;
    let mut ports: Vec<String> = Vec::new();
    for (i, v) in file.vni.iter().enumerate() {
        let vni = vni(i, v, &settings, &mut ports)?;
        settings.vnis.push(vni);
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
    let evpn = evpn_settings(&file, &mut settings)?;
    let metrics = file.metrics.as_ref().map(metrics).transpose()?;
    Ok(Config {
        metrics,
        plugins,
        datapath,
        evpn,
        settings,
        ports,
        underlay_interface: file.underlay.interface.clone(),
        tunnel_gso: file.underlay.tunnel_gso.unwrap_or(false),
        socket: file
            .control
            .and_then(|c| c.socket)
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from),
        source: None,
    })
}

/// `[metrics]`: the address the Prometheus endpoint listens on.
fn metrics(section: &MetricsSection) -> Result<SocketAddr, ConfigError> {
    section.listen.parse().map_err(|_| {
        ConfigError::new(
            "metrics.listen",
            format!(
                "{:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9464\", \"[::1]:9464\")",
                section.listen
            ),
        )
    })
}

/// `[evpn]` and each VNI's `[vni.evpn]`, which set the VNI's data-plane learning from the
/// underlay and its source check; a `[vni.evpn]` without `[evpn]` is an error.
fn evpn_settings(
    file: &ConfigFile,
    settings: &mut VtepSettings,
) -> Result<Option<Evpn>, ConfigError> {
    let Some(section) = &file.evpn else {
        if let Some(i) = file.vni.iter().position(|v| v.evpn.is_some()) {
            return Err(ConfigError::new(
                format!("vni[{i}].evpn"),
                "needs an [evpn] section",
            ));
        }
        return Ok(None);
    };
    let global = evpn::build(section, settings.local)?;
    let mut vnis = Vec::with_capacity(file.vni.len());
    for (i, (v, s)) in file.vni.iter().zip(&mut settings.vnis).enumerate() {
        let e = evpn::build_vni(i, s.vni, v.evpn.as_ref(), s.group.is_some())?;
        s.learn_from_underlay = e.learn_from_underlay;
        s.source_check = e.source_check;
        s.arp_suppress = e.arp_suppress;
        vnis.push(e);
    }
    Ok(Some(Evpn {
        settings: global,
        vnis,
    }))
}

/// `[underlay]`: the pipeline's settings without VNIs.
fn underlay(u: &UnderlaySection) -> Result<VtepSettings, ConfigError> {
    let local: IpAddr = parse_addr("underlay.local", &u.local)?;
    if local.is_unspecified() || local.is_multicast() {
        return Err(ConfigError::new(
            "underlay.local",
            format!("{local} is not a unicast address"),
        ));
    }
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
    Ok(settings)
}

/// `vni[i]`, given the VNIs before it in `settings` and the port names so far in `ports` (its
/// own are added there: a port's index is its `PortId`).
fn vni(
    i: usize,
    v: &VniSection,
    settings: &VtepSettings,
    ports: &mut Vec<String>,
) -> Result<VniSettings, ConfigError> {
    let field = |name: &str| format!("vni[{i}].{name}");
    let local = settings.local;
    let vni = match Vni::new(v.id) {
        Ok(vni) if v.id >= 1 => vni,
        _ => {
            return Err(ConfigError::new(
                field("id"),
                format!("{} is outside 1..=16777215", v.id),
            ));
        }
    };
    if let Some(j) = settings.vnis.iter().position(|s| s.vni == vni) {
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
            let j = PortId(u16::try_from(j).unwrap_or(0));
            // This VNI is not in `settings` yet: a port of its own is one listed twice.
            let problem = if port_ids.contains(&j) {
                format!("port {name:?} is listed twice")
            } else {
                format!("port {name:?} is already on {}", port_field(settings, j))
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
        let g = same_family(&field("group"), parse_addr(&field("group"), g)?, local)?;
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
        let r = same_family(&f, parse_addr(&f, r)?, local)?;
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
        let entry = static_entry(i, k, st, v, &s, local)?;
        s.statics.push(entry);
    }
    Ok(s)
}

/// `vni[i].static[k]`, an entry of the VNI `s` (whose ports are `v.ports`).
fn static_entry(
    i: usize,
    k: usize,
    st: &StaticSection,
    v: &VniSection,
    s: &VniSettings,
    local: IpAddr,
) -> Result<StaticEntry, ConfigError> {
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
        (Some(r), None) => Location::Remote(same_family(
            &f("remote"),
            parse_addr(&f("remote"), r)?,
            local,
        )?),
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
    Ok(StaticEntry { mac, location })
}

/// `[datapath]`.
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

/// `ip`, if it is of `local`'s family (the underlay is one family).
fn same_family(field: &str, ip: IpAddr, local: IpAddr) -> Result<IpAddr, ConfigError> {
    if ip.is_ipv4() == local.is_ipv4() {
        Ok(ip)
    } else {
        Err(ConfigError::new(
            field,
            format!("{ip} is not in the family of underlay.local ({local})"),
        ))
    }
}

fn parse_addr(field: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(field, format!("{s:?} is not an IP address")))
}

/// The `vni[i].ports` field a port was configured in, for error messages.
pub(super) fn port_field(settings: &VtepSettings, port: PortId) -> String {
    settings
        .vnis
        .iter()
        .position(|v| v.ports.contains(&port))
        .map_or_else(|| "vni.ports".to_owned(), |i| format!("vni[{i}].ports"))
}
