//! The journal of local changes: which (VNI, MAC) keys a local port gained or lost, for a
//! control plane that announces the VTEP's local MACs (EVPN type 2 routes). Off until a
//! control plane asks for it ([`Fdb::journal_local_changes`]); then every change to an entry
//! at a local port (learned, moved here or away, expired, removed, made static) notes its key
//! under the writer lock the change holds anyway, and the control plane takes the keys
//! ([`Fdb::take_local_changes`]) and reads each key's entry as it is then.
//!
//! Contract: bounded. Past [`JOURNAL_CAPACITY`] keys not yet taken, the journal forgets them
//! and says so once: the control plane must then read every entry anew (nothing is lost, the
//! table is the truth; only the hint of what changed is).

use super::Fdb;
use super::entry::split_key;
use crate::fdb::index::Key;
use crate::wire::{MacAddr, Vni};

/// Keys the journal holds at most between two takes.
pub const JOURNAL_CAPACITY: usize = 65_536;

/// What [`Fdb::take_local_changes`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChanges {
    /// These keys (appended to the caller's vector) are all that changed.
    Keys,
    /// More changed than the journal holds: read every entry anew.
    Overflowed,
}

/// The journal, inside the writer's state.
#[derive(Debug, Default)]
pub(super) struct Journal {
    on: bool,
    keys: Vec<Key>,
    overflowed: bool,
}

impl Journal {
    /// Notes that the local entry of `k` changed (if the journal is on).
    pub(super) fn note(&mut self, k: Key) {
        if !self.on || self.overflowed {
            return;
        }
        if self.keys.len() >= JOURNAL_CAPACITY {
            // Full of notes, perhaps of few keys (one MAC flapping): keep each key once, and
            // give up only if that is still too many.
            self.keys.sort_unstable();
            self.keys.dedup();
            if self.keys.len() >= JOURNAL_CAPACITY {
                self.keys = Vec::new();
                self.overflowed = true;
                return;
            }
        }
        self.keys.push(k);
    }
}

impl Fdb {
    /// Starts (or stops) journaling changes to local entries; starting drops what an earlier
    /// journal held.
    pub fn journal_local_changes(&self, on: bool) {
        let mut w = self.writer();
        w.journal = Journal {
            on,
            ..Journal::default()
        };
    }

    /// Appends the (VNI, MAC) keys whose local entry changed since the last call to `into`
    /// (each once, in no particular order), or says that more changed than the journal holds.
    pub fn take_local_changes(&self, into: &mut Vec<(Vni, MacAddr)>) -> LocalChanges {
        let (keys, overflowed) = {
            let mut w = self.writer();
            let j = &mut w.journal;
            (
                core::mem::take(&mut j.keys),
                core::mem::take(&mut j.overflowed),
            )
        };
        if overflowed {
            return LocalChanges::Overflowed;
        }
        let mut taken: Vec<(Vni, MacAddr)> = keys
            .into_iter()
            .map(|k| {
                let (idx, mac) = split_key(k);
                (self.vni_id(idx), mac)
            })
            .collect();
        taken.sort_unstable_by_key(|&(v, m)| (v.get(), m.to_u64()));
        taken.dedup();
        into.extend(taken);
        LocalChanges::Keys
    }
}
