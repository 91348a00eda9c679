//! The decisions the FDB delegates: whether to learn or move an entry, and whether an entry
//! whose deadline has come expires. The built-in policy is the classic bridge's (learn every
//! valid source, expire at the aging time); wasm plugins implement the same traits.

use super::{Location, Tick, VniIdx};
use crate::wire::{MacAddr, Vni};

/// The FDB would add an entry or move one (refreshes are not asked about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnEvent {
    /// The VNI.
    pub vni: Vni,
    /// Its handle in the table, for a policy that defers the event and learns it later.
    pub idx: VniIdx,
    /// The source MAC being learned.
    pub mac: MacAddr,
    /// Where the frame came from.
    pub new: Location,
    /// Where the table has it now (a move), if anywhere.
    pub current: Option<Location>,
    /// The current entry was accepted as sticky: it moves only if a policy explicitly
    /// accepts the move.
    pub current_sticky: bool,
    /// Learned entries in the VNI now.
    pub vni_entries: usize,
    /// When the frame arrived.
    pub at: Tick,
}

/// What to do with a [`LearnEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnDecision {
    /// Add or move the entry.
    Accept,
    /// Leave the table as it is; the frame is still forwarded.
    Reject,
    /// Add or move the entry and make it sticky: later moves need a policy's explicit accept
    /// (the built-in policy refuses them), so a VM's MAC cannot be stolen by a frame that
    /// merely claims it.
    AcceptSticky,
    /// Not decided now: the policy took the event to decide it elsewhere (on a thread that
    /// may wait for a slow plugin, where the data path must not) and learns it then, with
    /// [`Fdb::learn`](super::Fdb::learn) at the event's time. The frame is forwarded meanwhile.
    Defer,
}

/// A learned entry's deadline has come: its MAC sent nothing for the VNI's aging time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeEvent {
    /// The VNI.
    pub vni: Vni,
    /// The entry's MAC.
    pub mac: MacAddr,
    /// Milliseconds since the entry was learned or last refreshed.
    pub idle_ms: Tick,
    /// Frames from the MAC since it was learned at its current location.
    pub hits: u32,
    /// Where the entry points.
    pub location: Location,
}

/// What to do with an [`AgeEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeDecision {
    /// Remove the entry.
    Expire,
    /// Keep it this many more milliseconds, then ask again.
    KeepFor(Tick),
}

/// Decides learning; see [`LearnEvent`].
pub trait LearnPolicy {
    /// Called on every add or move, never on a refresh, and never under the table's writer
    /// lock: the decision is committed only if the entry did not change meanwhile, else the
    /// policy is asked again about the entry as it is then (a few times at most). A policy
    /// that keeps state (a count of moves) must therefore expect to be asked twice about one
    /// frame now and then.
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision;
}

/// Decides aging; see [`AgeEvent`].
pub trait AgePolicy {
    /// Called when a learned entry's deadline has come, never under the table's writer lock:
    /// the decision is carried out only if the entry was not refreshed or moved meanwhile.
    fn decide_age(&mut self, event: &AgeEvent) -> AgeDecision;
}

/// The classic bridge: learn everything valid, expire at the aging time. It never moves a
/// sticky entry (only a plugin makes entries sticky, and only a plugin may move them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

impl LearnPolicy for Builtin {
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision {
        if event.current_sticky {
            LearnDecision::Reject
        } else {
            LearnDecision::Accept
        }
    }
}

impl AgePolicy for Builtin {
    fn decide_age(&mut self, _: &AgeEvent) -> AgeDecision {
        AgeDecision::Expire
    }
}
