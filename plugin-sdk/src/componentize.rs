//! For the host: turning a plugin's core module into a component, at load time.
//!
//! Plugins are built for `wasm32-unknown-unknown`: a core module whose imports are the `host`
//! functions and whose `component-type` custom section (from wit-bindgen) says which WIT world
//! it implements. `wit-component` wraps it into a component of that world, with no adapter: a
//! module that imports anything else (WASI, `env`) is refused here, before it is ever
//! instantiated.

/// Encodes the core module `core_wasm` (a plugin built with this SDK, or any module carrying a
/// `component-type` custom section for the `plugin` world) as a component, validated. The
/// error is `wit-component`'s message with its causes, one line.
pub fn componentize(core_wasm: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core_wasm)
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| format!("{e:#}"))
}
