//! The harness proven on the Linux kernel's own VXLAN driver: two hosts on an underlay switch,
//! one VM each on VNI 5001, kernel VTEPs between them. What passes here is the behaviour `vtep`
//! must match (and the kernel is its interop peer), so every assertion is about what a user
//! sees: pings answered, `bridge fdb show`, packets on the wire.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::vxlan_view::VXLAN_FLAG_I;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP_V4: &str = "239.1.1.100";
const GROUP_V6: &str = "ff05::1:100";

/// Switch, two hosts, one VM on each; no data plane yet.
struct TwoHosts {
    underlay: Switch,
    h1: Host,
    h2: Host,
    vm1: Vm,
    vm2: Vm,
}

fn two_hosts(underlay_mtu: u32, ipv6: bool) -> Result<TwoHosts> {
    let underlay = Switch::new(underlay_mtu)?;
    let host = |n| {
        let config = HostConfig::numbered(n);
        Host::new(&underlay, if ipv6 { config.with_ipv6() } else { config })
    };
    let (h1, h2) = (host(1)?, host(2)?);
    let vm = |h: &Host, n| {
        let config = VmConfig::numbered(n);
        Vm::new(
            h,
            &format!("vm{n}"),
            if ipv6 { config.with_ipv6() } else { config },
        )
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

/// Kernel VTEPs on both hosts flooding to `group`.
fn multicast_vteps(t: &TwoHosts, group: &str) -> Result<(KernelVtep, KernelVtep)> {
    let group: IpAddr = group.parse()?;
    let v1 = KernelVtep::builder(VNI)
        .group(group)
        .port(&t.vm1)
        .create(&t.h1)?;
    let v2 = KernelVtep::builder(VNI)
        .group(group)
        .port(&t.vm2)
        .create(&t.h2)?;
    Ok((v1, v2))
}

/// The vxlan device's own entry (`self`) for `mac` in `fdb`, with a readable failure.
fn entry_for(fdb: &[FdbEntry], mac: MacAddr) -> FdbEntry {
    match fdb.iter().find(|e| e.mac == mac && e.has_flag("self")) {
        Some(e) => e.clone(),
        None => panic!("no FDB entry for {mac}; table: {fdb:#?}"),
    }
}

/// The bridge learned `mac` on the vxlan port too (`master br-<vni>`, not static).
fn assert_bridge_learned(fdb: &[FdbEntry], mac: MacAddr, bridge: &str) {
    assert!(
        fdb.iter()
            .any(|e| e.mac == mac && e.master.as_deref() == Some(bridge) && !e.is_static()),
        "{bridge} did not learn {mac} on the vxlan port: {fdb:#?}"
    );
}

#[test]
fn multicast_flood_and_learn_over_ipv4() {
    let t = two_hosts(1600, false).unwrap();
    let (v1, v2) = multicast_vteps(&t, GROUP_V4).unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());

    // Host 2 learned VM1 behind host 1 from the flooded ARP request, and vice versa.
    let fdb2 = v2.fdb().unwrap();
    let on_h2 = entry_for(&fdb2, t.vm1.mac());
    assert_eq!(on_h2.dst, Some(t.h1.ipv4().into()), "{on_h2:?}");
    assert!(!on_h2.is_static(), "{on_h2:?}");
    assert_bridge_learned(&fdb2, t.vm1.mac(), v2.bridge());
    assert_eq!(v2.remote_of(t.vm1.mac()).unwrap(), Some(t.h1.ipv4().into()));
    assert_eq!(v2.remote_of(t.vm2.mac()).unwrap(), None); // local: behind the VM port
    let on_h1 = entry_for(&bridge_fdb_show(&t.h1, v1.device()).unwrap(), t.vm2.mac());
    assert_eq!(on_h1.dst, Some(t.h2.ipv4().into()), "{on_h1:?}");
    // Flooding goes to the group: the all-zero default entry points there.
    let default = entry_for(&v1.fdb().unwrap(), MacAddr::ZERO);
    assert_eq!(default.dst, Some(GROUP_V4.parse().unwrap()));

    // An overlay address nobody has gets no answer: the checks above can fail.
    let silent = ping(&t.vm1, "192.0.2.99".parse::<IpAddr>().unwrap(), 1).unwrap();
    assert_eq!(silent.received, 0, "{}", silent.output);
}

#[test]
fn head_end_replication_without_multicast() {
    let t = two_hosts(1600, false).unwrap();
    let v1 = KernelVtep::builder(VNI)
        .remote(t.h2.ipv4().into())
        .port(&t.vm1)
        .create(&t.h1);
    let v2 = KernelVtep::builder(VNI)
        .remote(t.h1.ipv4().into())
        .port(&t.vm2)
        .create(&t.h2);
    let (_v1, v2) = (v1.unwrap(), v2.unwrap());
    let capture = Capture::start(&t.underlay, Switch::BRIDGE, "udp port 4789").unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());

    let fdb = v2.fdb().unwrap();
    let learned = entry_for(&fdb, t.vm1.mac());
    assert_eq!(learned.dst, Some(t.h1.ipv4().into()));
    assert!(!learned.is_static());
    let flood = entry_for(&fdb, MacAddr::ZERO);
    assert_eq!(flood.dst, Some(t.h1.ipv4().into()));
    assert!(flood.is_static());

    // Every encapsulated packet, the ARP broadcast included, went unicast host to host.
    let seen = capture.stop().unwrap();
    let vxlan = seen.vxlan(4789);
    assert!(!vxlan.is_empty(), "no VXLAN on the underlay");
    let hosts: [IpAddr; 2] = [t.h1.ipv4().into(), t.h2.ipv4().into()];
    for p in &vxlan {
        assert!(
            hosts.contains(&p.src) && hosts.contains(&p.dst) && p.src != p.dst,
            "{p:?}"
        );
    }
    assert!(
        vxlan
            .iter()
            .any(|p| p.inner_dst() == Some(MacAddr::BROADCAST))
    );
}

