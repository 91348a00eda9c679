//! The EVPN harness end to end with the real daemons and nothing of wasm-vtep: host 1 runs
//! gobgpd, host 2 runs FRR (zebra + bgpd) over the kernel's vxlan 5001 and a bridge with VM2.
//! The session comes up; gobgpd, through the `gobgp` CLI, plays a remote VTEP at h1's address
//! with one VM (a type 3 and a type 2); FRR's RIB holds both and zebra programs h2's kernel
//! FDB with them; once VM2 sends a frame, FRR advertises its MAC and gobgpd's RIB holds that
//! type 2 and FRR's type 3; withdrawals undo FRR's FDB entries. At the end the guards leave no
//! daemon, path space or namespace behind.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;

/// Generous bounds: FRR takes seconds to open the session and to program the kernel.
const SESSION_UP: Duration = Duration::from_secs(60);
const ROUTES_SEEN: Duration = Duration::from_secs(30);

/// The MAC and IP of the VM behind the VTEP gobgpd plays on h1.
const REMOTE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[test]
fn gobgpd_and_frr_exchange_routes_and_frr_programs_the_kernel() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let vm2 = Vm::numbered(&h2, 2)?;
    // FRR's data plane: a vxlan device without learning or flood targets (zebra installs
    // both from routes) bridged with VM2's port.
    let kernel = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm2)
        .create(&h2)?;

    let mut gobgpd = Gobgpd::builder(ASN).neighbor(a2).start(&h1)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).start(&h2)?;
    gobgpd.wait_established(a2, SESSION_UP)?;
    frr.wait_established(a1, SESSION_UP)?;

    // h1 plays a remote VTEP with one VM.
    gobgpd.add_multicast(VNI, a1)?;
    gobgpd.add_mac_ip(VNI, REMOTE_MAC, Some(REMOTE_IP.into()), a1)?;
    let own = gobgpd.rib()?;
    let t2 = find_mac(&own, REMOTE_MAC).context("gobgpd lacks its own type 2")?;
    assert_eq!(t2.rd, format!("{}:{VNI}", gobgpd.router_id()));
    assert_eq!(t2.route_targets, [format!("{ASN}:{VNI}")]);
    assert_eq!((t2.vni, t2.next_hop, t2.peer), (Some(VNI), Some(a1), None));

    wait_until(
        "FRR's RIB to hold gobgpd's type 2 and type 3",
        ROUTES_SEEN,
        || {
            let rib = frr.rib()?;
            let mac = find_mac(&rib, REMOTE_MAC).is_some_and(|r| {
                r.ip == Some(REMOTE_IP.into())
                    && r.vtep() == Some(a1)
                    && r.vni == Some(VNI)
                    && r.peer == Some(a1)
            });
            let flood = find_multicast(&rib, a1).is_some_and(|r| r.vni == Some(VNI));
            Ok(mac && flood)
        },
    )
    .with_context(|| format!("{:#?}", frr.rib()))?;

    wait_until(
        "h2's kernel FDB to point the remote MAC (extern_learn) and BUM at h1",
        ROUTES_SEEN,
        || {
            let fdb = kernel.fdb()?;
            let mac = fdb.iter().any(|e| {
                e.mac == REMOTE_MAC
                    && e.dst == Some(a1)
                    && e.has_flag("self")
                    && e.has_flag("extern_learn")
            });
            let flood = fdb
                .iter()
                .any(|e| e.mac == MacAddr::ZERO && e.dst == Some(a1));
            Ok(mac && flood)
        },
    )
    .with_context(|| format!("{:#?}", kernel.fdb()))?;

    // FRR advertises a MAC only once its bridge has learned it from a frame: VM2 is silent
    // until it pings (the ARP request is what counts; nobody answers it).
    assert!(find_mac(&gobgpd.rib()?, vm2.mac()).is_none());
    ping(&vm2, REMOTE_IP, 1)?;
    wait_until(
        "gobgpd's RIB to hold FRR's type 2 for VM2 and type 3 from h2",
        ROUTES_SEEN,
        || {
            let rib = gobgpd.rib()?;
            let mac = find_mac(&rib, vm2.mac()).is_some_and(|r| {
                r.vtep() == Some(a2)
                    && r.peer == Some(a2)
                    && r.vni == Some(VNI)
                    && r.route_targets.contains(&format!("{ASN}:{VNI}"))
            });
            let flood =
                find_multicast(&rib, a2).is_some_and(|r| r.vni == Some(VNI) && r.peer == Some(a2));
            Ok(mac && flood)
        },
    )
    .with_context(|| format!("{:#?}", gobgpd.rib()))?;

    // Withdrawn routes leave FRR's RIB and the kernel's FDB.
    gobgpd.del_mac_ip(VNI, REMOTE_MAC, Some(REMOTE_IP.into()), a1)?;
    gobgpd.del_multicast(VNI, a1)?;
    wait_until(
        "the withdrawn routes to leave FRR and h2's FDB",
        ROUTES_SEEN,
        || {
            let rib = frr.rib()?;
            let fdb = kernel.fdb()?;
            Ok(find_mac(&rib, REMOTE_MAC).is_none()
                && find_multicast(&rib, a1).is_none()
                && !fdb.iter().any(|e| e.dst == Some(a1)))
        },
    )
    .with_context(|| format!("{:#?}\n{:#?}", frr.rib(), kernel.fdb()))?;

    // The guards leave nothing behind: daemons exited, FRR's path space gone.
    let pids = [gobgpd.process().pid(), frr.zebra().pid(), frr.bgpd().pid()];
    let name = frr.name().to_owned();
    drop(frr);
    drop(gobgpd);
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    }
    for root in ["/etc/frr", "/var/run/frr"] {
        assert!(!Path::new(root).join(&name).exists(), "{root}/{name}");
    }
    Ok(())
}

