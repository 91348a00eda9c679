//! Opening the sockets of one source port: options (TTL, path MTU, multicast, the zero checksum
//! of IPv4 single datagrams), a filter that drops whatever arrives, and the binding.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use libc::c_int;
use socket2::{SockAddr, Socket};

use super::{PortSockets, UnderlayTxConfig};
use crate::io::sys::{SetupError, set_buffer, setsockopt, udp_socket};

impl PortSockets {
    /// Opens `port`'s sockets: the checksummed one, and on IPv4 the zero-checksum one.
    pub(super) fn open(
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
