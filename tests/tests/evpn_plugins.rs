//! Plugins in EVPN mode, between two wasm-vtep hosts with their gobgpd: the learn hook decides
//! what is advertised (a MAC the plugin refuses is forwarded but never learned, so no route
//! names it), and filters apply to EVPN traffic as to any other.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const SESSION_UP: Duration = Duration::from_secs(60);
const ROUTES_SEEN: Duration = Duration::from_secs(30);

fn config(local: IpAddr, api: &str, ports: &[&str], plugin: &str) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[underlay]\nlocal = \"{local}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
         [evpn]\ngobgp = \"{api}\"\nasn = {ASN}\n\n\
         [[vni]]\nid = {VNI}\nports = [{}]\n\n{plugin}\n",
        Host::UPLINK,
        ports.join(", ")
    )
}

/// A `[[plugin]]` table with a generous budget (a debug build on a loaded machine must not run
/// out of it by accident).
fn plugin(name: &str, crate_name: &str, body: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nbudget_us = 50000\n{body}\n",
        wasm(crate_name).display()
    )
}

struct Pair {
    _underlay: Switch,
    _hosts: [Host; 2],
    vms1: Vec<Vm>,
    vm2: Vm,
    _g1: Gobgpd,
    g2: Gobgpd,
    v1: VtepDaemon,
    v2: VtepDaemon,
}

/// h1 with VMs 1 and 3 and `plugin`, h2 with VM 2; both with gobgpd, peered.
fn pair(plugin: &str) -> Result<Pair> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let vms1 = vec![Vm::numbered(&h1, 1)?, Vm::numbered(&h1, 3)?];
    let vm2 = Vm::numbered(&h2, 2)?;
    let mut g1 = Gobgpd::builder(ASN).neighbor(a2).start(&h1)?;
    let mut g2 = Gobgpd::builder(ASN).neighbor(a1).start(&h2)?;
    let v1 = VtepDaemon::start(&h1, &config(a1, &g1.api_address(), &["vm1", "vm3"], plugin))?;
    let v2 = VtepDaemon::start(&h2, &config(a2, &g2.api_address(), &["vm2"], ""))?;
    g1.wait_established(a2, SESSION_UP)?;
    g2.wait_established(a1, SESSION_UP)?;
    for (v, other) in [(&v1, a2), (&v2, a1)] {
        wait_until("the other's type 3", ROUTES_SEEN, || {
            Ok(v.evpn()?.vnis[0].flood == [other.to_string()])
        })?;
    }
    Ok(Pair {
        _underlay: underlay,
        _hosts: [h1, h2],
        vms1,
        vm2,
        _g1: g1,
        g2,
        v1,
        v2,
    })
}

#[test]
fn a_mac_the_learn_hook_refuses_is_never_advertised() -> Result<()> {
    // One learned MAC per VNI on h1: VM1's; VM3 comes second.
    let guard = plugin("guard", "learn-guard", "config = { max_macs = 1 }");
    let p = pair(&guard)?;
    let [vm1, vm3] = [&p.vms1[0], &p.vms1[1]];
    assert_pings(vm1, p.vm2.ipv4());
    wait_until("VM1's route at h2", ROUTES_SEEN, || {
        Ok(find_mac(&p.g2.rib()?, vm1.mac()).is_some())
    })?;
    // VM3 is forwarded (flooded to), not learned: no entry, no route.
    assert_pings(vm3, p.vm2.ipv4());
    std::thread::sleep(Duration::from_secs(1));
    assert!(p.v1.entry(VNI, &vm3.mac().to_string())?.is_none());
    let rib = p.g2.rib()?;
    assert!(find_mac(&rib, vm3.mac()).is_none(), "{rib:#?}");
    assert_eq!(p.v1.evpn()?.vnis[0].local_macs, 1);
    // h2 has VM1 as an evpn entry and nothing for VM3 (its replies to VM3 are flooded).
    let row = p.v2.entry(VNI, &vm1.mac().to_string())?;
    assert_eq!(row.map(|r| r.kind), Some("evpn".to_owned()));
    assert!(p.v2.entry(VNI, &vm3.mac().to_string())?.is_none());
    Ok(())
}

#[test]
fn filters_apply_to_evpn_traffic() -> Result<()> {
    let filter = plugin(
        "no-icmp",
        "vni-filter",
        "vnis = [5001]\nconfig = { deny = [{ ip_proto = \"icmp\" }] }",
    );
    let p = pair(&filter)?;
    let vm1 = &p.vms1[0];
    let stats = ping(vm1, p.vm2.ipv4(), 3)?;
    assert_eq!(
        stats.received, 0,
        "ICMP crossed the filter: {}",
        stats.output
    );
    // ARP passed the filter: VM1 was learned and announced, VM2's route installed.
    wait_until("VM1's route at h2", ROUTES_SEEN, || {
        Ok(find_mac(&p.g2.rib()?, vm1.mac()).is_some())
    })
    .with_context(|| format!("{:#?}", p.g2.rib()))?;
    let drops = p.v1.cli(&["plugin", "show", "no-icmp", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&drops)?;
    assert!(
        report["calls"]["counters"]["dropped"].as_u64().unwrap_or(0) >= 3,
        "{report:#}"
    );
    Ok(())
}
