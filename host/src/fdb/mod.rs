//! The forwarding database: per-VNI tables of `MAC -> local port | remote VTEP`, learned from
//! traffic or configured, with aging driven by an explicit clock (`Tick`, milliseconds since
//! the pipeline's epoch). Pure data structure: no I/O, no clock reads.

mod aging;
mod index;
mod location;
mod policy;
mod remotes;
mod table;

pub use location::{Location, PortId};
pub use policy::{
    AgeDecision, AgeEvent, AgePolicy, Builtin, LearnDecision, LearnEvent, LearnPolicy,
};
pub use table::{
    EXPIRE_BATCH, EntryView, Fdb, FdbError, FdbReader, JOURNAL_CAPACITY, LearnOutcome,
    LocalChanges, MAX_VNIS, VniIdx, VniTableSettings,
};

/// Milliseconds since the pipeline's epoch.
pub type Tick = u64;

#[cfg(test)]
mod tests;
