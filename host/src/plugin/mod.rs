//! The wasm plugin host: loads plugins (WebAssembly components of the `wasm-vtep:plugin`
//! interface, defined once in `plugin-sdk/wit`), runs them in a sandbox and offers them to the
//! pipeline as its [`Hooks`](crate::vtep::Hooks).
//!
//! - [`load`]: bytes to a compiled component of a supported interface version.
//! - [`Runtime`]: the engine, the linker (host functions only, no WASI) and the watchdog that
//!   interrupts calls past their budget.
//! - [`Sandbox`](crate::config::Sandbox), [`CallError`]: memory cap, time budget, failures; typed.
//! - [`Plugin`]: one plugin as one caller uses it: its instance and a spare, verdict cache and
//!   counters, and its failure policy; [`Plugin::another`] makes another caller's copy.
//! - [`PluginChain`]: one caller's plugins in order, implementing the pipeline's hooks.
//! - [`offline`]: a plugin run over a capture's frames outside the daemon (`vtep plugin test`).
//!
//! Contract with the pipeline: a plugin can delay a batch by at most its time budget (plus the
//! watchdog's wake-up latency) per call, and a call has at most [`MAX_FILTER_BATCH`] frames
//! (after a failed call, the rest of the batch is not offered); it can never crash the host,
//! and sees nothing but what the interface passes it. A failed instance is replaced by a spare made beforehand, off the data
//! path.

mod adapt;
mod bindings;
mod cache;
mod call_time;
mod chain;
mod convert;
mod error;
mod host;
mod instance;
pub mod load;
mod loaded;
pub mod offline;
mod ratelimit;
mod results;
mod runtime;
mod sandbox;
mod stats;
mod watchdog;

pub use chain::{DuplicateName, NoSuchPlugin, PluginChain};
pub use error::{CallError, LoadError, RuntimeError};
pub use load::SUPPORTED_VERSIONS;
pub use loaded::{MAX_FILTER_BATCH, Plugin};
pub use runtime::Runtime;
