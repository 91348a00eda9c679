//! Real traffic through the `vtep` daemon, with VMs at their defaults (offloads on, MTU 1500):
//! TCP bulk and UDP both ways between hosts (wasm-vtep on both, and wasm-vtep against the
//! kernel's vxlan), between two VMs of one host, IPv6 inside the overlay, 802.1Q-tagged frames,
//! frames too big for the underlay, and malformed packets thrown at the underlay port while
//! VMs keep talking. Assertions are about what users see: transfer rates, the receiving VMs'
//! checksum counters, packets on the wire, `vtep stats`.

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_testkit::vxlan::encapsulate_with_flags;
use wasm_vtep_tests::tools::raw_frame::{ETHERTYPE_EXPERIMENTAL, ETHERTYPE_VLAN, vlan_tagged};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP: &str = "239.1.1.100";
/// What a broken path (checksums unfinished, super-frames dropped) cannot reach; the debug
/// build moves about 500 Mbit/s here, the kernel several Gbit/s.
const MIN_TCP_BPS: f64 = 50e6;
/// The UDP runs' offered load.
const UDP_BPS: u64 = 50_000_000;

/// A `vtep` configuration for `host`: underlay on its uplink with MTU `mtu`, VNI 5001 on
/// `ports` flooding to the group.
fn config(host: &Host, mtu: u32, ports: &[&str]) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = {mtu}\n\n\
         [[vni]]\nid = {VNI}\nports = [{}]\ngroup = \"{GROUP}\"\n",
        host.ipv4(),
        Host::UPLINK,
        ports.join(", ")
    )
}

/// Switch with MTU `underlay_mtu`, two hosts, one VM each (IPv6 too if asked).
struct TwoHosts {
    underlay: Switch,
    h1: Host,
    h2: Host,
    vm1: Vm,
    vm2: Vm,
}

fn two_hosts(underlay_mtu: u32, ipv6: bool) -> Result<TwoHosts> {
    let underlay = Switch::new(underlay_mtu)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let vm = |h: &Host, n| {
        let c = VmConfig::numbered(n);
        Vm::new(h, &format!("vm{n}"), if ipv6 { c.with_ipv6() } else { c })
    };
    let (vm1, vm2) = (vm(&h1, 1)?, vm(&h2, 2)?);
    Ok(TwoHosts {
        underlay,
        h1,
        h2,
        vm1,
        vm2,
    })
}

/// wasm-vtep on both hosts.
fn vteps(t: &TwoHosts, mtu: u32) -> Result<(VtepDaemon, VtepDaemon)> {
    Ok((
        VtepDaemon::start(&t.h1, &config(&t.h1, mtu, &["vm1"]))?,
        VtepDaemon::start(&t.h2, &config(&t.h2, mtu, &["vm2"]))?,
    ))
}

/// UDP request/response: `a` sends 200 requests of sizes up to a full frame to an echo server
/// in `b` (at `to`), one at a time; every answer must come back whole.
fn udp_request_response(a: &Vm, b: &Vm, to: IpAddr) -> Result<()> {
    const PORT: u16 = 7777;
    let server = {
        let _inside = b.netns().enter()?;
        let any: IpAddr = if to.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        UdpSocket::bind((any, PORT))?
    };
    server.set_read_timeout(Some(Duration::from_secs(5)))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                if &buf[..n] == b"done" {
                    break;
                }
                let _ = server.send_to(&buf[..n], from);
            }
        });
        let _inside = a.netns().enter()?;
        let client = UdpSocket::bind((if to.is_ipv4() { "0.0.0.0" } else { "::" }, 0))?;
        client.set_read_timeout(Some(Duration::from_millis(500)))?;
        let (mut answered, mut buf) = (0, [0u8; 2048]);
        for i in 0..200u32 {
            // 8 to 1452 bytes: small requests to full-frame answers (IPv6 needs 20 more).
            let len = 8 + (i as usize * 37) % 1445;
            let request: Vec<u8> = (0..len)
                .map(|k| (k ^ i as usize).to_le_bytes()[0])
                .collect();
            client.send_to(&request, (to, PORT))?;
            if let Ok(n) = client.recv(&mut buf) {
                ensure!(
                    buf[..n] == request[..],
                    "answer {i} differs from its request"
                );
                answered += 1;
            }
        }
        client.send_to(b"done", (to, PORT))?;
        // Requests and answers cross two software queues each way on shared cores: allow a
        // rare loss, not a broken path.
        ensure!(answered >= 195, "{answered} of 200 requests answered");
        Ok(())
    })
}

