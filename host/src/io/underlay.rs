//! The underlay: the VXLAN UDP port ([`UnderlayRx`]) and a raw socket that sends whole outer IP
//! packets ([`UnderlayTx`]).
//!
//! Contract: `UnderlayRx` delivers each UDP datagram to the VTEP port (unicast to any local
//! address, or multicast to a group it joined) as its source and its payload (the VXLAN header
//! and inner frame). `UnderlayTx` sends packets the pipeline built completely, outer IP header
//! included, so the per-flow UDP source port (RFC 7348 §5) and the outer TTL are the pipeline's;
//! the kernel only routes them. A VTEP must not hear its own floods: multicast loopback is off.
//!
//! Why a raw socket: one UDP socket bound to one port sends every datagram from that port,
//! which defeats the per-flow source-port entropy that underlay ECMP relies on. `IPPROTO_RAW`
//! implies `IP_HDRINCL` on IPv4 (`raw(7)`) and `IPV6_HDRINCL` on IPv6 (`inet6_create` since
//! Linux 4.5; set explicitly as well): the kernel sends the header as given (IPv4: it fills the
//! header checksum, and the ID if zero), and fails a packet longer than the route's MTU with
//! `EMSGSIZE` instead of fragmenting it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use super::counts::{TxCounts, TxDrop};
use super::sys::{
    EMPTY_IOVEC, MAX_BATCH, SetupError, abi, if_index, send_all, set_buffer, setsockopt,
    zeroed_mmsghdrs,
};

/// The largest UDP payload an IPv6 datagram can carry; an IPv4 one carries less.
const MAX_DATAGRAM: usize = 65_527;

/// A source address as the kernel writes it (`sockaddr_in` or `sockaddr_in6`), kept as bytes so
/// that reading it needs no cast: family (native order), port (network order), then the IPv4
/// address at 4..8, or the IPv6 flow info at 4..8 and address at 8..24.
#[derive(Clone, Copy)]
#[repr(C, align(4))]
struct Name([u8; size_of::<libc::sockaddr_in6>()]);

impl Name {
    fn source(&self, namelen: u32) -> Option<(IpAddr, u16)> {
        let b = &self.0;
        let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
        let port = u16::from_be_bytes([b[2], b[3]]);
        let len = namelen as usize;
        if family == libc::AF_INET && len >= size_of::<libc::sockaddr_in>() {
            let ip: [u8; 4] = b[4..8].try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(ip)), port))
        } else if family == libc::AF_INET6 && len >= size_of::<libc::sockaddr_in6>() {
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(ip)), port))
        } else {
            None
        }
    }
}

/// Where a received datagram lies in its batch.
#[derive(Debug, Clone, Copy)]
struct DatagramMeta {
    start: usize,
    len: usize,
    source: IpAddr,
    source_port: u16,
}

/// Reusable receive buffers for [`UnderlayRx::recv_batch`], allocated once.
pub struct DatagramBatch {
    buf: Box<[u8]>,
    slot_len: usize,
    names: Box<[Name]>,
    datagrams: Box<[DatagramMeta]>,
    len: usize,
}