#[test]
fn multicast_over_ipv6_underlay_with_both_families_inside() {
    let t = two_hosts(1600, true).unwrap();
    let (_v1, v2) = multicast_vteps(&t, GROUP_V6).unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());
    assert_pings(&t.vm1, t.vm2.ipv6());

    let on_h2 = entry_for(&v2.fdb().unwrap(), t.vm1.mac());
    assert_eq!(on_h2.dst, t.h1.ipv6().map(IpAddr::V6));
    let default = entry_for(&v2.fdb().unwrap(), MacAddr::ZERO);
    assert_eq!(default.dst, Some(GROUP_V6.parse().unwrap()));
}

#[test]
fn head_end_replication_over_ipv6() {
    let t = two_hosts(1600, true).unwrap();
    let (a1, a2) = (
        IpAddr::V6(t.h1.ipv6().unwrap()),
        IpAddr::V6(t.h2.ipv6().unwrap()),
    );
    let v1 = KernelVtep::builder(VNI)
        .remote(a2)
        .port(&t.vm1)
        .create(&t.h1)
        .unwrap();
    let v2 = KernelVtep::builder(VNI)
        .remote(a1)
        .port(&t.vm2)
        .create(&t.h2)
        .unwrap();

    assert_pings(&t.vm1, t.vm2.ipv6());

    assert_eq!(v2.remote_of(t.vm1.mac()).unwrap(), Some(a1));
    assert_eq!(v1.remote_of(t.vm2.mac()).unwrap(), Some(a2));
    assert_eq!(entry_for(&v1.fdb().unwrap(), MacAddr::ZERO).dst, Some(a2));
}

#[test]
fn underlay_capture_shows_vxlan_to_the_group() {
    let t = two_hosts(1600, false).unwrap();
    let (_v1, _v2) = multicast_vteps(&t, GROUP_V4).unwrap();
    let capture = Capture::start(&t.underlay, Switch::BRIDGE, "udp port 4789").unwrap();

    assert_pings(&t.vm1, t.vm2.ipv4());

    let seen = capture.stop().unwrap();
    assert_eq!(seen.dropped_by_kernel, Some(0));
    let vxlan = seen.vxlan(4789);
    let (h1, h2): (IpAddr, IpAddr) = (t.h1.ipv4().into(), t.h2.ipv4().into());
    let group: IpAddr = GROUP_V4.parse().unwrap();

    // VM1's ARP request, flooded by host 1 to the group.
    let flooded = vxlan
        .iter()
        .find(|p| p.dst == group)
        .unwrap_or_else(|| panic!("nothing sent to {group}: {vxlan:#?}"));
    assert_eq!(flooded.src, h1);
    assert_eq!(
        (flooded.dst_port, flooded.flags, flooded.vni),
        (4789, VXLAN_FLAG_I, VNI)
    );
    assert_eq!(flooded.ttl, 64);
    assert_eq!(flooded.inner_src(), Some(t.vm1.mac()));
    assert_eq!(flooded.inner_dst(), Some(MacAddr::BROADCAST));
    assert_eq!(flooded.inner_ethertype(), Some(0x0806));
    // The replies and the echo traffic go unicast, both ways, once learned.
    assert!(vxlan.iter().any(|p| p.src == h2 && p.dst == h1));
    assert!(
        vxlan
            .iter()
            .any(|p| p.src == h1 && p.dst == h2 && p.inner_ethertype() == Some(0x0800))
    );

    // And the same as a user reads it from tcpdump.
    let text = seen.text().unwrap();
    assert!(
        text.contains("198.18.0.1.") && text.contains("> 239.1.1.100.4789: VXLAN"),
        "{text}"
    );
    assert!(text.contains("vni 5001"), "{text}");
}