/// TCP bulk (3 s) and UDP at 50 Mbit/s (1 s) from `a` to `b` and back (`reverse`), to `b`'s
/// address `to`, then UDP request/response. Each transfer must reach a non-trivial rate, and
/// neither VM may count a checksum error. Returns a one-line summary of the rates.
fn bulk_both_ways(a: &Vm, b: &Vm, to: IpAddr) -> Result<String> {
    let _server = IperfServer::start(b)?;
    let before = [NetCounters::read(a)?, NetCounters::read(b)?];
    let mut summary = Vec::new();
    for reverse in [false, true] {
        let way = if reverse { " back" } else { "" };
        let tcp = IperfOptions {
            reverse,
            ..IperfOptions::tcp(Duration::from_secs(3))
        };
        let r = iperf3(a, to, &tcp).with_context(|| format!("TCP{way}"))?;
        let mbps = r.received_bps / 1e6;
        ensure!(r.received_bps > MIN_TCP_BPS, "TCP{way} at {mbps:.1} Mbit/s");
        summary.push(format!("tcp{way} {mbps:.0} Mbit/s"));

        let udp = IperfOptions {
            reverse,
            ..IperfOptions::udp(Duration::from_secs(1), UDP_BPS)
        };
        let r = iperf3(a, to, &udp).with_context(|| format!("UDP{way}"))?;
        let loss = r.udp_loss.context("no UDP loss figures")?;
        let mbps = r.received_bps / 1e6;
        // Some loss is fair on two shared cores (every hop is a software queue); half of the
        // offered load is not.
        ensure!(
            loss.packets > 1000 && r.received_bps > UDP_BPS as f64 / 2.0,
            "UDP{way} at {mbps:.1} Mbit/s: {loss:?}"
        );
        summary.push(format!(
            "udp{way} {mbps:.0} Mbit/s {:.1}% lost",
            loss.percent
        ));
    }
    udp_request_response(a, b, to).context("UDP request/response")?;
    for (vm, before) in [a, b].into_iter().zip(&before) {
        let grew = NetCounters::read(vm)?.since(before);
        let port = vm.host_port();
        ensure!(grew.get("TcpInSegs") > 1000, "{port}: {grew:?}");
        ensure!(grew.get("UdpInDatagrams") > 1000, "{port}: {grew:?}");
        ensure!(
            grew.checksum_errors() == 0,
            "{port} counted checksum errors: {:?}",
            grew.checksum_error_counters()
        );
    }
    Ok(summary.join(", "))
}

/// The daemon received what VMs at their defaults send (TCP super-frames, partial checksums:
/// their offloads were on and the test exercised them), finished every offload and fitted every
/// segment into the underlay.
fn assert_offloads_handled(d: &VtepDaemon) -> Result<()> {
    let stats = d.stats()?;
    for io in ["port_rx_gso", "port_rx_csum_partial"] {
        ensure!(stats["io"][io].as_u64() > Some(0), "{io}: {stats:#}");
    }
    for reason in ["bad_offload", "mtu_exceeded"] {
        ensure!(stats["drops"][reason] == 0, "{reason}: {stats:#}");
    }
    for io in [
        "port_rx_truncated",
        "port_tx_too_big",
        "underlay_tx_too_big",
    ] {
        ensure!(stats["io"][io] == 0, "{io}: {stats:#}");
    }
    Ok(())
}

