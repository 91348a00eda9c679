//! The control plane's socket API: a Unix stream socket (mode 0600) carrying one JSON request
//! per line and one JSON response per line. [`server`] runs it on tokio beside the data path,
//! [`handler`] turns requests into calls on the pipeline, [`client`] is what the CLI uses, and
//! [`render`] prints replies for people.

pub mod client;
pub mod handler;
pub mod protocol;
pub mod render;
pub mod server;

pub use protocol::{FdbRow, Request, Response, StatsReport, VniStatsRow};
