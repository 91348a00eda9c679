//! `UnderlayTx`: sends the pipeline's VXLAN datagrams from UDP sockets bound to the flows'
//! source ports.
//!
//! Contract: a datagram leaves from the local address and the source port the pipeline chose
//! for its flow, to the destination it names at the VXLAN port, with the configured TTL, never
//! fragmented here (too long for the interface: `EMSGSIZE`, a counted drop) and never looped
//! back to this host when it goes to a group. A frame holding several datagrams of one flow
//! (see [`Outbox`](crate::vtep::Outbox)) goes out in one `sendmsg` with `UDP_SEGMENT`: the
//! kernel carries it as one packet through its stack and the underlay's virtual links, cuts it
//! into datagrams only where a device needs that, and a receiver with `UDP_GRO` reads it whole.
//!
//! Why one socket per source port: the per-flow source port (RFC 7348 §5) must be on the wire,
//! and a UDP socket sends from the port it is bound to; raw sockets could set any port but
//! cannot use GSO. Each port has two sockets on IPv4: RFC 7348 recommends a zero outer UDP
//! checksum, which the kernel's vxlan sends and which `SO_NO_CHECK` gives, but the kernel refuses
//! GSO on such a socket (a GSO packet's checksum is left to the device). Single datagrams leave
//! with a zero checksum; GSO batches with a computed one (offloaded), which RFC 7348 equally
//! allows. IPv6 always carries a computed checksum (RFC 8200).
//!
//! The sockets only send: a classic BPF filter drops whatever arrives at their ports before it
//! is queued, so that stray datagrams cannot fill their receive buffers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::c_int;
use socket2::{SockAddr, Socket};

use super::counts::{TxCounts, TxDrop};
use super::sys::{
    EMPTY_IOVEC, MAX_BATCH, SetupError, abi, if_index, send_all, set_buffer, setsockopt,
    udp_socket, zeroed_mmsghdrs,
};
use crate::vtep::{OutFrame, SourcePorts};

/// What every underlay socket shares.
#[derive(Debug, Clone, Copy)]
pub struct UnderlayTxConfig<'a> {
    /// This VTEP's address: the outer source.
    pub local: IpAddr,
    /// The VXLAN port datagrams are sent to.
    pub dst_port: u16,
    /// Outer TTL (IPv4) or hop limit (IPv6), unicast and multicast alike.
    pub ttl: u8,
    /// The interface multicast leaves from (else where the routing table says).
    pub multicast_if: Option<&'a str>,
}

/// The sockets of one source port.
#[derive(Debug)]
struct PortSockets {
    port: u16,
    /// Sends with a UDP checksum: GSO batches, and every IPv6 datagram.
    checksummed: Socket,
    /// IPv4 only: sends single datagrams with a zero UDP checksum.
    zero_checksum: Option<Socket>,
}

/// Sends VXLAN datagrams into the underlay.
#[derive(Debug)]
pub struct UnderlayTx {
    ipv6: bool,
    dst_port: u16,
    /// Ascending by port.
    sockets: Vec<PortSockets>,
    /// UDP GSO works on this underlay. Cleared for good the first time the kernel refuses a
    /// GSO send as such (`EINVAL`, `EIO`: an IPsec route, a device that cannot checksum, an old
    /// kernel); batches then leave one datagram per message, as they would have anyway.
    gso: AtomicBool,
}

/// `CMSG_SPACE(sizeof(u16))`: a `UDP_SEGMENT` control message, laid out as the kernel reads it
/// (the data follows the header, which is already 8-byte aligned on 64-bit Linux).
#[derive(Clone, Copy)]
#[repr(C)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

