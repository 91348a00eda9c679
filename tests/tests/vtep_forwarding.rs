//! The `vtep` daemon forwarding on real networks (namespaces, veths, an underlay bridge), with
//! wasm-vtep on every host: the seed flood-and-learn walk-through, VNI isolation, local
//! switching and head-end replication across three hosts. Every assertion is about what a user
//! sees: pings answered, `vtep fdb show --json`, `vtep stats --json`, packets on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_testkit::vxlan::encapsulate;
use wasm_vtep_tests::tools::vxlan_view::VXLAN_FLAG_I;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const VNI_B: u32 = 5002;
const GROUP: &str = "239.1.1.100";
const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

/// How a VNI floods broadcast, multicast and unknown unicast.
enum Flood<'a> {
    Group(&'a str),
    Remotes(&'a [Ipv4Addr]),
}

/// One `[[vni]]` table.
fn vni_section(id: u32, ports: &[&str], flood: &Flood<'_>) -> String {
    let quoted = |items: Vec<String>| items.join(", ");
    let ports = quoted(ports.iter().map(|p| format!("{p:?}")).collect());
    let flood = match flood {
        Flood::Group(g) => format!("group = {g:?}"),
        Flood::Remotes(r) => format!(
            "remotes = [{}]",
            quoted(r.iter().map(|a| format!("\"{a}\"")).collect())
        ),
    };
    format!("[[vni]]\nid = {id}\nports = [{ports}]\n{flood}\n")
}

/// A whole configuration for `host`: underlay on its uplink (MTU 1600, as the switch), then
/// the VNI tables.
fn config(host: &Host, vnis: &[String]) -> String {
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n{}",
        host.ipv4(),
        Host::UPLINK,
        vnis.concat()
    )
}

fn mac_str(vm: &Vm) -> String {
    vm.mac().to_string()
}

/// The remote VTEP behind which daemon `d` learned `vm`'s MAC on `vni` (`None`: not known);
/// fails if the entry is local or static.
fn remote_of(d: &VtepDaemon, vni: u32, vm: &Vm) -> Option<String> {
    let row = d.entry(vni, &mac_str(vm)).expect("vtep fdb show");
    row.and_then(|r| {
        assert_eq!(r.kind, "remote", "{r:?}");
        assert!(!r.is_static, "{r:?}");
        r.remote
    })
}

/// The UDP source port of an inner UDP/IPv4 frame; `None` for anything else.
fn inner_udp_src_port(inner: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(inner).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    Some(UdpPacket::new_checked(ip.payload()).ok()?.src_port())
}

/// Opens a UDP socket bound to `addr` inside `ns` (the socket stays in that namespace).
fn udp_socket_in(ns: &impl AsRef<Netns>, addr: SocketAddr) -> Result<UdpSocket> {
    let _inside = ns.as_ref().enter()?;
    UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))
}

/// Switch, two hosts with one VM each.
struct TwoHosts {
    underlay: Switch,
    h1: Host,
    h2: Host,
    vm1: Vm,
    vm2: Vm,
}

fn two_hosts() -> Result<TwoHosts> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    Ok(TwoHosts {
        underlay,
        h1,
        h2,
        vm1,
        vm2,
    })
}

