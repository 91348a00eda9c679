//! Deterministic simulations of VTEPs joined by an in-memory underlay (quinn's `Pair` idea):
//! every step is driven by hand with an explicit clock, and the tables are checked after each.

// Test frames are assembled byte by byte from small known values.
#![allow(clippy::cast_possible_truncation)]

mod frames;
mod hooks;
mod pipeline;
mod sim;
mod super_frames;
mod walkthrough;
