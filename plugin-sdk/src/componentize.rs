//! For the host: turning a plugin's core module into a component, at load time.
//!
//! Plugins are built for `wasm32-unknown-unknown`: a core module whose imports are the `host`
//! functions and whose `component-type` custom section (from wit-bindgen) says which WIT world
//! it implements. `wit-component` wraps it into a component of that world, with no adapter: a
//! module that imports anything else (WASI, `env`) is refused here, before it is ever
//! instantiated.

/// Encodes the core module `core_wasm` (a plugin built with this SDK, or any module carrying a
/// `component-type` custom section for the `plugin` world) as a component, validated. The
/// module is validated first and the encoder's panics are caught (wit-component 0.254 panics on
/// some truncated modules), so any input gives a one-line error, never a panic.
pub fn componentize(core_wasm: &[u8]) -> Result<Vec<u8>, String> {
    wasmparser::Validator::new()
        .validate_all(core_wasm)
        .map_err(|e| format!("invalid core module: {e}"))?;
    let encode = || {
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(core_wasm)
            .and_then(|mut encoder| encoder.encode())
            .map_err(|e| format!("{e:#}"))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode))
        .unwrap_or_else(|_| Err("the component encoder failed on this module".to_owned()))
}
