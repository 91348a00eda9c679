//! wasm-vtep in an EVPN fabric of three VTEPs: two wasm-vtep hosts, each with its gobgpd, and
//! FRR over the kernel's vxlan, all peered in a full iBGP mesh (no group, no remotes). BUM
//! frames reach each other VTEP exactly once; a VM that migrates between the FRR host and a
//! wasm-vtep host moves at once everywhere with its sequence number raised (by FRR one way, by
//! wasm-vtep the other); a VM gone and aged is withdrawn everywhere. Then ARP suppression
//! (no ARP on the underlay), the source check (an unannounced VTEP's datagrams dropped and
//! counted) and bad routes (counted, never fatal).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::raw_frame::{ethernet, gratuitous_arp};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const SESSION_UP: Duration = Duration::from_secs(60);
const ROUTES_SEEN: Duration = Duration::from_secs(30);
const VXLAN_PORT: u16 = 4789;

/// The migrating VM's MAC and address.
const MOVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x50]);
const MOVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

/// Where `daemon` has `mac`: its kind and remote VTEP.
fn place(daemon: &VtepDaemon, mac: MacAddr) -> Result<Option<(String, Option<String>)>> {
    Ok(daemon
        .entry(VNI, &mac.to_string())?
        .map(|r| (r.kind, r.remote)))
}

fn evpn_at(vtep: IpAddr) -> Option<(String, Option<String>)> {
    Some(("evpn".to_owned(), Some(vtep.to_string())))
}

/// The sequence number of the best type 2 route for `mac` in `rib`, and its VTEP.
fn mobility_of(rib: &[EvpnRoute], mac: MacAddr) -> Option<(u32, IpAddr)> {
    let route = rib
        .iter()
        .find(|r| r.is_mac(mac) && r.best && r.ip.is_none())?;
    let seq = route.mac_mobility.map_or(0, |m| m.sequence);
    Some((seq, route.vtep()?))
}

/// Brings a VM's link down or up (the VM goes silent, or comes back).
fn link(vm: &Vm, up: bool) -> Result<()> {
    vm.netns()
        .ip(&["link", "set", Vm::IFACE, if up { "up" } else { "down" }])?;
    Ok(())
}

