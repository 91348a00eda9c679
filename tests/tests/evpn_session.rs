//! The session to gobgpd under stress, and EVPN over an IPv6 underlay. gobgpd killed and
//! restarted under a running ping: wasm-vtep keeps forwarding with the routes it knows (and
//! FRR, a graceful-restart helper, with ours), says so once, and once gobgpd is back its
//! routes are in FRR again and FRR's in its table within seconds. gobgpd absent at start: the
//! daemon runs, forwards with what its configuration gives, says so once, and joins when
//! gobgpd appears. Two wasm-vtep hosts over IPv6 (FRR 8.4 has no IPv6 VTEPs): routes, pings
//! and TCP.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const SESSION_UP: Duration = Duration::from_secs(60);
const ROUTES_SEEN: Duration = Duration::from_secs(30);

/// How many lines of the daemon's log contain `needle`.
fn log_lines(daemon: &mut VtepDaemon, needle: &str) -> usize {
    daemon
        .process()
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn gobgpd_killed_and_restarted_under_a_ping() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    let kernel = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm2)
        .create(&h2)?;
    let g1_builder = Gobgpd::builder(ASN).neighbor(a2);
    let mut g1 = g1_builder.start(&h1)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).start(&h2)?;
    let mut v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"]).to_string(),
    )?;
    g1.wait_established(a2, SESSION_UP)?;
    frr.wait_established(a1, SESSION_UP)?;
    wait_until("zebra to flood to h1", ROUTES_SEEN, || {
        Ok(kernel
            .fdb()?
            .iter()
            .any(|e| e.mac == wasm_vtep::wire::MacAddr::ZERO && e.dst == Some(a1)))
    })?;
    assert_pings(&vm1, vm2.ipv4());
    let routes_in_frr = |frr: &Frr| -> Result<bool> {
        let rib = frr.rib()?;
        Ok(
            find_mac(&rib, vm1.mac()).is_some_and(|r| r.vtep() == Some(a1) && r.peer == Some(a1))
                && find_multicast(&rib, a1).is_some_and(|r| r.peer == Some(a1)),
        )
    };
    wait_until("FRR to hold h1's routes", ROUTES_SEEN, || {
        routes_in_frr(&frr)
    })?;

    // Pings, 0.2 s apart, while gobgpd is killed and started again. FRR withdraws h1's routes
    // when its session ends (so VM2's replies stop), but h1 keeps forwarding VM1's frames to
    // the VTEP its routes named.
    let sent = |v: &VtepDaemon| v.vni_counter(VNI, "to_underlay_packets");
    let (stats, outage_sent, restarted_at, mut g1) = std::thread::scope(|s| -> Result<_> {
        let pinger = s.spawn(|| ping(&vm1, vm2.ipv4(), 40));
        std::thread::sleep(Duration::from_secs(1));
        g1.process().signal(libc::SIGKILL)?;
        wait_until("wasm-vtep to see gobgpd gone", ROUTES_SEEN, || {
            Ok(v1.evpn()?.session == "unreachable")
        })?;
        let before = sent(&v1)?;
        std::thread::sleep(Duration::from_secs(2));
        let outage_sent = sent(&v1)? - before;
        let row = v1.entry(VNI, &vm2.mac().to_string())?;
        assert_eq!(row.map(|r| r.kind), Some("evpn".to_owned()));
        // FRR holds back its session until wasm-vtep has connected to the new gobgpd, as a
        // slow peer would: the new RIB has none of FRR's routes yet.
        let neighbor = format!("neighbor {a1} shutdown");
        frr.configure(&[&format!("router bgp {ASN}"), &neighbor])?;
        drop(g1);
        let g1 = g1_builder.start(&h1)?;
        let restarted_at = Instant::now();
        let stats = pinger.join().expect("the ping thread")?;
        Ok((stats, outage_sent, restarted_at, g1))
    })?;
    wait_until("wasm-vtep to reconnect", ROUTES_SEEN, || {
        Ok(v1.evpn()?.session == "connected")
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let row = v1.entry(VNI, &vm2.mac().to_string())?;
    assert_eq!(
        row.map(|r| r.kind),
        Some("evpn".to_owned()),
        "what h1 held went when it found the new gobgpd without its peers' routes"
    );
    frr.configure(&[
        &format!("router bgp {ASN}"),
        &format!("no neighbor {a1} shutdown"),
    ])?;
    // 2 s of pings at 5 a second, encapsulated toward h2 while gobgpd was away.
    assert!(
        outage_sent >= 8,
        "{outage_sent} packets sent during the outage"
    );
    // From the restart on, VM2's entry never goes: the new gobgpd's RIB lacks FRR's routes
    // until its session is up, and what h1 held is kept until then.
    let vm2_held = || -> Result<bool> {
        let row = v1.entry(VNI, &vm2.mac().to_string())?;
        Ok(row.is_some_and(|r| r.kind == "evpn" && r.remote == Some(a2.to_string())))
    };
    wait_until("h1's routes in FRR again", ROUTES_SEEN, || {
        anyhow::ensure!(vm2_held()?, "VM2's entry went after gobgpd restarted");
        routes_in_frr(&frr)
    })
    .with_context(|| format!("{:#?}", frr.rib()))?;
    let back_in_frr = restarted_at.elapsed();
    g1.wait_established(a2, SESSION_UP)?;
    // And past the sweep of what the new RIB lacked (3 s after every session is up).
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        anyhow::ensure!(vm2_held()?, "VM2's entry went with the sweep");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(
        "FRR's routes in the new gobgpd and in h1's table",
        ROUTES_SEEN,
        || {
            let rib = g1.rib()?;
            let row = v1.entry(VNI, &vm2.mac().to_string())?;
            Ok(find_multicast(&rib, a2).is_some()
                && row.is_some_and(|r| r.kind == "evpn" && r.remote == Some(a2.to_string())))
        },
    )?;
    println!(
        "routes back in FRR {back_in_frr:?} after gobgpd restarted; pings during: {}/{}",
        stats.received, stats.transmitted
    );
    assert_eq!(log_lines(&mut v1, "lost gobgpd"), 1);
    assert_eq!(log_lines(&mut v1, "connected to gobgpd"), 2);
    assert_pings(&vm1, vm2.ipv4());
    assert_pings(&vm2, vm1.ipv4());
    Ok(())
}

#[test]
fn gobgpd_absent_at_start_is_joined_when_it_appears() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    // h2: a flood-and-learn kernel VTEP; h1 floods to it as configured, whatever BGP says.
    let _kernel = KernelVtep::builder(VNI).remote(a1).port(&vm2).create(&h2)?;
    let builder = Gobgpd::builder(ASN);
    let api = format!("127.0.0.1:{}", wasm_vtep_tests::evpn::DEFAULT_API_PORT);
    let remotes = format!("remotes = [\"{a2}\"]");
    let mut v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &api, ASN, &["vm1"])
            .vni(&remotes)
            .to_string(),
    )?;
    wait_until("wasm-vtep to find gobgpd absent", ROUTES_SEEN, || {
        Ok(v1.evpn()?.session == "unreachable")
    })?;
    assert_pings(&vm1, vm2.ipv4());
    // Several retries later, it said so once.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(log_lines(&mut v1, "gobgpd is not reachable"), 1);
    let show = v1.evpn()?;
    assert!(show.last_error.is_some(), "{show:#?}");

    let g1 = builder.start(&h1)?;
    wait_until("wasm-vtep to join gobgpd", ROUTES_SEEN, || {
        Ok(v1.evpn()?.session == "connected")
    })?;
    // What it learned meanwhile is announced at once.
    wait_until(
        "gobgpd to hold h1's type 3 and VM1's type 2",
        ROUTES_SEEN,
        || {
            let rib = g1.rib()?;
            Ok(find_multicast(&rib, a1).is_some() && find_mac(&rib, vm1.mac()).is_some())
        },
    )
    .with_context(|| format!("{:#?}", g1.rib()))?;
    assert_eq!(log_lines(&mut v1, "connected to gobgpd"), 1);
    assert_pings(&vm1, vm2.ipv4());
    // A daemon that stops withdraws what it announced (gobgpd would go on announcing it).
    v1.stop()?;
    let rib = g1.rib()?;
    assert!(rib.iter().all(|r| r.vtep() != Some(a1)), "{rib:#?}");
    Ok(())
}

