//! Super-frames both ways: a VM's TSO send arrives on a port as GSO super-frames, and a flow's
//! batch of underlay datagrams crosses the link as one UDP GSO packet that a `UDP_GRO` receiver
//! reads whole.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use wasm_vtep::io::{DatagramBatch, Port, RxBatch, UnderlayRx};
use wasm_vtep::wire::VirtioNetHdr;

use crate::packets::vxlan;
use crate::support::{
    HOST_IP, SRC_PORT, TIMEOUT, UNDERLAY_A, UNDERLAY_B, UNDERLAY6_A, UNDERLAY6_B, VM_IP,
    VXLAN_PORT, captured_ip, recv_datagrams, recv_frames, send, sender, underlay_pair, vm_and_host,
};

#[test]
fn a_tcp_bulk_send_arrives_as_gso_super_frames() -> Result<()> {
    let (vm, host) = vm_and_host("gso", true)?;
    // A real TCP peer: the host namespace's own stack on h0, where the port also listens.
    vm.ip(&["addr", "add", &format!("{VM_IP}/24"), "dev", "vm0"])?;
    host.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "h0"])?;
    let (mut port, listener) = {
        let _in = host.enter()?;
        (Port::open("h0")?, TcpListener::bind((HOST_IP, 5001))?)
    };
    const BYTES: usize = 4 << 20;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut sink = Vec::new();
        s.read_to_end(&mut sink)
    });
    let mut stream = {
        let _in = vm.enter()?;
        TcpStream::connect_timeout(&SocketAddr::from((HOST_IP, 5001)), TIMEOUT)?
    };
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        stream.write_all(&vec![0x5a; BYTES])?;
        stream.shutdown(std::net::Shutdown::Write)
    });

    let mut batch = RxBatch::default();
    let (mut super_frames, mut largest) = (0usize, 0usize);
    let mut sample = None;
    let result = recv_frames(&mut port, &mut batch, TIMEOUT, |f| {
        if f.vnet.gso_kind() == VirtioNetHdr::GSO_TCPV4 && f.bytes.len() > 1514 {
            super_frames += 1;
            largest = largest.max(f.bytes.len());
            sample.get_or_insert((f.vnet, f.bytes.len(), f.bytes[16..18].to_vec()));
        }
        if super_frames >= 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let received = reader.join().expect("reader thread")?;
    writer.join().expect("writer thread")?;
    result.context("no GSO super-frames seen")?;
    assert_eq!(received, BYTES);

    let (vnet, len, ip_total) = sample.context("no sample")?;
    eprintln!("first TSO frame: {len} bytes, {vnet:?}; largest of {super_frames}: {largest}");
    assert!(vnet.needs_csum(), "{vnet:?}");
    assert_eq!((vnet.csum_start, vnet.csum_offset), (34, 16), "{vnet:?}");
    assert!((1..=1448).contains(&vnet.gso_size), "{vnet:?}");
    // The IPv4 total length covers the whole super-frame.
    assert_eq!(
        usize::from(u16::from_be_bytes([ip_total[0], ip_total[1]])),
        len - 14
    );
    assert!(len - 66 > usize::from(vnet.gso_size));
    assert_eq!(port.rx_counts().truncated, 0);
    Ok(())
}

/// A flow's batch of datagrams (all one length but the last) leaves in one send, crosses the
/// link as one GSO packet, and a `UDP_GRO` receiver reads it whole and hands the datagrams out
/// in order.
fn gso_batch(local: IpAddr, remote: IpAddr) -> Result<()> {
    let (a, b) = underlay_pair(if local.is_ipv4() { "gso4" } else { "gso6" })?;
    let (mut rx, mut capture) = {
        let _in = b.enter()?;
        (
            UnderlayRx::open(remote, VXLAN_PORT, false)?,
            Port::open("u1")?,
        )
    };
    let tx = {
        let _in = a.enter()?;
        sender(local, 64, None, false)?
    };
    let datagrams: Vec<Vec<u8>> = (0u8..10)
        .map(|i| vxlan(5001, &[i; 1000]))
        .chain([vxlan(5001, &[0xee; 300])])
        .collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let counts = send(&tx, remote, &refs);
    assert_eq!((counts.sent, counts.dropped_total()), (11, 0));

    let (vnet, wire) = captured_ip(&mut capture, if local.is_ipv4() { 0x0800 } else { 0x86dd })?;
    assert_eq!(
        vnet.gso_kind(),
        VirtioNetHdr::GSO_UDP_L4,
        "one GSO packet on the link"
    );
    assert_eq!(usize::from(vnet.gso_size), 1008);
    assert!(wire.len() > 10 * 1008);

    let mut batch = DatagramBatch::new(8);
    let mut got = Vec::new();
    recv_datagrams(&mut rx, &mut batch, TIMEOUT, |src, port, payload| {
        assert_eq!((src, port), (local, SRC_PORT));
        got.push(payload.to_vec());
        if got.len() == datagrams.len() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    assert_eq!(got, datagrams);
    assert_eq!(rx.rx_counts().coalesced, 11, "read as one GRO batch");
    Ok(())
}

#[test]
fn a_gso_batch_over_ipv4_is_one_packet_on_the_link_and_one_read() -> Result<()> {
    gso_batch(UNDERLAY_A.into(), UNDERLAY_B.into())
}

#[test]
fn a_gso_batch_over_ipv6_is_one_packet_on_the_link_and_one_read() -> Result<()> {
    gso_batch(UNDERLAY6_A.into(), UNDERLAY6_B.into())
}
