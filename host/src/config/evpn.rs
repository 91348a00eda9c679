//! `[evpn]` and `[vni.evpn]`: BGP EVPN through a GoBGP daemon (RFC 7432, RFC 8365), checked
//! into plain settings: where gobgpd's API is, the AS and router id that automatic route
//! distinguishers and targets derive from, and per VNI its RD and RTs (FRR's defaults when
//! omitted, so that a plain FRR peer interoperates), data-plane learning from the underlay
//! (off by default), the source check (on) and ARP/ND suppression (on).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::ConfigError;
use super::file::{EvpnSection, VniEvpnSection};
use crate::wire::Vni;

/// Where gobgpd's gRPC API listens unless the file says otherwise (gobgpd's own default).
pub const DEFAULT_GOBGP: &str = "127.0.0.1:50051";

/// The value of a route distinguisher or route target, as written `ADMIN:NUMBER` (RFC 4364
/// §4.2's types 0, 1 and 2; RFC 4360 and RFC 5668 for route targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminNumber {
    /// Type 0: a 2-octet AS and a 4-octet number (`65000:5001`).
    As2 {
        /// The AS.
        asn: u16,
        /// The number the AS assigns.
        number: u32,
    },
    /// Type 1: an IPv4 address and a 2-octet number (`198.18.0.1:3`).
    Ipv4 {
        /// The address.
        addr: Ipv4Addr,
        /// The number.
        number: u16,
    },
    /// Type 2: a 4-octet AS and a 2-octet number (`4200000000:7`).
    As4 {
        /// The AS.
        asn: u32,
        /// The number.
        number: u16,
    },
}

impl FromStr for AdminNumber {
    type Err = String;

    fn from_str(s: &str) -> Result<AdminNumber, String> {
        let bad = || format!("{s:?} is not ADMIN:NUMBER (an AS or IPv4 address, a number)");
        let (admin, number) = s.rsplit_once(':').ok_or_else(bad)?;
        if let Ok(addr) = admin.parse::<Ipv4Addr>() {
            let number = number.parse().map_err(|_| bad())?;
            return Ok(AdminNumber::Ipv4 { addr, number });
        }
        let asn: u32 = admin.parse().map_err(|_| bad())?;
        match u16::try_from(asn) {
            Ok(asn) => Ok(AdminNumber::As2 {
                asn,
                number: number.parse().map_err(|_| bad())?,
            }),
            Err(_) => Ok(AdminNumber::As4 {
                asn,
                number: number.parse().map_err(|_| bad())?,
            }),
        }
    }
}

impl fmt::Display for AdminNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminNumber::As2 { asn, number } => write!(f, "{asn}:{number}"),
            AdminNumber::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            AdminNumber::As4 { asn, number } => write!(f, "{asn}:{number}"),
        }
    }
}

/// `[evpn]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvpnSettings {
    /// gobgpd's gRPC API.
    pub gobgp: SocketAddr,
    /// The AS for automatic route targets (`ASN:VNI`); `None`: gobgpd's own, asked at
    /// connection.
    pub asn: Option<u32>,
    /// The router id for automatic route distinguishers (`ROUTER-ID:VNI`): the underlay's local
    /// address when it is IPv4 and `router_id` is omitted (required with an IPv6 underlay).
    pub router_id: Ipv4Addr,
}

/// `[vni.evpn]`, checked; defaults when the table is omitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniEvpnSettings {
    /// `None`: automatic, `ROUTER-ID:VNI` (see `evpn::RouteDistinguisher::auto`).
    pub rd: Option<AdminNumber>,
    /// Empty: automatic (`ASN:VNI`).
    pub import_rt: Vec<AdminNumber>,
    /// Empty: automatic (`ASN:VNI`).
    pub export_rt: Vec<AdminNumber>,
    /// Learn remote MACs from VXLAN packets too, beside the routes (default false: only the
    /// routes say where a remote MAC is).
    pub learn_from_underlay: bool,
    /// Drop VXLAN packets from VTEPs no route announces (default true, false when the VNI
    /// also has a multicast group).
    pub source_check: bool,
    /// Answer ARP requests and IPv6 neighbour solicitations for addresses a MAC/IP route
    /// resolves, instead of flooding them (default true).
    pub arp_suppress: bool,
}

