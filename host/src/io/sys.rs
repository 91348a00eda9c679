//! The few system-call wrappers the I/O layer shares: interface lookup, `setsockopt` with a plain
//! C struct, socket buffer sizing and a `sendmmsg` loop that counts what the kernel refuses.

use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::c_int;

use super::counts::TxCounts;

/// The most frames (or datagrams) one batched system call moves. Batches live on the stack of
/// the call (`mmsghdr`s, `iovec`s, addresses), so this bounds that stack use (about 10 KiB).
pub const MAX_BATCH: usize = 64;

/// The socket buffer size asked for (with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when the process may
/// exceed `net.core.rmem_max`, else capped by it): enough to absorb a burst of 64 KiB GSO frames
/// while the event loop is busy.
pub(super) const SOCKET_BUFFER: usize = 4 << 20;

/// Why a socket could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Not a name an interface can have (empty, too long for `IFNAMSIZ`, or containing a NUL).
    #[error("invalid interface name {name:?}")]
    InvalidInterfaceName {
        /// The name given.
        name: String,
    },
    /// No interface has this name in the calling thread's network namespace.
    #[error("no interface named {name:?}")]
    NoSuchInterface {
        /// The name given.
        name: String,
    },
    /// A system call failed.
    #[error("{what} for {target}")]
    Socket {
        /// What was being done, e.g. `"binding"`.
        what: &'static str,
        /// What it was done for, e.g. `"port vm1"` or `"UDP port 4789"`.
        target: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A group to join or leave is not a multicast address.
    #[error("{addr} is not a multicast address")]
    NotMulticast {
        /// The address given.
        addr: IpAddr,
    },
    /// An address of the other family than the underlay's.
    #[error("{addr} is not of the underlay's address family")]
    WrongFamily {
        /// The address given.
        addr: IpAddr,
    },
}

impl SetupError {
    pub(super) fn socket(what: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        SetupError::Socket {
            what,
            target: target.into(),
            source,
        }
    }
}

/// The index of the interface called `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> Result<u32, SetupError> {
    let invalid = || SetupError::InvalidInterfaceName {
        name: name.to_owned(),
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(invalid());
    }
    let cname = CString::new(name).map_err(|_| invalid())?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call; if_nametoindex only
    // reads it.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index != 0 {
        return Ok(index);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Err(SetupError::NoSuchInterface {
            name: name.to_owned(),
        }),
        _ => Err(SetupError::socket(
            "looking up the interface index",
            format!("interface {name:?}"),
            err,
        )),
    }
}

/// `setsockopt(fd, level, name, value)` for an option whose value is the plain C struct or
/// integer `T`.
pub(super) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call and the kernel
    // only reads them; `fd` is a descriptor kept open by its borrow.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(fd, level, name)` for an option whose value is the plain C struct or integer `T`.
