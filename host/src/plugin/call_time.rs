//! A plugin's call times as a histogram (all hooks), kept by each runner with its other
//! counters and added up for the report: fixed buckets from 1 µs to 10 ms, around the default
//! budget of 500 µs a call, so that a scrape shows how close a plugin runs to its budget and
//! how often a call is slow, which a mean and a maximum hide.

use std::time::Duration;

use crate::control::{CallBucket, CallHistogram};

/// The buckets' upper bounds, in nanoseconds (the last bucket, unbounded, follows them).
const BOUNDS_NS: [u64; 13] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000,
];

/// Calls per bucket (not cumulative; the last is past every bound) and their total time.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallTimes {
    calls: [u64; BOUNDS_NS.len() + 1],
    total: Duration,
}

impl CallTimes {
    /// Counts one call that took `took`.
    pub(crate) fn record(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.calls[bucket] += 1;
        self.total += took;
    }

    /// Adds another runner's calls.
    pub(crate) fn merge(&mut self, other: &CallTimes) {
        for (mine, theirs) in self.calls.iter_mut().zip(other.calls) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The histogram as reports carry it: cumulative counts per bound.
    pub(crate) fn report(&self) -> CallHistogram {
        let mut below = 0;
        let buckets = BOUNDS_NS
            .iter()
            .zip(self.calls)
            .map(|(&le_ns, n)| {
                below += n;
                CallBucket {
                    le_ns,
                    calls: below,
                }
            })
            .collect();
        CallHistogram {
            buckets,
            calls: self.calls.iter().sum(),
            sum_ns: u64::try_from(self.total.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_in_the_bucket_of_the_first_bound_they_do_not_exceed() {
        let mut a = CallTimes::default();
        a.record(Duration::from_nanos(1_000)); // on a bound: that bucket
        a.record(Duration::from_nanos(1_001));
        a.record(Duration::from_micros(700));
        let mut b = CallTimes::default();
        b.record(Duration::from_secs(1)); // past every bound
        a.merge(&b);
        let h = a.report();
        assert_eq!(h.calls, 4);
        assert_eq!(h.sum_ns, 1_000 + 1_001 + 700_000 + 1_000_000_000);
        let at = |le_ns: u64| h.buckets.iter().find(|b| b.le_ns == le_ns).map(|b| b.calls);
        assert_eq!(at(1_000), Some(1));
        assert_eq!(at(2_000), Some(2));
        assert_eq!(at(500_000), Some(2));
        assert_eq!(at(1_000_000), Some(3));
        assert_eq!(at(10_000_000), Some(3));
        assert!(h.buckets.windows(2).all(|w| w[0].le_ns < w[1].le_ns));
    }
}
