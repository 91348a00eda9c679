//! Scale: gobgpd's RIB loaded with N MAC routes of a remote VTEP (over its API, with
//! wasm-vtep's own client), then wasm-vtep started against it: the time until every route is
//! an installed entry (`vtep evpn show`), and the daemon's RSS then and with an empty RIB.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasm_vtep::config::AdminNumber;
use wasm_vtep::evpn::{Gobgp, LocalRoute, MacMobility, RouteDistinguisher, RouteTarget, VniExport};
use wasm_vtep::wire::{MacAddr, Vni};
use wasm_vtep_tests::*;

use crate::converge::vtep_config;

const VNI: u32 = 5001;
const ASN: u16 = 65000;
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
    let gobgpd = Gobgpd::builder(u32::from(ASN)).start(&h1)?;
    let config = vtep_config(a1, &gobgpd.api_address(), &["vm1"]);

    let mut empty = VtepDaemon::start(&h1, &config)?;
    wait_until("the session", Duration::from_secs(10), || {
        Ok(empty.evpn()?.session == "connected")
    })?;
    let rss_empty_kib = rss_kib(empty.process().pid())?;
    empty.stop()?;

    load(&h1, &gobgpd, macs)?;
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
    let rss = rss_kib(daemon.process().pid())?;
    Ok(Scale {
        macs,
        install: installed,
        rss_kib: rss,
        rss_empty_kib,
    })
}

/// Adds `macs` type 2 routes of [`REMOTE`] to gobgpd's RIB, over its API from inside h1.
fn load(h1: &Host, gobgpd: &Gobgpd, macs: u32) -> Result<()> {
    let _inside = h1.netns().enter()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let vni = Vni::from_u24(VNI);
    let export = VniExport {
        vni,
        rd: RouteDistinguisher(AdminNumber::Ipv4 {
            addr: REMOTE,
            number: 5001,
        }),
        route_targets: vec![RouteTarget::auto(u32::from(ASN), vni)],
        vtep: IpAddr::V4(REMOTE),
    };
    let started = Instant::now();
    runtime.block_on(async {
        let address = gobgpd.api_address().parse()?;
        let mut api = Gobgp::connect(address).await?;
        for i in 0..macs {
            let b = i.to_be_bytes();
            let route = LocalRoute::MacIp {
                mac: MacAddr([0x02, 0x5c, b[0], b[1], b[2], b[3]]),
                ip: None,
                mobility: MacMobility::default(),
            };
            api.add(&export, &route).await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "loaded {macs} routes into gobgpd in {:.2?}",
        started.elapsed()
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .context("no VmRSS")
}
