//! Throughput through the sockets, run by hand.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use wasm_vtep::io::{DatagramBatch, Port, RxBatch, TxDrop, UnderlayRx};
use wasm_vtep::wire::VirtioNetHdr;

use crate::packets::{ethernet, inner_frame, vxlan};
use crate::support::{
    ETHERTYPE_TEST, HOST_MAC, TIMEOUT, UNDERLAY_A, UNDERLAY_B, VM_MAC, VXLAN_PORT, recv_datagrams,
    send, sender, underlay_pair, vm_and_host, wait_readable,
};

/// Frames per second through the sockets (run by hand: `cargo test -p wasm-vtep-tests --test
/// io_sockets -- --ignored --nocapture`). Sender and receiver share the machine's cores.
#[test]
#[ignore = "a measurement, not a check; run by hand"]
fn throughput() -> Result<()> {
    const RUN: Duration = Duration::from_secs(2);
    let (vm, host) = vm_and_host("perf", true)?;
    let port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let mut sink = {
        let _in = vm.enter()?;
        Port::open("vm0")?
    };
    let frame = ethernet(VM_MAC, HOST_MAC, ETHERTYPE_TEST, &[0; 46]);
    let big = ethernet(VM_MAC, HOST_MAC, ETHERTYPE_TEST, &[0; 1486]);

    for (what, frame, batched) in [
        ("60-byte frames, send_batch", &frame, true),
        ("60-byte frames, send", &frame, false),
        ("1500-byte frames, send_batch", &big, true),
    ] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_rx = stop.clone();
        let receiver = std::thread::spawn(move || -> (Port, u64) {
            let mut batch = RxBatch::new(64);
            let mut n = 0u64;
            while !stop_rx.load(std::sync::atomic::Ordering::Relaxed) {
                match sink.recv_batch(&mut batch) {
                    Ok(k) => n += k as u64,
                    Err(_) => wait_readable(&sink, Duration::from_millis(10)),
                }
            }
            (sink, n)
        });
        let mut counts = wasm_vtep::io::TxCounts::default();
        let start = Instant::now();
        while start.elapsed() < RUN {
            if batched {
                port.send_batch(
                    std::iter::repeat_n((&VirtioNetHdr::NONE, &frame[..]), 64),
                    &mut counts,
                );
            } else {
                for _ in 0..64 {
                    counts.record(port.send(&VirtioNetHdr::NONE, frame));
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (back, received) = receiver.join().expect("receiver thread");
        sink = back;
        let before = sink.rx_counts().kernel_drops;
        let kernel_drops = sink.refresh_kernel_drops()? - before;
        eprintln!(
            "port -> port, {what}: sent {:.0}/s, received {:.0}/s, send drops {}, receive buffer drops {kernel_drops}",
            counts.sent as f64 / secs,
            received as f64 / secs,
            counts.dropped_total(),
        );
        ensure!(received > 0);
    }

    let (a, b) = underlay_pair("perfu")?;
    let tx = {
        let _in = a.enter()?;
        sender(UNDERLAY_A.into(), 64, None, false)?
    };
    let mut rx = {
        let _in = b.enter()?;
        UnderlayRx::open(UNDERLAY_B.into(), VXLAN_PORT, false)?
    };
    let payload = vxlan(1, &inner_frame(b"perf"));
    let dst = IpAddr::from(UNDERLAY_B);
    send(&tx, dst, &[&payload]);
    let mut batch = DatagramBatch::new(64);
    recv_datagrams(&mut rx, &mut batch, TIMEOUT, |_, _, _| {
        ControlFlow::Break(())
    })?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_rx = stop.clone();
    let receiver = std::thread::spawn(move || -> u64 {
        let mut n = 0u64;
        while !stop_rx.load(std::sync::atomic::Ordering::Relaxed) {
            match rx.recv_batch(&mut batch) {
                Ok(k) => n += k as u64,
                Err(_) => wait_readable(&rx, Duration::from_millis(10)),
            }
        }
        n
    });
    let mut counts = wasm_vtep::io::TxCounts::default();
    let burst = vec![&payload[..]; 64];
    let start = Instant::now();
    while start.elapsed() < RUN {
        counts += send(&tx, dst, &burst);
    }
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let received = receiver.join().expect("receiver thread");
    eprintln!(
        "underlay, {}-byte VXLAN datagrams in GSO batches of 64: sent {:.0}/s, received {:.0}/s, dropped {} ({} congested)",
        payload.len(),
        counts.sent as f64 / secs,
        received as f64 / secs,
        counts.dropped_total(),
        counts.dropped(TxDrop::Congested),
    );
    ensure!(received > 0);
    Ok(())
}
