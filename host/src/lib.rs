//! wasm-vtep: a programmable VXLAN tunnel endpoint (RFC 7348).
//!
//! Layers, innermost first:
//! - [`wire`]: pure packet views and representations (802.1Q, VXLAN, virtio-net header), and
//!   the one lenient parse of a frame's Ethernet, IP and TCP/UDP headers that the pipeline and
//!   plugins read ([`wire::FrameMeta`]).
//! - [`offload`]: what a VM's kernel leaves undone (partial checksums, GSO super-frames), as pure
//!   functions over frames.
//! - [`fdb`]: the per-VNI forwarding table with learning and aging.
//! - [`vtep`]: the sans-IO flood-and-learn pipeline: frames and an explicit `now` in, actions out.
//! - [`config`]: the TOML configuration and its validation.
//! - [`io`]: the thin shell of sockets and threads around the pipeline.
//! - [`control`]: the control socket, its protocol and the CLI client.
//! - [`daemon`]: `vtep run`, the pipeline and sockets wired together.

pub mod config;
pub mod control;
pub mod daemon;
pub mod fdb;
pub mod io;
pub mod offload;
pub mod plugin;
mod sync;
pub mod vtep;
pub mod wire;
