//! `Batch`: one `sendmmsg` being put together, with each message's destination, bytes and
//! `UDP_SEGMENT` control message living on the stack for the duration of the call.

use std::net::IpAddr;
use std::os::fd::AsFd;

use socket2::Socket;

use crate::io::counts::TxCounts;
use crate::io::sys::{EMPTY_IOVEC, MAX_BATCH, abi, send_all, zeroed_mmsghdrs};

/// `CMSG_SPACE(sizeof(u16))`: a `UDP_SEGMENT` control message, laid out as the kernel reads it
/// (the data follows the header, which is already 8-byte aligned on 64-bit Linux).
#[derive(Clone, Copy)]
#[repr(C)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

/// One `sendmmsg` being put together: its messages' addresses, buffers and control data live
/// here, on the stack, for the duration of the call.
pub(super) struct Batch<'a> {
    pub(super) names: [SockAddrStorage; MAX_BATCH],
    pub(super) name_lens: [libc::socklen_t; MAX_BATCH],
    iovs: [libc::iovec; MAX_BATCH],
    cmsgs: [Option<SegmentCmsg>; MAX_BATCH],
    /// Each message's GSO segment size (0: one datagram).
    pub(super) segments: [u16; MAX_BATCH],
    weights: [u64; MAX_BATCH],
    pub(super) frames: [&'a [u8]; MAX_BATCH],
    pub(super) len: usize,
}

/// A destination address in the form `sendmmsg` takes.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) union SockAddrStorage {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl Default for Batch<'_> {
    fn default() -> Self {
        let (empty, _) = sockaddr(IpAddr::from([0u8; 4]), 0);
        Batch {
            names: [empty; MAX_BATCH],
            name_lens: [0; MAX_BATCH],
            iovs: [EMPTY_IOVEC; MAX_BATCH],
            cmsgs: [None; MAX_BATCH],
            segments: [0; MAX_BATCH],
            weights: [0; MAX_BATCH],
            frames: [&[]; MAX_BATCH],
            len: 0,
        }
    }
}

impl<'a> Batch<'a> {
    /// Adds a message to `dst`:`port` carrying `bytes`: one datagram, or with `segment_len`
    /// (not 0) a GSO batch of datagrams that long (the last may be shorter).
    pub(super) fn add(&mut self, dst: IpAddr, port: u16, bytes: &'a [u8], segment_len: usize) {
        let (name, name_len) = sockaddr(dst, port);
        self.add_named(name, name_len, bytes, segment_len);
    }

    pub(super) fn add_named(
        &mut self,
        name: SockAddrStorage,
        name_len: libc::socklen_t,
        bytes: &'a [u8],
        segment_len: usize,
    ) {
        let n = self.len;
        (self.names[n], self.name_lens[n]) = (name, name_len);
        self.frames[n] = bytes;
        // The Outbox keeps segments within a 16-bit UDP length.
        let segment = u16::try_from(segment_len).unwrap_or(u16::MAX);
        self.segments[n] = segment;
        self.weights[n] = if segment == 0 {
            1
        } else {
            bytes.len().div_ceil(usize::from(segment)) as u64
        };
        self.cmsgs[n] = (segment != 0).then(|| SegmentCmsg {
            hdr: libc::cmsghdr {
                // SAFETY: CMSG_LEN is a pure computation on its argument.
                cmsg_len: unsafe { libc::CMSG_LEN(2) } as _,
                cmsg_level: libc::SOL_UDP,
                cmsg_type: libc::UDP_SEGMENT,
            },
            segment,
            _pad: [0; 6],
        });
        self.len += 1;
    }

    /// Sends the messages from `socket` and empties the batch; `refused` as in `send_all`.
    pub(super) fn send(
        &mut self,
        socket: &Socket,
        counts: &mut TxCounts,
        refused: impl FnMut(usize, i32) -> bool,
    ) {
        let n = self.len;
        if n == 0 {
            return;
        }
        let mut msgs = zeroed_mmsghdrs();
        for i in 0..n {
            // The kernel only reads through a send's iovecs; `*mut` is the C type's.
            self.iovs[i].iov_base = self.frames[i].as_ptr().cast_mut().cast();
            self.iovs[i].iov_len = self.frames[i].len();
        }
        let names = self.names.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        for (i, msg) in msgs.iter_mut().enumerate().take(n) {
            msg.msg_hdr.msg_name = names.wrapping_add(i).cast();
            msg.msg_hdr.msg_namelen = self.name_lens[i];
            msg.msg_hdr.msg_iov = iovs.wrapping_add(i);
            msg.msg_hdr.msg_iovlen = 1;
            if let Some(cmsg) = &mut self.cmsgs[i] {
                msg.msg_hdr.msg_control = (cmsg as *mut SegmentCmsg).cast();
                msg.msg_hdr.msg_controllen = size_of::<SegmentCmsg>() as _;
            }
        }
        // SAFETY: each of `msgs[..n]` points to an address in `self.names` (a repr(C) union
        // whose members start with their sockaddr, of the length given), to one iovec of
        // `self.iovs` over bytes borrowed for 'a, and optionally to a `SegmentCmsg` of
        // `self.cmsgs` (a whole cmsghdr followed by its u16, `CMSG_SPACE(2)` bytes); all of them
        // outlive the call.
        unsafe {
            send_all(
                socket.as_fd(),
                &mut msgs[..n],
                &self.weights[..n],
                counts,
                refused,
            )
        };
        self.len = 0;
    }
}

/// The `sockaddr` of `ip`:`port`, and its length.
fn sockaddr(ip: IpAddr, port: u16) -> (SockAddrStorage, libc::socklen_t) {
    match ip {
        IpAddr::V4(ip) => (
            SockAddrStorage {
                v4: libc::sockaddr_in {
                    sin_family: abi::AF_INET,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    sin_zero: [0; 8],
                },
            },
            abi::SOCKADDR_IN_LEN,
        ),
        IpAddr::V6(ip) => (
            SockAddrStorage {
                v6: libc::sockaddr_in6 {
                    sin6_family: abi::AF_INET6,
                    sin6_port: port.to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    sin6_scope_id: 0,
                },
            },
            abi::SOCKADDR_IN6_LEN,
        ),
    }
}
