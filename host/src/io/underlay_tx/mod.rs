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
//!
//! A VM's TCP super-frame that the pipeline encapsulated once leaves through a tap instead, as
//! one packet with a UDP-tunnel GSO header, when this kernel and host allow it (`tunnel_tap`).
//!
//! Submodules, one job each: `ports` (binding the wanted source ports, swapping those in use),
//! `socket` (one socket's options and its drop-all filter), `batch` (one `sendmmsg`'s messages),
//! `send` (sending a flow's frames, falling back from GSO), `tunnel_tap` (the tap and its
//! frames' outer headers) and `whole` (sending a super-frame whole, or segmenting it when the
//! tap cannot).

mod batch;
mod ports;
mod send;
mod socket;
mod tunnel_tap;
mod whole;

pub use tunnel_tap::TapUnavailable;

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;

use socket2::Socket;

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
    local: IpAddr,
    ipv6: bool,
    dst_port: u16,
    /// Ascending by port.
    sockets: Vec<PortSockets>,
    /// UDP GSO works on this underlay. Cleared for good the first time the kernel refuses a
    /// GSO send as such (`EINVAL`, `EIO`: an IPsec route, a device that cannot checksum, an old
    /// kernel); batches then leave one datagram per message, as they would have anyway.
    gso: AtomicBool,
    /// Where super-frames leave whole, when open (see `tunnel_tap`).
    tunnel: Option<tunnel_tap::TunnelTap>,
}

impl UnderlayTx {
    /// The source ports this sender has sockets for, ascending.
    pub fn source_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.sockets.iter().map(|s| s.port)
    }
}
