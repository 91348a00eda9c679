//! A VM's TCP super-frame to a remote VTEP: segmented into one datagram per segment, or, when
//! the shell takes super-frames whole, encapsulated once; either way the remote's VM receives
//! the same stream.

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, IpProtocol};

use super::frames::mac;
use super::sim::Net;
use crate::fdb::{Location, PortId};
use crate::vtep::{VniSettings, VtepSettings};
use crate::wire::{VirtioNetHdr, Vni};

const VNI: u32 = 5001;
const MSS: usize = 1448;
const SEGMENTS: usize = 10;

fn host(n: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, n])
}

/// Hosts 1 and 2, one port each on VNI 5001, each the other's head-end remote.
fn settings(n: u8, whole: bool) -> VtepSettings {
    let mut s = VtepSettings::new(host(n));
    s.mtu = 1600;
    s.whole_super_frames = whole;
    let mut v = VniSettings::new(Vni::new(VNI).unwrap(), vec![PortId(0)]);
    v.remotes = vec![host(3 - n)];
    s.vnis.push(v);
    s
}

/// A TSO super-frame from VM n to VM m as a VM's kernel hands it over: TCP over IPv4,
/// `SEGMENTS` segments of `MSS`, the checksum field holding the pseudo-header sum.
fn super_frame(n: u8, m: u8, ecn: bool) -> (VirtioNetHdr, Vec<u8>) {
    let (src, dst) = ([192, 0, 2, n], [192, 0, 2, m]);
    let payload = SEGMENTS * MSS;
    let mut f = Vec::new();
    f.extend_from_slice(&mac(m).0);
    f.extend_from_slice(&mac(n).0);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(20 + 20 + payload).unwrap();
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let ip_sum = !f[14..34].chunks(2).fold(0u32, |a, w| {
        let s = a + u32::from(u16::from_be_bytes([w[0], w[1]]));
        (s & 0xffff) + (s >> 16)
    }) as u16;
    f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP 40000 -> 5201, seq 1, ack 1, ACK|PSH, window 502, checksum below.
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 1, 0xf6,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    let seed = smoltcp::wire::checksum::pseudo_header(
        &IpAddress::from(std::net::Ipv4Addr::from(src)),
        &IpAddress::from(std::net::Ipv4Addr::from(dst)),
        IpProtocol::Tcp,
        u32::try_from(20 + payload).unwrap(),
    );
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    f.extend((0..payload).map(|i| (i % 251) as u8));
    let vnet = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4 | if ecn { VirtioNetHdr::GSO_ECN } else { 0 },
        hdr_len: 54,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    (vnet, f)
}

/// Both VMs have spoken, so each VTEP knows the other's VM behind the other VTEP; then VM1
/// sends a super-frame to VM2. Returns the network afterwards.
fn send_super_frame(whole: bool, ecn: bool) -> (Net, Vec<u8>) {
    let mut net = Net::new(vec![settings(1, whole), settings(2, whole)]);
    net.send(1, 0, &super::frames::udp(2, 1, 5201, 40000, 5));
    net.send(0, 0, &super::frames::udp(1, 2, 40000, 5201, 5));
    assert_eq!(net.entry(0, VNI, mac(2)), Some(Location::Remote(host(2))));
    let (vnet, frame) = super_frame(1, 2, ecn);
    net.send_with(0, 0, &vnet, &frame);
    (net, frame)
}

fn to_underlay_frames(net: &Net, v: usize) -> u64 {
    net.vteps[v].vni_stats().map(|s| s.to_underlay.frames).sum()
}

#[test]
fn a_super_frame_goes_whole_when_the_shell_takes_it() {
    let (net, frame) = send_super_frame(true, false);
    assert_eq!(net.captured.len(), 1, "one outer packet on the underlay");
    let wire = &net.captured[0];
    assert_eq!((wire.src, wire.dst), (host(1), host(2)));
    assert_eq!(wire.payload.len(), 8 + frame.len());
    assert_eq!(&wire.payload[8..], &frame[..], "the VM's frame, untouched");
    // The receiver sees a partial checksum and a frame longer than its MTU: it hands the VM a
    // super-frame again, the same bytes.
    let delivered = net.delivered_to(1);
    assert_eq!(delivered, vec![(PortId(0), frame)]);
    // Counted as the packets a wire would carry: the earlier "hello" and ten segments.
    assert_eq!(to_underlay_frames(&net, 0), 1 + SEGMENTS as u64);
}

#[test]
fn a_super_frame_is_segmented_otherwise() {
    let (net, _) = send_super_frame(false, false);
    assert_eq!(net.captured.len(), SEGMENTS);
    assert!(
        net.captured
            .iter()
            .all(|w| w.payload.len() <= 8 + 14 + 20 + 20 + MSS)
    );
    assert_eq!(to_underlay_frames(&net, 0), 1 + SEGMENTS as u64);
}

#[test]
fn an_ecn_super_frame_is_segmented_even_when_the_shell_takes_them_whole() {
    let (net, _) = send_super_frame(true, true);
    assert_eq!(net.captured.len(), SEGMENTS);
}

/// Flooded to a multicast group (the destination unknown), a super-frame is segmented: a
/// group is no destination a forwarded packet can be routed to.
#[test]
fn a_super_frame_flooded_to_a_group_is_segmented() {
    let group = |n: u8| {
        let mut s = settings(n, true);
        s.vnis[0].remotes.clear();
        s.vnis[0].group = Some(IpAddr::from([239, 1, 1, 100]));
        s
    };
    let mut net = Net::new(vec![group(1), group(2)]);
    let (vnet, frame) = super_frame(1, 2, false);
    net.send_with(0, 0, &vnet, &frame);
    assert_eq!(net.captured.len(), SEGMENTS);
    assert!(net.captured.iter().all(|w| w.dst.is_multicast()));
}
