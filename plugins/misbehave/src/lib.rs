//! `misbehave`: a test fixture for the host's sandbox, not a plugin to deploy. Its config says
//! how it behaves in one hook (`hook`, default `"filter"`): well (`"pass"`, `"drop"`), slowly
//! (`"slow"`: spins `slow_ms` on every call, then behaves), or badly (`"loop"` forever,
//! `"trap"`, `"grow"` its memory without bound, `"fail-init"`); the other
//! hooks behave well. It counts its calls in a plugin counter, and can read every frame's
//! bytes through the host to exercise `frame-bytes`. In `"script"` mode every hook returns
//! whatever the traffic tells it to (see [`Mode::Script`]), for the host's fuzz target
//! `plugin_returns`.
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
    /// Return what the traffic says, in every hook (`hook` is ignored), so that a fuzzer
    /// that makes the frames and MACs decides the values the host gets back:
    ///
    /// - `filter` reads the first frame's bytes past its 14-byte Ethernet header: their first
    ///   byte is how many results to return (0 to 0x7f: one per frame; 0x80 to 0xfe: the
    ///   number of frames plus `(b & 0x7f) - 64`, at least 0; 0xff: 65,536), and the bytes
    ///   after it are the results, 7 bytes each, repeated as needed: a tag (odd: drop, even:
    ///   pass), the drop reason (u16, little-endian), `cache-secs` (u32, little-endian).
    ///   Without results to repeat, each is a pass not to be cached.
    /// - `learn` decides by the last octet of the MAC, modulo 3: accept, reject, accept-sticky.
    /// - `age` expires the entry if the MAC's second octet is even; else it keeps it for the
    ///   MAC's last four octets, read as a big-endian u32, seconds.
    Script,
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
            Mode::Pass | Mode::Drop | Mode::FailInit | Mode::Script => {}
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
}

impl wasm_vtep_plugin_sdk::Filter for Misbehave {
    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
        self.maybe_misbehave(Hook::Filter);
        self.frames.add(frames.len() as u64);
        if self.config.mode == Mode::Script {
            return scripted_results(frames.len());
        }
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
}

impl wasm_vtep_plugin_sdk::Learn for Misbehave {
    fn learn(&mut self, event: &LearnEvent) -> LearnDecision {
        self.maybe_misbehave(Hook::Learn);
        if self.config.mode == Mode::Script {
            return match event.mac.0[5] % 3 {
                0 => LearnDecision::Accept,
                1 => LearnDecision::Reject,
                _ => LearnDecision::AcceptSticky,
            };
        }
        match self.config.learn {
            Learn::Accept => LearnDecision::Accept,
            Learn::Reject => LearnDecision::Reject,
            Learn::Sticky => LearnDecision::AcceptSticky,
        }
    }
}

impl wasm_vtep_plugin_sdk::Age for Misbehave {
    fn age(&mut self, event: &AgeEvent) -> AgeDecision {
        self.maybe_misbehave(Hook::Age);
        if self.config.mode == Mode::Script {
            let [_, second, a, b, c, d] = event.mac.0;
            return if second % 2 == 0 {
                AgeDecision::Expire
            } else {
                AgeDecision::Keep(u32::from_be_bytes([a, b, c, d]))
            };
        }
        match self.config.keep_secs {
            0 => AgeDecision::Expire,
            n => AgeDecision::Keep(n),
        }
    }
}

/// `script` mode's filter results for a call with `frames` frames (see [`Mode::Script`]).
fn scripted_results(frames: usize) -> Vec<FilterResult> {
    if frames == 0 {
        return Vec::new();
    }
    let bytes = frame_bytes(0);
    let script = bytes.get(14..).unwrap_or_default();
    let Some((&count, results)) = script.split_first() else {
        return vec![FilterResult::pass(); frames];
    };
    let count = match count {
        0..=0x7f => frames,
        0xff => 1 << 16,
        c => (frames + usize::from(c & 0x7f)).saturating_sub(64),
    };
    let results: Vec<FilterResult> = results
        .chunks_exact(7)
        .map(|r| {
            let verdict = if r[0] % 2 == 1 {
                FilterResult::drop(u16::from_le_bytes([r[1], r[2]]))
            } else {
                FilterResult::pass()
            };
            verdict.cache_for(u32::from_le_bytes([r[3], r[4], r[5], r[6]]))
        })
        .collect();
    if results.is_empty() {
        return vec![FilterResult::pass(); count];
    }
    results.iter().copied().cycle().take(count).collect()
}

wasm_vtep_plugin_sdk::export_plugin!(Misbehave);
