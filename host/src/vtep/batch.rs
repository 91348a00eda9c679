//! Batches: what the batch entry points of [`Vtep`](super::Vtep) read, and how the frames
//! of a batch wait for the filter hooks.
//!
//! A batch goes through three passes: each frame is checked and parsed (the pipeline's own
//! drops happen there), the frames that remain are offered to the filter hooks at once, and
//! those that pass are learned and forwarded. The per-batch state lives in vectors the
//! pipeline keeps, so that steady-state forwarding allocates nothing.

use std::net::IpAddr;
use std::time::Instant;

use super::hooks::{Direction, FilterBatch, FilterFrame, Hooks, Verdict};
use crate::fdb::{Location, VniIdx};
use crate::wire::{FrameMeta, MacAddr, VirtioNetHdr, Vni};

/// Frames received from one port, with the `virtio_net_hdr` of each.
pub trait PortBatch {
    /// Number of frames.
    fn len(&self) -> usize;

    /// The batch has no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame `i`, if `i < len()`.
    fn frame(&self, i: usize) -> Option<(VirtioNetHdr, &[u8])>;
}

/// UDP datagrams received from the underlay, with the address of each sender.
pub trait UnderlayBatch {
    /// Number of datagrams.
    fn len(&self) -> usize;

    /// The batch has no datagram.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Datagram `i` (the VXLAN header and inner frame), if `i < len()`.
    fn datagram(&self, i: usize) -> Option<(IpAddr, &[u8])>;
}

impl PortBatch for [(VirtioNetHdr, &[u8])] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn frame(&self, i: usize) -> Option<(VirtioNetHdr, &[u8])> {
        self.get(i).map(|(v, b)| (*v, *b))
    }
}

impl UnderlayBatch for [(IpAddr, &[u8])] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn datagram(&self, i: usize) -> Option<(IpAddr, &[u8])> {
        self.get(i).copied()
    }
}

/// A frame that passed the pipeline's checks and waits for the filters.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// Its index in the input batch.
    pub(super) at: usize,
    pub(super) idx: VniIdx,
    pub(super) vni: Vni,
    pub(super) source: Location,
    pub(super) meta: FrameMeta,
    /// Where the Ethernet frame starts in the input (past the VXLAN header).
    pub(super) offset: usize,
}

/// The forwarding-table keys a pending frame will touch: its source (learning) and, when
/// unicast, its destination (the lookup).
pub(super) fn fdb_keys(p: &Pending) -> impl Iterator<Item = (VniIdx, MacAddr)> + use<> {
    let dst = (!p.meta.dst.is_multicast()).then_some((p.idx, p.meta.dst));
    core::iter::once((p.idx, p.meta.src)).chain(dst)
}

/// The pending frames as the hooks see them.
struct View<'a, F> {
    pending: &'a [Pending],
    direction: Direction,
    bytes: F,
}

impl<'a, F: Fn(usize) -> Option<&'a [u8]>> FilterBatch for View<'a, F> {
    fn len(&self) -> usize {
        self.pending.len()
    }

    fn frame(&self, i: usize) -> Option<FilterFrame<'_>> {
        let p = self.pending.get(i)?;
        Some(FilterFrame {
            vni: p.vni,
            direction: self.direction,
            source: p.source,
            meta: &p.meta,
            bytes: (self.bytes)(p.at)?.get(p.offset..)?,
        })
    }
}

/// Sets `verdicts` to one per pending frame, asking `hooks` if any of them is on a filtered
/// VNI (`wanted`); `bytes(at)` is the input's frame `at`.
pub(super) fn run_filters<'a, H: Hooks + ?Sized>(
    hooks: &mut H,
    now: Instant,
    direction: Direction,
    pending: &'a [Pending],
    wanted: bool,
    bytes: impl Fn(usize) -> Option<&'a [u8]>,
    verdicts: &mut Vec<Verdict>,
) {
    verdicts.clear();
    verdicts.resize(pending.len(), Verdict::Pass);
    if wanted {
        let view = View {
            pending,
            direction,
            bytes,
        };
        hooks.filter(now, &view, verdicts);
    }
}
