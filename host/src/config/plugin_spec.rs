//! What the configuration says about one plugin, as plain settings the plugin host takes: where
//! its module is, which VNIs it is attached to, what a failure means for the frames, its
//! `config` table, and its sandbox.

use std::path::PathBuf;
use std::time::Duration;

use crate::wire::Vni;

/// A plugin's linear memory, at most (all its memories together).
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;
/// How long one hook call may run. A plugin that loops is interrupted this long after the
/// call starts, plus the watchdog's wake-up latency (see `plugin::Runtime`).
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_micros(500);
/// How long `init` may run when a plugin is loaded or reloaded (off the data path).
pub const DEFAULT_INIT_BUDGET: Duration = Duration::from_millis(100);
/// Consecutive failures after which a plugin is detached.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// Cached filter verdicts per plugin, at most.
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// What a trap, a timeout or an exhausted memory means for the frames of the failed call
/// (and, once a plugin is detached, for every frame it would have seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Forward them as if the plugin had said pass (fail open); learn and age decisions fall
    /// back to the built-in policy.
    #[default]
    Pass,
    /// Drop them (fail closed); a failed learn call rejects the learn event.
    Drop,
}

impl OnError {
    /// `"pass"` or `"drop"`, as in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            OnError::Pass => "pass",
            OnError::Drop => "drop",
        }
    }
}

/// The limits a plugin runs under. A builder: start from [`Sandbox::new`] (the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    memory_limit: usize,
    time_budget: Duration,
    init_budget: Duration,
    max_failures: u32,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    /// The defaults: 16 MiB, 500 µs per call, 100 ms for `init`, detached after 10
    /// consecutive failures.
    pub const fn new() -> Sandbox {
        Sandbox {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            time_budget: DEFAULT_TIME_BUDGET,
            init_budget: DEFAULT_INIT_BUDGET,
            max_failures: DEFAULT_MAX_FAILURES,
        }
    }

    /// Caps the plugin's linear memory at `bytes`; growing past it fails, and a plugin that
    /// cannot cope (most abort) fails its call with `plugin::CallError::OutOfMemory`.
    pub const fn with_memory_limit(mut self, bytes: usize) -> Sandbox {
        self.memory_limit = bytes;
        self
    }

    /// How long one `filter`, `learn` or `age` call may run, and `init` when the instance is
    /// re-created after a failure (that happens on the data path).
    pub const fn with_time_budget(mut self, budget: Duration) -> Sandbox {
        self.time_budget = budget;
        self
    }

    /// How long `init` may run when the plugin is loaded or reloaded.
    pub const fn with_init_budget(mut self, budget: Duration) -> Sandbox {
        self.init_budget = budget;
        self
    }

    /// Detaches the plugin after this many consecutive failed calls (at least 1).
    pub const fn with_max_failures(mut self, failures: u32) -> Sandbox {
        self.max_failures = if failures == 0 { 1 } else { failures };
        self
    }

    /// The memory cap in bytes.
    pub const fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// The budget of one hook call.
    pub const fn time_budget(&self) -> Duration {
        self.time_budget
    }

    /// The budget of `init` at load time.
    pub const fn init_budget(&self) -> Duration {
        self.init_budget
    }

    /// Consecutive failures before detachment.
    pub const fn max_failures(&self) -> u32 {
        self.max_failures
    }
}

/// One `[[plugin]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Unique among the plugins: what the CLI calls it.
    pub name: String,
    /// The `.wasm` file: a component, or a core module carrying its component type.
    pub path: PathBuf,
    /// The VNIs whose frames and FDB events it sees; `None`: all.
    pub vnis: Option<Vec<Vni>>,
    /// What a failed call means for its frames.
    pub on_error: OnError,
    /// Its `config` table, as the JSON text `init` receives.
    pub config: String,
    /// Its limits.
    pub sandbox: Sandbox,
    /// Cached filter verdicts, at most.
    pub cache_entries: usize,
}

impl PluginSpec {
    /// A plugin attached to every VNI, with an empty config and the default sandbox.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            vnis: None,
            on_error: OnError::Pass,
            config: "{}".to_owned(),
            sandbox: Sandbox::new(),
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }

    /// Whether it is attached to `vni`.
    pub fn attached_to(&self, vni: Vni) -> bool {
        self.vnis.as_ref().is_none_or(|v| v.contains(&vni))
    }
}
