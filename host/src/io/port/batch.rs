//! `RxBatch`: the receive buffers a [`Port`](super::Port) fills, allocated once and reused.
//!
//! Contract: each slot holds one frame of up to [`MAX_FRAME_LEN`] bytes behind the 10 bytes of
//! headroom its `virtio_net_hdr` took, where a restored VLAN tag fits; frames are read in place
//! (by the pipeline through `PortBatch`), never copied out.

use crate::io::sys::MAX_BATCH;
use crate::wire::VirtioNetHdr;

/// Bytes of a frame a receive buffer holds: the largest GSO super-frame (an IPv4 packet of
/// 65,535 bytes, or an IPv6 payload of 65,535 bytes behind its 40-byte header, after a 14-byte
/// Ethernet header and an inner 802.1ad/802.1Q tag) with room to spare. Larger frames (BIG TCP)
/// arrive truncated and are dropped.
const MAX_FRAME_LEN: usize = 65_536 + 64;
/// Each slot: the `virtio_net_hdr` the kernel writes first, then the frame. Once parsed, the
/// header's 10 bytes are the frame's headroom, where a restored VLAN tag's 4 bytes go.
pub(super) const SLOT_DATA: usize = VirtioNetHdr::LEN + MAX_FRAME_LEN;
/// Slots start 64-byte apart so that the IP header of every frame has the same alignment.
pub(super) const SLOT_STRIDE: usize = SLOT_DATA.next_multiple_of(64);
/// Control bytes per message: one `tpacket_auxdata` message (`CMSG_SPACE(20)` = 40 on 64-bit)
/// with room to spare.
pub(super) const CONTROL_LEN: usize = 64;
/// The least `cmsg_len` of a control message carrying a `tpacket_auxdata`.
pub(super) const AUXDATA_CMSG_LEN: usize =
    size_of::<libc::cmsghdr>() + size_of::<libc::tpacket_auxdata>();

/// One message's control buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Control([u8; CONTROL_LEN]);

/// Where a received frame lies in its batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameMeta {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) vnet: VirtioNetHdr,
}

/// Reusable receive buffers for [`Port::recv_batch`](super::Port::recv_batch): allocated once
/// (about 64 KiB per frame), refilled by every call.
pub struct RxBatch {
    pub(super) buf: Box<[u8]>,
    pub(super) control: Box<[Control]>,
    pub(super) frames: Box<[FrameMeta]>,
    pub(super) len: usize,
}

impl core::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RxBatch")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One frame of an [`RxBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// What the sender's kernel left undone, with offsets that account for a restored VLAN tag.
    pub vnet: VirtioNetHdr,
    /// The Ethernet frame, VLAN tag included.
    pub bytes: &'a [u8],
}

impl RxBatch {
    /// Buffers for `capacity` frames (at least 1, at most [`MAX_BATCH`]).
    pub fn new(capacity: usize) -> RxBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        RxBatch {
            buf: vec![0; capacity * SLOT_STRIDE].into_boxed_slice(),
            control: vec![Control([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            frames: vec![
                FrameMeta {
                    start: 0,
                    len: 0,
                    vnet: VirtioNetHdr::NONE,
                };
                capacity
            ]
            .into_boxed_slice(),
            len: 0,
        }
    }

    /// How many frames one call can receive.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// How many frames the last receive delivered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The last receive delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frame `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<RxFrame<'_>> {
        let meta = self.frames[..self.len].get(i)?;
        Some(RxFrame {
            vnet: meta.vnet,
            bytes: &self.buf[meta.start..meta.start + meta.len],
        })
    }

    /// The bytes of frame `i`, to finish a checksum in place.
    pub fn bytes_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let meta = self.frames[..self.len].get(i)?;
        Some(&mut self.buf[meta.start..meta.start + meta.len])
    }

    /// The frames of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = RxFrame<'_>> {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

/// The pipeline reads a received batch in place.
impl crate::vtep::PortBatch for RxBatch {
    fn len(&self) -> usize {
        RxBatch::len(self)
    }

    fn frame(&self, i: usize) -> Option<(VirtioNetHdr, &[u8])> {
        self.get(i).map(|f| (f.vnet, f.bytes))
    }
}

impl Default for RxBatch {
    /// A batch of 32 frames (about 2 MiB).
    fn default() -> RxBatch {
        RxBatch::new(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_clamped_and_slots_hold_a_64k_frame_with_tag() {
        assert_eq!(RxBatch::new(0).capacity(), 1);
        assert_eq!(RxBatch::new(1000).capacity(), MAX_BATCH);
        const { assert!(SLOT_DATA - VirtioNetHdr::LEN >= 65_535 + 40 + 14 + 4) };
        const { assert!(CONTROL_LEN >= AUXDATA_CMSG_LEN + 8) };
        let b = RxBatch::default();
        assert!(b.is_empty() && b.get(0).is_none());
    }
}
