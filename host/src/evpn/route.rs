//! EVPN routes as wasm-vtep sees them (pure: no gRPC, no I/O): what we advertise for a VNI, what
//! a remote VTEP's route means, and the FRR-compatible defaults (RD, RT) that let a plain FRR
//! peer interoperate with no per-VNI configuration.
//!
//! Contract: every value here is valid by construction (a [`Vni`] is 24 bits, a MAC is six
//! octets); [`super::path`] turns these into GoBGP `Path`s and [`super::parse`] back.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr};

use wasm_vtep_plugin_sdk::MacAddr;

use crate::config::AdminNumber;
use crate::wire::Vni;

/// A route distinguisher (RFC 4364 §4.2): the value the configuration writes as
/// `ADMIN:NUMBER` ([`AdminNumber`], one type for both), as a route carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteDistinguisher(pub AdminNumber);

impl RouteDistinguisher {
    /// Our automatic RD for `vni`: `router-id:VNI` (type 1).
    ///
    /// FRR derives `router-id:N` with N an index it hands out per VNI in the order the VNIs
    /// appear, so its RDs can change when it restarts or the VNIs are created in another order.
    /// We use the VNI itself: unique per VNI on this VTEP (which is all an RD must be), stable
    /// across restarts and readable. A type 1 RD has 16 bits for N, so a VNI above 65535 has no
    /// automatic RD and must be given one in its configuration.
    pub fn auto(router_id: Ipv4Addr, vni: Vni) -> Result<Self, AutoRdError> {
        let number = u16::try_from(vni.get()).map_err(|_| AutoRdError(vni))?;
        Ok(RouteDistinguisher(AdminNumber::Ipv4 {
            addr: router_id,
            number,
        }))
    }
}

/// Why a VNI has no automatic route distinguisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "VNI {0} is above 65535, the largest number of an automatic `router-id:VNI` route \
     distinguisher: configure its rd"
)]
pub struct AutoRdError(pub Vni);

impl fmt::Display for RouteDistinguisher {
    /// As GoBGP and FRR print it: `admin:assigned`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A route target extended community (RFC 4360 §4, sub-type 0x02): the same `ADMIN:NUMBER`
/// value as the configuration writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteTarget(pub AdminNumber);

impl RouteTarget {
    /// FRR's automatic route target for `vni`: `ASN:VNI` as a 2-octet-AS community, with only
    /// the low 16 bits of a 4-octet ASN (what FRR's `form_auto_rt` encodes), so both sides
    /// derive the same community for the same ASN.
    pub fn auto(asn: u32, vni: Vni) -> Self {
        // Truncation is FRR's rule for 4-octet ASNs, not an accident.
        let asn = (asn & 0xffff) as u16;
        RouteTarget(AdminNumber::As2 {
            asn,
            number: vni.get(),
        })
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The MAC mobility extended community (RFC 7432 §7.7): a move's sequence number, and whether
/// the MAC is static (sticky: it must not move).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacMobility {
    pub seq: u32,
    pub sticky: bool,
}

impl MacMobility {
    /// A MAC seen for the first time and not static: the community is left out (RFC 7432 §15:
    /// a route without it has sequence number 0), as FRR does.
    pub fn is_default(self) -> bool {
        self == MacMobility::default()
    }
}

/// What we advertise for one VNI: its RD, the route targets it exports, and our VTEP address
/// (the type 3's tunnel and every route's next hop). The label of every route is the VNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniExport {
    pub vni: Vni,
    pub rd: RouteDistinguisher,
    pub route_targets: Vec<RouteTarget>,
    pub vtep: IpAddr,
}

impl VniExport {
    /// FRR's defaults for `vni`: RD `router-id:VNI` (see [`RouteDistinguisher::auto`]), RT
    /// `ASN:VNI`.
    pub fn auto(
        vni: Vni,
        router_id: Ipv4Addr,
        asn: u32,
        vtep: IpAddr,
    ) -> Result<Self, AutoRdError> {
        Ok(VniExport {
            vni,
            rd: RouteDistinguisher::auto(router_id, vni)?,
            route_targets: vec![RouteTarget::auto(asn, vni)],
            vtep,
        })
    }
}

/// One of our routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRoute {
    /// Type 2 (RFC 7432 §7.2): a local MAC, with its IP when known.
    MacIp {
        mac: MacAddr,
        ip: Option<IpAddr>,
        mobility: MacMobility,
    },
    /// Type 3 (RFC 8365 §5.1.3): we take part in the VNI's BUM traffic, ingress replication.
    InclusiveMulticast,
}

/// A remote VTEP's route, read back from GoBGP's RIB and imported into one of our VNIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRoute {
    /// Type 2: `mac` (and `ip`) on `vni` is behind `vtep`.
    Mac {
        vni: Vni,
        mac: MacAddr,
        ip: Option<IpAddr>,
        vtep: IpAddr,
        mobility: MacMobility,
    },
    /// Type 3: `vtep` takes part in `vni` (BUM traffic goes to it, head-end replicated).
    Vtep { vni: Vni, vtep: IpAddr },
}

impl RemoteRoute {
    /// The VTEP that advertised it: a route whose VTEP is ours is our own, come back.
    pub fn vtep(&self) -> IpAddr {
        match *self {
            RemoteRoute::Mac { vtep, .. } | RemoteRoute::Vtep { vtep, .. } => vtep,
        }
    }

    /// The VNI it was imported into.
    pub fn vni(&self) -> Vni {
        match *self {
            RemoteRoute::Mac { vni, .. } | RemoteRoute::Vtep { vni, .. } => vni,
        }
    }
}

/// A change of GoBGP's best paths, as the forwarding table needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteEvent {
    Advertised(RemoteRoute),
    Withdrawn(RemoteRoute),
}

impl RemoteEvent {
    pub fn route(&self) -> &RemoteRoute {
        match self {
            RemoteEvent::Advertised(route) | RemoteEvent::Withdrawn(route) => route,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rd_is_router_id_colon_vni_up_to_16_bits() {
        let id = Ipv4Addr::new(198, 18, 0, 1);
        let rd = RouteDistinguisher::auto(id, Vni::from_u24(5001)).expect("small VNI");
        assert_eq!(rd.to_string(), "198.18.0.1:5001");
        assert!(RouteDistinguisher::auto(id, Vni::from_u24(65535)).is_ok());
        let big = Vni::from_u24(65536);
        assert_eq!(RouteDistinguisher::auto(id, big), Err(AutoRdError(big)));
    }

    #[test]
    fn auto_rt_is_asn_colon_vni_with_frr_truncation_of_4_octet_asns() {
        let vni = Vni::from_u24(5001);
        assert_eq!(RouteTarget::auto(65000, vni).to_string(), "65000:5001");
        // 4200000001 = 0xfa56_ea01: FRR keeps 0xea01 = 59905.
        assert_eq!(
            RouteTarget::auto(4_200_000_001, vni).to_string(),
            "59905:5001"
        );
    }
}
