//! The Rust side of the plugin interface, generated from `plugin-sdk/wit` (the one definition
//! the SDK's guest bindings also come from): the imports a plugin may call (`host`) and the
//! exports the host calls (`hooks`).

// Generated code: its items are as public as the macro makes them.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
});
