//! GoBGP's gRPC API, package `apipb` (API v3), generated at build time from the .proto files of
//! Debian's `golang-github-osrg-gobgp-dev` (see `build.rs`): the messages and the client of the
//! `GobgpApi` service, nothing else. wasm-vtep's EVPN edge (`wasm_vtep::evpn`) is its only user;
//! this crate exists so that the generated code is compiled once and kept out of the host's
//! lints.

// Generated code: the workspace's lints are not applied to this crate, clippy's defaults neither.
#![allow(clippy::all)]

/// The API's messages and the `gobgp_api_client::GobgpApiClient`.
pub mod apipb {
    tonic::include_proto!("apipb");
}

pub use prost;
pub use prost_types;
pub use tonic;
