//! wasm-vtep as a BGP EVPN VTEP beside FRR: host 1 runs wasm-vtep and gobgpd, host 2 FRR
//! (zebra + bgpd) over the kernel's vxlan and a bridge; one VM each, no multicast group, no
//! configured remotes: everything either side knows of the other comes from routes. Pings and
//! TCP cross both ways; FRR's RIB holds h1's type 2 and type 3, zebra installs VM1's MAC in
//! h2's kernel FDB (`extern_learn`), and wasm-vtep's table holds VM2 as an `evpn` entry.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const SESSION_UP: Duration = Duration::from_secs(60);
const ROUTES_SEEN: Duration = Duration::from_secs(30);

#[test]
fn wasm_vtep_and_frr_exchange_routes_and_forward_both_ways() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    let kernel = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm2)
        .create(&h2)?;
    let mut gobgpd = Gobgpd::builder(ASN).neighbor(a2).start(&h1)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).start(&h2)?;
    let ours = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &gobgpd.api_address(), ASN, &["vm1"]).to_string(),
    )?;
    gobgpd.wait_established(a2, SESSION_UP)?;
    frr.wait_established(a1, SESSION_UP)?;

    // Our type 3 reaches FRR, which points h2's BUM traffic at h1: VM2 can find VM1.
    wait_until("FRR's RIB to hold h1's type 3", ROUTES_SEEN, || {
        Ok(find_multicast(&frr.rib()?, a1).is_some_and(|r| r.vni == Some(VNI)))
    })
    .with_context(|| format!("{:#?}", frr.rib()))?;
    wait_until("zebra to flood h2's BUM traffic to h1", ROUTES_SEEN, || {
        Ok(kernel
            .fdb()?
            .iter()
            .any(|e| e.mac == MacAddr::ZERO && e.dst == Some(a1)))
    })
    .with_context(|| format!("{:#?}", kernel.fdb()))?;
    assert_pings(&vm1, vm2.ipv4());
    assert_pings(&vm2, vm1.ipv4());

    wait_until(
        "FRR's RIB to hold VM1's type 2 from h1",
        ROUTES_SEEN,
        || {
            let rib = frr.rib()?;
            Ok(find_mac(&rib, vm1.mac()).is_some_and(|r| {
                r.vtep() == Some(a1)
                    && r.vni == Some(VNI)
                    && r.route_targets.contains(&format!("{ASN}:{VNI}"))
            }))
        },
    )
    .with_context(|| format!("{:#?}", frr.rib()))?;
    wait_until(
        "h2's kernel FDB to hold VM1's MAC extern_learn toward h1",
        ROUTES_SEEN,
        || {
            Ok(kernel
                .fdb()?
                .iter()
                .any(|e| e.mac == vm1.mac() && e.dst == Some(a1) && e.has_flag("extern_learn")))
        },
    )
    .with_context(|| format!("{:#?}", kernel.fdb()))?;
    wait_until(
        "h1's table to hold VM2 as an evpn entry",
        ROUTES_SEEN,
        || {
            let row = ours.entry(VNI, &vm2.mac().to_string())?;
            Ok(row.is_some_and(|r| r.kind == "evpn" && r.remote == Some(a2.to_string())))
        },
    )
    .with_context(|| format!("{:#?}", ours.fdb()))?;

    // TCP both ways, at the VMs' defaults.
    for (client, server) in [(&vm1, &vm2), (&vm2, &vm1)] {
        let iperf = IperfServer::start(server)?;
        let report = iperf3(
            client,
            server.ipv4(),
            &IperfOptions::tcp(Duration::from_secs(2)),
        )
        .with_context(|| format!("iperf3 server on port {}", iperf.port()))?;
        assert!(report.received_bps > 1e8, "{report:?}");
    }

    let show = ours.evpn()?;
    assert_eq!(show.session, "connected");
    let v = &show.vnis[0];
    assert_eq!(v.rd, format!("{a1}:{VNI}"));
    assert_eq!(v.export_rt, [format!("{ASN}:{VNI}")]);
    assert!(v.inclusive_multicast);
    assert_eq!(v.flood, [a2.to_string()]);
    assert_eq!(v.remote_vteps, [a2.to_string()]);
    assert!(v.local_macs >= 1 && v.remote_macs >= 1, "{show:#?}");
    assert!(show.refused.is_empty(), "{show:#?}");
    Ok(())
}
