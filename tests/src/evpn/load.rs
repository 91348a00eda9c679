//! Fills a gobgpd's RIB with many type 2 routes of one remote VTEP, over its gRPC API with
//! wasm-vtep's own client (the `gobgp` CLI would start one process per route): what the scale
//! benchmark and the large-RIB test read back through wasm-vtep.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use anyhow::Result;
use wasm_vtep::config::AdminNumber;
use wasm_vtep::evpn::{Gobgp, LocalRoute, MacMobility, RouteDistinguisher, RouteTarget, VniExport};
use wasm_vtep::wire::{MacAddr, Vni};

use super::Gobgpd;
use crate::topology::Host;

/// Calls in flight at once (one HTTP/2 connection multiplexes them).
const IN_FLIGHT: u32 = 16;

/// Adds MAC-only routes number `routes` on `vni` (RT `asn:vni`, RD `vtep:vni` truncated to
/// 16 bits) behind `vtep` to `gobgpd`'s RIB, from inside `host` (where its API listens). MAC
/// number i is `02:5c:` and i's four octets.
pub fn load_mac_routes(
    host: &Host,
    gobgpd: &Gobgpd,
    vni: u32,
    vtep: Ipv4Addr,
    routes: Range<u32>,
) -> Result<()> {
    let _inside = host.netns().enter()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let vni = Vni::new(vni)?;
    let export = VniExport {
        vni,
        rd: RouteDistinguisher(AdminNumber::Ipv4 {
            addr: vtep,
            number: u16::try_from(vni.get() & 0xffff)?,
        }),
        route_targets: vec![RouteTarget::auto(gobgpd.asn(), vni)],
        vtep: IpAddr::V4(vtep),
    };
    runtime.block_on(async {
        let api = Gobgp::connect(gobgpd.api_address().parse()?).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..IN_FLIGHT {
            let (mut api, export, routes) = (api.clone(), export.clone(), routes.clone());
            tasks.spawn(async move {
                let routes = (routes.start + lane..routes.end).step_by(IN_FLIGHT as usize);
                for i in routes {
                    let b = i.to_be_bytes();
                    let route = LocalRoute::MacIp {
                        mac: MacAddr([0x02, 0x5c, b[0], b[1], b[2], b[3]]),
                        ip: None,
                        mobility: MacMobility::default(),
                    };
                    api.add(&export, &route).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
}