pub(super) fn getsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &mut T,
) -> io::Result<()> {
    let mut len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` points to `len` writable bytes for the duration of the call; the kernel
    // writes at most `len` bytes of the option's C type, which `T` is, so any bytes it writes
    // form a valid `T` (plain integers). `fd` is a descriptor kept open by its borrow.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a socket buffer to [`SOCKET_BUFFER`] bytes, past `net.core.[rw]mem_max` if allowed.
pub(super) fn set_buffer(fd: BorrowedFd<'_>, force: c_int, plain: c_int) -> io::Result<()> {
    let bytes = c_int::try_from(SOCKET_BUFFER).unwrap_or(c_int::MAX);
    setsockopt(fd, libc::SOL_SOCKET, force, &bytes)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, plain, &bytes))
}

/// The calling thread's `errno`.
pub(super) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A zeroed `mmsghdr` array: null pointers and zero lengths, the state each batch starts from.
pub(super) fn zeroed_mmsghdrs() -> [libc::mmsghdr; MAX_BATCH] {
    // SAFETY: mmsghdr is a C struct of integers and raw pointers, for all of which all-zero bytes
    // are a valid value (null pointers, zero lengths).
    unsafe { core::mem::zeroed() }
}

/// An empty `iovec`.
pub(super) const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: core::ptr::null_mut(),
    iov_len: 0,
};

/// A nonblocking UDP socket of the IPv6 or IPv4 family with `SO_REUSEADDR`; on failure, what
/// was being done and the kernel's answer.
pub(super) fn udp_socket(ipv6: bool) -> Result<socket2::Socket, (&'static str, io::Error)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| ("opening a UDP socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ("setting O_NONBLOCK", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| ("setting SO_REUSEADDR", e))?;
    Ok(socket)
}

/// Receives into `msgs` with one nonblocking `recvmmsg`; returns how many messages arrived.
///
/// # Safety
///
/// Every pointer in `msgs` (names, iovecs, control buffers, and the buffers they point to) must
/// be valid for writes of the lengths given, and nothing else may access them, for the duration
/// of the call.
pub(super) unsafe fn recv_mmsg(
    fd: BorrowedFd<'_>,
    msgs: &mut [libc::mmsghdr],
) -> io::Result<usize> {
    // At most MAX_BATCH messages: far below `c_uint::MAX`.
    let vlen = libc::c_uint::try_from(msgs.len()).unwrap_or(1);
    // SAFETY: `msgs` is a valid, writable array of `vlen` mmsghdrs whose pointers are valid per
    // this function's contract; `fd` is open for its borrow; a null timeout is allowed.
    let received = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            core::ptr::null_mut(),
        )
    };
    usize::try_from(received).map_err(|_| io::Error::last_os_error())
}

/// Sends every message in `msgs` with as few `sendmmsg` calls as the kernel allows. A message the
/// kernel refuses is offered to `refused(index, errno)`; unless that takes it over (returns
/// true), it is counted by reason in `counts`. Either way it is skipped and the rest still go.
/// Message `i` counts as `weights[i]` packets (a GSO batch is several; 1 where `weights` is
/// shorter).
///
/// # Safety
///
/// Every pointer in `msgs` (names, iovecs, control data and the buffers they point to) must be
/// valid for reads of the lengths given, for the duration of the call.
pub(super) unsafe fn send_all(
    fd: BorrowedFd<'_>,
    msgs: &mut [libc::mmsghdr],
    weights: &[u64],
    counts: &mut TxCounts,
    mut refused: impl FnMut(usize, i32) -> bool,
) {
    let weight = |i: usize| weights.get(i).copied().unwrap_or(1);
    let mut next = 0;
    while next < msgs.len() {
        let rest = &mut msgs[next..];
        // `rest.len()` <= MAX_BATCH, far below `c_uint::MAX`.
        let vlen = libc::c_uint::try_from(rest.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: `rest` is a valid, writable array of `vlen` mmsghdrs (the kernel writes each
        // `msg_len`); the pointers inside are valid per this function's contract; `fd` is open.
        let sent =
            unsafe { libc::sendmmsg(fd.as_raw_fd(), rest.as_mut_ptr(), vlen, libc::MSG_DONTWAIT) };
        match usize::try_from(sent) {
            Ok(n) if n > 0 => {
                counts.sent += (next..next + n).map(weight).sum::<u64>();
                counts.batched += (next..next + n).filter(|&i| weight(i) > 1).count() as u64;
                next += n;
            }
            // Not expected for a nonempty batch; skip one message so the loop always progresses.
            Ok(_) => {
                counts.record_drops(super::TxDrop::Other, weight(next));
                next += 1;
            }
            // sendmmsg stops at the first message that fails and reports the messages before it;
            // resending from there reports that message's error, which is counted and skipped.
            Err(_) => {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                if !refused(next, e) {
                    counts.record_errno(e, weight(next));
                }
                next += 1;
            }
        }
    }
}

/// Kernel ABI constants narrowed to the C field types they are stored in. Each narrowing is
/// checked lossless at compile time.
#[allow(
    clippy::cast_possible_truncation,
    reason = "constants checked lossless at compile time"
)]
pub(super) mod abi {
    /// `AF_PACKET` as `sockaddr_ll.sll_family`.
    pub(in crate::io) const AF_PACKET: u16 = libc::AF_PACKET as u16;
    /// `AF_INET` as `sockaddr_in.sin_family`.
    pub(in crate::io) const AF_INET: u16 = libc::AF_INET as u16;
    /// `AF_INET6` as `sockaddr_in6.sin6_family`.
    pub(in crate::io) const AF_INET6: u16 = libc::AF_INET6 as u16;
    /// `ETH_P_ALL` in host order, as `sockaddr_ll.sll_protocol` takes it before `to_be`.
    pub(in crate::io) const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
    /// `PACKET_MR_PROMISC` as `packet_mreq.mr_type`.
    pub(in crate::io) const PACKET_MR_PROMISC: u16 = libc::PACKET_MR_PROMISC as u16;
    /// Lengths of the socket addresses, as `socklen_t`.
    pub(in crate::io) const SOCKADDR_LL_LEN: u32 = size_of::<libc::sockaddr_ll>() as u32;
    pub(in crate::io) const SOCKADDR_IN_LEN: u32 = size_of::<libc::sockaddr_in>() as u32;
    pub(in crate::io) const SOCKADDR_IN6_LEN: u32 = size_of::<libc::sockaddr_in6>() as u32;

    const _: () = {
        assert!(AF_PACKET as i32 == libc::AF_PACKET);
        assert!(AF_INET as i32 == libc::AF_INET);
        assert!(AF_INET6 as i32 == libc::AF_INET6);
        assert!(ETH_P_ALL as i32 == libc::ETH_P_ALL);
        assert!(PACKET_MR_PROMISC as i32 == libc::PACKET_MR_PROMISC);
        assert!(SOCKADDR_LL_LEN as usize == size_of::<libc::sockaddr_ll>());
        assert!(SOCKADDR_IN_LEN as usize == size_of::<libc::sockaddr_in>());
        assert!(SOCKADDR_IN6_LEN as usize == size_of::<libc::sockaddr_in6>());
    };
}
