//! The pipeline's extension points: what it asks of a policy other than the built-in one.
//!
//! [`Hooks`] is owned by the core and implemented elsewhere (the wasm plugin runtime in
//! `plugin/`, plain Rust types in tests and benchmarks), so that the pipeline stays sans-IO:
//! it hands over parsed frames and FDB events and takes back verdicts and decisions. Learning
//! and aging reuse the FDB's [`LearnPolicy`] and [`AgePolicy`]; filtering is batched, so that a
//! policy that crosses a sandbox boundary pays for one crossing per batch, not per frame.

use std::time::Instant;

use crate::fdb::{AgePolicy, Builtin, LearnPolicy, Location};
use crate::wire::{FrameMeta, Vni};

/// Which way a frame is going through the VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A VM sent it out of a local port: about to be switched or encapsulated.
    FromPort,
    /// It arrived from the underlay, decapsulated: about to be delivered to local ports.
    FromUnderlay,
}

/// What a filter decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it (learning first).
    Pass,
    /// Drop it before learning: counted as [`DropReason::Filtered`](super::DropReason).
    Drop,
}

/// One frame offered to a filter: the pipeline's parse of it and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct FilterFrame<'a> {
    /// The VNI the frame is on.
    pub vni: Vni,
    /// Which way it goes.
    pub direction: Direction,
    /// The ingress port, or the remote VTEP that sent it.
    pub source: Location,
    /// Its parsed headers.
    pub meta: &'a FrameMeta,
    /// The (inner) Ethernet frame, for filters that need more than `meta`.
    pub bytes: &'a [u8],
}

/// The frames of one batch that passed the pipeline's own checks, in arrival order.
pub trait FilterBatch {
    /// Number of frames.
    fn len(&self) -> usize;

    /// The batch has no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame `i`, if `i < len()`.
    fn frame(&self, i: usize) -> Option<FilterFrame<'_>>;
}

/// The policies the pipeline consults: filtering, learning and aging.
pub trait Hooks: LearnPolicy + AgePolicy {
    /// Whether [`Hooks::filter`] wants frames of `vni` at all; a batch with no such frame
    /// costs no filter call. Called once per frame, so it must be cheap.
    fn filters(&self, vni: Vni) -> bool;

    /// Decides `verdicts[i]` for frame `i` of `batch`; every verdict comes in as
    /// [`Verdict::Pass`]. `now` is the pipeline's clock, for verdicts with a lifetime.
    fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]);
}

/// The classic bridge filters nothing.
impl Hooks for Builtin {
    fn filters(&self, _: Vni) -> bool {
        false
    }

    fn filter(&mut self, _: Instant, _: &dyn FilterBatch, _: &mut [Verdict]) {}
}
