//! The daemon's answers to the control socket's requests, in the protocol's types. `handler`
//! is what the server calls for each request: a plugin reload compiles the new module there,
//! outside every lock the data path or the other requests need, and only swaps it in; every
//! other request is answered by [`handle`] under the control pipeline's and the plugin
//! catalog's locks, so it does no I/O and returns quickly (and, taking all it needs as
//! arguments, is what the fuzz targets drive).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Shared;
use super::counters::{io_counters, pipeline_counters};
use crate::config::{Config, PluginSpec};
use crate::control::{FdbRow, Request, Response, StatsReport, VniStatsRow, server};
use crate::fdb::{Location, PortId};
use crate::plugin::{Plugin, PluginChain};
use crate::vtep::{Drops, VniStats, Vtep};
use crate::wire::{MacAddr, Vni};

/// The handler of `shared`'s control requests.
pub(super) fn handler(shared: &Arc<Shared>) -> server::Handler {
    let shared = Arc::clone(shared);
    Arc::new(move |request| match request {
        Request::PluginReload {
            name,
            path,
            config_json,
            reset_counters,
        } => reload(
            &shared,
            &name,
            &Reload {
                path,
                config_json,
                reset_counters,
            },
        ),
        Request::EvpnShow => evpn_show(&shared),
        #[cfg(feature = "fault-injection")]
        Request::PanicWorker { worker } => match shared.faults.get(worker) {
            Some(fault) => {
                fault.store(true, Ordering::Relaxed);
                Response::Ok(serde_json::Value::Null)
            }
            None => Response::Error(format!("no worker {worker}")),
        },
        request => {
            let io = io_counters(&shared);
            let (vnis, drops) = pipeline_counters(&shared);
            let counters = Counters { vnis, drops };
            let vtep = shared.control_vtep();
            // The catalog's plugins are never called, so its lock is never held long.
            let plugins = needs_plugins(&request).then(|| shared.plugins.catalog());
            handle(
                request,
                &vtep,
                &counters,
                plugins.as_deref(),
                &shared.port_names,
                &io,
                Instant::now(),
            )
        }
    })
}

/// `vtep evpn show`: the session and the routes, from the EVPN thread's state (its own
/// lock, not the pipeline's).
fn evpn_show(shared: &Shared) -> Response {
    let Some(evpn) = &shared.evpn else {
        return Response::Error("BGP EVPN is not configured here (no [evpn] section)".to_owned());
    };
    let (vnis, _) = pipeline_counters(shared);
    match serde_json::to_value(evpn.report(&vnis)) {
        Ok(value) => Response::Ok(value),
        Err(e) => Response::Error(e.to_string()),
    }
}

/// What a `vtep plugin reload` asks besides the plugin's name.
#[derive(Debug, Default)]
struct Reload {
    path: Option<String>,
    config_json: Option<String>,
    reset_counters: bool,
}

/// The `config` of a reload request: a JSON object, as the text `init` receives.
fn config_object(json: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        Ok(_) => Err("--config-json: not a JSON object".to_owned()),
        Err(e) => Err(format!("--config-json: {e}")),
    }
}

/// The `[[plugin]]` section named `name` in the configuration file `file`, the whole file
/// parsed and validated as `vtep run` does (its interfaces are not looked up again).
/// The daemon's configuration file, read again; the error names the file.
fn load_config(file: &std::path::Path) -> Result<Config, String> {
    Config::load(file).map_err(|e| {
        // A file that cannot be read names itself already.
        let e = e.to_string();
        let file = file.display().to_string();
        if e.starts_with(&file) {
            e
        } else {
            format!("{file}: {e}")
        }
    })
}

/// The `[[plugin]]` section named `name` in `config` (read from `file`).
fn section_in(config: &Config, file: &std::path::Path, name: &str) -> Result<PluginSpec, String> {
    config
        .plugins
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| format!("{} has no [[plugin]] named {name:?}", file.display()))
}

/// What a reload of every plugin did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reloaded {
    /// Plugins swapped for their new load.
    pub(super) ok: usize,
    /// Plugins kept as they ran (their refusal was logged with its reason).
    pub(super) refused: usize,
}