impl Default for VniEvpnSettings {
    fn default() -> VniEvpnSettings {
        VniEvpnSettings {
            rd: None,
            import_rt: Vec::new(),
            export_rt: Vec::new(),
            learn_from_underlay: false,
            source_check: true,
            arp_suppress: true,
        }
    }
}

/// `[evpn]`: `local` is the underlay's local address.
pub(super) fn build(e: &EvpnSection, local: IpAddr) -> Result<EvpnSettings, ConfigError> {
    let gobgp = e.gobgp.as_deref().unwrap_or(DEFAULT_GOBGP);
    let gobgp: SocketAddr = gobgp.parse().map_err(|_| {
        ConfigError::new(
            "evpn.gobgp",
            format!("{gobgp:?} is not ADDRESS:PORT (gobgpd's --api-hosts)"),
        )
    })?;
    if e.asn == Some(0) {
        return Err(ConfigError::new("evpn.asn", "0 is not an AS number"));
    }
    let router_id = match &e.router_id {
        Some(r) => r.parse::<Ipv4Addr>().map_err(|_| {
            ConfigError::new(
                "evpn.router_id",
                format!("{r:?} is not an IPv4 address (BGP router ids are)"),
            )
        })?,
        None => match local {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => {
                return Err(ConfigError::new(
                    "evpn.router_id",
                    "required with an IPv6 underlay (a BGP router id is an IPv4 address)",
                ));
            }
        },
    };
    Ok(EvpnSettings {
        gobgp,
        asn: e.asn,
        router_id,
    })
}

/// `vni[i].evpn`; `has_group`: the VNI floods to a multicast group too, whose peers no route
/// announces, so its source check is off unless asked for.
pub(super) fn build_vni(
    i: usize,
    vni: Vni,
    v: Option<&VniEvpnSection>,
    has_group: bool,
) -> Result<VniEvpnSettings, ConfigError> {
    let defaults = VniEvpnSettings {
        source_check: !has_group,
        ..VniEvpnSettings::default()
    };
    // The automatic RD is `router-id:VNI`, whose number has 16 bits.
    let needs_rd = || {
        ConfigError::new(
            format!("vni[{i}].evpn.rd"),
            format!("required: VNI {vni} is above 65535, the largest automatic `router-id:VNI`"),
        )
    };
    let Some(v) = v else {
        return if vni.get() > 0xffff {
            Err(needs_rd())
        } else {
            Ok(defaults)
        };
    };
    if v.rd.is_none() && vni.get() > 0xffff {
        return Err(needs_rd());
    }
    let field = |name: &str| format!("vni[{i}].evpn.{name}");
    let parse = |name: &str, s: &str| {
        s.parse::<AdminNumber>()
            .map_err(|problem| ConfigError::new(field(name), problem))
    };
    let list = |name: &str, l: &[String]| -> Result<Vec<AdminNumber>, ConfigError> {
        l.iter().map(|s| parse(name, s)).collect()
    };
    Ok(VniEvpnSettings {
        rd: v.rd.as_deref().map(|s| parse("rd", s)).transpose()?,
        import_rt: list("import_rt", &v.import_rt)?,
        export_rt: list("export_rt", &v.export_rt)?,
        learn_from_underlay: v
            .learn_from_underlay
            .unwrap_or(defaults.learn_from_underlay),
        source_check: v.source_check.unwrap_or(defaults.source_check),
        arp_suppress: v.arp_suppress.unwrap_or(defaults.arp_suppress),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_numbers_parse_by_type_and_print_back() {
        for (s, want) in [
            (
                "65000:5001",
                AdminNumber::As2 {
                    asn: 65000,
                    number: 5001,
                },
            ),
            (
                "198.18.0.1:3",
                AdminNumber::Ipv4 {
                    addr: Ipv4Addr::new(198, 18, 0, 1),
                    number: 3,
                },
            ),
            (
                "4200000000:7",
                AdminNumber::As4 {
                    asn: 4_200_000_000,
                    number: 7,
                },
            ),
        ] {
            assert_eq!(s.parse::<AdminNumber>(), Ok(want), "{s}");
            assert_eq!(want.to_string(), s);
        }
        for bad in [
            "",
            "65000",
            "x:1",
            "65000:x",
            "198.18.0.1:70000",
            "4200000000:70000",
            ":1",
        ] {
            assert!(bad.parse::<AdminNumber>().is_err(), "{bad}");
        }
    }
}
