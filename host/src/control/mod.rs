//! The control plane's socket API: a Unix stream socket (mode 0600) carrying one JSON request
//! per line and one JSON response per line. [`protocol`] holds its messages (plain serde types:
//! requests, and the reports the daemon and the plugin host fill in), [`server`] runs it on
//! tokio beside the data path and hands each request to the daemon's
//! [`Handler`](server::Handler) (the one interface between the two: a request in, a response
//! out), [`client`] is what the CLI uses, and [`render`] prints replies for people.
//!
//! Contract: this module knows nothing of the pipeline or the plugins; the daemon answers
//! (`daemon::answer`).

pub mod client;
pub mod protocol;
pub mod render;
pub mod server;

pub use protocol::{
    CallBucket, CallHistogram, CallReport, EvpnPeerRow, EvpnReport, EvpnVniRow, FdbRow,
    PluginReport, Request, Response, StatsReport, VniStatsRow,
};
