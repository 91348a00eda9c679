//! The daemon's answers to the control protocol's requests: calls on the pipeline and its
//! plugins, replies in the protocol's types. Runs under the control pipeline's and the plugin
//! catalog's locks, so it does no I/O and returns quickly; a plugin reload, which compiles a
//! module, is done by the daemon outside the locks and only swapped in.

use std::net::IpAddr;
use std::time::Instant;

use crate::control::{FdbRow, Request, Response, StatsReport, VniStatsRow};
use crate::fdb::{Location, PortId};
use crate::plugin::PluginChain;
use crate::vtep::{Drops, VniStats, Vtep};
use crate::wire::{MacAddr, Vni};

/// The pipeline's counters, added up over the workers.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Per VNI.
    pub vnis: Vec<VniStats>,
    /// Drops by reason.
    pub drops: Drops,
}

/// Answers `request` against `vtep` (the forwarding table) and `plugins` (needed by the
/// requests that [concern plugins](Request::concerns_plugins)); `counters` and `io` (the I/O
/// shell's counters) make up `stats`; `ports` names the ports by `PortId`.
pub fn handle(
    request: Request,
    vtep: &Vtep,
    counters: &Counters,
    plugins: Option<&PluginChain>,
    ports: &[String],
    io: &[(String, u64)],
    now: Instant,
) -> Response {
    match run(request, vtep, counters, plugins, ports, io, now) {
        Ok(data) => Response::Ok(data),
        Err(e) => Response::Error(e),
    }
}

fn run(
    request: Request,
    vtep: &Vtep,
    counters: &Counters,
    plugins: Option<&PluginChain>,
    ports: &[String],
    io: &[(String, u64)],
    now: Instant,
) -> Result<serde_json::Value, String> {
    match request {
        Request::FdbShow { vni } => {
            let mut rows: Vec<FdbRow> = vtep
                .fdb_entries(now)
                .filter(|(e, _)| vni.is_none_or(|v| e.vni.get() == v))
                .map(|(e, age)| {
                    let (kind, remote, port) = match e.location {
                        Location::Remote(ip) => ("remote", Some(ip.to_string()), None),
                        Location::Port(p) => ("local", None, Some(port_name(ports, p))),
                    };
                    FdbRow {
                        vni: e.vni.get(),
                        mac: e.mac.to_string(),
                        kind: kind.to_owned(),
                        remote,
                        port,
                        is_static: e.is_static,
                        sticky: e.is_sticky,
                        age_secs: age.as_secs(),
                    }
                })
                .collect();
            rows.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
            serde_json::to_value(rows).map_err(|e| e.to_string())
        }
        Request::FdbAdd {
            vni,
            mac,
            remote,
            port,
        } => {
            let vni = parse_vni(vni)?;
            let mac = parse_mac(&mac)?;
            let at = match (remote, port) {
                (Some(r), None) => Location::Remote(
                    r.parse::<IpAddr>()
                        .map_err(|_| format!("{r:?} is not an IP address"))?,
                ),
                (None, Some(p)) => {
                    let i = ports
                        .iter()
                        .position(|n| *n == p)
                        .ok_or_else(|| format!("no port {p:?}"))?;
                    Location::Port(PortId(u16::try_from(i).map_err(|e| e.to_string())?))
                }
                _ => return Err("give exactly one of remote and port".to_owned()),
            };
            vtep.add_static(vni, mac, at).map_err(|e| e.to_string())?;
            Ok(serde_json::Value::Null)
        }
        Request::FdbDel { vni, mac } => {
            vtep.remove_entry(parse_vni(vni)?, parse_mac(&mac)?)
                .map_err(|e| e.to_string())?;
            Ok(serde_json::Value::Null)
        }
        Request::Stats => {
            let report = StatsReport {
                vnis: counters.vnis.iter().map(vni_row).collect(),
                drops: counters
                    .drops
                    .iter()
                    .map(|(r, n)| (r.name().to_owned(), n))
                    .collect(),
                io: io.iter().cloned().collect(),
                plugins: plugins.map(PluginChain::counters).unwrap_or_default(),
            };
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
        Request::PluginList => {
            let reports = plugins.map(PluginChain::reports).unwrap_or_default();
            serde_json::to_value(reports).map_err(|e| e.to_string())
        }
        Request::PluginShow { name } => {
            let p = plugins
                .and_then(|p| p.get(&name))
                .ok_or_else(|| format!("no plugin named {name:?}"))?;
            serde_json::to_value(p.report()).map_err(|e| e.to_string())
        }
        Request::PluginReload { .. } => {
            Err("a reload is done by the daemon, outside the pipeline's lock".to_owned())
        }
        #[cfg(feature = "fault-injection")]
        Request::PanicWorker { .. } => Err("a fault is injected by the daemon".to_owned()),
    }
}

fn port_name(ports: &[String], p: PortId) -> String {
    ports
        .get(usize::from(p.0))
        .cloned()
        .unwrap_or_else(|| format!("port{}", p.0))
}

fn parse_vni(v: u32) -> Result<Vni, String> {
    Vni::new(v).map_err(|e| e.to_string())
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

fn vni_row(s: &VniStats) -> VniStatsRow {
    VniStatsRow {
        vni: s.vni.get(),
        counters: s
            .named()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}
