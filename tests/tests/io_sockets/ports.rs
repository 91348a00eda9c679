//! Ports (`AF_PACKET` on a veth): what a VM sends arrives as its kernel left it (partial
//! checksum, VLAN tag restored), a port never reads back what goes out, and it survives its
//! interface going down.

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Result, ensure};
use smoltcp::wire::{ArpOperation, ArpPacket, IpProtocol, Ipv4Packet};
use wasm_vtep::config::Steering;
use wasm_vtep::io::{Port, RxBatch, SetupError, TxDrop};
use wasm_vtep::wire::VirtioNetHdr;

use crate::packets::{
    arp_request, bare_packet_socket, ethernet, finish_checksum, partial_l4_frame, read_bare_until,
    tagged, tcp_segment, udp_checksum_ok, udp_dst_port, udp_segment,
};
use crate::support::{
    ETHERTYPE_TEST, HOST_IP, HOST_MAC, TIMEOUT, VM_IP, VM_MAC, port_and_vm_udp, recv_frames,
    recv_frames_for, send_until, udp_to, vm_and_host,
};

#[test]
fn udp_from_a_vm_arrives_with_its_partial_checksum() -> Result<()> {
    let (_vm, _host, mut port, sock) = port_and_vm_udp("csum", true)?;
    let mut batch = RxBatch::new(8);
    let payload = b"finish my checksum, please";
    let (vnet, frame) = send_until(
        || Ok(sock.send_to(payload, (HOST_IP, 5000)).map(drop)?),
        &mut port,
        &mut batch,
        |f| (udp_dst_port(f.bytes) == Some(5000)).then(|| (f.vnet, f.bytes.to_vec())),
    )?;

    assert!(vnet.needs_csum(), "{vnet:?}");
    assert!(!vnet.is_gso(), "{vnet:?}");
    // The UDP checksum field: after 14 bytes of Ethernet and 20 of IPv4, 6 into the UDP header.
    assert_eq!((vnet.csum_start, vnet.csum_offset), (34, 6), "{vnet:?}");
    assert_eq!(frame.len(), 14 + 20 + 8 + payload.len());
    assert_eq!(&frame[42..], payload);
    // Partial as it came, valid once finished as the header says.
    assert!(!udp_checksum_ok(&frame));
    let mut finished = frame.clone();
    finish_checksum(&mut finished, &vnet);
    assert!(udp_checksum_ok(&finished));
    assert_eq!(port.rx_counts().truncated, 0);
    Ok(())
}

#[test]
fn vlan_tags_are_put_back_into_the_frames() -> Result<()> {
    let (vm, host) = vm_and_host("vlan", true)?;
    let (mut port, bare) = {
        let _in = host.enter()?;
        (Port::open("h0")?, bare_packet_socket()?)
    };
    // The VM's side is a packet socket too: this kernel has no 802.1Q devices
    // (CONFIG_VLAN_8021Q unset), and a packet socket can also write partial checksums and GSO.
    let vm_port = {
        let _in = vm.enter()?;
        Port::open("vm0")?
    };
    let mut batch = RxBatch::new(8);

    // 802.1Q, 802.1ad, and QinQ (the kernel strips only the outer tag, the inner one stays).
    let plain = ethernet(HOST_MAC, VM_MAC, ETHERTYPE_TEST, &[0x11; 50]);
    let cases = [
        tagged(&plain, 0x8100, 0x6064),
        tagged(&plain, 0x88a8, 0x00c8),
        tagged(&tagged(&plain, 0x8100, 0x0064), 0x88a8, 0x20c8),
    ];
    for sent in &cases {
        let got = send_until(
            || vm_port.send(&VirtioNetHdr::NONE, sent).map_err(Into::into),
            &mut port,
            &mut batch,
            |f| (f.bytes == &sent[..]).then_some(f.vnet),
        )?;
        assert_eq!(got, VirtioNetHdr::NONE);
        // A packet socket without PACKET_AUXDATA sees the same frame without its outer tag: the
        // tag in the port's bytes is the one put back, not one the kernel left.
        let untagged = [&sent[..12], &sent[16..]].concat();
        read_bare_until(&bare, |bytes| bytes == &untagged[..])?;
    }

    // A partial UDP checksum behind a tag: the kernel reports its offsets on the untagged frame;
    // the port's must point into the restored one.
    let (frame, vnet) = partial_l4_frame(IpProtocol::Udp, &udp_segment(5100, b"tagged"), 6);
    let sent = tagged(&frame, 0x8100, 100);
    let sent_vnet = VirtioNetHdr {
        csum_start: vnet.csum_start + 4,
        ..vnet
    };
    let got = send_until(
        || vm_port.send(&sent_vnet, &sent).map_err(Into::into),
        &mut port,
        &mut batch,
        |f| (f.bytes == &sent[..]).then_some(f.vnet),
    )?;
    assert!(got.needs_csum(), "{got:?}");
    assert_eq!((got.csum_start, got.csum_offset), (38, 6), "{got:?}");
    let mut finished = sent.clone();
    finish_checksum(&mut finished, &got);
    assert!(udp_checksum_ok(&finished));

    // A TCP super-frame behind an 802.1ad tag: GSO fields survive, offsets move by 4.
    let payload: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
    let (frame, vnet) = partial_l4_frame(IpProtocol::Tcp, &tcp_segment(&payload), 16);
    let sent = tagged(&frame, 0x88a8, 300);
    let sent_vnet = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_TCPV4,
        gso_size: 1448,
        hdr_len: 18 + 20 + 20,
        csum_start: vnet.csum_start + 4,
        ..vnet
    };
    let got = send_until(
        || vm_port.send(&sent_vnet, &sent).map_err(Into::into),
        &mut port,
        &mut batch,
        |f| (f.bytes == &sent[..]).then_some(f.vnet),
    )?;
    eprintln!("tagged TSO frame sent with {sent_vnet:?}, received with {got:?}");
    assert_eq!(got.gso_kind(), VirtioNetHdr::GSO_TCPV4, "{got:?}");
    assert_eq!(got.gso_size, 1448, "{got:?}");
    assert_eq!((got.csum_start, got.csum_offset), (38, 16), "{got:?}");
    assert!(got.hdr_len == 0 || got.hdr_len >= 18 + 20 + 20, "{got:?}");
    assert_eq!(port.rx_counts().truncated + port.rx_counts().malformed, 0);
    Ok(())
}

