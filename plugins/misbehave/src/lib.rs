//! `misbehave`: a test fixture for the host's sandbox, not a plugin to deploy. Its config says
//! how it behaves in one hook (`hook`, default `"filter"`): well (`"pass"`, `"drop"`), slowly
//! (`"slow"`: spins `slow_ms` on every call, then behaves), or badly (`"loop"` forever,
//! `"trap"`, `"grow"` its memory without bound, `"fail-init"`); the other
//! hooks behave well. It counts its calls in a plugin counter, and can read every frame's
//! bytes through the host to exercise `frame-bytes`.
//!
//! ```toml
//! [[plugin]]
//! name = "loops"
//! path = "target/wasm32-unknown-unknown/release/misbehave.wasm"
//! config = { mode = "loop" }
//! ```

use serde::Deserialize;
use wasm_vtep_plugin_sdk::{
    AgeDecision, AgeEvent, Counter, FilterResult, FrameMeta, LearnDecision, LearnEvent, Plugin,
    Value, frame_bytes, from_config, now_ms,
};

/// What the plugin does in its chosen hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Behave: pass every frame, accept learning (or as `learn` says), expire (or keep).
    Pass,
    /// Drop every frame with `reason`.
    Drop,
    /// Never return.
    Loop,
    /// Panic (a trap).
    Trap,
    /// Allocate until the memory runs out.
    Grow,
    /// Refuse the configuration.
    FailInit,
    /// Spin for `slow_ms` on every call (a plugin that uses its whole budget and still
    /// answers), then behave as `pass`.
    Slow,
}

/// Which hook misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// `filter`.
    Filter,
    /// `learn`.
    Learn,
    /// `age`.
    Age,
}

/// The learn decision when learning behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Learn {
    /// Accept.
    Accept,
    /// Reject.
    Reject,
    /// Accept as sticky.
    Sticky,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    #[serde(default = "default_hook")]
    hook: Hook,
    /// The reason code of drops.
    #[serde(default)]
    reason: u16,
    /// How long the host may cache each verdict.
    #[serde(default)]
    cache_secs: u32,
    #[serde(default = "default_learn")]
    learn: Learn,
    /// Age: keep entries this many seconds (0: expire).
    #[serde(default)]
    keep_secs: u32,
    /// Read every frame's bytes through the host (counted in `bytes`).
    #[serde(default)]
    read_bytes: bool,
    /// Behave for this many calls of the hook, then misbehave.
    #[serde(default)]
    good_calls: u64,
    /// `slow`: how long each call spins, in milliseconds.
    #[serde(default)]
    slow_ms: u64,
}

const fn default_hook() -> Hook {
    Hook::Filter
}

const fn default_learn() -> Learn {
    Learn::Accept
}

/// The plugin.
#[derive(Debug)]
pub struct Misbehave {
    config: Config,
    calls: u64,
    frames: Counter,
    bytes: Counter,
    /// What `grow` holds on to, so that it is never freed.
    hoard: Vec<Vec<u8>>,
}

impl Misbehave {
    /// Counts a call of `hook` and misbehaves if it is the chosen one and its good calls are
    /// used up; returns normally only if it behaves.
    fn maybe_misbehave(&mut self, hook: Hook) {
        if hook != self.config.hook {
            return;
        }
        self.calls += 1;
        if self.calls <= self.config.good_calls {
            return;
        }
        match self.config.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Trap => panic!("misbehave: trapping as configured"),
            Mode::Grow => loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                self.hoard.push(core::hint::black_box(chunk));
            },
            Mode::Slow => {
                let until = now_ms() + self.config.slow_ms;
                while core::hint::black_box(now_ms()) < until {}
            }
            Mode::Pass | Mode::Drop | Mode::FailInit => {}
        }
    }
}

impl Plugin for Misbehave {
    fn init(config: &Value) -> Result<Self, String> {
        let config: Config = from_config(config)?;
        if config.mode == Mode::FailInit {
            return Err("misbehave: refusing to start, as configured".to_owned());
        }
        Ok(Misbehave {
            config,
            calls: 0,
            frames: Counter::new("frames"),
            bytes: Counter::new("bytes"),
            hoard: Vec::new(),
        })
    }

    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
        self.maybe_misbehave(Hook::Filter);
        self.frames.add(frames.len() as u64);
        if self.config.read_bytes {
            for i in 0..frames.len() {
                self.bytes.add(frame_bytes(i).len() as u64);
            }
        }
        let verdict = match self.config.mode {
            Mode::Drop => FilterResult::drop(self.config.reason),
            _ => FilterResult::pass(),
        };
        vec![verdict.cache_for(self.config.cache_secs); frames.len()]
    }

    fn learn(&mut self, _: &LearnEvent) -> LearnDecision {
        self.maybe_misbehave(Hook::Learn);
        match self.config.learn {
            Learn::Accept => LearnDecision::Accept,
            Learn::Reject => LearnDecision::Reject,
            Learn::Sticky => LearnDecision::AcceptSticky,
        }
    }

    fn age(&mut self, _: &AgeEvent) -> AgeDecision {
        self.maybe_misbehave(Hook::Age);
        match self.config.keep_secs {
            0 => AgeDecision::Expire,
            n => AgeDecision::Keep(n),
        }
    }
}

wasm_vtep_plugin_sdk::export_plugin!(Misbehave, hooks: [filter, learn, age]);