/// Reloads every plugin from the configuration file, read once (SIGHUP), as `vtep plugin
/// reload NAME` does for each; a refusal keeps the running plugin. A file that cannot be read
/// or parsed keeps them all. Sections added to the file are loaded at the next start only (a
/// reload swaps plugins, it does not add or remove them), and the log says so.
pub(super) fn reload_all(shared: &Shared) -> Reloaded {
    let names = shared.plugins.order().to_vec();
    let config = match &shared.config_source {
        Some(file) => match load_config(file) {
            Ok(config) => Some((config, file.clone())),
            Err(why) => {
                tracing::warn!(error = %why, "the configuration file is refused; every plugin stays as it runs");
                return Reloaded {
                    ok: 0,
                    refused: names.len(),
                };
            }
        },
        None => None,
    };
    if let Some((config, _)) = &config {
        for added in config.plugins.iter().filter(|p| !names.contains(&p.name)) {
            tracing::warn!(plugin = %added.name, "a [[plugin]] section new in the file is loaded at the next start, not by a reload");
        }
    }
    let mut reloaded = Reloaded::default();
    for name in &names {
        let given = config.as_ref().map(|(c, f)| (c, f.as_path()));
        match reload_from(shared, name, &Reload::default(), given) {
            Response::Ok(_) => reloaded.ok += 1,
            _ => reloaded.refused += 1,
        }
    }
    reloaded
}

/// `vtep plugin reload`: reads the plugin's `[[plugin]]` section again from the daemon's
/// configuration file (or takes its `config` from the request), loads the plugin anew off the
/// data path, so that traffic keeps flowing meanwhile, then swaps it in between two batches,
/// its counters going on from the running plugin's unless asked to reset. If the section, the
/// configuration or the module is refused, the running plugin stays and the error says why.
fn reload(shared: &Shared, name: &str, ask: &Reload) -> Response {
    reload_from(shared, name, ask, None)
}

/// [`reload`], with the configuration file already read (`given`) or read here.
fn reload_from(
    shared: &Shared,
    name: &str,
    ask: &Reload,
    given: Option<(&Config, &std::path::Path)>,
) -> Response {
    let no_such = || Response::Error(format!("no plugin named {name:?}"));
    let Some(runtime) = shared.plugins.runtime() else {
        return no_such();
    };
    let running = shared.plugins.catalog().get(name).map(|p| p.spec().clone());
    let Some(running) = running else {
        return no_such();
    };
    let refused = |why: String| {
        tracing::warn!(plugin = name, error = %why, "plugin reload refused; the running one stays");
        Response::Error(format!(
            "plugin {name:?} not reloaded (the running one stays): {why}"
        ))
    };
    let section = match (given, &shared.config_source) {
        (Some((config, file)), _) => section_in(config, file, name),
        (None, Some(file)) => load_config(file).and_then(|c| section_in(&c, file, name)),
        (None, None) => Ok(running),
    };
    let section = match section {
        Ok(spec) => spec,
        Err(why) => return refused(why),
    };
    let mut spec = match &ask.config_json {
        Some(json) => match config_object(json) {
            Ok(config) => PluginSpec { config, ..section },
            Err(why) => return refused(why),
        },
        None => section,
    };
    if let Some(p) = &ask.path {
        spec.path = PathBuf::from(p);
    }
    let started = Instant::now();
    let path = spec.path.display().to_string();
    let plugin = match Plugin::load(runtime, spec) {
        Ok(p) => p,
        Err(e) => return refused(e.to_string()),
    };

    let report = plugin.report();
    match shared.plugins.replace(plugin, !ask.reset_counters) {
        Ok(old) => drop(old), // outside the lock
        Err(e) => return refused(e.to_string()),
    }
    tracing::info!(
        plugin = name,
        path,
        took_ms = started.elapsed().as_millis(),
        "plugin reloaded"
    );
    match serde_json::to_value(report) {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e.to_string()),
    }
}

/// The pipeline's counters, added up over the workers.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Per VNI.
    pub vnis: Vec<VniStats>,
    /// Drops by reason.
    pub drops: Drops,
}

/// Whether answering `request` needs the plugins (their counters or reports).
pub fn needs_plugins(request: &Request) -> bool {
    matches!(
        request,
        Request::Stats
            | Request::PluginList
            | Request::PluginShow { .. }
            | Request::PluginReload { .. }
    )
}

/// Answers `request` against `vtep` (the forwarding table) and `plugins` (needed by the
/// requests that [`needs_plugins`] says); `counters` and `io` (the I/O
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
    let answer = || -> Result<serde_json::Value, String> {
        match request {
            Request::FdbShow { vni } => {
                let mut rows: Vec<FdbRow> = vtep
                    .fdb_entries(now)
                    .filter(|(e, _)| vni.is_none_or(|v| e.vni.get() == v))
                    .map(|(e, age)| {
                        let (kind, remote, port) = match e.location {
                            Location::Remote(ip) if e.is_evpn => {
                                ("evpn", Some(ip.to_string()), None)
                            }
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
            Request::EvpnShow => Err("the EVPN state is the daemon's EVPN thread's".to_owned()),
        }
    };
    match answer() {
        Ok(data) => Response::Ok(data),
        Err(e) => Response::Error(e),
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