#[test]
fn a_port_sends_frames_and_never_reads_back_outgoing_ones() -> Result<()> {
    let (vm, host) = vm_and_host("tx", true)?;
    vm.ip(&["addr", "add", &format!("{VM_IP}/24"), "dev", "vm0"])?;
    let mut port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let mut capture = {
        let _in = vm.enter()?;
        Port::open("vm0")?
    };
    let mut batch = RxBatch::new(16);

    // An ARP request from a MAC only this port uses.
    let me = [0x02, 0, 0, 0, 0, 0xaa];
    let request = arp_request(me, Ipv4Addr::new(192, 0, 2, 99), VM_IP);
    port.send(&VirtioNetHdr::NONE, &request)?;
    // The peer's packet socket gets it byte for byte...
    recv_frames(&mut capture, &mut batch, TIMEOUT, |f| {
        if f.bytes == &request[..] {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // ...and the vm's kernel answers it, while the port never sees its own request.
    let (mut replies, mut own) = (0, 0);
    recv_frames_for(&mut port, &mut batch, Duration::from_millis(500), |f| {
        if f.bytes[6..12] == me {
            own += 1;
        }
        if let Ok(arp) = ArpPacket::new_checked(&f.bytes[14..])
            && arp.operation() == ArpOperation::Reply
            && arp.target_hardware_addr() == me
        {
            replies += 1;
        }
    })?;
    assert_eq!(own, 0, "the port read back its own transmission");
    assert_eq!(replies, 1, "no ARP reply to the port's request");

    // Nor what the host's own stack sends out of the interface: a ping from the host namespace
    // shows only the vm's replies.
    host.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "h0"])?;
    host.exec(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", &VM_IP.to_string()],
    )?;
    let (requests, echo_replies) = count_echoes(&mut port, &mut batch, Duration::from_millis(300))?;
    assert_eq!((requests, echo_replies), (0, 3));
    Ok(())
}

/// ICMP echo requests and replies among what `port` reads for `duration`.
fn count_echoes(port: &mut Port, batch: &mut RxBatch, duration: Duration) -> Result<(u32, u32)> {
    let (mut requests, mut replies) = (0, 0);
    recv_frames_for(port, batch, duration, |f| {
        let Ok(ip) = Ipv4Packet::new_checked(&f.bytes[14..]) else {
            return;
        };
        if f.bytes[12..14] == [0x08, 0x00] && ip.next_header() == IpProtocol::Icmp {
            match ip.payload()[0] {
                8 => requests += 1,
                0 => replies += 1,
                _ => {}
            }
        }
    })?;
    Ok((requests, replies))
}

#[test]
fn a_fanout_group_never_reads_back_outgoing_frames_either() -> Result<()> {
    for (tag, steering) in [("fs", Steering::Symmetric), ("fk", Steering::Kernel)] {
        let (vm, host) = vm_and_host(tag, true)?;
        vm.ip(&["addr", "add", &format!("{VM_IP}/24"), "dev", "vm0"])?;
        host.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "h0"])?;
        // Two workers' sockets on the port, as the daemon opens them.
        let mut ports = {
            let _in = host.enter()?;
            [Port::open("h0")?, Port::open("h0")?]
        };
        let group = ports[0].join_fanout(None, steering)?;
        ports[1].join_fanout(Some(group), steering)?;
        host.exec(
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "2", &VM_IP.to_string()],
        )?;
        let mut batch = RxBatch::new(16);
        let (mut requests, mut replies) = (0, 0);
        for port in &mut ports {
            let (q, r) = count_echoes(port, &mut batch, Duration::from_millis(300))?;
            (requests, replies) = (requests + q, replies + r);
        }
        ensure!(
            (requests, replies) == (0, 3),
            "{steering:?}: the group read {requests} requests the host sent, {replies} replies"
        );
    }
    Ok(())
}