impl UnderlayTx {
    /// Opens the sockets of every port of `ports`. A port that another program holds is
    /// replaced in `ports` by a free one of the same range, so that `ports` ends up naming the
    /// ports the pipeline may pick. Needs `CAP_NET_ADMIN` for the larger send buffers (else
    /// they stay at the system's maximum).
    pub fn open(
        config: &UnderlayTxConfig<'_>,
        ports: &mut SourcePorts,
    ) -> Result<UnderlayTx, SetupError> {
        let multicast_if = config.multicast_if.map(if_index).transpose()?;
        let mut sockets: Vec<PortSockets> = Vec::with_capacity(ports.ports().len());
        let wanted: Vec<u16> = ports.ports().to_vec();
        let range = ports.range();
        // Each port in use is tried once: a search that went round the range gives up.
        let mut tries_left = usize::from(*range.end() - *range.start()) + 1;
        for port in wanted {
            let mut candidate = port;
            let opened = loop {
                match PortSockets::open(config, candidate, multicast_if) {
                    Ok(s) => break s,
                    Err(e) if is_in_use(&e) && tries_left > 0 => {
                        tries_left -= 1;
                        let next = free_port(ports, candidate, config.dst_port).ok_or(e)?;
                        if !ports.replace(candidate, next) {
                            return Err(SetupError::socket(
                                "finding a free source port",
                                format!("range {:?}", ports.range()),
                                io::Error::from_raw_os_error(libc::EADDRINUSE),
                            ));
                        }
                        tracing::info!(port = candidate, instead = next, "source port in use");
                        candidate = next;
                    }
                    Err(e) => return Err(e),
                }
            };
            sockets.push(opened);
        }
        sockets.sort_unstable_by_key(|s| s.port);
        Ok(UnderlayTx {
            ipv6: config.local.is_ipv6(),
            dst_port: config.dst_port,
            sockets,
            gso: AtomicBool::new(true),
        })
    }

    /// The source ports this sender has sockets for, ascending.
    pub fn source_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.sockets.iter().map(|s| s.port)
    }

    /// Sends `frames` (underlay frames from source port `src_port`: one datagram each, or a GSO
    /// batch of several) with as few `sendmmsg` calls as possible ([`MAX_BATCH`] frames each),
    /// counting each datagram sent or dropped in `counts`.
    pub fn send_batch<'a, I>(&self, src_port: u16, frames: I, counts: &mut TxCounts)
    where
        I: IntoIterator<Item = (IpAddr, &'a OutFrame)>,
    {
        let frames = frames.into_iter();
        let Ok(i) = self.sockets.binary_search_by_key(&src_port, |s| s.port) else {
            let n: usize = frames.map(|(_, f)| f.datagrams().count()).sum();
            counts.record_drops(TxDrop::Other, n as u64);
            return;
        };
        let sockets = &self.sockets[i];
        let single = sockets
            .zero_checksum
            .as_ref()
            .unwrap_or(&sockets.checksummed);
        let mut frames = frames.peekable();
        while frames.peek().is_some() {
            // One kind of message per call: GSO batches and single datagrams may need
            // different sockets.
            let gso = self.gso.load(Ordering::Relaxed);
            let batched = frames.peek().is_some_and(|(_, f)| gso && is_gso(f));
            let mut batch = Batch::default();
            while let Some(&(dst, frame)) = frames.peek() {
                let room = if batched {
                    1
                } else {
                    frame.datagrams().count()
                };
                if (gso && is_gso(frame)) != batched
                    || (batch.len > 0 && batch.len + room > MAX_BATCH)
                {
                    break;
                }
                frames.next();
                if dst.is_ipv6() != self.ipv6 {
                    counts.record_drops(TxDrop::WrongFamily, frame.datagrams().count() as u64);
                    continue;
                }
                if batched {
                    batch.add(dst, self.dst_port, &frame.bytes, frame.segment_len);
                } else {
                    // One message per datagram (a GSO batch too, while GSO is off).
                    for d in frame.datagrams() {
                        batch.add(dst, self.dst_port, d, 0);
                    }
                }
            }
            if !batched {
                batch.send(single, counts, |_, _| false);
                continue;
            }
            let mut refused = Vec::new();
            batch.send(&sockets.checksummed, counts, |i, errno| {
                let gso_refused = matches!(errno, libc::EINVAL | libc::EIO);
                if gso_refused {
                    refused.push(i);
                }
                gso_refused
            });
            if refused.is_empty() {
                continue;
            }
            if self.gso.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    "the kernel refuses UDP GSO on this underlay: sending one datagram per message"
                );
            }
            let mut again = Batch::default();
            for i in refused {
                for d in batch.frames[i].chunks(usize::from(batch.segments[i]).max(1)) {
                    if again.len == MAX_BATCH {
                        again.send(single, counts, |_, _| false);
                    }
                    again.add_named(batch.names[i], batch.name_lens[i], d, 0);
                }
            }
            again.send(single, counts, |_, _| false);
        }
    }
}

