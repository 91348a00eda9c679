//! `[[plugin]]` tables: checked field by field into [`PluginSpec`]s.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::file::PluginSection;
use super::plugin_spec::{DEFAULT_CACHE_ENTRIES, OnError, PluginSpec, Sandbox};
use crate::vtep::VniSettings;
use crate::wire::Vni;

/// Longest plugin name.
const MAX_NAME: usize = 64;

/// The plugins, in file order; `vnis` are the configured VNIs a plugin may be attached to.
pub(super) fn build(
    sections: &[PluginSection],
    vnis: &[VniSettings],
) -> Result<Vec<PluginSpec>, ConfigError> {
    let mut specs: Vec<PluginSpec> = Vec::with_capacity(sections.len());
    for (i, p) in sections.iter().enumerate() {
        let field = |name: &str| format!("plugin[{i}].{name}");
        let valid_name = !p.name.is_empty()
            && p.name.len() <= MAX_NAME
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(ConfigError::new(
                field("name"),
                format!(
                    "{:?} is not a plugin name (1 to {MAX_NAME} letters, digits, '-', '_', '.')",
                    p.name
                ),
            ));
        }
        if let Some(j) = specs.iter().position(|s| s.name == p.name) {
            return Err(ConfigError::new(
                field("name"),
                format!("{:?} is already plugin[{j}]", p.name),
            ));
        }
        if p.path.is_empty() {
            return Err(ConfigError::new(field("path"), "empty path"));
        }
        let mut spec = PluginSpec::new(p.name.clone(), PathBuf::from(&p.path));
        if let Some(ids) = &p.vnis {
            if ids.is_empty() {
                return Err(ConfigError::new(
                    field("vnis"),
                    "an empty list attaches the plugin to nothing (omit it for all VNIs)",
                ));
            }
            let mut list: Vec<Vni> = Vec::with_capacity(ids.len());
            for &id in ids {
                let vni = vnis
                    .iter()
                    .map(|v| v.vni)
                    .find(|v| v.get() == id)
                    .ok_or_else(|| {
                        ConfigError::new(field("vnis"), format!("VNI {id} is not configured"))
                    })?;
                if list.contains(&vni) {
                    return Err(ConfigError::new(
                        field("vnis"),
                        format!("VNI {id} is listed twice"),
                    ));
                }
                list.push(vni);
            }
            spec.vnis = Some(list);
        }
        spec.on_error = match p.on_error.as_deref() {
            None | Some("pass") => OnError::Pass,
            Some("drop") => OnError::Drop,
            Some(other) => {
                return Err(ConfigError::new(
                    field("on_error"),
                    format!("{other:?} is neither \"pass\" nor \"drop\""),
                ));
            }
        };
        let mut sandbox = Sandbox::new();
        if let Some(mib) = p.memory_mib {
            if !(1..=4096).contains(&mib) {
                return Err(ConfigError::new(
                    field("memory_mib"),
                    format!("{mib} is outside 1..=4096"),
                ));
            }
            sandbox = sandbox.with_memory_limit(usize::try_from(mib).unwrap_or(4096) << 20);
        }
        if let Some(us) = p.budget_us {
            if !(10..=1_000_000).contains(&us) {
                return Err(ConfigError::new(
                    field("budget_us"),
                    format!("{us} is outside 10..=1000000 (10 µs to 1 s)"),
                ));
            }
            sandbox = sandbox.with_time_budget(Duration::from_micros(us));
        }
        if let Some(ms) = p.init_budget_ms {
            if !(1..=60_000).contains(&ms) {
                return Err(ConfigError::new(
                    field("init_budget_ms"),
                    format!("{ms} is outside 1..=60000"),
                ));
            }
            sandbox = sandbox.with_init_budget(Duration::from_millis(ms));
        }
        if let Some(n) = p.max_failures {
            if n == 0 {
                return Err(ConfigError::new(
                    field("max_failures"),
                    "0 would detach the plugin before its first call",
                ));
            }
            sandbox = sandbox.with_max_failures(n);
        }
        spec.sandbox = sandbox;
        spec.cache_entries = p.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
        if let Some(table) = &p.config {
            spec.config = serde_json::to_string(table)
                .map_err(|e| ConfigError::new(field("config"), e.to_string()))?;
        }
        specs.push(spec);
    }
    Ok(specs)
}
