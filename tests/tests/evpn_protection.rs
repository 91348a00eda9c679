//! What EVPN mode protects, between two wasm-vtep hosts, each with its gobgpd: ARP requests
//! for addresses a MAC/IP route resolves are answered on the host (none crosses the underlay,
//! the VM's ARP table is right); a datagram from an underlay address no route announces is
//! dropped and counted; routes that cannot be used (another family, a MAC that is not
//! unicast, a VNI not configured, a label that disagrees with the route target, a route type
//! not served) are counted by reason and change nothing, and the daemon goes on.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const ROUTES_SEEN: Duration = Duration::from_secs(30);
const VXLAN_PORT: u16 = 4789;

/// Two wasm-vtep hosts with their gobgpd, peered, with one VM each; `h1_tail` goes into host
/// 1's configuration after its VNI.
fn pair_with(underlay: Switch, h1_tail: &str) -> Result<EvpnPair> {
    EvpnPair::start(underlay, ASN, [&[1], &[2]], |i, config| {
        if i == 0 { config.tail(h1_tail) } else { config }
    })
}

fn pair(underlay: Switch) -> Result<EvpnPair> {
    pair_with(underlay, "")
}

#[test]
fn arp_for_an_address_a_route_resolves_is_answered_on_the_host() -> Result<()> {
    let p = pair(Switch::new(1600)?)?;
    // Each VM says its address once (an ARP for an address nobody has): its host learns the
    // binding and announces a MAC/IP route, which the other host binds.
    for vm in [&p.vms[0][0], &p.vms[1][0]] {
        let _ = ping(vm, "192.0.2.99".parse::<IpAddr>()?, 1)?;
    }
    for v in [&p.vteps[0], &p.vteps[1]] {
        wait_until("a MAC/IP binding from each side", ROUTES_SEEN, || {
            Ok(v.evpn()?.vnis[0].mac_ips >= 2)
        })
        .with_context(|| format!("{:#?}", v.evpn()))?;
    }
    let rib = p.gobgpds[0].rib()?;
    assert!(
        rib.iter()
            .any(|r| r.is_mac(p.vms[1][0].mac()) && r.ip == Some(p.vms[1][0].ipv4().into())),
        "no MAC/IP route for VM2: {rib:#?}"
    );

    let before = p.vteps[0].evpn()?.vnis[0].suppressed;
    let capture = Capture::start(&p.hosts[0], Host::UPLINK, &format!("udp port {VXLAN_PORT}"))?;
    assert_pings(&p.vms[0][0], p.vms[1][0].ipv4());
    let captured = capture.stop()?;
    // ARP for VM2's address (the VMs' kernels may still be retrying the ARP for .99 above,
    // which nobody answers: that one floods, rightly).
    let vm2 = p.vms[1][0].ipv4().octets();
    let arps = captured
        .vxlan(VXLAN_PORT)
        .iter()
        .filter(|v| v.inner.get(12..14) == Some(&[0x08, 0x06][..]))
        .filter(|v| v.inner.get(38..42) == Some(&vm2[..]))
        .count();
    assert_eq!(arps, 0, "ARP crossed the underlay:\n{}", captured.text()?);
    assert!(
        captured.vxlan(VXLAN_PORT).len() >= 6,
        "the pings crossed: {}",
        captured.text()?
    );
    assert!(p.vteps[0].evpn()?.vnis[0].suppressed > before);
    assert_eq!(
        p.vms[0][0].neighbour(p.vms[1][0].ipv4())?,
        Some(p.vms[1][0].mac().to_string())
    );
    assert_eq!(
        p.vms[1][0].neighbour(p.vms[0][0].ipv4())?,
        Some(p.vms[0][0].mac().to_string())
    );
    Ok(())
}

#[test]
fn a_vtep_no_route_announces_is_dropped_and_counted() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let h3 = Host::numbered(&underlay, 3)?;
    let p = pair(underlay)?;
    assert_pings(&p.vms[0][0], p.vms[1][0].ipv4());
    // h3: a kernel VTEP on the same VNI that floods to h1, announced by no route.
    let vm3 = Vm::numbered(&h3, 3)?;
    let _outsider = KernelVtep::builder(VNI)
        .remote(p.addrs[0])
        .port(&vm3)
        .create(&h3)?;
    let before = p.vteps[0].drop_count("unknown_vtep")?;
    let capture = Capture::start(&p.vms[0][0], Vm::IFACE, "icmp or arp")?;
    let stats = ping(&vm3, p.vms[0][0].ipv4(), 3)?;
    let captured = capture.stop()?;
    assert_eq!(stats.received, 0, "{}", stats.output);
    assert_eq!(captured.packets.len(), 0, "{}", captured.text()?);
    // The pings' ARP requests, each dropped (the counters are published between batches).
    wait_until("the outsider's datagrams counted", ROUTES_SEEN, || {
        Ok(p.vteps[0].drop_count("unknown_vtep")? > before)
    })?;
    // The announced VTEP still gets through.
    assert_pings(&p.vms[1][0], p.vms[0][0].ipv4());
    Ok(())
}

