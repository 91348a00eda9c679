//! The socket layer against the real kernel: ports (`AF_PACKET`) on veth pairs and the underlay
//! (UDP, with GSO and GRO) between network namespaces. Needs root (namespaces, packet sockets).
//!
//! Each test builds its own namespaces: a "vm" namespace holds the VM's end of a veth (`vm0`), a
//! "host" namespace the end a [`Port`] is opened on (`h0`); underlay tests join two namespaces
//! with `u0`/`u1`. Sockets are opened inside a namespace by entering it with the opening thread.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, UdpPacket,
};
use wasm_vtep::fdb::PortId;
use wasm_vtep::io::{
    DatagramBatch, Port, RxBatch, RxFrame, SetupError, Steering, Transmitter, TxCounts, TxDrop,
    UnderlayRx, UnderlayTx, UnderlayTxConfig,
};
use wasm_vtep::vtep::{Dest, Outbox, SourcePorts, UnderlayDest};
use wasm_vtep::wire::VirtioNetHdr;
use wasm_vtep_tests::Netns;

const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const VM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const UNDERLAY6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const UNDERLAY6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 100);
const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 0x100);
/// An EtherType for local experiments (IEEE 802): test frames no stack reacts to.
const ETHERTYPE_TEST: u16 = 0x88b5;
const SRC_PORT: u16 = 54321;
const OTHER_PORT: u16 = 54322;
const VXLAN_PORT: u16 = 4789;
const TIMEOUT: Duration = Duration::from_secs(10);

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// --- namespaces -------------------------------------------------------------------------------

