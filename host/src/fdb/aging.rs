//! `AgingQueue`: deadlines of learned entries, earliest first.
//!
//! Refreshing an entry (a frame from its MAC) only updates the entry's `last_seen`; the queue is
//! touched when a deadline falls due. Then the entry is either expired or re-queued at its real
//! deadline, so the work is proportional to the entries whose deadline falls due, never to the
//! size of the table (the kernel instead walks every entry each aging period).
//!
//! Each learned entry has exactly one live item here: its `deadline` field matches it. Items
//! left behind by deleted or re-queued entries are told apart by that field and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Tick;
use super::index::Key;

/// A min-heap of `(deadline, key)`.
#[derive(Debug, Default)]
pub(crate) struct AgingQueue {
    heap: BinaryHeap<Reverse<(Tick, Key)>>,
}

impl AgingQueue {
    pub(crate) fn push(&mut self, deadline: Tick, key: Key) {
        self.heap.push(Reverse((deadline, key)));
    }

    /// The earliest deadline, live or stale.
    pub(crate) fn next_deadline(&self) -> Option<Tick> {
        self.heap.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns the earliest item if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, Key)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _))) if *deadline <= now => {
                self.heap.pop().map(|Reverse(item)| item)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let k = |n| Key::tagged(0, n);
        let mut q = AgingQueue::default();
        q.push(30, k(3));
        q.push(10, k(1));
        q.push(20, k(2));
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(20), Some((10, k(1))));
        assert_eq!(q.pop_due(20), Some((20, k(2))));
        assert_eq!(q.pop_due(20), None);
        assert_eq!(q.next_deadline(), Some(30));
    }
}