/// The mission's walk-through: two hosts, VNI 5001, group 239.1.1.100, wasm-vtep on both.
#[test]
fn seed_walk_through_flood_and_learn() {
    let t = two_hosts().unwrap();
    let group = Flood::Group(GROUP);
    let d1 = VtepDaemon::start(&t.h1, &config(&t.h1, &[vni_section(VNI, &["vm1"], &group)]));
    let d2 = VtepDaemon::start(&t.h2, &config(&t.h2, &[vni_section(VNI, &["vm2"], &group)]));
    let (d1, d2) = (d1.unwrap(), d2.unwrap());
    // Both tables start empty: whatever is in them afterwards was learned from traffic.
    assert_eq!(d1.fdb().unwrap(), []);
    assert_eq!(d2.fdb().unwrap(), []);
    let capture = Capture::start(&t.underlay, Switch::BRIDGE, "udp port 4789").unwrap();

    // 1-7: VM1 pings VM2; ARP request flooded to the group, reply and echoes unicast.
    assert_pings(&t.vm1, t.vm2.ipv4());
    let (a1, a2) = (t.h1.ipv4().to_string(), t.h2.ipv4().to_string());
    assert_eq!(remote_of(&d2, VNI, &t.vm1), Some(a1.clone()));
    assert_eq!(remote_of(&d1, VNI, &t.vm2), Some(a2.clone()));
    // Each host also has its own VM, behind its port.
    let own = d1.entry(VNI, &mac_str(&t.vm1)).unwrap().expect("VM1 local");
    assert_eq!(
        (own.kind.as_str(), own.port.as_deref()),
        ("local", Some("vm1"))
    );

    // Two inner flows from VM1 (UDP from ports 40001 and 40002), each delivered to VM2.
    let sink_addr = SocketAddr::new(t.vm2.ipv4().into(), 9000);
    let sink = udp_socket_in(&t.vm2, sink_addr).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let flows = [40001u16, 40002];
    for port in flows {
        let tx = udp_socket_in(&t.vm1, SocketAddr::new(t.vm1.ipv4().into(), port)).unwrap();
        for i in 0..3u8 {
            tx.send_to(&[i; 100], sink_addr).unwrap();
        }
    }
    let mut from_ports = BTreeMap::<u16, usize>::new();
    let mut buf = [0u8; 2048];
    for _ in 0..6 {
        let (n, from) = sink.recv_from(&mut buf).expect("UDP datagram reaches VM2");
        assert_eq!(n, 100);
        *from_ports.entry(from.port()).or_default() += 1;
    }
    assert_eq!(from_ports, BTreeMap::from([(40001, 3), (40002, 3)]));

    let seen = capture.stop().unwrap();
    assert_eq!(seen.dropped_by_kernel, Some(0));
    let vxlan = seen.vxlan(4789);
    let (h1, h2): (IpAddr, IpAddr) = (t.h1.ipv4().into(), t.h2.ipv4().into());
    let group_addr: IpAddr = GROUP.parse().unwrap();
    for p in &vxlan {
        assert_eq!((p.flags, p.vni, p.ttl), (VXLAN_FLAG_I, VNI, 64), "{p:?}");
        assert!(
            p.src_port >= 49152,
            "outer source port {} out of range",
            p.src_port
        );
    }

    // The ARP request, encapsulated by host 1 to the group.
    let request = vxlan
        .iter()
        .find(|p| p.inner_ethertype() == Some(ETH_ARP) && p.inner_dst() == Some(MacAddr::BROADCAST))
        .unwrap_or_else(|| panic!("no flooded ARP request: {vxlan:#?}"));
    assert_eq!((request.src, request.dst), (h1, group_addr));
    assert_eq!(request.inner_src(), Some(t.vm1.mac()));
    // The ARP reply, unicast from host 2 to host 1 (host 2 learned VM1 from the request).
    let reply = vxlan
        .iter()
        .find(|p| p.inner_ethertype() == Some(ETH_ARP) && p.inner_src() == Some(t.vm2.mac()))
        .unwrap_or_else(|| panic!("no ARP reply: {vxlan:#?}"));
    assert_eq!((reply.src, reply.dst), (h2, h1));
    assert_eq!(reply.inner_dst(), Some(t.vm1.mac()));
    // Only the broadcast went to the group; everything else was unicast host to host.
    for p in vxlan.iter().filter(|p| p.dst == group_addr) {
        assert_eq!(p.inner_dst(), Some(MacAddr::BROADCAST), "{p:?}");
    }
    assert!(
        vxlan
            .iter()
            .any(|p| (p.src, p.dst) == (h1, h2) && p.inner_ethertype() == Some(ETH_IPV4))
    );

    // Per-flow entropy: each UDP flow keeps one outer source port, and the two differ.
    let mut outer = BTreeMap::<u16, BTreeSet<u16>>::new();
    for p in vxlan.iter().filter(|p| (p.src, p.dst) == (h1, h2)) {
        if let Some(port) = inner_udp_src_port(p.inner) {
            outer.entry(port).or_default().insert(p.src_port);
        }
    }
    let (f1, f2) = (&outer[&flows[0]], &outer[&flows[1]]);
    assert_eq!(
        (f1.len(), f2.len()),
        (1, 1),
        "outer ports per flow: {outer:?}"
    );
    assert_ne!(
        f1, f2,
        "both flows left from the same outer port: {outer:?}"
    );

    // SIGTERM: both daemons stop cleanly and remove their control sockets.
    let sockets = [d1.socket().to_owned(), d2.socket().to_owned()];
    d1.stop().unwrap();
    d2.stop().unwrap();
    for s in sockets {
        assert!(!s.exists(), "{} left behind", s.display());
    }
}

