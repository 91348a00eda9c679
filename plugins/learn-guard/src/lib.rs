//! `learn-guard`: a wasm-vtep plugin that decides MAC learning: a per-VNI limit on learned
//! MACs, the remote VTEPs a VNI may learn from, sticky MACs that never move once learned, and
//! dampening of MACs that flap between locations.
//!
//! Layer: a plugin (the `learn` hook only). Contract: called on every add or move the FDB
//! would make (never on a refresh); a rejection leaves the table as it is and the frame is
//! still forwarded, as the kernel bridge does for a locked port. Checks, in order: allowed
//! remotes, then the limit (new entries) or stickiness and dampening (moves). Each rejection
//! kind has its counter.
//!
//! ```toml
//! [[plugin]]
//! name = "guard"
//! path = "target/wasm32-unknown-unknown/release/learn_guard.wasm"
//! vnis = [5001, 5002]
//! config = { max_macs = { default = 1000, 5002 = 16 }, allowed_remotes = { 5001 = ["198.18.0.2"] },
//!            sticky = ["02:00:00:00:00:fe"], max_moves = 3, window_secs = 60 }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::Deserialize;
use wasm_vtep_plugin_sdk::{
    Counter, LearnDecision, LearnEvent, Level, Location, MacAddr, PerVni, Plugin, Value,
    from_config, log, now_ms,
};

/// The configuration as written; every setting is optional, and an empty configuration
/// accepts everything (the built-in policy).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Learned entries per VNI; a new MAC beyond it is not learned.
    #[serde(default)]
    max_macs: PerVni<u32>,
    /// The remote VTEPs a VNI may learn MACs behind; a VNI not named learns from any.
    #[serde(default)]
    allowed_remotes: PerVni<Vec<IpAddr>>,
    /// MACs learned as sticky: where they are first learned, they stay until they age out.
    #[serde(default)]
    sticky: PerVni<Vec<MacAddr>>,
    /// Moves of one MAC allowed within `window_secs`; further moves are rejected until the
    /// oldest of them leaves the window.
    #[serde(default)]
    max_moves: Option<u32>,
    #[serde(default)]
    window_secs: Option<u32>,
}

/// The window `max_moves` counts in when `window_secs` is not given.
pub const DEFAULT_WINDOW_SECS: u32 = 60;

/// Flap dampening: at most `max_moves` moves per MAC in any `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dampening {
    max_moves: u32,
    window_ms: u64,
}

/// One MAC's recent accepted moves.
#[derive(Debug, Default)]
struct Moves {
    /// When each happened, oldest first; never more than `max_moves`.
    at: VecDeque<u64>,
    /// The MAC is being dampened and that was logged (once per episode).
    logged: bool,
}

/// The plugin.
#[derive(Debug)]
pub struct LearnGuard {
    max_macs: PerVni<u32>,
    allowed_remotes: PerVni<Vec<IpAddr>>,
    sticky: PerVni<Vec<MacAddr>>,
    dampening: Option<Dampening>,
    moves: HashMap<(u32, MacAddr), Moves>,
    /// When `moves` was last swept of MACs that have not moved for a window.
    swept_at: u64,
    counters: Counters,
}

#[derive(Debug)]
struct Counters {
    max_macs: Counter,
    remote: Counter,
    sticky: Counter,
    flapping: Counter,
    accepted_sticky: Counter,
}

impl LearnGuard {
    fn remote_allowed(&self, vni: u32, location: Location) -> bool {
        match (location, self.allowed_remotes.get(vni)) {
            (Location::Remote(ip), Some(allowed)) => allowed.contains(&ip),
            _ => true,
        }
    }

    fn is_sticky(&self, vni: u32, mac: MacAddr) -> bool {
        self.sticky.get(vni).is_some_and(|macs| macs.contains(&mac))
    }

