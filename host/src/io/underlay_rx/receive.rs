//! Receiving on an [`UnderlayRx`]: one `recvmmsg` into a [`DatagramBatch`], each message's
//! source and `UDP_GRO` segment size read from what the kernel wrote, truncated ones counted and
//! skipped.

use std::io;
use std::os::fd::AsFd;

use super::UnderlayRx;
use super::batch::{CONTROL_LEN, DatagramBatch, DatagramMeta};
use crate::io::sys::{EMPTY_IOVEC, MAX_BATCH, abi, recv_mmsg, zeroed_mmsghdrs};

impl UnderlayRx {
    /// Receives up to `batch.capacity()` datagrams or GRO batches with one `recvmmsg`,
    /// replacing the batch's previous contents. Returns how many datagrams (at least 1), or
    /// `Err(WouldBlock)` once nothing is left to read. Truncated ones are counted and skipped.
    pub fn recv_batch(&mut self, batch: &mut DatagramBatch) -> io::Result<usize> {
        batch.datagrams.clear();
        loop {
            match self.recv_once(batch) {
                Ok(0) => {} // every datagram of this call was dropped: read on
                Ok(n) => return Ok(n),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn recv_once(&mut self, batch: &mut DatagramBatch) -> io::Result<usize> {
        let capacity = batch.capacity();
        let slot_len = batch.slot_len;
        let mut iovs = [EMPTY_IOVEC; MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        let buf = batch.buf.as_mut_ptr();
        let names = batch.names.as_mut_ptr();
        let control = batch.control.as_mut_ptr();
        for (i, iov) in iovs.iter_mut().enumerate().take(capacity) {
            iov.iov_base = buf.wrapping_add(i * slot_len).cast();
            iov.iov_len = slot_len;
        }
        let iov_base = iovs.as_mut_ptr();
        for (i, msg) in msgs.iter_mut().enumerate().take(capacity) {
            msg.msg_hdr.msg_name = names.wrapping_add(i).cast();
            msg.msg_hdr.msg_namelen = abi::SOCKADDR_IN6_LEN;
            msg.msg_hdr.msg_iov = iov_base.wrapping_add(i);
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.wrapping_add(i).cast();
            msg.msg_hdr.msg_controllen = CONTROL_LEN as _;
        }
        // SAFETY: `msgs[..capacity]` are valid mmsghdrs; each points to a Name of
        // `batch.names` (of the size given), to one iovec of `iovs` covering slot `i` of
        // `batch.buf` (capacity * slot_len bytes) and to CONTROL_LEN bytes of control slot `i`.
        // All outlive the call and nothing else accesses them during it.
        let received = unsafe { recv_mmsg(self.socket.as_fd(), &mut msgs[..capacity])? };
        for (slot, msg) in msgs.iter().enumerate().take(received) {
            let len = msg.msg_len as usize;
            let whole = msg.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) == 0
                && len <= slot_len;
            // A UDP socket always names the source; without one the datagram is dropped too.
            let source = batch.names[slot].source(msg.msg_hdr.msg_namelen);
            let (true, Some((source, source_port))) = (whole, source) else {
                self.counts.truncated += 1;
                continue;
            };
            // Without a GRO control message the buffer is one datagram.
            let segment = gro_segment_size(&msg.msg_hdr).unwrap_or(len).max(1);
            let start = slot * slot_len;
            let before = batch.datagrams.len();
            // An empty datagram is one too (and the pipeline counts it as too short).
            batch
                .datagrams
                .extend((0..len.max(1)).step_by(segment).map(|at| DatagramMeta {
                    start: start + at,
                    len: segment.min(len - at),
                    source,
                    source_port,
                }));
            let n = batch.datagrams.len() - before;
            if n > 1 {
                self.counts.coalesced += n as u64;
            }
        }
        let delivered = batch.datagrams.len();
        self.counts.datagrams += delivered as u64;
        Ok(delivered)
    }
}

/// The segment size of a GRO batch, from the `UDP_GRO` control message of a received message.
fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` is a msghdr the kernel filled: `msg_control` points to the message's control
    // buffer and `msg_controllen` is at most its size (the kernel never writes more), so
    // CMSG_FIRSTHDR/NXTHDR return either null or a pointer to a whole `cmsghdr` inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null, so it points to a whole cmsghdr inside the control buffer
        // (see above), 8-byte aligned as the buffer and CMSG_NXTHDR keep it.
        let c = unsafe { cmsg.read() };
        if c.cmsg_level == libc::SOL_UDP
            && c.cmsg_type == libc::UDP_GRO
            && c.cmsg_len as usize >= size_of::<libc::cmsghdr>() + size_of::<libc::c_int>()
        {
            // SAFETY: `cmsg_len` covers a whole int after the header, inside the buffer the
            // kernel wrote; read_unaligned makes no assumption on its alignment.
            let size = unsafe { libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned() };
            return usize::try_from(size).ok().filter(|&s| s > 0);
        }
        // SAFETY: as for CMSG_FIRSTHDR: `hdr` describes the control buffer and `cmsg` is a
        // header inside it; the result is null or a whole header inside it.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    None
}
