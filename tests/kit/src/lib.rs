//! Fixtures for the tests and benches of wasm-vtep, written once: frames as plain bytes
//! ([`eth`] for Ethernet frames and ARP of any addresses; [`flow`] for TCP/UDP over IPv4/IPv6, optionally 802.1Q-tagged, with complete or partial
//! checksums; [`vm`] for the ARP, RARP and UDP frames of numbered VMs; [`vxlan`] to wrap them
//! for the underlay), the example plugins built to wasm ([`plugins`]) and an allocator that
//! counts one thread's heap allocations ([`counting`]).
//!
//! Layer: dev-only, outside the daemon. It depends on nothing of wasm-vtep (the daemon's unit
//! tests use it too, and would otherwise see a second copy of its types), so callers convert
//! MACs and headers into their own types. Builders panic on impossible arguments (a payload too
//! long for its length field): they serve tests, never input.

pub mod counting;
pub mod eth;
pub mod flow;
pub mod plugins;
pub mod vm;
pub mod vxlan;

/// The workspace's root directory (where `Cargo.toml`, `plugins/` and `host/` are).
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/kit/ is inside the workspace")
        .to_path_buf()
}