/// A "vm" namespace holding `vm0` and a "host" namespace holding `h0`, the ends of one veth
/// pair (created inside the vm namespace). `vm0` is up; `h0` is up if `host_up`.
fn vm_and_host(tag: &str, host_up: bool) -> Result<(Netns, Netns)> {
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
fn wait_up(ns: &Netns, dev: &str) -> Result<()> {
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
fn vm_addressing(vm: &Netns) -> Result<()> {
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
fn underlay_pair(tag: &str) -> Result<(Netns, Netns)> {
    let a = Netns::new(&format!("{tag}a"))?;
    let b = Netns::new(&format!("{tag}b"))?;
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
        (&a, "u0", UNDERLAY_A, UNDERLAY6_A),
        (&b, "u1", UNDERLAY_B, UNDERLAY6_B),
    ] {
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    wait_up(&a, "u0")?;
    wait_up(&b, "u1")?;
    Ok((a, b))
}

// --- receiving --------------------------------------------------------------------------------

fn wait_readable(fd: &impl AsRawFd, timeout: Duration) {
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
fn recv_frames<T>(
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
fn recv_frames_for(
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
fn udp_to(p: u16) -> impl FnMut(RxFrame<'_>) -> Option<()> {
    move |f| (udp_dst_port(f.bytes) == Some(p)).then_some(())
}

/// Like [`recv_frames`], for the underlay.
fn recv_datagrams<T>(
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
fn send_until<T>(
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

// --- packets ----------------------------------------------------------------------------------

/// The Ethernet payload of `frame` after any 802.1Q/802.1ad tags, with its EtherType.
fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
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
fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    let (ethertype, payload) = ethernet_payload(frame)?;
    let ip = Ipv4Packet::new_checked(payload).ok()?;
    if ethertype != 0x0800 || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    Some(UdpPacket::new_checked(ip.payload()).ok()?.dst_port())
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: EthernetProtocol::from(ethertype),
    };
    let mut buf = vec![0; repr.buffer_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    buf
}

/// `frame` with a tag (TPID, TCI) inserted after its MACs.
fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

fn arp_request(src_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(src_mac),
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut payload = vec![0; arp.buffer_len()];
    arp.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
    ethernet([0xff; 6], src_mac, 0x0806, &payload)
}

/// A VXLAN header (I flag, `vni`) and an inner frame.
fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut out = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    out.extend_from_slice(inner);
    out
}

fn inner_frame(tag: &[u8]) -> Vec<u8> {
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
fn finish_checksum(frame: &mut [u8], vnet: &VirtioNetHdr) {
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    let check = match !ones_sum(&frame[start..], 0) {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
}

/// The one's complement sum of `data` (16-bit big-endian words), added to `sum`, folded.
fn ones_sum(data: &[u8], sum: u32) -> u16 {
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
fn partial_l4_frame(proto: IpProtocol, l4: &[u8], csum_offset: u16) -> (Vec<u8>, VirtioNetHdr) {
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
fn udp_segment(dst_port: u16, payload: &[u8]) -> Vec<u8> {
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
fn tcp_segment(payload: &[u8]) -> Vec<u8> {
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
fn bare_packet_socket() -> Result<socket2::Socket> {
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
fn read_bare_until(socket: &socket2::Socket, mut f: impl FnMut(&[u8]) -> bool) -> Result<()> {
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
fn udp_checksum_ok(frame: &[u8]) -> bool {
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

// --- ports ------------------------------------------------------------------------------------

#[test]
fn udp_from_a_vm_arrives_with_its_partial_checksum() -> Result<()> {
    let (vm, host) = vm_and_host("csum", true)?;
    vm_addressing(&vm)?;
    let mut port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let sock = {
        let _in = vm.enter()?;
        UdpSocket::bind((VM_IP, 0))?
    };
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
    let (vm, host) = vm_and_host("down", false)?;
    vm_addressing(&vm)?;
    let mut port = {
        let _in = host.enter()?;
        Port::open("h0")?
    };
    let sock = {
        let _in = vm.enter()?;
        UdpSocket::bind((VM_IP, 0))?
    };
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

// --- underlay ---------------------------------------------------------------------------------

/// A sender at `local` whose one source port is `SRC_PORT` (and `OTHER_PORT` when `two`).
fn sender(local: IpAddr, ttl: u8, multicast_if: Option<&str>, two: bool) -> Result<UnderlayTx> {
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
fn send(tx: &UnderlayTx, dst: IpAddr, datagrams: &[&[u8]]) -> TxCounts {
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
fn captured_ip(capture: &mut Port, ethertype: u16) -> Result<(VirtioNetHdr, Vec<u8>)> {
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
fn udp_port_pair(frame: &[u8]) -> Option<(u16, u16)> {
    let l4 = match frame.get(12..14)? {
        [0x08, 0x00] if frame.get(23) == Some(&17) => 14 + usize::from(frame[14] & 0x0f) * 4,
        [0x86, 0xdd] if frame.get(20) == Some(&17) => 14 + 40,
        _ => return None,
    };
    let port = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    Some((port(l4)?, port(l4 + 2)?))
}

#[test]
fn underlay_tx_sends_ipv4_datagrams_from_the_flows_port_with_the_ttl_and_no_checksum() -> Result<()>
{
    let (a, b) = underlay_pair("tx4")?;
    let (udp, mut capture) = {
        let _in = b.enter()?;
        let udp = UdpSocket::bind((UNDERLAY_B, VXLAN_PORT))?;
        udp.set_read_timeout(Some(TIMEOUT))?;
        (udp, Port::open("u1")?)
    };
    let tx = {
        let _in = a.enter()?;
        sender(UNDERLAY_A.into(), 17, None, false)?
    };
    let payload = vxlan(5001, &inner_frame(b"v4"));
    let counts = send(&tx, UNDERLAY_B.into(), &[&payload]);
    assert_eq!((counts.sent, counts.dropped_total()), (1, 0));

    let mut buf = [0u8; 2048];
    let (n, from) = udp.recv_from(&mut buf)?;
    assert_eq!(from, SocketAddr::new(UNDERLAY_A.into(), SRC_PORT));
    assert_eq!(&buf[..n], &payload[..]);

    let (_, wire) = captured_ip(&mut capture, 0x0800)?;
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
    let (a, b) = underlay_pair("tx6")?;
    let (udp, mut capture) = {
        let _in = b.enter()?;
        let udp = UdpSocket::bind((UNDERLAY6_B, VXLAN_PORT))?;
        udp.set_read_timeout(Some(TIMEOUT))?;
        (udp, Port::open("u1")?)
    };
    let tx = {
        let _in = a.enter()?;
        sender(UNDERLAY6_A.into(), 7, None, false)?
    };
    let payload = vxlan(5001, &inner_frame(b"v6"));
    let counts = send(&tx, UNDERLAY6_B.into(), &[&payload]);
    assert_eq!((counts.sent, counts.dropped_total()), (1, 0));
    let mut buf = [0u8; 2048];
    let (n, from) = udp.recv_from(&mut buf)?;
    assert_eq!(from, SocketAddr::new(UNDERLAY6_A.into(), SRC_PORT));
    assert_eq!(&buf[..n], &payload[..]);

    let (vnet, mut wire) = captured_ip(&mut capture, 0x86dd)?;
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

// --- transmit ---------------------------------------------------------------------------------

#[test]
fn the_transmitter_drains_an_outbox_in_order_and_counts_drops() -> Result<()> {
    let (vm, host) = vm_and_host("xmit", true)?;
    let remote = Netns::new("xmitr")?;
    host.ip(&[
        "link",
        "add",
        "u0",
        "type",
        "veth",
        "peer",
        "name",
        "u1",
        "netns",
        remote.name(),
    ])?;
    host.ip(&["addr", "add", &format!("{UNDERLAY_A}/24"), "dev", "u0"])?;
    host.ip(&["link", "set", "u0", "up"])?;
    remote.ip(&["addr", "add", &format!("{UNDERLAY_B}/24"), "dev", "u1"])?;
    remote.ip(&["link", "set", "u1", "up"])?;
    wait_up(&host, "u0")?;
    wait_up(&remote, "u1")?;

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

// --- measurement ------------------------------------------------------------------------------

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