/// A hand-built VXLAN datagram (RFC 7348 §5: I flag, VNI, reserved bits zero) carrying a
/// broadcast ARP-like frame from `src`.
fn vxlan_datagram(vni: u32, src: MacAddr) -> Vec<u8> {
    let inner = [
        MacAddr::BROADCAST.0.as_slice(),
        &src.0,
        &ETH_ARP.to_be_bytes(),
        &[0; 46],
    ];
    encapsulate(vni, &inner.concat())
}

/// Two hosts serving VNIs 5001 and 5002 with one VM per VNI per host, all VMs in one IP
/// subnet (so only the VNI keeps them apart), and both VNIs flooding to one group (so only the
/// VXLAN header does). Same-VNI pairs talk; cross-VNI pairs, on one host or across, do not; and
/// a datagram for a VNI nobody serves is dropped and counted.
#[test]
fn vnis_are_isolated() {
    let t = two_hosts().unwrap(); // vm1 on h1, vm2 on h2: VNI 5001
    let vm3 = Vm::numbered(&t.h1, 3).unwrap(); // VNI 5002
    let vm4 = Vm::numbered(&t.h2, 4).unwrap(); // VNI 5002
    let group = Flood::Group(GROUP);
    let c1 = config(
        &t.h1,
        &[
            vni_section(VNI, &["vm1"], &group),
            vni_section(VNI_B, &["vm3"], &group),
        ],
    );
    let c2 = config(
        &t.h2,
        &[
            vni_section(VNI, &["vm2"], &group),
            vni_section(VNI_B, &["vm4"], &group),
        ],
    );
    let d1 = VtepDaemon::start(&t.h1, &c1).unwrap();
    let d2 = VtepDaemon::start(&t.h2, &c2).unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());
    assert_pings(&vm3, vm4.ipv4());
    std::thread::scope(|s| {
        // Each fails only after ping's 1 s wait: in parallel.
        s.spawn(|| assert_no_pings(&t.vm1, vm4.ipv4()));
        s.spawn(|| assert_no_pings(&vm3, t.vm2.ipv4()));
        s.spawn(|| assert_no_pings(&t.vm1, vm3.ipv4()));
    });

    // Each VNI's table holds its own VMs only.
    let (a1, a2) = (t.h1.ipv4().to_string(), t.h2.ipv4().to_string());
    assert_eq!(remote_of(&d2, VNI, &t.vm1), Some(a1.clone()));
    assert_eq!(remote_of(&d2, VNI_B, &vm3), Some(a1));
    assert_eq!(remote_of(&d1, VNI_B, &vm4), Some(a2));
    for (d, vni, vm) in [(&d2, VNI, &vm3), (&d2, VNI_B, &t.vm1), (&d1, VNI, &vm4)] {
        assert_eq!(
            d.entry(vni, &mac_str(vm)).unwrap(),
            None,
            "{vm:?} leaked into {vni}"
        );
    }
    let fdb1 = d1.fdb().unwrap();
    assert!(
        fdb1.iter().all(|r| r.vni == VNI || r.vni == VNI_B),
        "{fdb1:#?}"
    );

    // VNI 7777, served by nobody, sent straight at host 1's VXLAN port from host 2.
    let before = d1.drop_count("vni_not_served").unwrap();
    let stranger = MacAddr([0x02, 0, 0, 0, 0x77, 0x77]);
    let sock = udp_socket_in(&t.h2, SocketAddr::new(t.h2.ipv4().into(), 0)).unwrap();
    let to = SocketAddr::new(t.h1.ipv4().into(), 4789);
    sock.send_to(&vxlan_datagram(7777, stranger), to).unwrap();
    wait_until("vni_not_served to count it", Duration::from_secs(5), || {
        Ok(d1.drop_count("vni_not_served")? == before + 1)
    })
    .unwrap();
    // Nothing learned from it, anywhere.
    let fdb1 = d1.fdb().unwrap();
    assert!(
        fdb1.iter()
            .all(|r| r.vni != 7777 && r.mac != stranger.to_string()),
        "{fdb1:#?}"
    );
    // The same datagram on a served VNI is accepted: the drop above was about the VNI.
    sock.send_to(&vxlan_datagram(VNI_B, stranger), to).unwrap();
    wait_until(
        "the VNI 5002 sender to be learned",
        Duration::from_secs(5),
        || Ok(d1.entry(VNI_B, &stranger.to_string())?.is_some()),
    )
    .unwrap();
    assert_eq!(d1.drop_count("vni_not_served").unwrap(), before + 1);

    d1.stop().unwrap();
    d2.stop().unwrap();
}

