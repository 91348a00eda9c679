//! `demo --evpn`: the same two VMs with BGP EVPN as the control plane. Each host runs a gobgpd
//! (the harness's [`Gobgpd`]) beside its VTEP; the two gobgpd peer with each other (iBGP, AS
//! 65000, address family L2VPN EVPN) and each `vtep` drives its own over gRPC. No multicast
//! group and no remotes are configured: a VTEP floods to the VTEPs whose type 3 routes it holds
//! and finds remote MACs in type 2 routes. Each step prints, per host, the RIB (`gobgp global
//! rib -a evpn`), `vtep fdb show` and `vtep evpn show`.
//!
//! Needs the `gobgpd` and `gobgp` programs (Debian package `gobgpd`): [`missing_programs`]
//! says so before anything is created.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep::control::render;
use wasm_vtep_tests::{EvpnVtepConfig, Gobgpd, Host, Switch, Vm, VtepDaemon, wait_until};

use crate::{interrupted, print_indented, step};

const VNI: u32 = wasm_vtep_tests::evpn::EVPN_VNI;
const ASN: u32 = 65000;
/// How long the BGP sessions may take to come up (gobgpd retries a connection every 2 s).
const SESSION_UP: Duration = Duration::from_secs(60);
/// How long a route may take from one VTEP's table to the other's.
const ROUTES_SEEN: Duration = Duration::from_secs(30);

/// The programs of the Debian package `gobgpd` that the walk runs.
const PROGRAMS: [&str; 2] = ["gobgpd", "gobgp"];

/// `None` when `gobgpd` and `gobgp` are on the PATH; else what to install.
pub(crate) fn missing_programs() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = PROGRAMS
        .into_iter()
        .filter(|program| {
            !std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(program))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "--evpn needs {} on the PATH: install the Debian package gobgpd \
             (`apt-get install gobgpd`, or tests/setup.sh)",
            missing.join(" and ")
        )
    })
}

pub(crate) fn walk() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let hosts = [Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?];
    let [vm1, vm2] = [Vm::numbered(&hosts[0], 1)?, Vm::numbered(&hosts[1], 2)?];
    let [a1, a2] = [0, 1].map(|i| IpAddr::V4(hosts[i].ipv4()));
    step(&format!(
        "The underlay: a switch (Linux bridge) joining host 1 ({a1}) and host 2 ({a2}).\n\
         VM1 ({}, {}) sits on host 1, VM2 ({}, {}) on host 2, both on VNI {VNI}.\n\
         Each host runs a gobgpd beside its VTEP; the two peer with each other (iBGP, AS {ASN}, \
         L2VPN EVPN),\nand each VTEP drives its own gobgpd over gRPC. No multicast group, no \
         remotes: what a VTEP knows of the other comes from routes.",
        vm1.mac(),
        vm1.ipv4(),
        vm2.mac(),
        vm2.ipv4(),
    ));
    let mut gobgpds = [
        Gobgpd::builder(ASN).neighbor(a2).start(&hosts[0])?,
        Gobgpd::builder(ASN).neighbor(a1).start(&hosts[1])?,
    ];
    let vteps = [
        VtepDaemon::start(
            &hosts[0],
            &EvpnVtepConfig::new(a1, &gobgpds[0].api_address(), ASN, &[vm1.host_port()])
                .to_string(),
        )?,
        VtepDaemon::start(
            &hosts[1],
            &EvpnVtepConfig::new(a2, &gobgpds[1].api_address(), ASN, &[vm2.host_port()])
                .to_string(),
        )?,
    ];
    gobgpds[0].wait_established(a2, SESSION_UP)?;
    gobgpds[1].wait_established(a1, SESSION_UP)?;
    wait_for(
        "each VTEP to see the session up and flood to the other (type 3 routes)",
        || Ok(ready(&vteps[0], a2)? && ready(&vteps[1], a1)?),
    )?;
    step(&format!(
        "The BGP session is up. Before any VM has sent a frame, each VTEP announced a type 3 \
         route (inclusive multicast,\nPMSI ingress replication) for VNI {VNI}, because it has a \
         port on it, and took the other's as its flood list.\nNo MAC is known yet:"
    ));
    show(&gobgpds, &vteps)?;

    interrupted()?;
    step(&format!(
        "VM1 pings VM2. VM1's ARP request goes to host 2 (the flood list). VTEP 1 learns VM1 on \
         its port and announces\nit in type 2 routes (the MAC, and the MAC with {} from the ARP); \
         VTEP 2 does the same for VM2 when it answers.\nEach VTEP installs the other's MAC from \
         the route, as an `evpn` entry (it learns nothing from the underlay):",
        vm1.ipv4()
    ));
    let target = vm2.ipv4().to_string();
    let out = vm1
        .netns()
        .exec("ping", &["-c", "3", "-i", "0.2", &target])?;
    interrupted()?;
    print!("{out}");
    let [m1, m2] = [vm1.mac().to_string(), vm2.mac().to_string()];
    wait_for("type 2 routes in both tables", || {
        Ok(installed(&vteps[0], &m2, a2)?
            && installed(&vteps[1], &m1, a1)?
            && bindings(&vteps[0])? >= 2
            && bindings(&vteps[1])? >= 2)
    })?;
    show(&gobgpds, &vteps)?;

    interrupted()?;
    step(&format!(
        "VM1 forgets VM2's MAC and asks again (arping {target}). VTEP 1 answers by itself from \
         VM2's MAC/IP route\n(ARP suppression): the request never crosses the underlay. \
         \"ARP/ND answered\" counts it:"
    ));
    vm1.netns().ip(&["neigh", "flush", "dev", Vm::IFACE])?;
    let out = vm1
        .netns()
        .exec("arping", &["-c", "1", "-w", "3", "-I", Vm::IFACE, &target])?;
    interrupted()?;
    print!("{out}");
    show(&gobgpds, &vteps)?;

    interrupted()?;
    let [vtep1, vtep2] = vteps;
    vtep1.stop()?;
    step(
        "VTEP 1 stops, withdrawing its routes on the way out. Host 2's gobgpd drops them, and \
         VTEP 2 removes\nVM1's entry and empties its flood list:",
    );
    wait_for("VTEP 2 to forget host 1", || {
        Ok(!installed(&vtep2, &m1, a1)? && !floods_to(&vtep2, a1)?)
    })?;
    show_host(2, &gobgpds[1], &vtep2)?;
    vtep2.stop()?;
    for gobgpd in &mut gobgpds {
        gobgpd.process().stop()?;
    }
    step("Done: VTEPs and gobgpd stopped, namespaces removed.");
    Ok(())
}

