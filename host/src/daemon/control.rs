//! The daemon's side of the control socket: the [`Handler`](server::Handler) the server calls
//! for each request. Reads answer from the control pipeline and the plugin catalog
//! ([`answer`](super::answer)); a plugin reload compiles the new module here, outside every
//! lock the data path or the other requests need, and only swaps it in.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Shared;
use super::answer;
use super::counters::{io_counters, pipeline_counters};
use crate::control::{Request, Response, server};
use crate::plugin::Plugin;

/// The handler of `shared`'s control requests.
pub(super) fn handler(shared: &Arc<Shared>) -> server::Handler {
    let shared = Arc::clone(shared);
    Arc::new(move |request| match request {
        Request::PluginReload { name, path } => reload(&shared, &name, path),
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
            let counters = answer::Counters { vnis, drops };
            let vtep = shared.control_vtep();
            // The catalog's plugins are never called, so its lock is never held long.
            let plugins = request.concerns_plugins().then(|| shared.plugins.catalog());
            answer::handle(
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

/// `vtep plugin reload`: loads the plugin anew (from `path`, or where it was loaded from) off
/// the data path, so that traffic keeps flowing meanwhile; then swaps it in between two
/// batches. If the new one fails to load, the running one stays.
fn reload(shared: &Shared, name: &str, path: Option<String>) -> Response {
    let no_such = || Response::Error(format!("no plugin named {name:?}"));
    let Some(runtime) = shared.plugins.runtime() else {
        return no_such();
    };
    let spec = shared.plugins.catalog().get(name).map(|p| p.spec().clone());
    let Some(mut spec) = spec else {
        return no_such();
    };
    if let Some(p) = path {
        spec.path = PathBuf::from(p);
    }
    let started = Instant::now();
    let path = spec.path.display().to_string();
    let plugin = match Plugin::load(runtime, spec) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(plugin = name, path, error = %e, "plugin reload failed; the running one stays");
            return Response::Error(format!(
                "plugin {name:?} not reloaded (the running one stays): {e}"
            ));
        }
    };
    let report = plugin.report();
    match shared.plugins.replace(plugin) {
        Ok(old) => drop(old), // outside the lock
        Err(e) => {
            tracing::warn!(plugin = name, path, error = %e, "plugin reload failed; the running one stays");
            return Response::Error(format!(
                "plugin {name:?} not reloaded (the running one stays): {e}"
            ));
        }
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
