//! Why a frame was not sent, and the counters that add those reasons up.
//!
//! Sending never fails the daemon: a full queue, a port whose VM is not running or a packet too
//! big for the underlay are ordinary events that an operator wants counted by reason.

use core::ops::AddAssign;

/// Why the kernel (or the shell) did not send a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TxDrop {
    /// The socket's or the device's queue is full (`ENOBUFS`, `EAGAIN`).
    #[error("queue full")]
    Congested,
    /// The interface is down or gone (`ENETDOWN`, `ENXIO`, `ENODEV`): typically a VM that is not
    /// running.
    #[error("interface down")]
    LinkDown,
    /// Longer than the interface's MTU allows (`EMSGSIZE`).
    #[error("longer than the MTU")]
    TooBig,
    /// No route to the destination (`EHOSTUNREACH`, `ENETUNREACH`, `EADDRNOTAVAIL`).
    #[error("no route to destination")]
    Unreachable,
    /// The kernel refused the bytes as malformed (`EINVAL`), e.g. a `virtio_net_hdr` that does
    /// not fit its frame, or a frame shorter than an Ethernet header.
    #[error("refused as malformed")]
    Invalid,
    /// A firewall rule refused it (`EPERM`, `EACCES`).
    #[error("refused by a firewall")]
    Filtered,
    /// The outbox named a port the shell does not have.
    #[error("no such port")]
    NoSuchPort,
    /// The destination's address family is not the underlay's.
    #[error("address family differs from the underlay's")]
    WrongFamily,
    /// Any other error.
    #[error("other error")]
    Other,
}

impl TxDrop {
    /// Every reason, in counter order.
    pub const ALL: [TxDrop; 9] = [
        TxDrop::Congested,
        TxDrop::LinkDown,
        TxDrop::TooBig,
        TxDrop::Unreachable,
        TxDrop::Invalid,
        TxDrop::Filtered,
        TxDrop::NoSuchPort,
        TxDrop::WrongFamily,
        TxDrop::Other,
    ];

    /// The reason a send failed with this `errno`.
    pub fn from_errno(errno: i32) -> TxDrop {
        match errno {
            libc::ENOBUFS | libc::EAGAIN => TxDrop::Congested,
            libc::ENETDOWN | libc::ENXIO | libc::ENODEV => TxDrop::LinkDown,
            libc::EMSGSIZE => TxDrop::TooBig,
            libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EADDRNOTAVAIL => TxDrop::Unreachable,
            libc::EINVAL => TxDrop::Invalid,
            libc::EPERM | libc::EACCES => TxDrop::Filtered,
            _ => TxDrop::Other,
        }
    }

    /// A short stable name, for counters' labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            TxDrop::Congested => "congested",
            TxDrop::LinkDown => "link_down",
            TxDrop::TooBig => "too_big",
            TxDrop::Unreachable => "unreachable",
            TxDrop::Invalid => "invalid",
            TxDrop::Filtered => "filtered",
            TxDrop::NoSuchPort => "no_such_port",
            TxDrop::WrongFamily => "wrong_family",
            TxDrop::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Frames sent, and frames dropped by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounts {
    /// Frames (packets) the kernel accepted.
    pub sent: u64,
    /// Of the sends, those that carried several packets at once: UDP GSO batches into the
    /// underlay, super-frames (merged segments) to a port.
    pub batched: u64,
    /// Of the batched sends into the underlay, the super-frames that left encapsulated once
    /// (UDP-tunnel GSO through the tunnel tap).
    pub whole: u64,
    dropped: [u64; TxDrop::ALL.len()],
    /// The `errno` of the latest drop counted as [`TxDrop::Other`] (0 if none): the one clue an
    /// operator gets about an error nobody expected.
    pub last_other_errno: i32,
}

impl TxCounts {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: TxDrop) -> u64 {
        self.dropped[reason.index()]
    }

    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Counts `n` frames dropped for `reason`.
    pub fn record_drops(&mut self, reason: TxDrop, n: u64) {
        self.dropped[reason.index()] += n;
    }

    /// Counts `n` frames that a send with this `errno` dropped.
    pub(super) fn record_errno(&mut self, errno: i32, n: u64) {
        let reason = TxDrop::from_errno(errno);
        if reason == TxDrop::Other {
            self.last_other_errno = errno;
        }
        self.record_drops(reason, n);
    }

    /// Counts the outcome of one send.
    pub fn record(&mut self, outcome: Result<(), TxDrop>) {
        match outcome {
            Ok(()) => self.sent += 1,
            Err(reason) => self.record_drops(reason, 1),
        }
    }
}

impl AddAssign for TxCounts {
    fn add_assign(&mut self, other: TxCounts) {
        self.sent += other.sent;
        self.batched += other.batched;
        self.whole += other.whole;
        for (mine, theirs) in self.dropped.iter_mut().zip(other.dropped) {
            *mine += theirs;
        }
        if other.last_other_errno != 0 {
            self.last_other_errno = other.last_other_errno;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_reasons_and_counts_add_up() {
        assert_eq!(TxDrop::from_errno(libc::ENOBUFS), TxDrop::Congested);
        assert_eq!(TxDrop::from_errno(libc::EAGAIN), TxDrop::Congested);
        assert_eq!(TxDrop::from_errno(libc::ENETDOWN), TxDrop::LinkDown);
        assert_eq!(TxDrop::from_errno(libc::EMSGSIZE), TxDrop::TooBig);
        assert_eq!(TxDrop::from_errno(libc::EHOSTUNREACH), TxDrop::Unreachable);
        assert_eq!(TxDrop::from_errno(libc::EBADF), TxDrop::Other);
        for (i, r) in TxDrop::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }

        let mut a = TxCounts::default();
        a.record(Ok(()));
        a.record(Err(TxDrop::TooBig));
        a.record_errno(libc::EBADF, 1);
        let mut b = TxCounts::default();
        b.record_drops(TxDrop::TooBig, 2);
        b += a;
        assert_eq!(b.sent, 1);
        assert_eq!(b.dropped(TxDrop::TooBig), 3);
        assert_eq!(b.dropped(TxDrop::Other), 1);
        assert_eq!(b.dropped_total(), 4);
        assert_eq!(b.last_other_errno, libc::EBADF);
    }
}
