//! From the configuration to what the engine announces and imports (pure): per EVPN VNI its
//! RD, export and import route targets (FRR's defaults where `[vni.evpn]` leaves them out) and
//! whether it has local ports.
//!
//! Contract: [`plans`] fails only on what the AS decides (two VNIs importing one route target
//! once automatic targets are derived); everything else was checked with the configuration.

use std::net::Ipv4Addr;

use super::engine::VniPlan;
use super::parse::{Import, ImportConflict};
use super::route::{AutoRdError, RouteDistinguisher, RouteTarget, VniExport};
use crate::config::Evpn;
use crate::vtep::VtepSettings;

/// Why the EVPN VNIs cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    AutoRd(#[from] AutoRdError),
    #[error(transparent)]
    Import(#[from] ImportConflict),
}

/// The plan of every VNI of `settings` with `evpn`'s options, routes targets automatic for
/// `asn`, RDs for `router_id`.
pub fn plans(
    settings: &VtepSettings,
    evpn: &Evpn,
    asn: u32,
    router_id: Ipv4Addr,
) -> Result<(Import, Vec<VniPlan>), PlanError> {
    let mut import = Import::default();
    let mut plans = Vec::new();
    for (v, e) in settings.vnis.iter().zip(&evpn.vnis) {
        let auto = RouteTarget::auto(asn, v.vni);
        let targets = |configured: &[crate::config::AdminNumber]| -> Vec<RouteTarget> {
            if configured.is_empty() {
                vec![auto]
            } else {
                configured.iter().copied().map(RouteTarget).collect()
            }
        };
        let import_rts = targets(&e.import_rt);
        for &rt in &import_rts {
            import.insert(rt, v.vni)?;
        }
        let rd = match e.rd {
            Some(rd) => RouteDistinguisher(rd),
            None => RouteDistinguisher::auto(router_id, v.vni)?,
        };
        plans.push(VniPlan {
            export: VniExport {
                vni: v.vni,
                rd,
                route_targets: targets(&e.export_rt),
                vtep: settings.local,
            },
            import: import_rts,
            has_ports: !v.ports.is_empty(),
            max_remote_macs: v.max_entries,
        });
    }
    Ok((import, plans))
}
