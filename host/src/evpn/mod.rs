//! BGP EVPN (RFC 7432, RFC 8365) through GoBGP's gRPC API: an edge beside `io`, `plugin` and
//! `control`. [`route`] holds the typed routes and FRR's defaults (RD, RT), [`path`] and
//! [`parse`] translate them to and from GoBGP's `Path` messages (pure, tested without gobgpd),
//! [`mobility`] decides where a MAC is when several VTEPs announce it (RFC 7432 §15, pure),
//! and [`client`] is the gRPC client (the only I/O here). GoBGP's generated API is the
//! `wasm-vtep-gobgp-api` crate.
//!
//! Contract: nothing here writes a forwarding table; routes come in and go out as
//! [`RemoteEvent`]s and [`LocalRoute`]s that the daemon wires to the pipeline through `Vtep`'s
//! control-plane interface.

mod any;
pub mod client;
pub mod engine;
pub mod mobility;
pub mod parse;
pub mod path;
pub mod plan;
pub mod route;
mod small_map;

pub use client::{ClientError, Gobgp, PeerSession, Received, Watch};
pub use engine::{BgpOp, Engine, EngineCounters, VniPlan, VniSummary};
pub use parse::{Import, ImportConflict, RouteError, decode};
pub use path::emit;
pub use route::{
    AutoRdError, LocalRoute, MacMobility, RemoteEvent, RemoteRoute, RouteDistinguisher,
    RouteTarget, VniExport,
};

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;