/// Host 1 and host 2 on a switch, peered: gobgpd on h1, FRR on h2 (no kernel VTEP: sessions
/// only).
fn peered_pair(underlay: &Switch) -> Result<(Host, Host, GobgpdBuilder, Gobgpd, Frr)> {
    let (h1, h2) = (Host::numbered(underlay, 1)?, Host::numbered(underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let builder = Gobgpd::builder(ASN).neighbor(a2);
    let mut gobgpd = builder.start(&h1)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).start(&h2)?;
    gobgpd.wait_established(a2, SESSION_UP)?;
    frr.wait_established(a1, SESSION_UP)?;
    Ok((h1, h2, builder, gobgpd, frr))
}

#[test]
fn gobgpd_restarts_from_the_same_builder_and_frr_reconnects() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2, builder, mut gobgpd, mut frr) = peered_pair(&underlay)?;
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    gobgpd.add_multicast(VNI, a1)?;

    gobgpd.process().stop()?;
    wait_until("FRR to see the session drop", SESSION_UP, || {
        Ok(!frr.established(a1)?)
    })?;
    drop(gobgpd);
    let mut gobgpd = builder.start(&h1)?;
    gobgpd.wait_established(a2, SESSION_UP)?;
    frr.wait_established(a1, SESSION_UP)?;
    // A restarted gobgpd starts empty: what it advertised before is gone from FRR.
    wait_until("FRR to forget the old type 3", ROUTES_SEEN, || {
        Ok(find_multicast(&frr.rib()?, a1).is_none())
    })?;
    Ok(())
}

#[test]
fn a_failing_test_leaves_no_daemon_or_path_space_behind() {
    let started = std::thread::spawn(|| {
        let underlay = Switch::new(1600).unwrap();
        let (_h1, _h2, _builder, mut gobgpd, mut frr) = peered_pair(&underlay).unwrap();
        let pids = [gobgpd.process().pid(), frr.zebra().pid(), frr.bgpd().pid()];
        std::fs::write(
            format!("/tmp/wv-evpn-panic-{}", std::process::id()),
            format!("{} {} {} {}", frr.name(), pids[0], pids[1], pids[2]),
        )
        .unwrap();
        panic!("a test failing with gobgpd and FRR running");
    })
    .join();
    assert!(started.is_err(), "the thread was meant to panic");
    let note = format!("/tmp/wv-evpn-panic-{}", std::process::id());
    let text = std::fs::read_to_string(&note).unwrap();
    let _ = std::fs::remove_file(&note);
    let mut fields = text.split_whitespace();
    let name = fields.next().unwrap();
    for pid in fields {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    }
    for root in ["/etc/frr", "/var/run/frr"] {
        assert!(!Path::new(root).join(name).exists(), "{root}/{name}");
    }
}
