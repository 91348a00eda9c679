//! What the tests share: the namespaces they build, their addresses, and loops that read a
//! port or the underlay until the frame or datagram a test waits for arrives.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use wasm_vtep::io::{
    DatagramBatch, Port, RxBatch, RxFrame, TxCounts, UnderlayRx, UnderlayTx, UnderlayTxConfig,
};
use wasm_vtep::vtep::{Outbox, SourcePorts, UnderlayDest};
use wasm_vtep::wire::VirtioNetHdr;
use wasm_vtep_tests::Netns;

use crate::packets::udp_dst_port;

pub(crate) const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub(crate) const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub(crate) const VM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(crate) const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub(crate) const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(crate) const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(crate) const UNDERLAY6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub(crate) const UNDERLAY6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub(crate) const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 100);
pub(crate) const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 0x100);
/// An EtherType for local experiments (IEEE 802): test frames no stack reacts to.
pub(crate) const ETHERTYPE_TEST: u16 = 0x88b5;
pub(crate) const SRC_PORT: u16 = 54321;
pub(crate) const OTHER_PORT: u16 = 54322;
pub(crate) const VXLAN_PORT: u16 = 4789;
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// --- namespaces ------------------------------------------------------------------------------

/// A "vm" namespace holding `vm0` and a "host" namespace holding `h0`, the ends of one veth
/// pair (created inside the vm namespace). `vm0` is up; `h0` is up if `host_up`.
pub(crate) fn vm_and_host(tag: &str, host_up: bool) -> Result<(Netns, Netns)> {
    let vm = Netns::new(&format!("{tag}v"))?;
    let host = Netns::new(&format!("{tag}h"))?;
    vm.ip(&[
        "link",
        "add",
        "vm0",
        "address",
        &mac(VM_MAC),
        "type",
        "veth",
        "peer",
        "name",
        "h0",
        "address",
        &mac(HOST_MAC),
        "netns",
        host.name(),
    ])?;
    vm.ip(&["link", "set", "vm0", "up"])?;
    if host_up {
        host.ip(&["link", "set", "h0", "up"])?;
        wait_up(&vm, "vm0")?;
        wait_up(&host, "h0")?;
    }
    Ok((vm, host))
}

/// Waits until the kernel's link watcher has seen `dev` come up: until then its queue discipline
/// is `noop`, which drops whatever is sent (the first packets after `ip link set up` vanish).
pub(crate) fn wait_up(ns: &Netns, dev: &str) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let show = ns.ip(&["link", "show", "dev", dev])?;
        if show.contains("state UP") && !show.contains("qdisc noop") {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{dev} never came up: {show}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gives the vm `VM_IP` and a static neighbour entry for `HOST_IP`, so that it sends IP at once
/// without waiting for an ARP answer nobody would give.
pub(crate) fn vm_addressing(vm: &Netns) -> Result<()> {
    vm.ip(&["addr", "add", &format!("{VM_IP}/24"), "dev", "vm0"])?;
    vm.ip(&[
        "neigh",
        "replace",
        &HOST_IP.to_string(),
        "lladdr",
        &mac(HOST_MAC),
        "dev",
        "vm0",
    ])?;
    Ok(())
}

/// Two underlay hosts: `a` with `u0` (198.18.0.1, 2001:db8::1) and `b` with `u1` (.2, ::2).
pub(crate) fn underlay_pair(tag: &str) -> Result<(Netns, Netns)> {
    let a = Netns::new(&format!("{tag}a"))?;
    let b = Netns::new(&format!("{tag}b"))?;
    join_underlay(&a, &b)?;
    Ok((a, b))
}

/// Joins `a` and `b` by a veth pair, `u0` in `a` (198.18.0.1, 2001:db8::1) and `u1` in `b`
/// (.2, ::2), both up.
pub(crate) fn join_underlay(a: &Netns, b: &Netns) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        "u0",
        "type",
        "veth",
        "peer",
        "name",
        "u1",
        "netns",
        b.name(),
    ])?;
    for (ns, dev, v4, v6) in [
        (a, "u0", UNDERLAY_A, UNDERLAY6_A),
        (b, "u1", UNDERLAY_B, UNDERLAY6_B),
    ] {
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    wait_up(a, "u0")?;
    wait_up(b, "u1")
}

/// A port on `h0` and, in the vm (addressed by [`vm_addressing`]), a UDP socket at `VM_IP`
/// whose datagrams to `HOST_IP` the port reads.
pub(crate) fn port_and_vm_udp(tag: &str, host_up: bool) -> Result<(Netns, Netns, Port, UdpSocket)> {
    let (vm, host) = vm_and_host(tag, host_up)?;
    vm_addressing(&vm)?;
    let port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let sock = {
        let _in = vm.enter()?;
        UdpSocket::bind((VM_IP, 0))?
    };
    Ok((vm, host, port, sock))
}

// --- receiving -------------------------------------------------------------------------------

