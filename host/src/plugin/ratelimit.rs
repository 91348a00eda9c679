//! A token bucket for log lines: a plugin (or a failing one) cannot flood the daemon's log.

use std::time::Instant;

/// Allows `burst` events at once and `per_sec` a second after that; counts what it refuses.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    per_sec: u64,
    burst: u64,
    /// In thousandths of an event, so that refills need no floating point.
    milli_tokens: u64,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) const fn new(per_sec: u64, burst: u64) -> RateLimit {
        RateLimit {
            per_sec,
            burst,
            milli_tokens: burst * 1000,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if an event may go out now, `n` being how many were refused since the last
    /// one that went out; `None` if it must be dropped.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let ms =
                u64::try_from(now.saturating_duration_since(last).as_millis()).unwrap_or(u64::MAX);
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(ms.saturating_mul(self.per_sec))
                .min(self.burst * 1000);
        }
        self.last = Some(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            Some(core::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Events refused so far and not yet reported.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_refills() {
        let mut r = RateLimit::new(10, 3);
        let t = Instant::now();
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t), None);
        assert_eq!(r.suppressed(), 2);
        // 100 ms buys one more event, which reports the two refused.
        assert_eq!(r.allow(t + Duration::from_millis(100)), Some(2));
        assert_eq!(r.allow(t + Duration::from_millis(100)), None);
        // Never more than the burst, however long the pause.
        let later = t + Duration::from_secs(3600);
        assert!((0..3).all(|_| r.allow(later).is_some()));
        assert_eq!(r.allow(later), None);
    }
}
