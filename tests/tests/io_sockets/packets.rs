//! Frames and datagrams the tests send, and what they read back out of received ones.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};
use wasm_vtep::wire::VirtioNetHdr;
// The kit's builders, under the names these tests use.
pub(crate) use wasm_vtep_testkit::eth::{arp_request, frame as ethernet};
pub(crate) use wasm_vtep_testkit::vxlan::encapsulate as vxlan;

use crate::support::{ETHERTYPE_TEST, HOST_IP, HOST_MAC, TIMEOUT, VM_IP, VM_MAC};

/// The Ethernet payload of `frame` after any 802.1Q/802.1ad tags, with its EtherType.
pub(crate) fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    loop {
        let ethertype = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            at += 4;
        } else {
            return Some((ethertype, frame.get(at + 2..)?));
        }
    }
}

/// The UDP destination port of an IPv4/UDP frame (possibly tagged).
pub(crate) fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    let (ethertype, payload) = ethernet_payload(frame)?;
    let ip = Ipv4Packet::new_checked(payload).ok()?;
    if ethertype != 0x0800 || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    Some(UdpPacket::new_checked(ip.payload()).ok()?.dst_port())
}

/// `frame` with a tag (TPID, TCI) inserted after its MACs.
pub(crate) fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

pub(crate) fn inner_frame(tag: &[u8]) -> Vec<u8> {
    let mut payload = tag.to_vec();
    payload.resize(payload.len().max(46), 0xa5);
    ethernet(
        [0x02, 0, 0, 0, 0x0b, 0x0b],
        [0x02, 0, 0, 0, 0x0a, 0x0a],
        ETHERTYPE_TEST,
        &payload,
    )
}

/// Finishes a partial checksum as a NIC would: the one's complement sum from `csum_start` to the
/// end (the field holds the pseudo-header sum), complemented, stored at `csum_offset`.
pub(crate) fn finish_checksum(frame: &mut [u8], vnet: &VirtioNetHdr) {
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    let check = match !ones_sum(&frame[start..], 0) {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
}

/// The one's complement sum of `data` (16-bit big-endian words), added to `sum`, folded.
pub(crate) fn ones_sum(data: &[u8], sum: u32) -> u16 {
    let mut sum = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .fold(sum, |a, b| a + b);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded to 16 bits")
}

/// An untagged IPv4 frame from the vm to the host carrying `l4` (an L4 header and payload with
/// a zero checksum), its checksum left partial as a kernel with checksum offload leaves it: the
/// field holds the pseudo-header sum, and the `virtio_net_hdr` says where to finish it.
pub(crate) fn partial_l4_frame(
    proto: IpProtocol,
    l4: &[u8],
    csum_offset: u16,
) -> (Vec<u8>, VirtioNetHdr) {
    let ip = Ipv4Repr {
        src_addr: VM_IP,
        dst_addr: HOST_IP,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let mut packet = vec![0; ip.buffer_len() + l4.len()];
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut view, &ChecksumCapabilities::default());
    view.payload_mut().copy_from_slice(l4);
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&VM_IP.octets());
    pseudo[4..8].copy_from_slice(&HOST_IP.octets());
    pseudo[9] = u8::from(proto);
    pseudo[10..].copy_from_slice(
        &u16::try_from(l4.len())
            .expect("L4 length fits 16 bits")
            .to_be_bytes(),
    );
    let at = 20 + usize::from(csum_offset);
    packet[at..at + 2].copy_from_slice(&ones_sum(&pseudo, 0).to_be_bytes());
    let vnet = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: 14 + 20,
        csum_offset,
        ..VirtioNetHdr::NONE
    };
    (ethernet(HOST_MAC, VM_MAC, 0x0800, &packet), vnet)
}

/// A UDP header (checksum zero) and payload, to `dst_port`.
pub(crate) fn udp_segment(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP length fits 16 bits");
    [
        &40000u16.to_be_bytes()[..],
        &dst_port.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat()
}

/// A TCP header (ACK|PSH, checksum zero) and payload.
pub(crate) fn tcp_segment(payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&5300u16.to_be_bytes());
    h[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    h[8..12].copy_from_slice(&1u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x18;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A packet socket on every interface of the calling thread's namespace, without
/// `PACKET_AUXDATA` or a vnet header: frames as the kernel hands them to plain packet sockets.
pub(crate) fn bare_packet_socket() -> Result<socket2::Socket> {
    let protocol = i32::from(u16::try_from(libc::ETH_P_ALL)?.to_be());
    let socket = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(protocol)),
    )?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

/// Reads `socket` until a frame `f` accepts arrives.
pub(crate) fn read_bare_until(
    socket: &socket2::Socket,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        match (&*socket).read(&mut buf) {
            Ok(n) if f(&buf[..n]) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the bare packet socket never saw the frame")
}

/// The UDP checksum of an IPv4/UDP frame (possibly tagged) verifies.
pub(crate) fn udp_checksum_ok(frame: &[u8]) -> bool {
    let Some((_, payload)) = ethernet_payload(frame) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(payload) else {
        return false;
    };
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return false;
    };
    udp.verify_checksum(
        &IpAddress::Ipv4(ip.src_addr()),
        &IpAddress::Ipv4(ip.dst_addr()),
    )
}