    /// Whether a move of `(vni, mac)` at `now` is within the dampening limit; records it if so.
    fn allow_move(&mut self, vni: u32, mac: MacAddr, now: u64) -> bool {
        let Some(d) = self.dampening else {
            return true;
        };
        self.sweep(now, d.window_ms);
        let moves = self.moves.entry((vni, mac)).or_default();
        while moves
            .at
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= d.window_ms)
        {
            moves.at.pop_front();
        }
        if moves.at.len() < d.max_moves as usize {
            moves.at.push_back(now);
            moves.logged = false;
            return true;
        }
        if !moves.logged {
            moves.logged = true;
            log(
                Level::Warn,
                &format!(
                    "vni {vni}: {mac} reached its limit of {} moves in {} s: further moves rejected until the window passes",
                    d.max_moves,
                    d.window_ms / 1000
                ),
            );
        }
        false
    }

    /// Forgets MACs whose last move left the window, at most once a window, so that the map
    /// holds only MACs that moved recently.
    fn sweep(&mut self, now: u64, window_ms: u64) {
        if now.saturating_sub(self.swept_at) < window_ms {
            return;
        }
        self.swept_at = now;
        self.moves.retain(|_, m| {
            m.at.back()
                .is_some_and(|&t| now.saturating_sub(t) < window_ms)
        });
    }

    /// MACs with moves in the dampening window.
    pub fn tracked_macs(&self) -> usize {
        self.moves.len()
    }
}

impl Plugin for LearnGuard {
    fn init(config: &Value) -> Result<Self, String> {
        let raw: RawConfig = from_config(config)?;
        let dampening = match (raw.max_moves, raw.window_secs) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(
                    "config.window_secs: needs max_moves (the moves allowed in the window)".into(),
                );
            }
            (Some(0), _) => {
                return Err("config.max_moves: must be at least 1 (to forbid every move, list the MACs in `sticky`)".into());
            }
            (Some(_), Some(0)) => return Err("config.window_secs: must be at least 1".into()),
            (Some(max_moves), window) => Some(Dampening {
                max_moves,
                window_ms: u64::from(window.unwrap_or(DEFAULT_WINDOW_SECS)) * 1000,
            }),
        };
        if let Some(bad) = raw.sticky.values().flatten().find(|m| m.is_multicast()) {
            return Err(format!(
                "config.sticky: {bad} is a multicast address, which is never learned"
            ));
        }
        Ok(LearnGuard {
            max_macs: raw.max_macs,
            allowed_remotes: raw.allowed_remotes,
            sticky: raw.sticky,
            dampening,
            moves: HashMap::new(),
            swept_at: 0,
            counters: Counters {
                max_macs: Counter::new("rejected_max_macs"),
                remote: Counter::new("rejected_remote"),
                sticky: Counter::new("rejected_sticky"),
                flapping: Counter::new("rejected_flapping"),
                accepted_sticky: Counter::new("accepted_sticky"),
            },
        })
    }
}

impl wasm_vtep_plugin_sdk::Learn for LearnGuard {
    fn learn(&mut self, e: &LearnEvent) -> LearnDecision {
        if !self.remote_allowed(e.vni, e.new_location) {
            self.counters.remote.inc();
            return LearnDecision::Reject;
        }
        let sticky = self.is_sticky(e.vni, e.mac);
        if e.current.is_none() {
            if self
                .max_macs
                .get(e.vni)
                .is_some_and(|&max| e.vni_entries >= max)
            {
                self.counters.max_macs.inc();
                return LearnDecision::Reject;
            }
            if sticky {
                self.counters.accepted_sticky.inc();
                return LearnDecision::AcceptSticky;
            }
            return LearnDecision::Accept;
        }
        // A move. A sticky MAC stays where it was first learned, whether this plugin or
        // another made it sticky, or it is listed here but was learned before the plugin
        // came (it then moves only after aging out and being learned again, sticky). Not
        // logged: a spoofer's every frame asks again; the counter says it.
        if sticky || e.current_sticky {
            self.counters.sticky.inc();
            return LearnDecision::Reject;
        }
        if !self.allow_move(e.vni, e.mac, now_ms()) {
            self.counters.flapping.inc();
            return LearnDecision::Reject;
        }
        LearnDecision::Accept
    }
}

wasm_vtep_plugin_sdk::export_plugin!(LearnGuard);

#[cfg(test)]
mod tests;
