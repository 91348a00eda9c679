//! The sandbox's mechanics: the memory cap (a `ResourceLimiter` that also remembers that it
//! refused, so that the abort that usually follows is reported as out of memory rather than
//! as a plain trap), and the classification of a failed call into a [`CallError`]. The time
//! budget is enforced by the [`Watchdog`](super::watchdog::Watchdog).

use std::time::Duration;

use wasmtime::{ResourceLimiter, Trap};

use super::error::CallError;
use super::results::TooManyResults;

/// Table elements a plugin may have, at most (a Rust plugin has a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps the linear memory of one store (all its memories together) and its tables.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: usize,
    used: usize,
    /// A growth was refused since the last [`Limiter::reset`].
    refused: bool,
}

impl Limiter {
    pub(crate) fn new(limit: usize) -> Limiter {
        Limiter {
            limit,
            used: 0,
            refused: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of linear memory in use.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Forgets refusals before a new call.
    pub(crate) fn reset(&mut self) {
        self.refused = false;
    }

    pub(crate) fn refused(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.limit {
            // `memory.grow` returns -1: a plugin may cope; most abort, which is then reported
            // as out of memory.
            self.refused = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn memories(&self) -> usize {
        4
    }

    fn tables(&self) -> usize {
        16
    }

    fn instances(&self) -> usize {
        64
    }
}

/// What a failed call (or instantiation) was.
pub(crate) fn classify(error: &wasmtime::Error, limiter: &Limiter, budget: Duration) -> CallError {
    if let Some(answer) = error.downcast_ref::<TooManyResults>() {
        return CallError::Invalid(answer.to_string());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(budget),
        _ if limiter.refused() => CallError::OutOfMemory(limiter.limit()),
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(first_line(&format!("{error:#}"))),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_all_growth() {
        let mut l = Limiter::new(1 << 20);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        assert!(!l.refused());
        assert!(!l.memory_growing(512 << 10, 576 << 10, None).unwrap());
        assert!(l.refused());
        assert_eq!(l.used(), 1 << 20);
        l.reset();
        assert!(!l.refused());
    }
}
