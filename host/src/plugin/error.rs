//! Why a plugin could not be loaded, and how one of its calls failed. A call failure is a
//! variant per cause (trap, timeout, memory), so that each is counted apart.

use std::path::PathBuf;
use std::time::Duration;

/// How a call into a plugin failed. Every failure leaves the instance unusable: the host
/// re-creates it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin trapped (`unreachable`, a panic, an out-of-bounds access, stack exhaustion).
    #[error("trapped: {0}")]
    Trap(String),
    /// It ran past its time budget and was interrupted.
    #[error("ran past its time budget of {} µs", .0.as_micros())]
    Timeout(Duration),
    /// It tried to grow its memory past the cap and then failed.
    #[error("needed more than its memory limit of {} KiB", .0 / 1024)]
    OutOfMemory(usize),
    /// It answered something the interface does not allow (e.g. fewer verdicts than frames).
    #[error("broke the interface: {0}")]
    Invalid(String),
}

/// Why a plugin is not loaded. The message names the plugin's problem in words an operator
/// can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed (in the message, not a separate cause: one line says it all).
        error: std::io::Error,
    },
    /// The bytes are not WebAssembly.
    #[error("not a WebAssembly module or component (bad magic or version)")]
    NotWasm,
    /// A core module that cannot be made into a component (typically: no component type,
    /// i.e. not built with the plugin SDK).
    #[error("cannot make a component of this core module (is it built with the plugin SDK?): {0}")]
    Componentize(String),
    /// The component does not validate or compile.
    #[error("invalid component: {0}")]
    Compile(String),
    /// A component that exports no `wasm-vtep:plugin/hooks`.
    #[error(
        "not a wasm-vtep plugin: it exports no {} interface",
        super::bindings::HOOKS_INTERFACE
    )]
    NotAPlugin,
    /// Built for an interface version this host does not speak.
    #[error("plugin is built for wasm-vtep:plugin@{found}; this host supports {supported}")]
    Version {
        /// The version the plugin exports.
        found: String,
        /// The versions this host accepts, comma-separated.
        supported: String,
    },
    /// It imports something the host does not provide (WASI, another interface), or its
    /// exports do not have the interface's types.
    #[error("plugin does not link: {0}")]
    Link(String),
    /// Instantiation failed (e.g. its initial memory exceeds the cap).
    #[error("instantiating the plugin: {0}")]
    Instantiate(CallError),
    /// `init` trapped or timed out.
    #[error("plugin init failed: {0}")]
    InitCall(CallError),
    /// `init` returned an error: the plugin refuses its configuration.
    #[error("plugin init failed: {0}")]
    Init(String),
}

/// Why the plugin runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting the plugin runtime: {0}")]
pub struct RuntimeError(pub(crate) String);