#[test]
fn three_vteps_flood_once_follow_a_migration_and_withdraw_an_aged_mac() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let hosts = [1, 2, 3].map(|n| Host::numbered(&underlay, n));
    let [h1, h2, h3] = hosts;
    let (h1, h2, h3) = (h1?, h2?, h3?);
    let a = |h: &Host| IpAddr::V4(h.ipv4());
    let (a1, a2, a3) = (a(&h1), a(&h2), a(&h3));
    let vm1 = Vm::numbered(&h1, 1)?;
    let vm2 = Vm::numbered(&h2, 2)?;
    let vm3 = Vm::numbered(&h3, 3)?;
    // VM 50's address is MOVER_IP.
    let mover = VmConfig::numbered(50).mac(MOVER_MAC);
    let mover_h2 = Vm::new(&h2, "vmm", mover.clone())?;

    let kernel = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm3)
        .create(&h3)?;
    let mut g1 = Gobgpd::builder(ASN).neighbor(a2).neighbor(a3).start(&h1)?;
    let mut g2 = Gobgpd::builder(ASN).neighbor(a1).neighbor(a3).start(&h2)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).neighbor(a2).start(&h3)?;
    // VM1's VNI ages in 5 s, for the last step.
    let v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"])
            .vni("aging_secs = 5")
            .to_string(),
    )?;
    let v2 = VtepDaemon::start(
        &h2,
        &EvpnVtepConfig::new(a2, &g2.api_address(), ASN, &["vm2", "vmm"]).to_string(),
    )?;
    for (g, peers) in [(&mut g1, [a2, a3]), (&mut g2, [a1, a3])] {
        for p in peers {
            g.wait_established(p, SESSION_UP)?;
        }
    }
    frr.wait_established(a1, SESSION_UP)?;
    frr.wait_established(a2, SESSION_UP)?;
    for (v, others) in [(&v1, [a2, a3]), (&v2, [a1, a3])] {
        wait_until("each VTEP's type 3 at the others", ROUTES_SEEN, || {
            let mut flood = v.evpn()?.vnis[0].flood.clone();
            flood.sort();
            let mut want: Vec<String> = others.iter().map(ToString::to_string).collect();
            want.sort();
            Ok(flood == want)
        })
        .with_context(|| format!("{:#?}", v.evpn()))?;
    }
    wait_until(
        "zebra to flood to both wasm-vtep hosts",
        ROUTES_SEEN,
        || {
            let fdb = kernel.fdb()?;
            let to = |ip| {
                fdb.iter()
                    .any(|e| e.mac == MacAddr::ZERO && e.dst == Some(ip))
            };
            Ok(to(a1) && to(a2))
        },
    )?;

    // BUM: one broadcast frame from VM1 crosses the underlay once to each other VTEP.
    let capture = Capture::start(&h1, Host::UPLINK, &format!("udp dst port {VXLAN_PORT}"))?;
    let payload = b"wasm-vtep evpn: one copy per VTEP";
    let frame = ethernet(MacAddr::BROADCAST, vm1.mac(), 0x88b5, payload);
    PacketSocket::open(&vm1, Vm::IFACE)?.send(&frame)?;
    std::thread::sleep(Duration::from_millis(500));
    let captured = capture.stop()?;
    let copies = |to: IpAddr| {
        captured
            .vxlan(VXLAN_PORT)
            .iter()
            .filter(|p| p.dst == to && p.inner.starts_with(&frame[..14 + payload.len()]))
            .count()
    };
    assert_eq!((copies(a2), copies(a3)), (1, 1), "{}", captured.text()?);

    // Everyone reaches everyone.
    for (from, to) in [(&vm1, &vm2), (&vm1, &vm3), (&vm2, &vm3)] {
        assert_pings(from, to.ipv4());
    }

    // The mover starts on h2 (wasm-vtep): h1 and FRR point at h2.
    assert_pings(&mover_h2, vm1.ipv4());
    wait_until("the mover behind h2 everywhere", ROUTES_SEEN, || {
        Ok(place(&v1, MOVER_MAC)? == evpn_at(a2) && kernel.remote_of(MOVER_MAC)? == Some(a2))
    })?;
    assert_eq!(mobility_of(&g1.rib()?, MOVER_MAC), Some((0, a2)));

    // Migrates to h3 (FRR): silent on h2, then it announces itself on h3 with a GARP.
    link(&mover_h2, false)?;
    let mover_h3 = Vm::new(&h3, "vmm", mover.clone())?;
    kernel.add_port(&mover_h3)?;
    let garp = Instant::now();
    PacketSocket::open(&mover_h3, Vm::IFACE)?.send(&gratuitous_arp(MOVER_MAC, MOVER_IP))?;
    wait_until(
        "the mover behind h3 on both wasm-vtep hosts",
        ROUTES_SEEN,
        || Ok(place(&v1, MOVER_MAC)? == evpn_at(a3) && place(&v2, MOVER_MAC)? == evpn_at(a3)),
    )
    .with_context(|| format!("{:#?}\n{:#?}", g1.rib(), v2.fdb()))?;
    println!("migration h2 -> h3 converged in {:?}", garp.elapsed());
    assert_eq!(mobility_of(&g1.rib()?, MOVER_MAC), Some((1, a3)));
    assert_eq!(mobility_of(&g2.rib()?, MOVER_MAC), Some((1, a3)));
    assert_pings(&vm1, MOVER_IP);

    // And back to h2 (wasm-vtep): our route carries 2, FRR and h1 follow.
    link(&mover_h3, false)?;
    link(&mover_h2, true)?;
    let garp = Instant::now();
    PacketSocket::open(&mover_h2, Vm::IFACE)?.send(&gratuitous_arp(MOVER_MAC, MOVER_IP))?;
    wait_until("the mover behind h2 again everywhere", ROUTES_SEEN, || {
        Ok(place(&v1, MOVER_MAC)? == evpn_at(a2) && kernel.remote_of(MOVER_MAC)? == Some(a2))
    })
    .with_context(|| format!("{:#?}\n{:#?}", frr.rib(), kernel.fdb()))?;
    println!("migration h3 -> h2 converged in {:?}", garp.elapsed());
    // FRR's best path follows (its own route for the MAC, number 1, goes as zebra moves it).
    wait_until("FRR's best path at h2 with number 2", ROUTES_SEEN, || {
        Ok(mobility_of(&frr.rib()?, MOVER_MAC) == Some((2, a2)))
    })
    .with_context(|| format!("{:#?}", frr.rib()))?;
    assert_eq!(
        place(&v2, MOVER_MAC)?.map(|p| p.0),
        Some("local".to_owned())
    );
    assert_pings(&vm3, MOVER_IP);

    // VM1 goes silent: aged on h1, its route is withdrawn and every VTEP forgets it.
    link(&vm1, false)?;
    wait_until("VM1 aged out and withdrawn everywhere", ROUTES_SEEN, || {
        Ok(place(&v1, vm1.mac())?.is_none()
            && place(&v2, vm1.mac())?.is_none()
            && find_mac(&frr.rib()?, vm1.mac()).is_none()
            && kernel.remote_of(vm1.mac())?.is_none())
    })
    .with_context(|| format!("{:#?}", frr.rib()))?;
    Ok(())
}
