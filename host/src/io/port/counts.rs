//! The receive side's counters of a [`Port`]: bumped by the thread that reads the port, read by
//! whoever reports them, without a lock (relaxed atomics: each counter is independent).

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Port;
use crate::counters::named_counters;
use crate::io::sys::getsockopt;

named_counters! {
    /// What a port's receive side has seen, beyond the frames it delivered.
    pub struct PortRxCounts {
        /// Frames delivered.
        frames => "port_rx_frames",
        /// Frames dropped because they did not fit a receive buffer (or their control data did
        /// not).
        truncated => "port_rx_truncated",
        /// Frames the kernel dropped while reading them, e.g. a GSO type a `virtio_net_hdr`
        /// cannot express (`EINVAL`).
        rejected => "port_rx_rejected",
        /// Frames too short to hold their Ethernet addresses.
        malformed => "port_rx_malformed",
        /// Times the kernel reported the interface down (`ENETDOWN`): at open if it was down,
        /// and each time it goes down.
        link_down => "port_link_down",
        /// Frames the kernel dropped because the socket's receive buffer was full, as of the
        /// last read of the socket's statistics (`PACKET_STATISTICS`, by
        /// [`Port::refresh_kernel_drops`]).
        kernel_drops => "port_rx_kernel_drops",
        /// Of the frames delivered, GSO super-frames (a VM's TSO or USO send).
        gso => "port_rx_gso",
        /// Of the frames delivered, frames whose checksum the VM's kernel left partial.
        csum_partial => "port_rx_csum_partial",
    }
}

/// The receive side's counters, shared between the reading thread and `rx_counts` callers.
#[derive(Debug, Default)]
pub(super) struct RxCounters {
    pub(super) frames: AtomicU64,
    pub(super) truncated: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) link_down: AtomicU64,
    pub(super) kernel_drops: AtomicU64,
    pub(super) gso: AtomicU64,
    pub(super) csum_partial: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Port {
    /// What the receive side has counted so far.
    pub fn rx_counts(&self) -> PortRxCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PortRxCounts {
            frames: get(&self.counts.frames),
            truncated: get(&self.counts.truncated),
            rejected: get(&self.counts.rejected),
            malformed: get(&self.counts.malformed),
            link_down: get(&self.counts.link_down),
            kernel_drops: get(&self.counts.kernel_drops),
            gso: get(&self.counts.gso),
            csum_partial: get(&self.counts.csum_partial),
        }
    }

    /// Adds the frames the kernel dropped since the last call because the receive buffer was
    /// full (`PACKET_STATISTICS`, which reading resets) to `rx_counts().kernel_drops`, and
    /// returns that total. A system call: call it when reporting, not per batch.
    pub fn refresh_kernel_drops(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        getsockopt(
            self.socket.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats,
        )?;
        bump(&self.counts.kernel_drops, u64::from(stats.tp_drops));
        Ok(self.counts.kernel_drops.load(Ordering::Relaxed))
    }
}