#[test]
fn tcp_and_udp_both_ways_between_two_hosts() {
    let started = Instant::now();
    let t = two_hosts(1600, false).unwrap();
    // Host 1 with one worker, host 2 with three (more than this machine has CPUs): the fanout
    // and reuseport spreading must keep every flow whole and in order either way. Host 1 sends
    // TCP super-frames whole (tunnel GSO, turned on), host 2 segments them (the default): both
    // ways of sending, and each received by the other.
    let workers = |n: usize| format!("[datapath]\nworkers = {n}\n");
    let whole =
        config(&t.h1, 1600, &["vm1"]).replace("[underlay]\n", "[underlay]\ntunnel_gso = true\n");
    let d1 = VtepDaemon::start(&t.h1, &(whole + &workers(1))).unwrap();
    let d2 = VtepDaemon::start(&t.h2, &(config(&t.h2, 1600, &["vm2"]) + &workers(3))).unwrap();
    let rates = bulk_both_ways(&t.vm1, &t.vm2, t.vm2.ipv4().into()).unwrap();
    assert_offloads_handled(&d1).unwrap();
    assert_offloads_handled(&d2).unwrap();
    assert!(d1.vni_counter(VNI, "to_underlay_packets").unwrap() > 10_000);
    let io = |d: &VtepDaemon, counter: &str| d.io_counter(counter).unwrap();
    // Host 1's super-frames left encapsulated once; host 2 read each as one datagram and
    // handed VM2 a super-frame again.
    assert!(io(&d1, "underlay_tx_whole") > 0);
    assert!(io(&d2, "port_tx_batched") > 0);
    // Host 2's super-frames left as GSO batches of segments, arrived at host 1 as GRO batches
    // and reached VM1 merged again.
    assert_eq!(io(&d2, "underlay_tx_whole"), 0);
    assert!(io(&d2, "underlay_tx_batched") > 0);
    assert!(io(&d1, "underlay_rx_coalesced") > 0);
    assert!(io(&d1, "port_tx_batched") > 0);
    eprintln!("wasm-vtep <-> wasm-vtep: {rates} ({:?})", started.elapsed());
}

#[test]
fn tcp_and_udp_both_ways_against_the_kernel_vtep() {
    let started = Instant::now();
    let t = two_hosts(1600, false).unwrap();
    let d1 = VtepDaemon::start(&t.h1, &config(&t.h1, 1600, &["vm1"])).unwrap();
    let kernel = KernelVtep::builder(VNI)
        .group(GROUP.parse().unwrap())
        .port(&t.vm2)
        .create(&t.h2)
        .unwrap();
    let rates = bulk_both_ways(&t.vm1, &t.vm2, t.vm2.ipv4().into()).unwrap();
    assert_offloads_handled(&d1).unwrap();
    // Each side learned the other across the interop boundary.
    let row = d1.entry(VNI, &t.vm2.mac().to_string()).unwrap().unwrap();
    assert_eq!(row.remote, Some(t.h2.ipv4().to_string()));
    assert_eq!(
        kernel.remote_of(t.vm1.mac()).unwrap(),
        Some(t.h1.ipv4().into())
    );
    eprintln!("wasm-vtep <-> kernel: {rates} ({:?})", started.elapsed());
}

#[test]
fn tcp_and_udp_both_ways_between_vms_of_one_host() {
    let started = Instant::now();
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let (vm1, vm3) = (Vm::numbered(&h1, 1).unwrap(), Vm::numbered(&h1, 3).unwrap());
    let d1 = VtepDaemon::start(&h1, &config(&h1, 1600, &["vm1", "vm3"])).unwrap();
    let rates = bulk_both_ways(&vm1, &vm3, vm3.ipv4().into()).unwrap();
    assert_offloads_handled(&d1).unwrap();
    // Switched locally: only the ARP broadcasts went to the underlay, none of the transfers.
    let stats = d1.stats().unwrap();
    let vni = &stats["vnis"][0]["counters"];
    let (to_underlay, to_ports) = (
        vni["to_underlay_packets"].as_u64().unwrap(),
        vni["to_ports_frames"].as_u64().unwrap(),
    );
    assert!(to_underlay <= 4 && to_ports > 10_000, "{stats:#}");
    eprintln!("one host: {rates} ({:?})", started.elapsed());
}