impl core::fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("capacity", &self.capacity())
            .field("slot_len", &self.slot_len)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One datagram of a [`DatagramBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The sending VTEP's address.
    pub source: IpAddr,
    /// The outer UDP source port (the sender's per-flow entropy).
    pub source_port: u16,
    /// The UDP payload: VXLAN header and inner frame.
    pub payload: &'a [u8],
}

impl DatagramBatch {
    /// Buffers for `capacity` datagrams (at least 1, at most [`MAX_BATCH`]) of any size UDP
    /// allows (64 KiB each).
    pub fn new(capacity: usize) -> DatagramBatch {
        DatagramBatch::with_slot_len(capacity, MAX_DATAGRAM)
    }

    /// Buffers for `capacity` datagrams of at most `slot_len` bytes (at least 1): longer ones
    /// are dropped and counted as truncated. Underlay datagrams are bounded by its MTU unless
    /// they were reassembled from fragments.
    pub fn with_slot_len(capacity: usize, slot_len: usize) -> DatagramBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let slot_len = slot_len.clamp(1, MAX_DATAGRAM);
        let empty = DatagramMeta {
            start: 0,
            len: 0,
            source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            source_port: 0,
        };
        DatagramBatch {
            buf: vec![0; capacity * slot_len].into_boxed_slice(),
            slot_len,
            names: vec![Name([0; size_of::<libc::sockaddr_in6>()]); capacity].into_boxed_slice(),
            datagrams: vec![empty; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// How many datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.datagrams.len()
    }

    /// How many datagrams the last receive delivered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The last receive delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let meta = self.datagrams[..self.len].get(i)?;
        Some(Datagram {
            source: meta.source,
            source_port: meta.source_port,
            payload: &self.buf[meta.start..meta.start + meta.len],
        })
    }

    /// The datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

/// The pipeline reads a received batch in place.
impl crate::vtep::UnderlayBatch for DatagramBatch {
    fn len(&self) -> usize {
        DatagramBatch::len(self)
    }

    fn datagram(&self, i: usize) -> Option<(IpAddr, &[u8])> {
        self.get(i).map(|d| (d.source, d.payload))
    }
}

impl Default for DatagramBatch {
    /// A batch of 32 datagrams of up to 64 KiB each.
    fn default() -> DatagramBatch {
        DatagramBatch::new(32)
    }
}

/// What the underlay's receive side has seen, beyond the datagrams it delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnderlayRxCounts {
    /// Datagrams delivered.
    pub datagrams: u64,
    /// Datagrams dropped because they did not fit a receive buffer.
    pub truncated: u64,
}

/// The VTEP's UDP port: receives VXLAN datagrams, unicast and from joined multicast groups.
#[derive(Debug)]
pub struct UnderlayRx {
    socket: Socket,
    ipv6: bool,
    counts: UnderlayRxCounts,
}

impl UnderlayRx {
    /// Opens UDP port `port` (0: any free port) on every address of `local`'s family, with
    /// `SO_REUSEADDR`. It is bound to the wildcard address because a socket bound to the unicast
    /// address alone never sees the packets sent to a group.
    pub fn open(local: IpAddr, port: u16) -> Result<UnderlayRx, SetupError> {
        let target = || format!("UDP port {port}");
        let fail = |what: &'static str| move |e: io::Error| SetupError::socket(what, target(), e);
        let ipv6 = local.is_ipv6();
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .map_err(fail("opening a UDP socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(fail("setting SO_REUSEADDR"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("setting O_NONBLOCK"))?;
        set_buffer(socket.as_fd(), libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
            .map_err(fail("setting SO_RCVBUF"))?;
        // By default Linux hands a wildcard-bound socket the traffic of every group any socket
        // of the host joined on that port (e.g. the kernel's own vxlan device): only ours.
        let wildcard = if ipv6 {
            socket
                .set_only_v6(true)
                .map_err(fail("setting IPV6_V6ONLY"))?;
            socket
                .set_multicast_all_v6(false)
                .map_err(fail("clearing IPV6_MULTICAST_ALL"))?;
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            socket
                .set_multicast_all_v4(false)
                .map_err(fail("clearing IP_MULTICAST_ALL"))?;
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        socket
            .bind(&SockAddr::from(SocketAddr::new(wildcard, port)))
            .map_err(fail("binding"))?;
        Ok(UnderlayRx {
            socket,
            ipv6,
            counts: UnderlayRxCounts::default(),
        })
    }

    /// The UDP port the socket is bound to.
    pub fn local_port(&self) -> io::Result<u16> {
        self.socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    }

    /// What the receive side has counted so far.
    pub fn rx_counts(&self) -> UnderlayRxCounts {
        self.counts
    }

    /// Joins multicast `group` on the interface called `ifname` (or the one the routing table
    /// picks for the group when `None`): `IP_ADD_MEMBERSHIP` with an interface index
    /// (`ip_mreqn`), or `IPV6_JOIN_GROUP`. The name is resolved in the calling thread's network
    /// namespace, which must be the socket's.
    pub fn join(&self, group: IpAddr, ifname: Option<&str>) -> Result<(), SetupError> {
        self.membership(group, ifname, true)
    }

    /// Leaves a group joined with [`UnderlayRx::join`] (with the same interface).
    pub fn leave(&self, group: IpAddr, ifname: Option<&str>) -> Result<(), SetupError> {
        self.membership(group, ifname, false)
    }

    fn membership(
        &self,
        group: IpAddr,
        ifname: Option<&str>,
        join: bool,
    ) -> Result<(), SetupError> {
        if !group.is_multicast() {
            return Err(SetupError::NotMulticast { addr: group });
        }
        if group.is_ipv6() != self.ipv6 {
            return Err(SetupError::WrongFamily { addr: group });
        }
        let ifindex = ifname.map(if_index).transpose()?.unwrap_or(0);
        let result = match group {
            IpAddr::V4(g) => {
                let iface = InterfaceIndexOrAddress::Index(ifindex);
                if join {
                    self.socket.join_multicast_v4_n(&g, &iface)
                } else {
                    self.socket.leave_multicast_v4_n(&g, &iface)
                }
            }
            IpAddr::V6(g) => {
                if join {
                    self.socket.join_multicast_v6(&g, ifindex)
                } else {
                    self.socket.leave_multicast_v6(&g, ifindex)
                }
            }
        };
        let what = if join { "joining" } else { "leaving" };
        result.map_err(|e| {
            SetupError::socket(
                what,
                format!("group {group} on {}", ifname.unwrap_or("any interface")),
                e,
            )
        })
    }

    /// Receives up to `batch.capacity()` datagrams with one `recvmmsg`, replacing the batch's
    /// previous contents. Returns how many (at least 1), or `Err(WouldBlock)` once nothing is
    /// left to read. Truncated datagrams are counted and skipped.
    pub fn recv_batch(&mut self, batch: &mut DatagramBatch) -> io::Result<usize> {
        batch.len = 0;
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
        }
        let vlen = libc::c_uint::try_from(capacity).unwrap_or(1);
        // SAFETY: `msgs[..capacity]` are valid mmsghdrs; each points to a Name of
        // `batch.names` (of the size given) and to one iovec of `iovs` covering slot `i` of
        // `batch.buf` (capacity * slot_len bytes). All outlive the call and nothing else
        // accesses them during it. A null timeout is allowed.
        let received = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                core::ptr::null_mut(),
            )
        };
        let Ok(received) = usize::try_from(received) else {
            return Err(io::Error::last_os_error());
        };
        let mut delivered = 0;
        for (slot, msg) in msgs.iter().enumerate().take(received) {
            let len = msg.msg_len as usize;
            let whole = msg.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 && len <= slot_len;
            // A UDP socket always names the source; without one the datagram is dropped too.
            let source = batch.names[slot].source(msg.msg_hdr.msg_namelen);
            let (true, Some((source, source_port))) = (whole, source) else {
                self.counts.truncated += 1;
                continue;
            };
            batch.datagrams[delivered] = DatagramMeta {
                start: slot * slot_len,
                len,
                source,
                source_port,
            };
            delivered += 1;
        }
        batch.len = delivered;
        self.counts.datagrams += delivered as u64;
        Ok(delivered)
    }
}

impl AsFd for UnderlayRx {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for UnderlayRx {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// A destination address in the form `sendmmsg` takes.
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    /// The address, and the length of its `sockaddr`. Port 0: a raw socket's "port" would be a
    /// protocol number, and 0 means the socket's own.
    fn new(ip: IpAddr) -> (RawAddr, libc::socklen_t) {
        match ip {
            IpAddr::V4(ip) => (
                RawAddr {
                    v4: libc::sockaddr_in {
                        sin_family: abi::AF_INET,
                        sin_port: 0,
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(ip.octets()),
                        },
                        sin_zero: [0; 8],
                    },
                },
                abi::SOCKADDR_IN_LEN,
            ),
            IpAddr::V6(ip) => (
                RawAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: abi::AF_INET6,
                        sin6_port: 0,
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
}

/// Sends whole outer IP packets into the underlay.
#[derive(Debug)]
pub struct UnderlayTx {
    socket: Socket,
    ipv6: bool,
}

impl UnderlayTx {
    /// Opens a raw socket of `local`'s family. Multicast goes out of `multicast_if` when given
    /// (else where the routing table says), and is not looped back to this host. Unicast goes
    /// where the routing table says. Needs `CAP_NET_RAW`.
    pub fn open(local: IpAddr, multicast_if: Option<&str>) -> Result<UnderlayTx, SetupError> {
        let target = || format!("underlay sender from {local}");
        let fail = |what: &'static str| move |e: io::Error| SetupError::socket(what, target(), e);
        let ipv6 = local.is_ipv6();
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .map_err(fail("opening a raw IP socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("setting O_NONBLOCK"))?;
        set_buffer(socket.as_fd(), libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
            .map_err(fail("setting SO_SNDBUF"))?;
        let ifindex = multicast_if.map(if_index).transpose()?;
        if ipv6 {
            socket
                .set_header_included_v6(true)
                .map_err(fail("setting IPV6_HDRINCL"))?;
            socket
                .set_multicast_loop_v6(false)
                .map_err(fail("clearing IPV6_MULTICAST_LOOP"))?;
            if let Some(ifindex) = ifindex {
                socket
                    .set_multicast_if_v6(ifindex)
                    .map_err(fail("setting IPV6_MULTICAST_IF"))?;
            }
        } else {
            socket
                .set_multicast_loop_v4(false)
                .map_err(fail("clearing IP_MULTICAST_LOOP"))?;
            if let Some(ifindex) = ifindex {
                let mreqn = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
                };
                setsockopt(
                    socket.as_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MULTICAST_IF,
                    &mreqn,
                )
                .map_err(fail("setting IP_MULTICAST_IF"))?;
            }
        }
        Ok(UnderlayTx { socket, ipv6 })
    }

    /// Sends one packet (the whole outer IP packet) to `dst`.
    pub fn send(&self, dst: IpAddr, packet: &[u8]) -> Result<(), TxDrop> {
        if dst.is_ipv6() != self.ipv6 {
            return Err(TxDrop::WrongFamily);
        }
        let addr = SockAddr::from(SocketAddr::new(dst, 0));
        loop {
            match self
                .socket
                .send_to_with_flags(packet, &addr, libc::MSG_DONTWAIT)
            {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(TxDrop::from_errno(e.raw_os_error().unwrap_or(0))),
            }
        }
    }

    /// Sends packets with as few `sendmmsg` calls as possible ([`MAX_BATCH`] packets each),
    /// counting each packet sent or dropped in `counts`.
    pub fn send_batch<'a, I>(&self, packets: I, counts: &mut TxCounts)
    where
        I: IntoIterator<Item = (IpAddr, &'a [u8])>,
    {
        let mut packets = packets.into_iter();
        let (empty, _) = RawAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut names = [empty; MAX_BATCH];
        let mut name_lens: [libc::socklen_t; MAX_BATCH] = [0; MAX_BATCH];
        let mut iovs = [EMPTY_IOVEC; MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        loop {
            let mut n = 0;
            for (dst, packet) in packets.by_ref() {
                if dst.is_ipv6() != self.ipv6 {
                    counts.record_drops(TxDrop::WrongFamily, 1);
                    continue;
                }
                (names[n], name_lens[n]) = RawAddr::new(dst);
                // The kernel only reads through a send's iovecs; `*mut` is the C type's.
                iovs[n].iov_base = packet.as_ptr().cast_mut().cast();
                iovs[n].iov_len = packet.len();
                n += 1;
                if n == MAX_BATCH {
                    break;
                }
            }
            if n == 0 {
                return;
            }
            let name_base = names.as_mut_ptr();
            let iov_base = iovs.as_mut_ptr();
            for (i, msg) in msgs.iter_mut().enumerate().take(n) {
                msg.msg_hdr.msg_name = name_base.wrapping_add(i).cast();
                msg.msg_hdr.msg_namelen = name_lens[i];
                msg.msg_hdr.msg_iov = iov_base.wrapping_add(i);
                msg.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: each of `msgs[..n]` points to an address in `names` (a repr(C) union whose
            // members start with their sockaddr, of the length given) and to one iovec of `iovs`
            // over a packet borrowed from the caller for 'a; all outlive the call.
            unsafe { send_all(self.socket.as_fd(), &mut msgs[..n], counts) };
            if n < MAX_BATCH {
                return;
            }
        }
    }
}

impl AsFd for UnderlayTx {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for UnderlayTx {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_both_families_and_reject_short_ones() {
        let mut n = Name([0; 28]);
        n.0[..2].copy_from_slice(&abi::AF_INET.to_ne_bytes());
        n.0[2..4].copy_from_slice(&54321u16.to_be_bytes());
        n.0[4..8].copy_from_slice(&[198, 18, 0, 1]);
        assert_eq!(
            n.source(16),
            Some((IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 54321))
        );
        assert_eq!(n.source(8), None);

        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut n = Name([0; 28]);
        n.0[..2].copy_from_slice(&abi::AF_INET6.to_ne_bytes());
        n.0[2..4].copy_from_slice(&4789u16.to_be_bytes());
        n.0[8..24].copy_from_slice(&ip.octets());
        assert_eq!(n.source(28), Some((IpAddr::V6(ip), 4789)));
        n.0[..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(n.source(28), None);
    }

    #[test]
    fn wrong_family_and_non_multicast_are_refused() {
        // Opening sockets needs no privilege for UDP; the raw one may be refused when not root.
        let rx = UnderlayRx::open(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        assert!(matches!(
            rx.join("ff05::1:100".parse().unwrap(), None),
            Err(SetupError::WrongFamily { .. })
        ));
        assert!(matches!(
            rx.join("198.18.0.1".parse().unwrap(), None),
            Err(SetupError::NotMulticast { .. })
        ));
        if let Ok(tx) = UnderlayTx::open(IpAddr::V4(Ipv4Addr::LOCALHOST), None) {
            assert_eq!(
                tx.send("2001:db8::1".parse().unwrap(), &[0; 28]),
                Err(TxDrop::WrongFamily)
            );
        }
    }
}
