//! Plugins in EVPN mode, between two wasm-vtep hosts with their gobgpd: the learn hook decides
//! what is advertised (a MAC the plugin refuses is forwarded but never learned, so no route
//! names it), and filters apply to EVPN traffic as to any other.

use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const ROUTES_SEEN: Duration = Duration::from_secs(30);

/// A `[[plugin]]` table with a generous budget (a debug build on a loaded machine must not run
/// out of it by accident).
fn plugin(name: &str, crate_name: &str, body: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nbudget_us = 50000\n{body}\n",
        wasm(crate_name).display()
    )
}

/// h1 with VMs 1 and 3 and `plugin`, h2 with VM 2; both with gobgpd, peered.
fn pair(plugin: &str) -> Result<EvpnPair> {
    EvpnPair::start(Switch::new(1600)?, ASN, [&[1, 3], &[2]], |i, config| {
        if i == 0 { config.tail(plugin) } else { config }
    })
}

#[test]
fn a_mac_the_learn_hook_refuses_is_never_advertised() -> Result<()> {
    // One learned MAC per VNI on h1: VM1's; VM3 comes second.
    let guard = plugin("guard", "learn-guard", "config = { max_macs = 1 }");
    let p = pair(&guard)?;
    let [vm1, vm3] = [&p.vms[0][0], &p.vms[0][1]];
    assert_pings(vm1, p.vms[1][0].ipv4());
    wait_until("VM1's route at h2", ROUTES_SEEN, || {
        Ok(find_mac(&p.gobgpds[1].rib()?, vm1.mac()).is_some())
    })?;
    // VM3 is forwarded (flooded to), not learned: no entry, no route.
    assert_pings(vm3, p.vms[1][0].ipv4());
    std::thread::sleep(Duration::from_secs(1));
    assert!(p.vteps[0].entry(VNI, &vm3.mac().to_string())?.is_none());
    let rib = p.gobgpds[1].rib()?;
    assert!(find_mac(&rib, vm3.mac()).is_none(), "{rib:#?}");
    assert_eq!(p.vteps[0].evpn()?.vnis[0].local_macs, 1);
    // h2 has VM1 as an evpn entry and nothing for VM3 (its replies to VM3 are flooded).
    let row = p.vteps[1].entry(VNI, &vm1.mac().to_string())?;
    assert_eq!(row.map(|r| r.kind), Some("evpn".to_owned()));
    assert!(p.vteps[1].entry(VNI, &vm3.mac().to_string())?.is_none());
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
    let vm1 = &p.vms[0][0];
    let stats = ping(vm1, p.vms[1][0].ipv4(), 3)?;
    assert_eq!(
        stats.received, 0,
        "ICMP crossed the filter: {}",
        stats.output
    );
    // ARP passed the filter: VM1 was learned and announced, VM2's route installed.
    wait_until("VM1's route at h2", ROUTES_SEEN, || {
        Ok(find_mac(&p.gobgpds[1].rib()?, vm1.mac()).is_some())
    })
    .with_context(|| format!("{:#?}", p.gobgpds[1].rib()))?;
    let drops = p.vteps[0].cli(&["plugin", "show", "no-icmp", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&drops)?;
    assert!(
        report["calls"]["counters"]["dropped"].as_u64().unwrap_or(0) >= 3,
        "{report:#}"
    );
    Ok(())
}
