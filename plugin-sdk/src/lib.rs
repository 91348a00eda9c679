//! The wasm-vtep plugin SDK (the plugin interface arrives with the plugin issue).
