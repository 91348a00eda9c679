//! The underlay's sockets: unicast over IPv4 and IPv6 with the configured TTL and checksums,
//! source ports another program holds, and multicast groups joined and left.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, Result};
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, UdpPacket};
use wasm_vtep::io::{DatagramBatch, Port, UnderlayRx, UnderlayTx, UnderlayTxConfig};
use wasm_vtep::vtep::SourcePorts;
use wasm_vtep::wire::VirtioNetHdr;

use crate::packets::{finish_checksum, inner_frame, vxlan};
use crate::support::{
    GROUP, GROUP6, SRC_PORT, TIMEOUT, UNDERLAY_A, UNDERLAY_B, UNDERLAY6_A, UNDERLAY6_B, VXLAN_PORT,
    captured_ip, recv_datagrams, send, sender, underlay_pair,
};

/// Sends one VXLAN datagram from `local` (with `ttl`) to `remote` over a fresh underlay pair,
/// and checks that a UDP socket at `remote` receives it from the flow's source port. Returns the
/// datagram's payload and the frame a port on the receiving link captured, with its
/// `virtio_net_hdr`.
fn send_one(local: IpAddr, remote: IpAddr, ttl: u8) -> Result<(Vec<u8>, VirtioNetHdr, Vec<u8>)> {
    let v4 = local.is_ipv4();
    let (a, b) = underlay_pair(if v4 { "tx4" } else { "tx6" })?;
    let (udp, mut capture) = {
        let _in = b.enter()?;
        let udp = UdpSocket::bind((remote, VXLAN_PORT))?;
        udp.set_read_timeout(Some(TIMEOUT))?;
        (udp, Port::open("u1")?)
    };
    let tx = {
        let _in = a.enter()?;
        sender(local, ttl, None, false)?
    };
    let payload = vxlan(5001, &inner_frame(if v4 { b"v4" } else { b"v6" }));
    let counts = send(&tx, remote, &[&payload]);
    assert_eq!((counts.sent, counts.dropped_total()), (1, 0));

    let mut buf = [0u8; 2048];
    let (n, from) = udp.recv_from(&mut buf)?;
    assert_eq!(from, SocketAddr::new(local, SRC_PORT));
    assert_eq!(&buf[..n], &payload[..]);
    let (vnet, wire) = captured_ip(&mut capture, if v4 { 0x0800 } else { 0x86dd })?;
    Ok((payload, vnet, wire))
}

#[test]
fn underlay_tx_sends_ipv4_datagrams_from_the_flows_port_with_the_ttl_and_no_checksum() -> Result<()>
{
    let (payload, _, wire) = send_one(UNDERLAY_A.into(), UNDERLAY_B.into(), 17)?;
    let ip = Ipv4Packet::new_checked(&wire[14..])?;
    assert_eq!(ip.hop_limit(), 17, "TTL");
    assert!(!ip.dont_frag(), "DF clear, as the kernel's vxlan sends it");
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload())?;
    assert_eq!((udp.src_port(), udp.dst_port()), (SRC_PORT, VXLAN_PORT));
    assert_eq!(udp.checksum(), 0, "RFC 7348: a zero UDP checksum over IPv4");
    assert_eq!(udp.payload(), &payload[..]);
    Ok(())
}

#[test]
fn underlay_tx_sends_ipv6_datagrams_with_the_hop_limit_and_a_checksum() -> Result<()> {
    let (payload, vnet, mut wire) = send_one(UNDERLAY6_A.into(), UNDERLAY6_B.into(), 7)?;
    // A checksum the sender offloaded is finished as a NIC would before checking it.
    if vnet.needs_csum() {
        finish_checksum(&mut wire, &vnet);
    }
    let ip = Ipv6Packet::new_checked(&wire[14..])?;
    assert_eq!(ip.hop_limit(), 7);
    let udp = UdpPacket::new_checked(ip.payload())?;
    assert_eq!((udp.src_port(), udp.dst_port()), (SRC_PORT, VXLAN_PORT));
    assert!(udp.verify_checksum(&IpAddress::Ipv6(UNDERLAY6_A), &IpAddress::Ipv6(UNDERLAY6_B)));
    assert_eq!(udp.payload(), &payload[..]);
    Ok(())
}