/// Two VMs on one host and one VNI: their unicast traffic is switched on the host, never sent
/// into the underlay. Only VM1's first ARP request (a broadcast) is flooded to the group, by
/// design.
#[test]
fn same_host_traffic_is_switched_locally() {
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let (vm1, vm3) = (Vm::numbered(&h1, 1).unwrap(), Vm::numbered(&h1, 3).unwrap());
    let group = Flood::Group(GROUP);
    let d1 = VtepDaemon::start(
        &h1,
        &config(&h1, &[vni_section(VNI, &["vm1", "vm3"], &group)]),
    )
    .unwrap();
    let capture = Capture::start(&h1, Host::UPLINK, "udp port 4789").unwrap();

    // ARP phase: one ping resolves VM3's address (flooding the request) and learns both VMs.
    assert!(ping(&vm1, vm3.ipv4(), 1).unwrap().all_received());
    let to_underlay = d1.vni_counter(VNI, "to_underlay_packets").unwrap();
    let floods = d1.vni_counter(VNI, "floods").unwrap();
    assert!(
        to_underlay >= 1,
        "the ARP request was not flooded to the group"
    );
    for (vm, port) in [(&vm1, "vm1"), (&vm3, "vm3")] {
        let row = d1
            .entry(VNI, &mac_str(vm))
            .unwrap()
            .expect("learned locally");
        assert_eq!(
            (row.kind.as_str(), row.port.as_deref()),
            ("local", Some(port))
        );
    }

    // Unicast phase: pings both ways; nothing more goes to the underlay.
    assert_pings(&vm1, vm3.ipv4());
    assert_pings(&vm3, vm1.ipv4());
    assert_eq!(
        d1.vni_counter(VNI, "to_underlay_packets").unwrap(),
        to_underlay
    );
    assert_eq!(d1.vni_counter(VNI, "floods").unwrap(), floods);
    assert!(d1.vni_counter(VNI, "to_ports_frames").unwrap() >= 12);

    let seen = capture.stop().unwrap();
    assert_eq!(seen.dropped_by_kernel, Some(0));
    let vxlan = seen.vxlan(4789);
    assert!(!vxlan.is_empty(), "the first ARP request should be flooded");
    for p in &vxlan {
        assert_eq!(p.dst, GROUP.parse::<IpAddr>().unwrap(), "{p:?}");
        assert_eq!(
            p.inner_dst(),
            Some(MacAddr::BROADCAST),
            "unicast on the underlay: {p:?}"
        );
        assert_eq!(p.inner_ethertype(), Some(ETH_ARP), "{p:?}");
    }
    d1.stop().unwrap();
}

