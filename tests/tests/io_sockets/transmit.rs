//! The `Transmitter`: an outbox drained into ports and the underlay, in order, failures counted.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;

use anyhow::Result;
use wasm_vtep::fdb::PortId;
use wasm_vtep::io::{Port, RxBatch, Transmitter, TxDrop};
use wasm_vtep::vtep::{Dest, Outbox, UnderlayDest};
use wasm_vtep::wire::VirtioNetHdr;
use wasm_vtep_tests::Netns;

use crate::packets::{ethernet, vxlan};
use crate::support::{
    ETHERTYPE_TEST, HOST_MAC, OTHER_PORT, SRC_PORT, TIMEOUT, UNDERLAY_A, UNDERLAY_B, UNDERLAY6_B,
    VM_MAC, VXLAN_PORT, join_underlay, recv_frames, sender, vm_and_host,
};

#[test]
fn the_transmitter_drains_an_outbox_in_order_and_counts_drops() -> Result<()> {
    let (vm, host) = vm_and_host("xmit", true)?;
    let remote = Netns::new("xmitr")?;
    join_underlay(&host, &remote)?;

    let (ports, underlay) = {
        let _in = host.enter()?;
        (
            vec![Port::open("h0")?],
            sender(UNDERLAY_A.into(), 64, None, true)?,
        )
    };
    let mut capture = {
        let _in = vm.enter()?;
        Port::open("vm0")?
    };
    // A plain UDP socket: GSO batches reach it as separate datagrams.
    let udp = {
        let _in = remote.enter()?;
        let udp = UdpSocket::bind((UNDERLAY_B, VXLAN_PORT))?;
        udp.set_read_timeout(Some(TIMEOUT))?;
        udp
    };

    // Frames to the port are numbered; underlay datagrams too. More than one sendmmsg's worth
    // of frames, and more than one GSO batch's worth of datagrams.
    const PORT_FRAMES: u32 = 150;
    const UNDERLAY_DATAGRAMS: u32 = 70;
    let numbered = |n: u32| {
        ethernet(
            VM_MAC,
            HOST_MAC,
            ETHERTYPE_TEST,
            &[&n.to_be_bytes()[..], &[0; 42]].concat(),
        )
    };
    let to = |dst: IpAddr, src_port: u16| UnderlayDest { dst, src_port };
    let mut outbox = Outbox::new();
    let (mut next_frame, mut next_datagram) = (0, 0);
    for i in 0..(PORT_FRAMES + UNDERLAY_DATAGRAMS) {
        if i % 3 == 1 && next_datagram < UNDERLAY_DATAGRAMS || next_frame == PORT_FRAMES {
            let payload = vxlan(7, &next_datagram.to_be_bytes());
            outbox.append_datagram(to(UNDERLAY_B.into(), SRC_PORT), payload.len(), |b| {
                b.extend_from_slice(&payload)
            });
            next_datagram += 1;
        } else {
            outbox
                .push(Dest::Port(PortId(0)), VirtioNetHdr::NONE)
                .extend(numbered(next_frame));
            next_frame += 1;
        }
        if i == 20 {
            // Failures in the middle of runs: an unknown port, frames longer than the MTU, a
            // destination of the other family (each of its own flow, as the pipeline's are).
            outbox
                .push(Dest::Port(PortId(7)), VirtioNetHdr::NONE)
                .extend(numbered(9999));
            outbox
                .push(Dest::Port(PortId(0)), VirtioNetHdr::NONE)
                .extend(ethernet(VM_MAC, HOST_MAC, ETHERTYPE_TEST, &[0; 3000]));
            outbox.append_datagram(to(UNDERLAY6_B.into(), SRC_PORT), 60, |b| {
                b.extend_from_slice(&[0x60; 60])
            });
            outbox.append_datagram(to(UNDERLAY_B.into(), OTHER_PORT), 1600, |b| {
                b.extend_from_slice(&[0; 1600])
            });
        }
    }

    let counts = Transmitter::new().transmit(&mut outbox, &ports, &underlay);
    assert!(outbox.is_empty());
    assert_eq!(counts.ports.sent, u64::from(PORT_FRAMES));
    assert_eq!(counts.ports.dropped(TxDrop::NoSuchPort), 1);
    assert_eq!(counts.ports.dropped(TxDrop::TooBig), 1);
    assert_eq!(counts.ports.dropped_total(), 2);
    assert_eq!(counts.underlay.sent, u64::from(UNDERLAY_DATAGRAMS));
    assert_eq!(counts.underlay.dropped(TxDrop::WrongFamily), 1);
    assert_eq!(counts.underlay.dropped(TxDrop::TooBig), 1);
    assert_eq!(counts.underlay.dropped_total(), 2);

    let mut batch = RxBatch::new(64);
    let mut expect = 0u32;
    recv_frames(&mut capture, &mut batch, TIMEOUT, |f| {
        if f.bytes[12..14] == ETHERTYPE_TEST.to_be_bytes() {
            let n = u32::from_be_bytes(f.bytes[14..18].try_into().unwrap());
            assert_eq!(n, expect, "port frames out of order");
            expect += 1;
        }
        if expect == PORT_FRAMES {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let mut buf = [0u8; 256];
    for expect in 0..UNDERLAY_DATAGRAMS {
        let (n, from) = udp.recv_from(&mut buf)?;
        assert_eq!(from, SocketAddr::from((UNDERLAY_A, SRC_PORT)));
        assert_eq!(
            &buf[8..n],
            &expect.to_be_bytes(),
            "underlay datagrams out of order"
        );
    }
    Ok(())
}
