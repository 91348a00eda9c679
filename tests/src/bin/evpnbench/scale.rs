//! Scale: gobgpd's RIB loaded with N MAC routes of a remote VTEP (over its API, with
//! wasm-vtep's own client), then wasm-vtep started against it: the time until every route is
//! an installed entry (`vtep evpn show`), and the daemon's RSS then and with an empty RIB.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasm_vtep_tests::evpn::load_mac_routes;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
/// The remote VTEP the loaded routes name (on the underlay's prefix, not a host's).
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);

pub(crate) struct Scale {
    pub(crate) macs: u32,
    pub(crate) install: Duration,
    pub(crate) rss_kib: u64,
    pub(crate) rss_empty_kib: u64,
}

pub(crate) fn run(macs: u32) -> Result<Scale> {
    let underlay = Switch::new(1600)?;
    let h1 = Host::numbered(&underlay, 1)?;
    let a1 = IpAddr::V4(h1.ipv4());
    let _vm1 = Vm::numbered(&h1, 1)?;
    let gobgpd = Gobgpd::builder(ASN).start(&h1)?;
    // Room for every MAC: a VNI holds at most `max_entries` remote MACs (65,536 by default).
    let config = EvpnVtepConfig::new(a1, &gobgpd.api_address(), ASN, &["vm1"])
        .vni(&format!("max_entries = {}", u64::from(macs) * 2))
        .to_string();

    let mut empty = VtepDaemon::start(&h1, &config)?;
    wait_until("the session", Duration::from_secs(10), || {
        Ok(empty.evpn()?.session == "connected")
    })?;
    let rss_empty_kib = rss_kib(empty.process().pid())?;
    empty.stop()?;

    let loading = Instant::now();
    load_mac_routes(&h1, &gobgpd, VNI, REMOTE, 0..macs)?;
    println!(
        "loaded {macs} routes into gobgpd in {:.2?}",
        loading.elapsed()
    );
    let start = Instant::now();
    let mut daemon = VtepDaemon::start(&h1, &config)?;
    let installed = loop {
        let show = daemon.evpn()?;
        if show
            .vnis
            .first()
            .is_some_and(|v| v.remote_macs == macs as usize)
        {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("not all routes installed: {show:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The whole RIB came in the watch's first message: the session must stay up on it.
    std::thread::sleep(Duration::from_secs(3));
    let show = daemon.evpn()?;
    if show.session != "connected"
        || show.vnis.first().map(|v| v.remote_macs) != Some(macs as usize)
    {
        bail!("the session did not hold with {macs} routes: {show:#?}");
    }
    let rss = rss_kib(daemon.process().pid())?;
    Ok(Scale {
        macs,
        install: installed,
        rss_kib: rss,
        rss_empty_kib,
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .context("no VmRSS")
}