/// Three hosts, no multicast: each floods by head-end replication to the other two. VM1's ARP
/// broadcast reaches both (each learns VM1 behind host 1); the unicast that follows goes to
/// host 2 alone.
#[test]
fn head_end_replication_across_three_hosts() {
    let t = two_hosts().unwrap();
    let h3 = Host::numbered(&t.underlay, 3).unwrap();
    let vm3 = Vm::numbered(&h3, 3).unwrap();
    let hosts = [&t.h1, &t.h2, &h3];
    let addrs: Vec<Ipv4Addr> = hosts.iter().map(|h| h.ipv4()).collect();
    let daemons: Vec<VtepDaemon> = hosts
        .iter()
        .zip(["vm1", "vm2", "vm3"])
        .map(|(h, port)| {
            let others: Vec<Ipv4Addr> = addrs.iter().copied().filter(|a| *a != h.ipv4()).collect();
            let vni = vni_section(VNI, &[port], &Flood::Remotes(&others));
            VtepDaemon::start(h, &config(h, &[vni])).unwrap()
        })
        .collect();
    let capture = Capture::start(&t.underlay, Switch::BRIDGE, "udp port 4789").unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());

    // The broadcast reached both other hosts: both learned VM1 behind host 1.
    let a1 = t.h1.ipv4().to_string();
    assert_eq!(remote_of(&daemons[1], VNI, &t.vm1), Some(a1.clone()));
    assert_eq!(remote_of(&daemons[2], VNI, &t.vm1), Some(a1));
    // Host 3 heard nothing else: VM2's unicast replies never reached it.
    assert_eq!(daemons[2].entry(VNI, &mac_str(&t.vm2)).unwrap(), None);
    assert_eq!(
        remote_of(&daemons[0], VNI, &t.vm2),
        Some(t.h2.ipv4().to_string())
    );
    // And VM3, which heard the ARP request, can be reached too.
    assert_pings(&vm3, t.vm1.ipv4());

    let seen = capture.stop().unwrap();
    assert_eq!(seen.dropped_by_kernel, Some(0));
    let vxlan = seen.vxlan(4789);
    let [h1, h2, h3]: [IpAddr; 3] = [addrs[0].into(), addrs[1].into(), addrs[2].into()];
    for p in &vxlan {
        // No multicast anywhere: every packet is host to host.
        assert!(addrs.iter().any(|a| IpAddr::from(*a) == p.dst), "{p:?}");
    }
    // VM1's first ARP request: one unicast copy to each other host.
    let copies: BTreeSet<IpAddr> = vxlan
        .iter()
        .filter(|p| p.src == h1 && p.inner_dst() == Some(MacAddr::BROADCAST))
        .filter(|p| p.inner_src() == Some(t.vm1.mac()))
        .map(|p| p.dst)
        .collect();
    assert_eq!(copies, BTreeSet::from([h2, h3]));
    // Learned unicast between VM1 and VM2 went between hosts 1 and 2 only.
    let vm12 = [t.vm1.mac(), t.vm2.mac()];
    let unicast_12: Vec<_> = vxlan
        .iter()
        .filter(|p| {
            let (s, d) = (p.inner_src(), p.inner_dst());
            s.is_some_and(|s| vm12.contains(&s)) && d.is_some_and(|d| vm12.contains(&d))
        })
        .collect();
    assert!(unicast_12.len() >= 6, "{unicast_12:#?}");
    for p in unicast_12 {
        assert!(
            (p.src, p.dst) == (h1, h2) || (p.src, p.dst) == (h2, h1),
            "{p:?}"
        );
    }
    // Nothing with a unicast inner destination reached host 3 but for VM3's own traffic.
    for p in vxlan.iter().filter(|p| p.dst == h3) {
        let d = p.inner_dst().unwrap_or(MacAddr::BROADCAST);
        assert!(d == MacAddr::BROADCAST || d == vm3.mac(), "{p:?}");
    }

    for d in daemons {
        d.stop().unwrap();
    }
}
