//! Network test harness for wasm-vtep.
