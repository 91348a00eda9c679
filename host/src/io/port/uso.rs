//! Whether this kernel's packet sockets take UDP super-frames: a probe of the feature itself.
//!
//! The pipeline may merge a flow's UDP datagrams from the underlay into one super-frame for a
//! port (`VIRTIO_NET_HDR_GSO_UDP_L4`, the VM's USO), but a packet socket takes such a frame only
//! where the kernel's `virtio_net_hdr_to_skb` knows the GSO type (Linux 6.2 and later); older
//! kernels refuse it with `EINVAL`, and merging must be off there.
//!
//! How the probe asks: it sends one small, well-formed UDP super-frame (two 8-byte segments,
//! partial checksum) from a packet socket with a vnet header out of the loopback interface,
//! which is up in any namespace a daemon serves VMs from. The kernel parses the vnet header
//! before it transmits, so the send succeeds exactly where the feature exists. The frame goes
//! nowhere: its destination MAC is not loopback's (all zeros), so the receive side marks it
//! `PACKET_OTHERHOST` and IP drops it (`ip_rcv_core`); only packet sockets on `lo` (a capture)
//! see it, from and to TEST-NET addresses (RFC 5737) and the discard port. Only `EINVAL` is the
//! kernel saying no; any other failure (no `CAP_NET_RAW`, `lo` down) leaves the question open
//! and is logged as a warning, and merging stays off, which costs speed, never frames. The
//! answer is kept for the life of the process.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::OnceLock;

use libc::c_int;
use socket2::{Domain, Protocol, Socket, Type};

use crate::io::sys::{abi, if_index, setsockopt};
use crate::wire::VirtioNetHdr;

/// The EtherType of IPv4, as `sockaddr_ll.sll_protocol` takes it before `to_be`.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// Where the UDP header starts: after the Ethernet (14) and IPv4 (20) headers.
const UDP_START: u16 = 34;
/// The segment size: the frame's 16 bytes of payload are two segments.
const SEGMENT: u16 = 8;

/// Ethernet 02:00:00:00:00:02 to 02:00:00:00:00:01 (locally administered, not loopback's), an
/// IPv4 header (checksum 0xf6bd) from 192.0.2.1 to 192.0.2.2, a UDP header from and to port 9
/// whose checksum field holds the pseudo-header sum (0x842d) as a partial checksum does, and
/// 16 bytes of zeros.
#[rustfmt::skip]
const PROBE_FRAME: [u8; 58] = [
    0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00,
    0x45, 0, 0, 44, 0, 0, 0, 0, 64, 17, 0xf6, 0xbd, 192, 0, 2, 1, 192, 0, 2, 2,
    0, 9, 0, 9, 0, 24, 0x84, 0x2d,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The super-frame's `virtio_net_hdr`: UDP GSO of 8-byte segments, checksum left partial.
const PROBE_VNET: VirtioNetHdr = VirtioNetHdr {
    flags: VirtioNetHdr::F_NEEDS_CSUM,
    gso_type: VirtioNetHdr::GSO_UDP_L4,
    hdr_len: UDP_START + 8,
    gso_size: SEGMENT,
    csum_start: UDP_START,
    csum_offset: 6,
};

/// Whether a packet socket takes UDP super-frames (`VIRTIO_NET_HDR_GSO_UDP_L4`) on this kernel,
/// probed once per process in the calling thread's network namespace (see the module's doc).
pub fn kernel_takes_uso() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| match send_probe() {
        Ok(()) => true,
        // The kernel's answer: it does not know the GSO type.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::info!("a packet socket refused a UDP super-frame on lo: no USO here");
            false
        }
        // No answer (e.g. `lo` down, or raw sockets refused): merging stays off, said louder
        // since the kernel may well have the feature.
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not probe for UDP super-frames on lo; UDP is delivered unmerged"
            );
            false
        }
    })
}

/// Sends [`PROBE_FRAME`] with [`PROBE_VNET`] out of `lo`.
fn send_probe() -> io::Result<()> {
    let ifindex = if_index("lo").map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
    // Protocol 0 and no bind: the socket never receives, it only sends this one frame.
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
    let on: c_int = 1;
    setsockopt(socket.as_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on)?;
    let mut hdr = [0u8; VirtioNetHdr::LEN];
    PROBE_VNET
        .emit(&mut hdr)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let addr = libc::sockaddr_ll {
        sll_family: abi::AF_PACKET,
        sll_protocol: ETHERTYPE_IPV4.to_be(),
        sll_ifindex: c_int::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // The kernel only reads through a send's iovecs and address; `*mut` is the C types'.
    let mut iovs = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: PROBE_FRAME.as_ptr().cast_mut().cast(),
            iov_len: PROBE_FRAME.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&addr as *const libc::sockaddr_ll).cast_mut().cast();
    msg.msg_namelen = abi::SOCKADDR_LL_LEN;
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = iovs.len();
    // SAFETY: `msg` names `addr` (a sockaddr_ll of the length given) and two iovecs over `hdr`
    // and `PROBE_FRAME`; all outlive the call, and the kernel only reads them. The descriptor
    // is open for the call.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums the frame's comment states, and lengths that agree with its size.
    #[test]
    fn the_probe_frame_is_a_well_formed_udp_super_frame() {
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&PROBE_FRAME[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), PROBE_FRAME.len() - 14);
        let udp = smoltcp::wire::UdpPacket::new_checked(ip.payload()).unwrap();
        let pseudo = smoltcp::wire::checksum::pseudo_header_v4(
            &ip.src_addr(),
            &ip.dst_addr(),
            smoltcp::wire::IpProtocol::Udp,
            u32::from(udp.len()),
        );
        assert_eq!(udp.checksum(), pseudo);
        assert_eq!(usize::from(udp.len()) - 8, 2 * usize::from(SEGMENT));
    }

    /// Where the probe can run (root, `lo` up), it finds the feature on the kernels that have
    /// it (6.2 and later; this project's CI runs 6.18).
    #[test]
    fn the_probe_finds_uso_from_linux_6_2() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(kernel_takes_uso(), (major, minor) >= (6, 2), "{release}");
    }
}