// A GSO batch split into single datagrams fits one `sendmmsg`.
const _: () = assert!(crate::vtep::MAX_GSO_SEGMENTS <= MAX_BATCH);

/// Whether `frame` holds several datagrams (a GSO batch).
fn is_gso(frame: &OutFrame) -> bool {
    frame.segment_len != 0 && frame.bytes.len() > frame.segment_len
}

/// One `sendmmsg` being put together: its messages' addresses, buffers and control data live
/// here, on the stack, for the duration of the call.
struct Batch<'a> {
    names: [SockAddrStorage; MAX_BATCH],
    name_lens: [libc::socklen_t; MAX_BATCH],
    iovs: [libc::iovec; MAX_BATCH],
    cmsgs: [Option<SegmentCmsg>; MAX_BATCH],
    /// Each message's GSO segment size (0: one datagram).
    segments: [u16; MAX_BATCH],
    weights: [u64; MAX_BATCH],
    frames: [&'a [u8]; MAX_BATCH],
    len: usize,
}

/// A destination address in the form `sendmmsg` takes.
#[derive(Clone, Copy)]
#[repr(C)]
union SockAddrStorage {
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
    fn add(&mut self, dst: IpAddr, port: u16, bytes: &'a [u8], segment_len: usize) {
        let (name, name_len) = sockaddr(dst, port);
        self.add_named(name, name_len, bytes, segment_len);
    }

    fn add_named(
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
    fn send(
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

impl PortSockets {
    fn open(
        config: &UnderlayTxConfig<'_>,
        port: u16,
        multicast_if: Option<u32>,
    ) -> Result<PortSockets, SetupError> {
        let checksummed = open_socket(config, port, multicast_if, false)?;
        let zero_checksum = if config.local.is_ipv4() {
            Some(open_socket(config, port, multicast_if, true)?)
        } else {
            None
        };
        Ok(PortSockets {
            port,
            checksummed,
            zero_checksum,
        })
    }
}

/// One sending socket bound to `local`:`port`.
fn open_socket(
    config: &UnderlayTxConfig<'_>,
    port: u16,
    multicast_if: Option<u32>,
    zero_checksum: bool,
) -> Result<Socket, SetupError> {
    let local = config.local;
    let target = || format!("underlay sender {}", SocketAddr::new(local, port));
    let fail = |what: &'static str| move |e: io::Error| SetupError::socket(what, target(), e);
    let ipv6 = local.is_ipv6();
    // SO_REUSEADDR: the port's two sockets share it.
    let socket = udp_socket(ipv6).map_err(|(what, e)| fail(what)(e))?;
    set_buffer(socket.as_fd(), libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
        .map_err(fail("setting SO_SNDBUF"))?;
    drop_everything_received(&socket).map_err(fail("attaching a drop-all filter"))?;
    let fd = socket.as_fd();
    // The daemon may start before its underlay address is configured (as the kernel's vxlan
    // may): bind to it all the same.
    let on: c_int = 1;
    let (level, freebind) = if local.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
    } else {
        (libc::IPPROTO_IP, libc::IP_FREEBIND)
    };
    setsockopt(fd, level, freebind, &on).map_err(fail("setting IP_FREEBIND"))?;
    let ttl = c_int::from(config.ttl);
    let off: c_int = 0;
    if ipv6 {
        socket
            .set_only_v6(true)
            .map_err(fail("setting IPV6_V6ONLY"))?;
        // Use the interface's MTU and never fragment here: too long is EMSGSIZE.
        let pmtu: c_int = libc::IPV6_PMTUDISC_INTERFACE;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &pmtu)
            .map_err(fail("setting IPV6_MTU_DISCOVER"))?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)
            .map_err(fail("setting IPV6_UNICAST_HOPS"))?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &ttl)
            .map_err(fail("setting IPV6_MULTICAST_HOPS"))?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &off)
            .map_err(fail("clearing IPV6_MULTICAST_LOOP"))?;
        if let Some(ifindex) = multicast_if {
            socket
                .set_multicast_if_v6(ifindex)
                .map_err(fail("setting IPV6_MULTICAST_IF"))?;
        }
    } else {
        // Use the interface's MTU, never fragment here (too long is EMSGSIZE), and leave DF
        // clear as the kernel's vxlan does, so that the underlay may still fragment (RFC 7348
        // §4.3).
        let pmtu: c_int = libc::IP_PMTUDISC_INTERFACE;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &pmtu)
            .map_err(fail("setting IP_MTU_DISCOVER"))?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl).map_err(fail("setting IP_TTL"))?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl)
            .map_err(fail("setting IP_MULTICAST_TTL"))?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &off)
            .map_err(fail("clearing IP_MULTICAST_LOOP"))?;
        if let Some(ifindex) = multicast_if {
            let mreqn = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: c_int::try_from(ifindex).unwrap_or(0),
            };
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
                .map_err(fail("setting IP_MULTICAST_IF"))?;
        }
        if zero_checksum {
            let on: c_int = 1;
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_NO_CHECK, &on)
                .map_err(fail("setting SO_NO_CHECK"))?;
        }
    }
    socket
        .bind(&SockAddr::from(SocketAddr::new(local, port)))
        .map_err(fail("binding"))?;
    Ok(socket)
}

