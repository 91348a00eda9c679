//! What a plugin may ask of the host (the WIT `host` interface): logging, a monotonic clock,
//! counters, and the bytes of the frames being filtered.
//!
//! On wasm these call the component's imports. On every other target they run against a
//! stand-in in this process ([`crate::testing`]) so that plugin logic can be unit-tested with
//! a plain `cargo test`: logs go to stderr, the clock is `std::time::Instant` (or one a test
//! sets), counters live in a per-thread map.

use crate::types::Level;

#[cfg(target_arch = "wasm32")]
use crate::glue::imports as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::imports as imp;

/// Logs `message` through the host's `tracing`, tagged with the plugin's name. The host
/// rate-limits each plugin's logs, but a message per frame is still a bad idea.
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

/// Milliseconds on the host's monotonic clock (not wall time; only differences mean anything).
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// The bytes of frame `index` of the batch [`crate::Plugin::filter`] is looking at; empty
/// outside `filter` or for an index out of range. Each call copies the frame into the plugin,
/// so prefer the metadata when it is enough (and do not cache verdicts that depend on bytes).
pub fn frame_bytes(index: usize) -> Vec<u8> {
    match u32::try_from(index) {
        Ok(index) => imp::frame_bytes(index),
        Err(_) => Vec::new(),
    }
}

/// A counter shown in `vtep stats` and `vtep plugin show` under the plugin's name. Declare
/// counters once (in [`crate::Plugin::init`]) and keep the handle: adding is one cheap call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter(u32);

impl Counter {
    /// Declares the counter `name` (declaring a name again gives the same counter).
    pub fn new(name: &str) -> Counter {
        Counter(imp::counter(name))
    }

    /// Adds `delta`.
    pub fn add(self, delta: u64) {
        imp::counter_add(self.0, delta);
    }

    /// Adds one.
    pub fn inc(self) {
        self.add(1);
    }

    /// The host's id for the counter.
    pub const fn id(self) -> u32 {
        self.0
    }
}