#[test]
fn two_wasm_vteps_over_an_ipv6_underlay() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let host = |n| Host::new(&underlay, HostConfig::numbered(n).with_ipv6());
    let (h1, h2) = (host(1)?, host(2)?);
    let v6 = |h: &Host| h.ipv6().map(IpAddr::V6).context("no IPv6 on the host");
    let (a1, a2) = (v6(&h1)?, v6(&h2)?);
    let vm = |h: &Host, n| Vm::new(h, &format!("vm{n}"), VmConfig::numbered(n).with_ipv6());
    let (vm1, vm2) = (vm(&h1, 1)?, vm(&h2, 2)?);
    let mut g1 = Gobgpd::builder(ASN).neighbor(a2).start(&h1)?;
    let mut g2 = Gobgpd::builder(ASN).neighbor(a1).start(&h2)?;
    let rid = |h: &Host| format!("router_id = \"{}\"", h.ipv4());
    let v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"])
            .evpn(&rid(&h1))
            .to_string(),
    )?;
    let v2 = VtepDaemon::start(
        &h2,
        &EvpnVtepConfig::new(a2, &g2.api_address(), ASN, &["vm2"])
            .evpn(&rid(&h2))
            .to_string(),
    )?;
    g1.wait_established(a2, SESSION_UP)?;
    g2.wait_established(a1, SESSION_UP)?;
    for (v, other) in [(&v1, a2), (&v2, a1)] {
        wait_until("the other's type 3 over IPv6", ROUTES_SEEN, || {
            Ok(v.evpn()?.vnis[0].flood == [other.to_string()])
        })
        .with_context(|| format!("{:#?}", v.evpn()))?;
    }
    assert_pings(&vm1, vm2.ipv4());
    assert_pings(&vm2, vm1.ipv6());
    for (v, vm, other) in [(&v1, &vm2, a2), (&v2, &vm1, a1)] {
        wait_until("the other VM as an evpn entry", ROUTES_SEEN, || {
            let row = v.entry(VNI, &vm.mac().to_string())?;
            Ok(row.is_some_and(|r| r.kind == "evpn" && r.remote == Some(other.to_string())))
        })?;
    }
    let rib = g1.rib()?;
    let route = find_mac(&rib, vm2.mac()).context("VM2's route")?;
    assert_eq!(route.next_hop, Some(a2));
    let iperf = IperfServer::start(&vm2)?;
    let report = iperf3(&vm1, vm2.ipv4(), &IperfOptions::tcp(Duration::from_secs(2)))
        .with_context(|| format!("iperf3 to port {}", iperf.port()))?;
    assert!(report.received_bps > 1e8, "{report:?}");
    Ok(())
}

