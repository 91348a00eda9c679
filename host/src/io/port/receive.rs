//! Receiving on a [`Port`]: one `recvmmsg` into an [`RxBatch`], each frame's 802.1Q/802.1ad tag
//! (which the kernel strips into the `PACKET_AUXDATA` control message) put back after its MACs,
//! and whatever cannot be delivered counted by reason.

use std::io;
use std::os::fd::AsFd;

use super::Port;
use super::batch::{AUXDATA_CMSG_LEN, CONTROL_LEN, FrameMeta, RxBatch, SLOT_DATA, SLOT_STRIDE};
use super::counts::bump;
use crate::io::sys::{EMPTY_IOVEC, MAX_BATCH, recv_mmsg, zeroed_mmsghdrs};
use crate::wire::VirtioNetHdr;

/// Bytes of Ethernet destination and source MACs: the tag goes right after them.
const MACS_LEN: usize = 12;
/// Bytes of an 802.1Q/802.1ad tag (TPID and TCI).
const TAG_LEN: usize = 4;
const TAG_LEN_U16: u16 = 4;
/// The TPID of an 802.1Q tag, for kernels that do not report it.
const TPID_8021Q: u16 = 0x8100;
/// Errors `recv_batch` skips in a row before it returns one.
const MAX_ERRORS_IN_A_ROW: u32 = 1024;