#[test]
fn underlay_mtu_must_fit_the_encapsulation() {
    // 1472 bytes of ICMP payload make a full 1500-byte inner packet, 1550 bytes encapsulated.
    let full_size = ["-s", "1472", "-M", "do"];
    for (underlay_mtu, fits) in [(1600, true), (1500, false)] {
        let t = two_hosts(underlay_mtu, false).unwrap();
        let (_v1, _v2) = multicast_vteps(&t, GROUP_V4).unwrap();
        assert_pings(&t.vm1, t.vm2.ipv4()); // small frames always fit
        let stats = ping_with(&t.vm1, t.vm2.ipv4(), 2, &full_size).unwrap();
        assert_eq!(
            stats.all_received(),
            fits,
            "underlay MTU {underlay_mtu}:\n{}",
            stats.output
        );
    }
}

#[test]
fn iperf3_tcp_and_udp_without_checksum_errors() {
    let t = two_hosts(1600, false).unwrap();
    let (_v1, _v2) = multicast_vteps(&t, GROUP_V4).unwrap();
    let _server = IperfServer::start(&t.vm2).unwrap();
    let before = NetCounters::read(&t.vm2).unwrap();

    let tcp = iperf3(
        &t.vm1,
        t.vm2.ipv4(),
        &IperfOptions::tcp(Duration::from_secs(2)),
    )
    .unwrap();
    // Several Gbit/s on an idle machine; a floor far below that still catches a broken path.
    assert!(
        tcp.received_bps > 100e6,
        "TCP at {:.0} bit/s",
        tcp.received_bps
    );
    let udp_opts = IperfOptions::udp(Duration::from_secs(1), 20_000_000);
    let udp = iperf3(&t.vm1, t.vm2.ipv4(), &udp_opts).unwrap();
    let loss = udp.udp_loss.unwrap();
    assert!(loss.packets > 500 && loss.percent < 5.0, "{loss:?}");

    let grew = NetCounters::read(&t.vm2).unwrap().since(&before);
    assert!(
        grew.get("TcpInSegs") > 1000,
        "TcpInSegs grew by {}",
        grew.get("TcpInSegs")
    );
    assert!(grew.get("UdpInDatagrams") >= loss.packets - loss.lost);
    assert_eq!(
        grew.checksum_errors(),
        0,
        "{:?}",
        grew.checksum_error_counters()
    );
}

/// Every namespace, interface and process of a topology goes away when a test panics inside it.
#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let (names, pids) = std::thread::spawn(|| {
        let t = two_hosts(1600, true).unwrap();
        let (_v1, _v2) = multicast_vteps(&t, GROUP_V4).unwrap();
        let capture = Capture::start(&t.underlay, Switch::BRIDGE, "").unwrap();
        let server = IperfServer::start(&t.vm2).unwrap();
        let names: Vec<String> = [t.underlay.netns(), t.h1.netns(), t.h2.netns()]
            .into_iter()
            .chain([t.vm1.netns(), t.vm2.netns()])
            .map(|ns| ns.name().to_owned())
            .collect();
        let pids = vec![server.process().pid()];
        // Hand the names out before panicking, through the panic payload.
        let _keep = (capture, server);
        std::panic::panic_any((names, pids));
    })
    .join()
    .expect_err("the thread panics")
    .downcast::<(Vec<String>, Vec<u32>)>()
    .map(|b| *b)
    .unwrap();

    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(names.len(), 5);
    for name in &names {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} left"
        );
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} left"
        );
    }
}

/// The same through the test harness's own panic handling: after `cargo test`, `ip netns list`
/// shows none of this test's namespaces.
#[test]
#[should_panic(expected = "deliberate failure inside a topology")]
fn a_should_panic_test_cleans_up_too() {
    let t = two_hosts(1600, false).unwrap();
    let (_v1, _v2) = multicast_vteps(&t, GROUP_V4).unwrap();
    let _capture = Capture::start(&t.underlay, Switch::BRIDGE, "").unwrap();
    panic!("deliberate failure inside a topology");
}