pub(crate) fn wait_readable(fd: &impl AsRawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// Feeds every frame `port` receives to `f` until it breaks with a value, or fails after
/// `timeout`.
pub(crate) fn recv_frames<T>(
    port: &mut Port,
    batch: &mut RxBatch,
    timeout: Duration,
    mut f: impl FnMut(RxFrame<'_>) -> ControlFlow<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match port.recv_batch(batch) {
            Ok(n) => {
                ensure!(n == batch.len() && n > 0, "recv_batch returned {n}");
                for frame in batch.iter() {
                    if let ControlFlow::Break(t) = f(frame) {
                        return Ok(t);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("timed out waiting for frames on {}", port.name());
                }
                wait_readable(port, left.min(Duration::from_millis(50)));
            }
            Err(e) => return Err(e).context("recv_batch"),
        }
    }
}

/// Feeds every frame `port` receives during `duration` to `f`.
pub(crate) fn recv_frames_for(
    port: &mut Port,
    batch: &mut RxBatch,
    duration: Duration,
    mut f: impl FnMut(RxFrame<'_>),
) -> Result<()> {
    let end = Instant::now() + duration;
    let timed_out = recv_frames(port, batch, duration, |frame| {
        f(frame);
        if Instant::now() >= end {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match timed_out {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("timed out") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts an IPv4/UDP frame to port `p`.
pub(crate) fn udp_to(p: u16) -> impl FnMut(RxFrame<'_>) -> Option<()> {
    move |f| (udp_dst_port(f.bytes) == Some(p)).then_some(())
}

/// Like [`recv_frames`], for the underlay.
pub(crate) fn recv_datagrams<T>(
    rx: &mut UnderlayRx,
    batch: &mut DatagramBatch,
    timeout: Duration,
    mut f: impl FnMut(IpAddr, u16, &[u8]) -> ControlFlow<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_batch(batch) {
            Ok(n) => {
                ensure!(n == batch.len() && n > 0, "recv_batch returned {n}");
                for d in batch.iter() {
                    if let ControlFlow::Break(t) = f(d.source, d.source_port, d.payload) {
                        return Ok(t);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("timed out waiting for datagrams");
                }
                wait_readable(rx, left.min(Duration::from_millis(50)));
            }
            Err(e) => return Err(e).context("recv_batch"),
        }
    }
}

/// Sends with `send` every 100 ms until `port` receives a frame `f` accepts (links take a moment
/// to come up, and nobody answers a first ARP at once).
pub(crate) fn send_until<T>(
    mut send: impl FnMut() -> Result<()>,
    port: &mut Port,
    batch: &mut RxBatch,
    mut f: impl FnMut(RxFrame<'_>) -> Option<T>,
) -> Result<T> {
    for _ in 0..100 {
        send()?;
        let got = recv_frames(port, batch, Duration::from_millis(100), |frame| {
            match f(frame) {
                Some(t) => ControlFlow::Break(t),
                None => ControlFlow::Continue(()),
            }
        });
        if let Ok(t) = got {
            return Ok(t);
        }
    }
    bail!("the expected frame never arrived on {}", port.name())
}

// --- underlay --------------------------------------------------------------------------------

/// A sender at `local` whose one source port is `SRC_PORT` (and `OTHER_PORT` when `two`).
pub(crate) fn sender(
    local: IpAddr,
    ttl: u8,
    multicast_if: Option<&str>,
    two: bool,
) -> Result<UnderlayTx> {
    let mut ports = if two {
        SourcePorts::spread(SRC_PORT..=OTHER_PORT, 2)?
    } else {
        SourcePorts::spread(SRC_PORT..=SRC_PORT, 1)?
    };
    let config = UnderlayTxConfig {
        local,
        dst_port: VXLAN_PORT,
        ttl,
        multicast_if,
    };
    let tx = UnderlayTx::open(&config, &mut ports)?;
    ensure!(tx.source_ports().next() == Some(SRC_PORT));
    Ok(tx)
}

/// Sends `datagrams` to `dst` from `SRC_PORT`, batched as the pipeline's outbox batches them;
/// returns what the sender counted.
pub(crate) fn send(tx: &UnderlayTx, dst: IpAddr, datagrams: &[&[u8]]) -> TxCounts {
    let mut out = Outbox::new();
    let to = UnderlayDest {
        dst,
        src_port: SRC_PORT,
    };
    for d in datagrams {
        out.append_datagram(to, d.len(), |b| b.extend_from_slice(d));
    }
    let mut counts = TxCounts::default();
    tx.send_batch(SRC_PORT, out.frames().iter().map(|f| (dst, f)), &mut counts);
    counts
}

/// The first IP frame `capture` sees with `ethertype`, with its `virtio_net_hdr`.
pub(crate) fn captured_ip(capture: &mut Port, ethertype: u16) -> Result<(VirtioNetHdr, Vec<u8>)> {
    let mut batch = RxBatch::new(8);
    recv_frames(capture, &mut batch, TIMEOUT, |f| {
        if f.bytes[12..14] == ethertype.to_be_bytes() && udp_port_pair(f.bytes).is_some() {
            ControlFlow::Break((f.vnet, f.bytes.to_vec()))
        } else {
            ControlFlow::Continue(())
        }
    })
}

/// The UDP (source, destination) ports of an untagged IPv4 or IPv6 frame.
pub(crate) fn udp_port_pair(frame: &[u8]) -> Option<(u16, u16)> {
    let l4 = match frame.get(12..14)? {
        [0x08, 0x00] if frame.get(23) == Some(&17) => 14 + usize::from(frame[14] & 0x0f) * 4,
        [0x86, 0xdd] if frame.get(20) == Some(&17) => 14 + 40,
        _ => return None,
    };
    let port = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    Some((port(l4)?, port(l4 + 2)?))
}