#[test]
fn a_port_opened_on_a_down_interface_receives_once_it_comes_up() -> Result<()> {
    let (_vm, host, mut port, sock) = port_and_vm_udp("down", false)?;
    let mut batch = RxBatch::new(8);

    // Down: nothing to read (the kernel's pending ENETDOWN is consumed and counted), and sending
    // is a counted drop, not an error.
    let err = port.recv_batch(&mut batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert_eq!(port.rx_counts().link_down, 1);
    let frame = ethernet(VM_MAC, HOST_MAC, ETHERTYPE_TEST, &[0; 46]);
    assert_eq!(
        port.send(&VirtioNetHdr::NONE, &frame),
        Err(TxDrop::LinkDown)
    );

    host.ip(&["link", "set", "h0", "up"])?;
    send_until(
        || Ok(sock.send_to(b"up", (HOST_IP, 6000)).map(drop)?),
        &mut port,
        &mut batch,
        udp_to(6000),
    )?;

    // A VM stopping and starting again: down and up once more.
    host.ip(&["link", "set", "h0", "down"])?;
    host.ip(&["link", "set", "h0", "up"])?;
    send_until(
        || Ok(sock.send_to(b"again", (HOST_IP, 6001)).map(drop)?),
        &mut port,
        &mut batch,
        udp_to(6001),
    )?;
    assert_eq!(port.rx_counts().link_down, 2);
    Ok(())
}

#[test]
fn frames_dropped_on_a_full_receive_buffer_are_counted() -> Result<()> {
    let (vm, host) = vm_and_host("full", true)?;
    let mut port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let vm_port = {
        let _in = vm.enter()?;
        Port::open("vm0")?
    };
    // Far more small frames than the port's receive buffer holds, none read meanwhile.
    const SENT: u64 = 40_000;
    let frame = ethernet(HOST_MAC, VM_MAC, ETHERTYPE_TEST, &[0; 46]);
    let mut counts = wasm_vtep::io::TxCounts::default();
    vm_port.send_batch(
        std::iter::repeat_n((&VirtioNetHdr::NONE, &frame[..]), 40_000),
        &mut counts,
    );
    assert_eq!(counts.sent, SENT);

    let mut batch = RxBatch::new(64);
    let (mut received, mut others) = (0u64, 0u64);
    recv_frames_for(&mut port, &mut batch, Duration::from_millis(300), |f| {
        if f.bytes == &frame[..] {
            received += 1;
        } else {
            others += 1;
        }
    })?;
    let drops = port.refresh_kernel_drops()?;
    eprintln!("received {received} of {SENT} (and {others} others), kernel dropped {drops}");
    assert!(received > 0 && drops > 0);
    // The kernel's count also holds whatever else reached the full socket: the vm's own IPv6
    // router solicitations and MLD reports of a link that just came up (a few frames; one
    // made a run count 40,001).
    const CHATTER: u64 = 8;
    assert!(received + drops <= SENT + CHATTER);
    assert_eq!(port.rx_counts().kernel_drops, drops);
    // Reading the kernel's counter resets it: nothing is counted twice.
    assert_eq!(port.refresh_kernel_drops()?, drops);
    Ok(())
}

#[test]
fn opening_a_missing_interface_names_it() -> Result<()> {
    let (_vm, host) = vm_and_host("miss", true)?;
    let _in = host.enter()?;
    let err = Port::open("vm0").unwrap_err();
    assert!(matches!(err, SetupError::NoSuchInterface { .. }), "{err:?}");
    assert!(err.to_string().contains("\"vm0\""), "{err}");
    Ok(())
}