/// Waits until `cond` holds, giving up early on Ctrl-C.
fn wait_for(what: &str, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until(what, ROUTES_SEEN, || {
        interrupted()?;
        cond()
    })
}

/// Whether `vtep` has seen (as gobgpd last told it) the session with `remote` established and
/// floods to it.
fn ready(vtep: &VtepDaemon, remote: IpAddr) -> Result<bool> {
    let report = vtep.evpn()?;
    let up = report
        .peers
        .iter()
        .any(|p| p.address == remote.to_string() && p.state == "established");
    Ok(up && floods_to(vtep, remote)?)
}

/// Whether `vtep` floods VNI 5001's BUM frames to `remote` (a type 3 route of it is held).
fn floods_to(vtep: &VtepDaemon, remote: IpAddr) -> Result<bool> {
    let report = vtep.evpn()?;
    Ok(report
        .vnis
        .iter()
        .any(|v| v.vni == VNI && v.flood.contains(&remote.to_string())))
}

/// Whether `vtep` has `mac` on VNI 5001 behind `remote` as an `evpn` entry.
fn installed(vtep: &VtepDaemon, mac: &str, remote: IpAddr) -> Result<bool> {
    let row = vtep.entry(VNI, mac)?;
    Ok(row.is_some_and(|r| r.kind == "evpn" && r.remote == Some(remote.to_string())))
}

/// The MAC/IP bindings (local and remote) `vtep` holds on VNI 5001.
fn bindings(vtep: &VtepDaemon) -> Result<usize> {
    let report = vtep.evpn()?;
    Ok(report
        .vnis
        .iter()
        .find(|v| v.vni == VNI)
        .map_or(0, |v| v.mac_ips))
}

/// Each host's routes and tables.
fn show(gobgpds: &[Gobgpd; 2], vteps: &[VtepDaemon; 2]) -> Result<()> {
    for (h, (gobgpd, vtep)) in (1..).zip(gobgpds.iter().zip(vteps)) {
        show_host(h, gobgpd, vtep)?;
    }
    Ok(())
}

/// Host `h`'s routes (`gobgp global rib -a evpn`), `vtep fdb show` and `vtep evpn show`.
fn show_host(h: u8, gobgpd: &Gobgpd, vtep: &VtepDaemon) -> Result<()> {
    let rib = gobgpd
        .cli(&["global", "rib", "-a", "evpn"])
        .context("gobgp global rib -a evpn")?;
    println!("  host {h}: gobgp global rib -a evpn");
    print_indented(&rib);
    println!("  host {h}: vtep fdb show");
    print_indented(&render::fdb(&vtep.fdb()?));
    println!("  host {h}: vtep evpn show");
    print_indented(&render::evpn(&vtep.evpn()?));
    Ok(())
}
