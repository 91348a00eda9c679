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
//!
//! Here: the socket and its options; `batch` the receive buffers, `receive` the `recvmmsg` and
//! its control messages, `groups` multicast membership.

mod batch;
mod groups;
mod receive;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{SockAddr, Socket};

pub use batch::{Datagram, DatagramBatch};

use super::steering;
use super::sys::{SetupError, set_buffer, setsockopt, udp_socket};
use crate::counters::named_counters;

named_counters! {
    /// What the underlay's receive side has seen, beyond the datagrams it delivered.
    pub struct UnderlayRxCounts {
        /// Datagrams delivered.
        datagrams => "underlay_rx_datagrams",
        /// Of those, datagrams that arrived in a GRO batch of several.
        coalesced => "underlay_rx_coalesced",
        /// Datagrams (or GRO batches) dropped because they did not fit a receive buffer.
        truncated => "underlay_rx_truncated",
    }
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