#[test]
fn a_source_port_another_program_holds_is_replaced_by_a_free_one() -> Result<()> {
    let (a, _b) = underlay_pair("held")?;
    let _in = a.enter()?;
    let _holder = UdpSocket::bind((UNDERLAY_A, SRC_PORT))?;
    let mut ports = SourcePorts::spread(SRC_PORT..=SRC_PORT + 9, 2)?;
    let config = UnderlayTxConfig {
        local: UNDERLAY_A.into(),
        dst_port: VXLAN_PORT,
        ttl: 64,
        multicast_if: None,
    };
    let tx = UnderlayTx::open(&config, &mut ports)?;
    assert!(!ports.contains(SRC_PORT), "{:?}", ports.ports());
    assert_eq!(ports.ports().len(), 2);
    assert!(
        ports
            .ports()
            .iter()
            .all(|p| (SRC_PORT..=SRC_PORT + 9).contains(p))
    );
    assert_eq!(tx.source_ports().collect::<Vec<_>>(), ports.ports());
    Ok(())
}

/// `b` joins `group` and receives what `a` sends to it; `a`, joined too, does not hear its own
/// flood; after `b` leaves, it no longer receives.
fn underlay_multicast(local: IpAddr, remote: IpAddr, group: IpAddr) -> Result<()> {
    let (a, b) = underlay_pair(if local.is_ipv4() { "mc4" } else { "mc6" })?;
    let (tx, mut rx_a) = {
        let _in = a.enter()?;
        let rx = UnderlayRx::open(local, VXLAN_PORT, false)?;
        rx.join(group, Some("u0"))?;
        (sender(local, 64, Some("u0"), false)?, rx)
    };
    let mut rx_b = {
        let _in = b.enter()?;
        let rx = UnderlayRx::open(remote, VXLAN_PORT, false)?;
        rx.join(group, Some("u1"))?;
        rx
    };
    let mut batch = DatagramBatch::new(8);

    let flood = vxlan(5001, &inner_frame(b"flood"));
    send(&tx, group, &[&flood]);
    recv_datagrams(&mut rx_b, &mut batch, TIMEOUT, |src, port, payload| {
        if payload == &flood[..] {
            assert_eq!((src, port), (local, SRC_PORT));
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .context("the joined receiver never got the flood")?;

    // `a` hears a unicast to itself, but not its own flood (sent before it).
    let marker = vxlan(5001, &inner_frame(b"marker"));
    send(&tx, local, &[&marker]);
    std::thread::sleep(Duration::from_millis(100));
    let mut heard_flood = false;
    recv_datagrams(&mut rx_a, &mut batch, TIMEOUT, |_, _, payload| {
        heard_flood |= payload == &flood[..];
        if payload == &marker[..] {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .context("the sender never heard a unicast to itself")?;
    assert!(!heard_flood, "the sender heard its own flood");

    // After leaving, a flood sent before a unicast marker does not arrive before the marker.
    {
        let _in = b.enter()?;
        rx_b.leave(group, Some("u1"))?;
    }
    let late = vxlan(5001, &inner_frame(b"after leave"));
    send(&tx, group, &[&late]);
    send(&tx, remote, &[&marker]);
    std::thread::sleep(Duration::from_millis(100));
    let mut heard_late = false;
    recv_datagrams(&mut rx_b, &mut batch, TIMEOUT, |_, _, payload| {
        heard_late |= payload == &late[..];
        if payload == &marker[..] {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .context("the receiver that left never got the unicast marker")?;
    assert!(!heard_late, "received a group's flood after leaving it");
    assert_eq!(rx_b.rx_counts().truncated, 0);
    Ok(())
}

#[test]
fn underlay_rx_receives_ipv4_groups_while_joined() -> Result<()> {
    underlay_multicast(UNDERLAY_A.into(), UNDERLAY_B.into(), GROUP.into())
}

#[test]
fn underlay_rx_receives_ipv6_groups_while_joined() -> Result<()> {
    underlay_multicast(UNDERLAY6_A.into(), UNDERLAY6_B.into(), GROUP6.into())
}