/// IPv6 inside the overlay: neighbour discovery (multicast solicitations, flooded) and ping6
/// cross, and TCP over IPv6 gets its checksums finished too.
#[test]
fn ipv6_inside_the_overlay() {
    let t = two_hosts(1600, true).unwrap();
    let (d1, _d2) = vteps(&t, 1600).unwrap();
    assert_pings(&t.vm1, t.vm2.ipv6());
    let neigh = t
        .vm1
        .netns()
        .ip(&["-6", "neigh", "show", &t.vm2.ipv6().to_string()])
        .unwrap();
    assert!(neigh.contains(&t.vm2.mac().to_string()), "{neigh}");

    let _server = IperfServer::start(&t.vm2).unwrap();
    let before = NetCounters::read(&t.vm2).unwrap();
    let r = iperf3(
        &t.vm1,
        t.vm2.ipv6(),
        &IperfOptions::tcp(Duration::from_secs(2)),
    )
    .unwrap();
    assert!(
        r.received_bps > MIN_TCP_BPS,
        "{:.1} Mbit/s",
        r.received_bps / 1e6
    );
    let grew = NetCounters::read(&t.vm2).unwrap().since(&before);
    assert!(grew.get("TcpInSegs") > 1000, "{grew:?}");
    assert_eq!(
        grew.checksum_errors(),
        0,
        "{:?}",
        grew.checksum_error_counters()
    );
    assert_offloads_handled(&d1).unwrap();
}

/// An 802.1Q-tagged frame from VM1 reaches VM2 with the same tag (VID and priority), and
/// crosses the underlay tagged inside the VXLAN packet.
#[test]
fn vlan_tagged_frames_keep_their_tag() {
    let t = two_hosts(1600, false).unwrap();
    let (_d1, _d2) = vteps(&t, 1600).unwrap();
    assert_pings(&t.vm1, t.vm2.ipv4()); // both VTEPs know both MACs now: the frame is unicast

    let payload: Vec<u8> = b"wasm-vtep 802.1Q test "
        .iter()
        .copied()
        .cycle()
        .take(100)
        .collect();
    let frame = vlan_tagged(
        t.vm2.mac(),
        t.vm1.mac(),
        5,
        100,
        ETHERTYPE_EXPERIMENTAL,
        &payload,
    );
    let at_vm2 = Capture::start(&t.vm2, Vm::IFACE, "vlan 100").unwrap();
    let on_wire = Capture::start(&t.underlay, Switch::BRIDGE, "udp port 4789").unwrap();
    PacketSocket::open(&t.vm1, Vm::IFACE)
        .unwrap()
        .send(&frame)
        .unwrap();
    let got = at_vm2.stop().unwrap();
    let wire = on_wire.stop().unwrap();

    assert_eq!(got.packets.len(), 1, "{:?}", got.text().unwrap());
    assert_eq!(got.packets[0].data, frame, "arrived changed");
    let text = got.text().unwrap();
    assert!(text.contains("vlan 100, p 5"), "{text}");
    let vxlan = wire.vxlan(4789);
    assert_eq!(vxlan.len(), 1, "{vxlan:#?}");
    assert_eq!(
        vxlan[0].dst,
        IpAddr::V4(t.h2.ipv4()),
        "unicast, not flooded"
    );
    assert_eq!(vxlan[0].inner_ethertype(), Some(ETHERTYPE_VLAN));
    assert_eq!(vxlan[0].inner, &frame[..]);
}

