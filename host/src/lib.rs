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
//! - [`config`]: the TOML configuration and its validation into plain settings types.
//! - The edges, which import the layers above but not each other: [`io`] (the sockets around
//!   the pipeline), [`plugin`] (the wasm plugin host, the pipeline's hooks), [`control`] (the
//!   control socket's protocol, server, client and rendering) and [`evpn`] (BGP EVPN routes
//!   to and from GoBGP's gRPC API).
//! - [`daemon`]: `vtep run`, the pipeline, sockets, plugins and control plane wired together.
//!
//! `ARCHITECTURE.md` at the repository's root has the whole map.

pub mod config;
pub mod control;
mod counters;
pub mod daemon;
pub mod evpn;
pub mod fdb;
pub mod io;
pub mod offload;
pub mod plugin;
mod sync;
pub mod vtep;
pub mod wire;