#[test]
fn a_large_rib_is_read_and_followed() -> Result<()> {
    // 12,000 routes: gobgpd sends its whole RIB as the watch's first message (past gRPC's
    // usual 4 MiB limit), and the session must hold on it.
    const MACS: u32 = 12_000;
    let underlay = Switch::new(1600)?;
    let h1 = Host::numbered(&underlay, 1)?;
    let a1 = IpAddr::V4(h1.ipv4());
    let _vm1 = Vm::numbered(&h1, 1)?;
    let g1 = Gobgpd::builder(ASN).start(&h1)?;
    let remote = std::net::Ipv4Addr::new(198, 18, 0, 99);
    let loading = Instant::now();
    wasm_vtep_tests::evpn::load_mac_routes(&h1, &g1, VNI, remote, 0..MACS)?;
    println!("{MACS} routes loaded in {:?}", loading.elapsed());
    let v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"]).to_string(),
    )?;
    wait_until("every route installed", Duration::from_secs(60), || {
        Ok(v1.evpn()?.vnis[0].remote_macs == MACS as usize)
    })
    .with_context(|| format!("{:#?}", v1.evpn()))?;
    // Followed after the first read: one more route.
    wasm_vtep_tests::evpn::load_mac_routes(&h1, &g1, VNI, remote, MACS..MACS + 1)?;
    wait_until("the next route installed", ROUTES_SEEN, || {
        Ok(v1.evpn()?.vnis[0].remote_macs == MACS as usize + 1)
    })?;
    let show = v1.evpn()?;
    assert_eq!(show.session, "connected", "{show:#?}");
    assert_eq!(show.vnis[0].remote_vteps, [remote.to_string()]);
    assert!(show.refused.is_empty(), "{show:#?}");
    Ok(())
}