impl Port {
    /// Receives up to `batch.capacity()` frames with one `recvmmsg`, replacing the batch's
    /// previous contents. Returns how many (at least 1), or `Err(WouldBlock)` once nothing is
    /// left to read. Frames that arrive truncated or malformed are counted and skipped, and so
    /// are the interface's down events; other errors are returned.
    pub fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.len = 0;
        // Each dropped message and each of the errors below consumed a frame or a pending error,
        // so reading on makes progress; the bound only guards against an error that repeats
        // without consuming anything (which would be a bug, reported rather than spun on).
        let mut errors_in_a_row = 0u32;
        loop {
            match self.recv_once(batch) {
                Ok(0) => errors_in_a_row = 0, // every message of this call was dropped: read on
                Ok(n) => return Ok(n),
                Err(e) => {
                    errors_in_a_row += 1;
                    match e.raw_os_error() {
                        _ if errors_in_a_row > MAX_ERRORS_IN_A_ROW => return Err(e),
                        Some(libc::ENETDOWN) => bump(&self.counts.link_down, 1),
                        // packet_recvmsg frees a frame whose GSO type no virtio_net_hdr can
                        // express and fails the read with EINVAL.
                        Some(libc::EINVAL) => bump(&self.counts.rejected, 1),
                        Some(libc::EINTR) => {}
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    fn recv_once(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let capacity = batch.capacity();
        let mut iovs = [EMPTY_IOVEC; MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        let buf = batch.buf.as_mut_ptr();
        let control = batch.control.as_mut_ptr();
        for (i, iov) in iovs.iter_mut().enumerate().take(capacity) {
            iov.iov_base = buf.wrapping_add(i * SLOT_STRIDE).cast();
            iov.iov_len = SLOT_DATA;
        }
        let iov_base = iovs.as_mut_ptr();
        for (i, msg) in msgs.iter_mut().enumerate().take(capacity) {
            msg.msg_hdr.msg_iov = iov_base.wrapping_add(i);
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.wrapping_add(i).cast();
            msg.msg_hdr.msg_controllen = CONTROL_LEN as _;
        }
        // SAFETY: `msgs[..capacity]` are valid mmsghdrs; each points to one iovec of `iovs` that
        // covers SLOT_DATA bytes inside slot `i` of `batch.buf` (capacity * SLOT_STRIDE bytes),
        // and to CONTROL_LEN bytes of control slot `i` of `batch.control`. All of them outlive
        // the call and nothing else accesses them during it.
        let received = unsafe { recv_mmsg(self.socket.as_fd(), &mut msgs[..capacity])? };

        let mut delivered = 0;
        for (slot, msg) in msgs.iter().enumerate().take(received) {
            let flags = msg.msg_hdr.msg_flags;
            if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                bump(&self.counts.truncated, 1);
                continue;
            }
            let vlan = vlan_tag(&msg.msg_hdr);
            let start = slot * SLOT_STRIDE;
            let data = &mut batch.buf[start..start + SLOT_DATA];
            let Some(meta) = restore(data, msg.msg_len as usize, vlan) else {
                bump(&self.counts.malformed, 1);
                continue;
            };
            if meta.vnet.is_gso() {
                bump(&self.counts.gso, 1);
            } else if meta.vnet.needs_csum() {
                bump(&self.counts.csum_partial, 1);
            }
            batch.frames[delivered] = FrameMeta {
                start: start + meta.start,
                ..meta
            };
            delivered += 1;
        }
        batch.len = delivered;
        bump(&self.counts.frames, delivered as u64);
        Ok(delivered)
    }
}

/// The outer VLAN tag (TPID, TCI) the kernel stripped, from the `PACKET_AUXDATA` control message
/// of a received message.
fn vlan_tag(hdr: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `hdr` is a msghdr the kernel filled: `msg_control` points to the message's control
    // buffer and `msg_controllen` is at most its size (the kernel never writes more), so
    // CMSG_FIRSTHDR/NXTHDR return either null or a pointer to a whole `cmsghdr` inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null, so it points to a whole cmsghdr inside the control buffer
        // (see above), 8-byte aligned as the buffer and CMSG_NXTHDR keep it.
        let c = unsafe { cmsg.read() };
        if c.cmsg_level == libc::SOL_PACKET
            && c.cmsg_type == libc::PACKET_AUXDATA
            && c.cmsg_len as usize >= AUXDATA_CMSG_LEN
        {
            // SAFETY: `cmsg_len` covers a whole tpacket_auxdata after the header, inside the
            // buffer the kernel wrote; read_unaligned makes no assumption on its alignment.
            let aux = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned()
            };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                TPID_8021Q
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: as for CMSG_FIRSTHDR: `hdr` describes the control buffer and `cmsg` is a
        // header inside it; the result is null or a whole header inside it.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    None
}

/// Turns a slot the kernel wrote (`msg_len` bytes: the `virtio_net_hdr`, then the frame) into a
/// frame, putting a stripped VLAN tag back in place. Returns where the frame lies in the slot.
fn restore(data: &mut [u8], msg_len: usize, vlan: Option<(u16, u16)>) -> Option<FrameMeta> {
    let mut vnet = VirtioNetHdr::parse(data).ok()?;
    let len = msg_len.checked_sub(VirtioNetHdr::LEN)?;
    if len < MACS_LEN || msg_len > data.len() {
        return None;
    }
    let Some((tpid, tci)) = vlan else {
        return Some(FrameMeta {
            start: VirtioNetHdr::LEN,
            len,
            vnet,
        });
    };
    // The MACs move 4 bytes into the header's headroom; the tag goes between them and the
    // EtherType. The rest of the frame stays where the kernel put it.
    let start = VirtioNetHdr::LEN - TAG_LEN;
    data.copy_within(VirtioNetHdr::LEN..VirtioNetHdr::LEN + MACS_LEN, start);
    let tag = start + MACS_LEN;
    data[tag..tag + 2].copy_from_slice(&tpid.to_be_bytes());
    data[tag + 2..tag + 4].copy_from_slice(&tci.to_be_bytes());
    // Offsets the kernel computed on the untagged frame move with everything after the MACs.
    if vnet.needs_csum() {
        vnet.csum_start = vnet.csum_start.saturating_add(TAG_LEN_U16);
    }
    if vnet.hdr_len != 0 {
        vnet.hdr_len = vnet.hdr_len.saturating_add(TAG_LEN_U16);
    }
    Some(FrameMeta {
        start,
        len: len + TAG_LEN,
        vnet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(vnet: VirtioNetHdr, frame: &[u8]) -> (Vec<u8>, usize) {
        let mut data = vec![0u8; 128];
        vnet.emit(&mut data).unwrap();
        data[VirtioNetHdr::LEN..VirtioNetHdr::LEN + frame.len()].copy_from_slice(frame);
        (data, VirtioNetHdr::LEN + frame.len())
    }

    #[test]
    fn restore_puts_the_tag_after_the_macs_and_moves_offsets() {
        let frame: Vec<u8> = (0u8..40).collect();
        let vnet = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let (mut data, len) = slot(vnet, &frame);
        let meta = restore(&mut data, len, Some((0x88a8, 0x2064))).unwrap();
        let out = &data[meta.start..meta.start + meta.len];
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x88, 0xa8, 0x20, 0x64]);
        assert_eq!(&out[16..], &frame[12..]);
        assert_eq!(meta.vnet.csum_start, 38);
        assert_eq!(meta.vnet.hdr_len, 70);
        assert_eq!(meta.vnet.csum_offset, 16);
        assert_eq!(meta.vnet.gso_size, 1448);
    }

    #[test]
    fn restore_leaves_untagged_frames_and_unset_offsets_alone() {
        let frame: Vec<u8> = (0u8..20).collect();
        let (mut data, len) = slot(VirtioNetHdr::NONE, &frame);
        let meta = restore(&mut data, len, None).unwrap();
        assert_eq!(&data[meta.start..meta.start + meta.len], &frame[..]);

        let (mut data, len) = slot(VirtioNetHdr::NONE, &frame);
        let meta = restore(&mut data, len, Some((0x8100, 5))).unwrap();
        assert_eq!(meta.vnet, VirtioNetHdr::NONE);
        assert_eq!(meta.len, 24);
    }

    #[test]
    fn restore_rejects_what_cannot_be_a_frame() {
        let (mut data, _) = slot(VirtioNetHdr::NONE, &[0; 11]);
        assert!(restore(&mut data, VirtioNetHdr::LEN + 11, Some((0x8100, 1))).is_none());
        assert!(restore(&mut data, 3, None).is_none());
        assert!(restore(&mut data, 1000, None).is_none());
    }
}
