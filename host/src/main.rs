//! `vtep`: the wasm-vtep daemon and its command-line client.

fn main() {}
