//! [`SourcePorts`]: the outer UDP source ports that flows are spread over (RFC 7348 §5: "it is
//! recommended that the UDP source port number be calculated using a hash of fields from the
//! inner packet").
//!
//! A set of ports rather than a whole range: the I/O shell sends each flow from a UDP socket
//! bound to its source port (so that the kernel can segment a batch of a flow's packets with
//! UDP GSO), and it cannot hold 16,384 sockets. Sixty-four ports are ample entropy for
//! underlay ECMP, which hashes into a handful of paths. The core picks a port from the set; the
//! shell owns one socket per port and may swap a port that another program holds for a free
//! one of the same range ([`SourcePorts::replace`]).

use core::ops::RangeInclusive;

/// RFC 7348 §5: "it is recommended that the UDP source port number be calculated using a hash
/// of fields from the inner packet", within the dynamic/private range.
pub const DEFAULT_SRC_PORTS: RangeInclusive<u16> = 49152..=65535;

/// Why a set of source ports cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SourcePortsError {
    /// An empty source port range.
    #[error("source port range {0}-{1} is empty")]
    EmptyRange(u16, u16),
    /// No source port at all.
    #[error("at least one source port is needed")]
    NoPorts,
}

/// The source ports of the outer UDP header, a non-empty sorted set within a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePorts {
    range: RangeInclusive<u16>,
    /// Sorted, unique, non-empty, inside `range`.
    ports: Vec<u16>,
}

impl SourcePorts {
    /// How many ports a VTEP uses unless configured otherwise.
    pub const DEFAULT_COUNT: usize = 64;

    /// `count` ports spread evenly over `range` (every port of a smaller range).
    pub fn spread(
        range: RangeInclusive<u16>,
        count: usize,
    ) -> Result<SourcePorts, SourcePortsError> {
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi || lo == 0 {
            return Err(SourcePortsError::EmptyRange(lo, hi));
        }
        if count == 0 {
            return Err(SourcePortsError::NoPorts);
        }
        Ok(SourcePorts {
            ports: evenly_spaced(lo, hi, count),
            range,
        })
    }

    /// The range the ports are drawn from.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.range.clone()
    }

    /// The ports, ascending.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Whether `port` is one of the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ports.binary_search(&port).is_ok()
    }

    /// Puts `new` (a port of the range not yet in the set) in the place of `old`. Returns false,
    /// changing nothing, if `old` is not in the set or `new` cannot join it.
    pub fn replace(&mut self, old: u16, new: u16) -> bool {
        if !self.range.contains(&new) || self.contains(new) {
            return false;
        }
        let Ok(i) = self.ports.binary_search(&old) else {
            return false;
        };
        self.ports.remove(i);
        let at = self.ports.binary_search(&new).unwrap_or_else(|at| at);
        self.ports.insert(at, new);
        true
    }

    /// The port of the flow with hash `hash`. Like the kernel's `udp_flow_src_port` it scales the
    /// hash by multiplication rather than taking it modulo, so that every port is reachable and
    /// none favoured.
    pub fn pick(&self, hash: u32) -> u16 {
        let n = self.ports.len() as u64;
        // (hash * n) >> 32 < n: a valid index.
        let i = usize::try_from((u64::from(hash) * n) >> 32).unwrap_or(0);
        self.ports.get(i).copied().unwrap_or(*self.range.start())
    }
}

impl Default for SourcePorts {
    /// [`SourcePorts::DEFAULT_COUNT`] ports over [`DEFAULT_SRC_PORTS`], the dynamic range.
    fn default() -> SourcePorts {
        let (lo, hi) = (*DEFAULT_SRC_PORTS.start(), *DEFAULT_SRC_PORTS.end());
        SourcePorts {
            range: DEFAULT_SRC_PORTS,
            ports: evenly_spaced(lo, hi, SourcePorts::DEFAULT_COUNT),
        }
    }
}

/// `count` ports (at least 1; at most every port) of `lo..=hi`, evenly spaced from `lo`.
fn evenly_spaced(lo: u16, hi: u16, count: usize) -> Vec<u16> {
    let span = usize::from(hi.saturating_sub(lo)) + 1;
    let count = count.clamp(1, span);
    // Port i sits at lo + i * span / count: the offsets are below span, so they fit and never
    // pass `hi`, and they are distinct because span >= count.
    (0..count)
        .map(|i| lo.saturating_add(u16::try_from(i * span / count).unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ops::RangeInclusive;

    #[test]
    fn spread_covers_the_range_evenly() {
        let p = SourcePorts::spread(49152..=65535, 64).unwrap();
        assert_eq!(p.ports().len(), 64);
        assert_eq!(p.ports()[0], 49152);
        assert_eq!(p.ports()[1], 49152 + 256);
        assert_eq!(p.ports()[63], 49152 + 63 * 256);
        assert_eq!(p, SourcePorts::default());
        let small = SourcePorts::spread(4000..=4002, 64).unwrap();
        assert_eq!(small.ports(), [4000, 4001, 4002]);
        let one = SourcePorts::spread(1..=65535, 1).unwrap();
        assert_eq!(one.ports(), [1]);
    }

    #[test]
    fn bad_ranges_and_counts_are_refused() {
        assert_eq!(
            SourcePorts::spread(RangeInclusive::new(10, 5), 4),
            Err(SourcePortsError::EmptyRange(10, 5))
        );
        assert_eq!(
            SourcePorts::spread(0..=5, 4),
            Err(SourcePortsError::EmptyRange(0, 5))
        );
        assert_eq!(
            SourcePorts::spread(1..=5, 0),
            Err(SourcePortsError::NoPorts)
        );
    }

    #[test]
    fn pick_spans_every_port_and_scales_the_hash() {
        let p = SourcePorts::spread(49152..=65535, 64).unwrap();
        assert_eq!(p.pick(0), 49152);
        assert_eq!(p.pick(u32::MAX), 49152 + 63 * 256);
        assert_eq!(p.pick(1 << 31), 49152 + 32 * 256);
        let mut seen: Vec<u16> = (0..64u32).map(|i| p.pick(i << 26)).collect();
        seen.dedup();
        assert_eq!(seen, p.ports());
        let one = SourcePorts::spread(4789..=4789, 8).unwrap();
        assert_eq!(one.pick(12345), 4789);
    }

    #[test]
    fn replace_swaps_one_port_within_the_range() {
        let mut p = SourcePorts::spread(100..=199, 4).unwrap();
        assert_eq!(p.ports(), [100, 125, 150, 175]);
        assert!(p.replace(125, 101));
        assert_eq!(p.ports(), [100, 101, 150, 175]);
        assert!(!p.replace(150, 100), "already in the set");
        assert!(!p.replace(150, 200), "outside the range");
        assert!(!p.replace(151, 102), "not in the set");
        assert!(p.contains(150) && !p.contains(125));
    }
}
