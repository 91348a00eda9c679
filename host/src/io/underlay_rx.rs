//! `UnderlayRx`: the VTEP's VXLAN UDP port, unicast and joined multicast groups.
//!
//! Contract: it delivers each UDP datagram to the VTEP port (unicast to any local address, or
//! multicast to a group it joined) as its source and its payload (the VXLAN header and inner
//! frame), in batches. A VTEP must not hear its own floods: its senders keep multicast loopback
//! off, and the pipeline drops what still comes from its own address.
//!
//! `UDP_GRO` is on: a batch of datagrams that a peer sent as one GSO packet (see
//! [`UnderlayTx`](super::UnderlayTx)) arrives as one buffer with its segment size in a control
//! message, and crosses the kernel's receive path once instead of once per datagram; the batch
//! hands its datagrams out one by one, as if they had been read one by one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{InterfaceIndexOrAddress, SockAddr, Socket};

use super::steering;
use super::sys::{
    EMPTY_IOVEC, MAX_BATCH, SetupError, abi, if_index, recv_mmsg, set_buffer, setsockopt,
    udp_socket, zeroed_mmsghdrs,
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

/// Control bytes per message: one `UDP_GRO` message (`CMSG_SPACE(sizeof(int))` = 24 on 64-bit)
/// with room to spare.
const CONTROL_LEN: usize = 32;

/// One message's control buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

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
    control: Box<[Control]>,
    /// One per datagram, several per slot when GRO coalesced them; grows (rarely) past the
    /// largest GRO batch seen and keeps its capacity.
    datagrams: Vec<DatagramMeta>,
}

impl core::fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("capacity", &self.capacity())
            .field("slot_len", &self.slot_len)
            .field("len", &self.len())
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
    /// Buffers for `capacity` receives (at least 1, at most [`MAX_BATCH`]) of any size UDP
    /// allows (64 KiB each: a GRO batch, or a datagram reassembled from fragments).
    pub fn new(capacity: usize) -> DatagramBatch {
        DatagramBatch::with_slot_len(capacity, MAX_DATAGRAM)
    }

    /// Buffers for `capacity` receives of at most `slot_len` bytes (at least 1): longer ones
    /// are dropped and counted as truncated.
    pub fn with_slot_len(capacity: usize, slot_len: usize) -> DatagramBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let slot_len = slot_len.clamp(1, MAX_DATAGRAM);
        DatagramBatch {
            buf: vec![0; capacity * slot_len].into_boxed_slice(),
            slot_len,
            names: vec![Name([0; size_of::<libc::sockaddr_in6>()]); capacity].into_boxed_slice(),
            control: vec![Control([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            datagrams: Vec::with_capacity(capacity),
        }
    }

    /// How many receives (datagrams, or GRO batches of them) one call can take.
    pub fn capacity(&self) -> usize {
        self.names.len()
    }

    /// How many datagrams the last receive delivered.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// The last receive delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let meta = self.datagrams.get(i)?;
        Some(Datagram {
            source: meta.source,
            source_port: meta.source_port,
            payload: &self.buf[meta.start..meta.start + meta.len],
        })
    }

    /// The datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
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
    /// Of those, datagrams that arrived in a GRO batch of several.
    pub coalesced: u64,
    /// Datagrams (or GRO batches) dropped because they did not fit a receive buffer.
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
    /// `SO_REUSEADDR` and `UDP_GRO`. It is bound to the wildcard address because a socket bound
    /// to the unicast address alone never sees the packets sent to a group. With `shared`, it
    /// sets `SO_REUSEPORT` too: several workers each open one, and the kernel spreads unicast
    /// datagrams over them by a hash of their addresses and ports (a flow stays on one); a
    /// group's datagrams go to the sockets that joined it.
    pub fn open(local: IpAddr, port: u16, shared: bool) -> Result<UnderlayRx, SetupError> {
        let target = || format!("UDP port {port}");
        let fail = |what: &'static str| move |e: io::Error| SetupError::socket(what, target(), e);
        let ipv6 = local.is_ipv6();
        let socket = udp_socket(ipv6).map_err(|(what, e)| fail(what)(e))?;
        if shared {
            socket
                .set_reuse_port(true)
                .map_err(fail("setting SO_REUSEPORT"))?;
        }
        set_buffer(socket.as_fd(), libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
            .map_err(fail("setting SO_RCVBUF"))?;
        let on: libc::c_int = 1;
        setsockopt(socket.as_fd(), libc::SOL_UDP, libc::UDP_GRO, &on)
            .map_err(fail("setting UDP_GRO"))?;
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

    /// Makes this socket's reuseport group of `workers` sockets (opened `shared`, in the
    /// workers' order) hand each datagram to the worker whose port sockets read the other
    /// direction of its inner flow (see `steering`). Called on one socket, once all are bound.
    pub fn steer(&self, workers: usize) -> Result<(), SetupError> {
        let n = u32::try_from(workers).unwrap_or(u32::MAX);
        steering::attach_to_reuseport(self.socket.as_fd(), n).map_err(|e| {
            SetupError::socket(
                "setting the reuseport steering program ([datapath] steering = \"kernel\" does without)",
                "the underlay",
                e,
            )
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
        let rx = UnderlayRx::open(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, false).unwrap();
        assert!(matches!(
            rx.join("ff05::1:100".parse().unwrap(), None),
            Err(SetupError::WrongFamily { .. })
        ));
        assert!(matches!(
            rx.join("198.18.0.1".parse().unwrap(), None),
            Err(SetupError::NotMulticast { .. })
        ));
    }
}
