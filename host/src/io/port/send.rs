//! Sending on a [`Port`]: each frame preceded by its `virtio_net_hdr`, one at a time or batched
//! with `sendmmsg`, a refused frame counted as a [`TxDrop`].

use std::io::IoSlice;
use std::os::fd::AsFd;

use super::Port;
use crate::io::counts::{TxCounts, TxDrop};
use crate::io::sys::{EMPTY_IOVEC, MAX_BATCH, send_all, zeroed_mmsghdrs};
use crate::wire::VirtioNetHdr;

impl Port {
    /// Sends one frame, preceded by its `virtio_net_hdr` (in the same write, without copying).
    pub fn send(&self, vnet: &VirtioNetHdr, frame: &[u8]) -> Result<(), TxDrop> {
        let mut hdr = [0u8; VirtioNetHdr::LEN];
        vnet.emit(&mut hdr).map_err(|_| TxDrop::Invalid)?;
        loop {
            match self.socket.send_vectored_with_flags(
                &[IoSlice::new(&hdr), IoSlice::new(frame)],
                libc::MSG_DONTWAIT,
            ) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(TxDrop::from_errno(e.raw_os_error().unwrap_or(0))),
            }
        }
    }

    /// Sends frames with as few `sendmmsg` calls as possible ([`MAX_BATCH`] frames each),
    /// counting each frame sent or dropped in `counts`.
    pub fn send_batch<'a, I>(&self, frames: I, counts: &mut TxCounts)
    where
        I: IntoIterator<Item = (&'a VirtioNetHdr, &'a [u8])>,
    {
        let mut frames = frames.into_iter();
        let mut hdrs = [[0u8; VirtioNetHdr::LEN]; MAX_BATCH];
        let mut bodies: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        // Packets per frame: a super-frame counts as the segments it will be cut into.
        let mut weights = [1u64; MAX_BATCH];
        let mut iovs = [EMPTY_IOVEC; 2 * MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        loop {
            let mut n = 0;
            for (vnet, frame) in frames.by_ref() {
                if vnet.emit(&mut hdrs[n]).is_err() {
                    counts.record_drops(TxDrop::Invalid, 1);
                    continue;
                }
                bodies[n] = frame;
                weights[n] = match (vnet.is_gso(), usize::from(vnet.gso_size)) {
                    (true, size) if size > 0 => {
                        let payload = frame.len().saturating_sub(usize::from(vnet.hdr_len));
                        payload.div_ceil(size).max(1) as u64
                    }
                    _ => 1,
                };
                n += 1;
                if n == MAX_BATCH {
                    break;
                }
            }
            if n == 0 {
                return;
            }
            let hdr_base = hdrs.as_mut_ptr();
            for (i, pair) in iovs.chunks_exact_mut(2).enumerate().take(n) {
                pair[0].iov_base = hdr_base.wrapping_add(i).cast();
                pair[0].iov_len = VirtioNetHdr::LEN;
                // The kernel only reads through a send's iovecs; `*mut` is the C type's.
                pair[1].iov_base = bodies[i].as_ptr().cast_mut().cast();
                pair[1].iov_len = bodies[i].len();
            }
            let iov_base = iovs.as_mut_ptr();
            for (i, msg) in msgs.iter_mut().enumerate().take(n) {
                msg.msg_hdr.msg_iov = iov_base.wrapping_add(2 * i);
                msg.msg_hdr.msg_iovlen = 2;
            }
            // SAFETY: each of `msgs[..n]` points to two iovecs of `iovs`: a 10-byte header in
            // `hdrs` and a frame borrowed from the caller for 'a; all outlive the call.
            unsafe {
                send_all(
                    self.socket.as_fd(),
                    &mut msgs[..n],
                    &weights[..n],
                    counts,
                    |_, _| false,
                )
            };
            if n < MAX_BATCH {
                return;
            }
        }
    }
}
