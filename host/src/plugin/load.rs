//! From bytes to a compiled component of a supported interface version.
//!
//! Plugins are built for `wasm32-unknown-unknown` as core modules that carry their component
//! type (a custom section the SDK's bindings generator embeds); the host wraps them into
//! components with `wit-component` as it loads them, so a plugin imports nothing but what the
//! host defines (no WASI adapter). A ready-made component is accepted as it is. Either way the
//! component's `hooks` export names the interface version it was built for, and only the
//! versions in [`SUPPORTED_VERSIONS`] are accepted.

use std::borrow::Cow;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{HOOKS_INTERFACE, Version};
use super::error::LoadError;

/// The interface versions this host speaks, oldest first (it works in the newest's terms and
/// adapts the others at the boundary).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// What a `.wasm` file holds, by its preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Module,
    Component,
}

/// Reads the 8-byte preamble: magic, then a 16-bit version and a 16-bit layer (0: a core
/// module of version 1; 1: a component).
fn kind(bytes: &[u8]) -> Option<Kind> {
    let preamble = bytes.get(..8)?;
    if &preamble[..4] != WASM_MAGIC {
        return None;
    }
    let version = u16::from_le_bytes([preamble[4], preamble[5]]);
    let layer = u16::from_le_bytes([preamble[6], preamble[7]]);
    match (layer, version) {
        (0, 1) => Some(Kind::Module),
        (1, _) => Some(Kind::Component),
        _ => None,
    }
}

/// The component in `bytes`: as is, or made from a core module and its embedded component type.
///
/// A core module goes through the SDK's [`componentize`](wasm_vtep_plugin_sdk::componentize),
/// the one place that knows how a plugin module becomes a component (validated first, the
/// encoder's panics caught).
pub fn componentize(bytes: &[u8]) -> Result<Cow<'_, [u8]>, LoadError> {
    match kind(bytes).ok_or(LoadError::NotWasm)? {
        Kind::Component => Ok(Cow::Borrowed(bytes)),
        Kind::Module => wasm_vtep_plugin_sdk::componentize(bytes)
            .map(Cow::Owned)
            .map_err(LoadError::Componentize),
    }
}

/// The interface version of the `hooks` export of `component`.
pub fn interface_version(engine: &Engine, component: &Component) -> Result<String, LoadError> {
    let ty = component.component_type();
    for (name, _) in ty.exports(engine) {
        if let Some(rest) = name.strip_prefix(HOOKS_INTERFACE) {
            return match rest.strip_prefix('@') {
                Some(version) => Ok(version.to_owned()),
                None if rest.is_empty() => Ok("(unversioned)".to_owned()),
                None => continue, // another interface that merely shares the prefix
            };
        }
    }
    Err(LoadError::NotAPlugin)
}

/// The version `found` names, or a refusal naming it and the versions this host speaks.
pub(crate) fn check_version(found: &str) -> Result<Version, LoadError> {
    Version::parse(found).ok_or_else(|| LoadError::Version {
        found: found.to_owned(),
        supported: SUPPORTED_VERSIONS.join(", "),
    })
}

/// Compiles `bytes` (a core module or a component) and checks its interface version.
/// Returns the component and the version.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<(Component, Version), LoadError> {
    let component_bytes = componentize(bytes)?;
    let component = Component::new(engine, &component_bytes)
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    let version = interface_version(engine, &component)?;
    Ok((component, check_version(&version)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles() {
        assert_eq!(kind(b"\0asm\x01\0\0\0"), Some(Kind::Module));
        assert_eq!(kind(b"\0asm\x0d\0\x01\0"), Some(Kind::Component));
        assert_eq!(kind(b"\0asm\x02\0\0\0"), None);
        assert_eq!(kind(b"\0asm"), None);
        assert_eq!(kind(b"\x7fELF\x02\x01\x01\0"), None);
        assert!(matches!(componentize(b"hello"), Err(LoadError::NotWasm)));
    }

    #[test]
    fn versions_are_named_both_ways() {
        assert_eq!(check_version("0.1.0").unwrap(), Version::V0_1);
        assert_eq!(check_version("0.2.0").unwrap(), Version::V0_2);
        let e = check_version("0.3.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin is built for wasm-vtep:plugin@0.3.0; this host supports 0.1.0, 0.2.0"
        );
        let spoken: Vec<&str> = Version::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(spoken, SUPPORTED_VERSIONS);
    }
}