/// Attaches a classic BPF program that accepts nothing (`ret #0`).
fn drop_everything_received(socket: &Socket) -> io::Result<()> {
    let mut program = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the program during the call.
    setsockopt(
        socket.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog,
    )
}

fn is_in_use(e: &SetupError) -> bool {
    matches!(e, SetupError::Socket { source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE))
}

/// A port of `ports`' range after `from` (wrapping) that is neither in the set nor `dst_port`,
/// if any.
fn free_port(ports: &SourcePorts, from: u16, dst_port: u16) -> Option<u16> {
    let range = ports.range();
    let (lo, hi) = (*range.start(), *range.end());
    let span = u32::from(hi - lo) + 1;
    (1..span)
        .map(|step| {
            let offset = (u32::from(from - lo) + step) % span;
            lo + u16::try_from(offset).unwrap_or(0)
        })
        .find(|&p| !ports.contains(p) && p != dst_port)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};

    use super::*;
    use crate::vtep::{Outbox, UnderlayDest};

    /// When the kernel refuses a GSO send (here: a socket made to send without a UDP checksum,
    /// which GSO cannot do; in the field an IPsec route or an old kernel), the batch still leaves,
    /// one datagram per message, and GSO stays off from then on.
    #[test]
    fn a_refused_gso_send_falls_back_to_single_datagrams() {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let sink = UdpSocket::bind((local, 0)).unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut ports = SourcePorts::spread(40_000..=40_999, 1).unwrap();
        let config = UnderlayTxConfig {
            local,
            dst_port: sink.local_addr().unwrap().port(),
            ttl: 64,
            multicast_if: None,
        };
        let tx = UnderlayTx::open(&config, &mut ports).unwrap();
        let port = tx.sockets[0].port;
        let on: c_int = 1;
        setsockopt(
            tx.sockets[0].checksummed.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            &on,
        )
        .unwrap();
        let mut out = Outbox::new();
        let to = UnderlayDest {
            dst: local,
            src_port: port,
        };
        for i in 0..11u8 {
            out.append_datagram(to, 100, |b| b.extend_from_slice(&[i; 100]));
        }
        assert_eq!(out.len(), 1, "one GSO batch");
        let mut counts = TxCounts::default();
        tx.send_batch(port, out.frames().iter().map(|f| (local, f)), &mut counts);
        assert_eq!((counts.sent, counts.dropped_total()), (11, 0));
        assert!(!tx.gso.load(Ordering::Relaxed));
        let mut buf = [0u8; 256];
        for i in 0..11u8 {
            let n = sink.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 100][..]);
        }
        // Later batches go out one datagram per message straight away.
        let mut counts = TxCounts::default();
        tx.send_batch(port, out.frames().iter().map(|f| (local, f)), &mut counts);
        assert_eq!((counts.sent, counts.batched), (11, 0));
    }
}