/// With an underlay MTU of 1500 a full-size frame cannot be encapsulated: it is dropped and
/// counted, never fragmented or truncated, while smaller frames still cross.
#[test]
fn frames_too_big_for_the_underlay_are_dropped_and_counted() {
    let t = two_hosts(1500, false).unwrap();
    let (d1, _d2) = vteps(&t, 1500).unwrap();
    assert_pings(&t.vm1, t.vm2.ipv4());
    let capture = Capture::start(&t.underlay, Switch::BRIDGE, "").unwrap();
    let before = d1.drop_count("mtu_exceeded").unwrap();

    let full = ping_with(&t.vm1, t.vm2.ipv4(), 3, &["-s", "1472", "-M", "do"]).unwrap();
    assert_eq!(full.received, 0, "{}", full.output);
    // The largest that fits: 1500 - 50 bytes of VXLAN over IPv4 = 1450-byte inner packets.
    let fits = ping_with(&t.vm1, t.vm2.ipv4(), 3, &["-s", "1422", "-M", "do"]).unwrap();
    assert!(fits.all_received(), "{}", fits.output);
    let over = ping_with(&t.vm1, t.vm2.ipv4(), 1, &["-s", "1423", "-M", "do"]).unwrap();
    assert_eq!(over.received, 0, "{}", over.output);

    assert_eq!(d1.drop_count("mtu_exceeded").unwrap() - before, 4);
    let seen = capture.stop().unwrap();
    for p in &seen.packets {
        assert!(
            p.data.len() <= 1514,
            "{} bytes on a 1500-byte link",
            p.data.len()
        );
        let is_ipv4 = p.data.get(12..14) == Some(&[0x08, 0x00][..]);
        if let (true, Some(frag)) = (is_ipv4, p.data.get(20..22)) {
            let frag = u16::from_be_bytes([frag[0], frag[1]]);
            assert_eq!(frag & 0x3fff, 0, "a fragment on the underlay: {p:?}");
        }
    }
    let largest = seen.vxlan(4789).iter().map(|v| v.inner.len()).max();
    assert_eq!(largest, Some(14 + 1450), "the fitting pings crossed whole");
}

/// An inner Ethernet frame of `len` bytes from a MAC nobody has, to VM1.
fn inner_frame(to: MacAddr, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[..6].copy_from_slice(&to.0);
    f[6..12].copy_from_slice(&[0x02, 0x0b, 0xad, 0, 0, 0x66]);
    f[12..14].copy_from_slice(&ETHERTYPE_EXPERIMENTAL.to_be_bytes());
    f.truncate(len);
    f
}