#[test]
fn unusable_routes_are_counted_and_change_nothing() -> Result<()> {
    let p = pair(Switch::new(1600)?)?;
    assert_pings(&p.vms[0][0], p.vms[1][0].ipv4());
    let fdb_before = p.vteps[0].fdb()?;
    let elsewhere = "198.18.0.99";
    let rd = format!("{}:{VNI}", p.gobgpds[0].router_id());
    let rt = format!("{ASN}:{VNI}");
    let add = |args: &[&str]| -> Result<()> {
        p.gobgpds[0]
            .cli(&[&["global", "rib", "add", "-a"][..], args].concat())
            .map(drop)
    };
    // Another address family in the RIB.
    add(&["ipv4", "10.0.0.0/24", "nexthop", elsewhere])?;
    // A multicast and a broadcast MAC.
    for mac in ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff"] {
        add(&[
            "evpn", "macadv", mac, "0.0.0.0", "etag", "0", "label", "5001", "rd", &rd, "rt", &rt,
            "encap", "vxlan", "nexthop", elsewhere,
        ])?;
    }
    // A VNI not configured here.
    add(&[
        "evpn",
        "macadv",
        "02:00:00:00:99:01",
        "0.0.0.0",
        "etag",
        "0",
        "label",
        "9999",
        "rd",
        "198.18.0.99:9999",
        "rt",
        "65000:9999",
        "encap",
        "vxlan",
        "nexthop",
        elsewhere,
    ])?;
    // Our VNI's route target, another VNI's label.
    add(&[
        "evpn",
        "macadv",
        "02:00:00:00:99:02",
        "0.0.0.0",
        "etag",
        "0",
        "label",
        "5002",
        "rd",
        &rd,
        "rt",
        &rt,
        "encap",
        "vxlan",
        "nexthop",
        elsewhere,
    ])?;
    // A route type wasm-vtep does not serve (type 5, IP prefix).
    add(&[
        "evpn",
        "prefix",
        "10.1.0.0/24",
        "172.16.0.1",
        "etag",
        "0",
        "label",
        "5001",
        "rd",
        &rd,
        "rt",
        &rt,
        "encap",
        "vxlan",
        "nexthop",
        elsewhere,
    ])?;

    let want = [
        "wrong_family",
        "not_unicast_mac",
        "not_imported",
        "label_mismatch",
        "unsupported_route",
    ];
    wait_until("every unusable route counted", ROUTES_SEEN, || {
        let refused = p.vteps[0].evpn()?.refused;
        Ok(want
            .iter()
            .all(|k| refused.get(*k).copied().unwrap_or(0) > 0))
    })
    .with_context(|| format!("{:#?}", p.vteps[0].evpn()))?;
    let refused = p.vteps[0].evpn()?.refused;
    assert_eq!(refused.get("not_unicast_mac"), Some(&2), "{refused:?}");
    assert_eq!(
        p.vteps[0].fdb()?.len(),
        fdb_before.len(),
        "{:#?}",
        p.vteps[0].fdb()?
    );
    assert!(
        p.vteps[0]
            .fdb()?
            .iter()
            .all(|r| r.mac != "02:00:00:00:99:01" && r.mac != "02:00:00:00:99:02")
    );
    // The session and forwarding go on.
    let show = p.vteps[0].evpn()?;
    assert_eq!(show.session, "connected");
    assert_eq!(show.vnis[0].flood, [p.addrs[1].to_string()]);
    assert_pings(&p.vms[0][0], p.vms[1][0].ipv4());
    assert_pings(&p.vms[1][0], p.vms[0][0].ipv4());
    Ok(())
}

#[test]
fn a_static_mac_is_announced_sticky_and_held_sticky_elsewhere() -> Result<()> {
    const STATIC: &str = "02:00:00:00:00:77";
    let p = pair_with(
        Switch::new(1600)?,
        &format!("[[vni.static]]\nmac = \"{STATIC}\"\nport = \"vm1\"\n"),
    )?;
    let mac: wasm_vtep::wire::MacAddr = STATIC.parse()?;
    wait_until("the static MAC's route, sticky, at h2", ROUTES_SEEN, || {
        let row = p.vteps[1].entry(VNI, STATIC)?;
        Ok(row.is_some_and(|r| {
            r.kind == "evpn" && r.sticky && r.remote == Some(p.addrs[0].to_string())
        }))
    })
    .with_context(|| format!("{:#?}", p.vteps[1].fdb()))?;
    let rib = p.gobgpds[0].rib()?;
    let route = find_mac(&rib, mac).context("the static MAC's route")?;
    assert!(route.mac_mobility.is_some_and(|m| m.sticky), "{route:#?}");
    // A frame from that MAC on h2's side is not taken as a move: dropped, the entry stays.
    let frame = wasm_vtep_tests::tools::raw_frame::ethernet(
        wasm_vtep::wire::MacAddr::BROADCAST,
        mac,
        0x88b5,
        b"a spoofed static MAC",
    );
    PacketSocket::open(&p.vms[1][0], Vm::IFACE)?.send(&frame)?;
    std::thread::sleep(Duration::from_millis(500));
    let row = p.vteps[1].entry(VNI, STATIC)?;
    assert_eq!(row.map(|r| r.kind), Some("evpn".to_owned()));
    assert_eq!(mobility_vtep(&p.gobgpds[0].rib()?, mac), Some(p.addrs[0]));
    Ok(())
}

/// The VTEP of the best route for `mac`.
fn mobility_vtep(rib: &[EvpnRoute], mac: wasm_vtep::wire::MacAddr) -> Option<IpAddr> {
    rib.iter().find(|r| r.is_mac(mac) && r.best)?.vtep()
}
