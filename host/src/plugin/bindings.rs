//! The Rust side of the plugin interface, generated from `plugin-sdk/wit` (the one definition
//! the SDK's guest bindings also come from): the imports a plugin may call (`host`) and the
//! exports the host calls (`hooks`).

// Generated code: its items are as public as the macro makes them.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
});

/// The interface version these bindings are generated from: the `package` line of the WIT.
pub(crate) const INTERFACE_VERSION: &str = "0.1.0";

/// The interface a plugin exports, without its version: what the host calls.
pub(crate) const HOOKS_INTERFACE: &str = "wasm-vtep:plugin/hooks";

#[cfg(test)]
mod tests {
    #[test]
    fn interface_version_is_the_wits() {
        let wit = include_str!("../../../plugin-sdk/wit/plugin.wit");
        let package = format!("package wasm-vtep:plugin@{};", super::INTERFACE_VERSION);
        assert!(
            wit.lines().any(|l| l == package),
            "{package} not in the WIT"
        );
    }
}
