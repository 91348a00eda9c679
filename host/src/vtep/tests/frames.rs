//! Inner frames as VMs send them, built with smoltcp's wire types.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use crate::wire::MacAddr;

pub(super) fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

pub(super) fn vm_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, n)
}

fn ethernet(
    src: MacAddr,
    dst: MacAddr,
    ethertype: EthernetProtocol,
    payload_len: usize,
) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src.0),
        dst_addr: EthernetAddress(dst.0),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload_len];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    buf
}

fn arp(op: ArpOperation, src: u8, dst_mac: MacAddr, target_mac: MacAddr, target: u8) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(mac(src).0),
        source_protocol_addr: vm_ip(src),
        target_hardware_addr: EthernetAddress(target_mac.0),
        target_protocol_addr: vm_ip(target),
    };
    let mut buf = ethernet(mac(src), dst_mac, EthernetProtocol::Arp, repr.buffer_len());
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

/// VM `src` asks who has VM `target`'s address: a broadcast.
pub(super) fn arp_request(src: u8, target: u8) -> Vec<u8> {
    arp(
        ArpOperation::Request,
        src,
        MacAddr::BROADCAST,
        MacAddr::ZERO,
        target,
    )
}

/// VM `src` answers VM `dst`: a unicast.
pub(super) fn arp_reply(src: u8, dst: u8) -> Vec<u8> {
    arp(ArpOperation::Reply, src, mac(dst), mac(dst), dst)
}

/// The RARP a hypervisor sends for a migrated VM (as QEMU's `qemu_announce_self` does):
/// broadcast, source the VM's MAC, ethertype 0x8035.
pub(super) fn rarp(src: u8) -> Vec<u8> {
    let mut buf = ethernet(
        mac(src),
        MacAddr::BROADCAST,
        EthernetProtocol::Unknown(0x8035),
        28,
    );
    buf[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 3]);
    buf[22..28].copy_from_slice(&mac(src).0);
    buf[32..38].copy_from_slice(&mac(src).0);
    buf
}

/// A complete UDP/IPv4 frame from VM `src` to VM `dst` with `len` payload bytes.
pub(super) fn udp(src: u8, dst: u8, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let ip = Ipv4Repr {
        src_addr: vm_ip(src),
        dst_addr: vm_ip(dst),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + len,
        hop_limit: 64,
    };
    let mut buf = ethernet(
        mac(src),
        mac(dst),
        EthernetProtocol::Ipv4,
        ip.buffer_len() + ip.payload_len,
    );
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]), &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut buf[34..]),
        &vm_ip(src).into(),
        &vm_ip(dst).into(),
        len,
        |p| p.copy_from_slice(&payload),
        &caps,
    );
    buf
}

/// The Ethernet source of a frame.
pub(super) fn src_of(frame: &[u8]) -> MacAddr {
    EthernetFrame::new_checked(frame)
        .map(|f| MacAddr(f.src_addr().0))
        .unwrap_or_default()
}