/// Malformed datagrams sent to host 1's VXLAN port from another host on the underlay are
/// counted by reason and dropped, while VM1 and VM2 keep pinging each other through it.
#[test]
fn malformed_underlay_packets_are_counted_and_dropped() {
    let t = two_hosts(1600, false).unwrap();
    let (d1, _d2) = vteps(&t, 1600).unwrap();
    let stranger = Host::numbered(&t.underlay, 9).unwrap();
    assert_pings(&t.vm1, t.vm2.ipv4());
    let before = d1.stats().unwrap();
    let vm1_before = NetCounters::read(&t.vm1).unwrap();
    let at_vm1 = Capture::start(&t.vm1, Vm::IFACE, "not arp and not icmp").unwrap();

    let vm1 = t.vm1.mac();
    let ok_inner = inner_frame(vm1, 60);
    let too_short: Vec<Vec<u8>> = vec![vec![], vec![0x08], vec![0x08, 0, 0, 0, 0x13]];
    let flag_clear: Vec<Vec<u8>> = [0x00, 0x80, 0x04]
        .iter()
        .map(|&f| encapsulate_with_flags(f, VNI, &ok_inner))
        .collect();
    let short_inner: Vec<Vec<u8>> = [0, 1, 13]
        .iter()
        .map(|&n| encapsulate_with_flags(0x08, VNI, &inner_frame(vm1, n)))
        .collect();
    let not_served = vec![
        encapsulate_with_flags(0x08, 5002, &ok_inner),
        encapsulate_with_flags(0x08, 0, &ok_inner),
    ];
    // Jumbo: a 9000-byte frame is whole and valid VXLAN (it arrives in fragments the kernel
    // reassembles), but VM1's port has MTU 1500: it cannot be delivered, only counted.
    let jumbo = vec![encapsulate_with_flags(0x08, VNI, &inner_frame(vm1, 9014))];

    let pinger = std::thread::scope(|s| {
        let pinger = s.spawn(|| ping(&t.vm1, t.vm2.ipv4(), 15));
        std::thread::sleep(Duration::from_millis(300));
        let _inside = stranger.netns().enter().unwrap();
        let sock = UdpSocket::bind("198.18.0.9:0").unwrap();
        let h1 = (t.h1.ipv4(), 4789);
        for round in 0..5 {
            for d in [&too_short, &flag_clear, &short_inner, &not_served, &jumbo]
                .into_iter()
                .flatten()
            {
                sock.send_to(d, h1).unwrap();
            }
            if round % 2 == 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        pinger.join().unwrap().unwrap()
    });
    assert!(pinger.all_received(), "{}", pinger.output);

    let after = d1.stats().unwrap();
    let grew = |section: &str, name: &str| {
        after[section][name].as_u64().unwrap_or(0) - before[section][name].as_u64().unwrap_or(0)
    };
    for (name, per_round) in [
        ("vxlan_too_short", too_short.len()),
        ("vxlan_flag_clear", flag_clear.len()),
        ("inner_frame_too_short", short_inner.len()),
        ("vni_not_served", not_served.len()),
    ] {
        assert_eq!(
            grew("drops", name),
            5 * per_round as u64,
            "{name}: {after:#}"
        );
    }
    assert_eq!(grew("io", "port_tx_too_big"), 5, "{after:#}");
    // Nothing of it reached VM1: only the echo traffic (filtered out) did.
    let seen = at_vm1.stop().unwrap();
    assert!(seen.packets.is_empty(), "{}", seen.text().unwrap());
    let vm1_grew = NetCounters::read(&t.vm1).unwrap().since(&vm1_before);
    assert_eq!(vm1_grew.checksum_errors(), 0);
    assert_pings(&t.vm1, t.vm2.ipv4());
}

/// Each worker's `(port frames, underlay datagrams)` read so far.
fn per_worker_reads(d: &VtepDaemon, workers: usize) -> Result<Vec<(u64, u64)>> {
    let io = &d.stats()?["io"];
    (0..workers)
        .map(|i| {
            let get = |name: String| {
                io[&name]
                    .as_u64()
                    .with_context(|| format!("{name}: {io:#}"))
            };
            Ok((
                get(format!("worker{i}_port_rx_frames"))?,
                get(format!("worker{i}_underlay_rx_datagrams"))?,
            ))
        })
        .collect()
}

#[test]
fn both_directions_of_a_flow_meet_on_one_worker_and_flows_spread() {
    const WORKERS: usize = 2;
    const PINGS: u32 = 20;
    let t = two_hosts(1600, false).unwrap();
    let two = format!("[datapath]\nworkers = {WORKERS}\n");
    let d1 = VtepDaemon::start(&t.h1, &(config(&t.h1, 1600, &["vm1"]) + &two)).unwrap();
    let d2 = VtepDaemon::start(&t.h2, &(config(&t.h2, 1600, &["vm2"]) + &two)).unwrap();
    // Addresses resolved and learned first: what follows is the pings alone.
    assert!(ping(&t.vm1, t.vm2.ipv4(), 2).unwrap().all_received());
    let before = [&d1, &d2].map(|d| per_worker_reads(d, WORKERS).unwrap());
    let pings = ping(&t.vm1, t.vm2.ipv4(), PINGS).unwrap();
    assert!(pings.all_received(), "{pings:?}");
    for (d, before) in [&d1, &d2].into_iter().zip(&before) {
        let after = per_worker_reads(d, WORKERS).unwrap();
        let grew: Vec<(u64, u64)> = after
            .iter()
            .zip(before)
            .map(|(a, b)| (a.0 - b.0, a.1 - b.1))
            .collect();
        // On host 1 the requests come from the port and the replies from the underlay; on
        // host 2 the other way round: either way one worker read both, the other neither.
        let pings = u64::from(PINGS);
        let both = grew
            .iter()
            .filter(|&&(port, underlay)| port >= pings && underlay >= pings)
            .count();
        let any = grew
            .iter()
            .filter(|&&(port, underlay)| port >= pings || underlay >= pings)
            .count();
        assert_eq!((both, any), (1, 1), "reads by worker: {grew:?}");
    }
    // Sixteen TCP streams (port pairs) spread over both workers of each host (all on one:
    // a chance of 1 in 32,768 with a well-mixed hash).
    let server = IperfServer::start(&t.vm2).unwrap();
    let streams = IperfOptions {
        streams: 16,
        port: server.port(),
        ..IperfOptions::tcp(Duration::from_secs(1))
    };
    iperf3(&t.vm1, t.vm2.ipv4(), &streams).unwrap();
    for d in [&d1, &d2] {
        let reads = per_worker_reads(d, WORKERS).unwrap();
        assert!(
            reads.iter().all(|&(port, underlay)| port + underlay > 1000),
            "reads by worker: {reads:?}"
        );
    }
}
