//! The ACL's rules: what the configuration says (with its several spellings of a port, a
//! protocol or an ethertype), checked once at `init` into compact [`Rule`]s that match a
//! frame's metadata with a few integer compares.

use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use wasm_vtep_plugin_sdk::config::MAX_VNI;
use wasm_vtep_plugin_sdk::{Arp, Direction, FrameMeta, MacAddr, Value};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the frame through.
    Allow,
    /// Drop it.
    Deny,
}

/// A rule as written in the configuration; every field but `action` is a condition, and a
/// rule matches a frame when all its conditions hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) action: Option<Action>,
    vnis: Option<Vec<u32>>,
    direction: Option<RawDirection>,
    src_mac: Option<MacAddr>,
    dst_mac: Option<MacAddr>,
    ethertype: Option<Value>,
    src_ip: Option<String>,
    dst_ip: Option<String>,
    ip_proto: Option<Value>,
    src_port: Option<Value>,
    dst_port: Option<Value>,
    dscp: Option<u8>,
    /// Matches a connection's opening segment (SYN without ACK), or (false) every other TCP
    /// segment.
    tcp_syn: Option<bool>,
    icmp_type: Option<u8>,
    arp_op: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawDirection {
    FromPort,
    FromUnderlay,
}

/// An IPv4 or IPv6 prefix, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Address and mask as integers.
    V4 { addr: u32, mask: u32 },
    /// Address and mask as integers.
    V6 { addr: u128, mask: u128 },
}

impl Prefix {
    /// `ip` is in the prefix (an address of the other family never is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Prefix::V4 { addr, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == addr,
            (Prefix::V6 { addr, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == addr,
            _ => false,
        }
    }

    const fn is_v4(&self) -> bool {
        matches!(self, Prefix::V4 { .. })
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or prefix (e.g. 192.0.2.0/24)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => len
                .parse::<u32>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0-{max}"))?,
        };
        let prefix = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Prefix::V4 {
                    addr: u32::from(a),
                    mask,
                }
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                Prefix::V6 {
                    addr: u128::from(a),
                    mask,
                }
            }
        };
        let host_bits = match prefix {
            Prefix::V4 { addr, mask } => u128::from(addr & !mask),
            Prefix::V6 { addr, mask } => addr & !mask,
        };
        if host_bits != 0 {
            return Err(format!(
                "`{s}` has host bits set (a prefix is written with them clear, e.g. {})",
                prefix.network()
            ));
        }
        Ok(prefix)
    }
}

impl Prefix {
    /// The prefix with its host bits cleared, as text: for error messages.
    fn network(&self) -> String {
        match *self {
            Prefix::V4 { addr, mask } => {
                let len = mask.count_ones();
                format!("{}/{len}", std::net::Ipv4Addr::from(addr & mask))
            }
            Prefix::V6 { addr, mask } => {
                let len = mask.count_ones();
                format!("{}/{len}", std::net::Ipv6Addr::from(addr & mask))
            }
        }
    }
}

/// One rule, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What a match does.
    pub action: Action,
    vnis: Option<Vec<u32>>,
    direction: Option<Direction>,
    src_mac: Option<MacAddr>,
    dst_mac: Option<MacAddr>,
    ethertype: Option<u16>,
    src_ip: Option<Prefix>,
    dst_ip: Option<Prefix>,
    ip_proto: Option<u8>,
    src_port: Option<(u16, u16)>,
    dst_port: Option<(u16, u16)>,
    dscp: Option<u8>,
    tcp_syn: Option<bool>,
    icmp_type: Option<u8>,
    arp_op: Option<u16>,
}

impl Rule {
    /// Checks `raw`, whose action is `action`; `path` names it in errors
    /// (`config.rules[3]`).
    pub(crate) fn from_raw(raw: RawRule, action: Action, path: &str) -> Result<Rule, String> {
        let field = |name: &str| format!("{path}.{name}");
        if let Some(bad) = raw.vnis.iter().flatten().find(|&&v| v > MAX_VNI) {
            return Err(format!(
                "{}: {bad} is not a VNI (VNIs are 24 bits: 0-{MAX_VNI})",
                field("vnis")
            ));
        }
        let prefix = |name: &str, s: &Option<String>| -> Result<Option<Prefix>, String> {
            s.as_deref()
                .map(|s| s.parse().map_err(|e| format!("{}: {e}", field(name))))
                .transpose()
        };
        let rule = Rule {
            action,
            vnis: raw.vnis,
            direction: raw.direction.map(|d| match d {
                RawDirection::FromPort => Direction::FromPort,
                RawDirection::FromUnderlay => Direction::FromUnderlay,
            }),
            src_mac: raw.src_mac,
            dst_mac: raw.dst_mac,
            ethertype: raw
                .ethertype
                .as_ref()
                .map(|v| parse_ethertype(v).map_err(|e| format!("{}: {e}", field("ethertype"))))
                .transpose()?,
            src_ip: prefix("src_ip", &raw.src_ip)?,
            dst_ip: prefix("dst_ip", &raw.dst_ip)?,
            ip_proto: raw
                .ip_proto
                .as_ref()
                .map(|v| parse_ip_proto(v).map_err(|e| format!("{}: {e}", field("ip_proto"))))
                .transpose()?,
            src_port: raw
                .src_port
                .as_ref()
                .map(|v| parse_ports(v).map_err(|e| format!("{}: {e}", field("src_port"))))
                .transpose()?,
            dst_port: raw
                .dst_port
                .as_ref()
                .map(|v| parse_ports(v).map_err(|e| format!("{}: {e}", field("dst_port"))))
                .transpose()?,
            dscp: match raw.dscp {
                Some(d) if d > MAX_DSCP => {
                    return Err(format!("{}: {d} is not a DSCP (0-63)", field("dscp")));
                }
                d => d,
            },
            tcp_syn: raw.tcp_syn,
            icmp_type: raw.icmp_type,
            arp_op: raw
                .arp_op
                .as_ref()
                .map(|v| parse_arp_op(v).map_err(|e| format!("{}: {e}", field("arp_op"))))
                .transpose()?,
        };
        if let (Some(s), Some(d)) = (rule.src_ip, rule.dst_ip)
            && s.is_v4() != d.is_v4()
        {
            return Err(format!(
                "{path}: src_ip and dst_ip are of different IP versions: the rule could never match"
            ));
        }
        Ok(rule)
    }

    /// Every condition of the rule holds for `f`. A condition on a field the frame does not
    /// have (an IP prefix for ARP, a port for ICMP) does not hold.
    pub fn matches(&self, f: &FrameMeta) -> bool {
        fn opt<T: Copy>(want: Option<T>, test: impl FnOnce(T) -> bool) -> bool {
            want.is_none_or(test)
        }
        fn in_range(have: Option<u16>, (lo, hi): (u16, u16)) -> bool {
            have.is_some_and(|p| lo <= p && p <= hi)
        }
        self.vnis.as_ref().is_none_or(|v| v.contains(&f.vni))
            && opt(self.direction, |d| d == f.direction)
            && opt(self.src_mac, |m| m == f.src_mac)
            && opt(self.dst_mac, |m| m == f.dst_mac)
            && opt(self.ethertype, |e| e == f.ethertype)
            && opt(self.ip_proto, |p| f.ip_proto == Some(p))
            && opt(self.src_ip, |p| f.src_ip.is_some_and(|ip| p.contains(ip)))
            && opt(self.dst_ip, |p| f.dst_ip.is_some_and(|ip| p.contains(ip)))
            && opt(self.src_port, |r| in_range(f.src_port, r))
            && opt(self.dst_port, |r| in_range(f.dst_port, r))
            && opt(self.dscp, |d| f.dscp == Some(d))
            && opt(self.tcp_syn, |syn| {
                f.tcp_flags.is_some_and(|flags| flags.is_syn_only() == syn)
            })
            && opt(self.icmp_type, |t| f.icmp.is_some_and(|i| i.kind == t))
            && opt(self.arp_op, |op| f.arp.is_some_and(|a| a.opcode == op))
    }
}

/// A number, or `"ipv4"`, `"ipv6"`, `"arp"`, `"rarp"`, `"vlan"` or a hex string (`"0x88cc"`).
fn parse_ethertype(v: &Value) -> Result<u16, String> {
    const NAMES: [(&str, u16); 5] = [
        ("ipv4", 0x0800),
        ("arp", 0x0806),
        ("rarp", 0x8035),
        ("vlan", 0x8100),
        ("ipv6", 0x86dd),
    ];
    let bad = || {
        format!(
            "expected an ethertype (a number such as 0x0800, or one of ipv4, ipv6, arp, rarp, vlan), found {v}"
        )
    };
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(bad),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            if let Some(hex) = lower.strip_prefix("0x") {
                return u16::from_str_radix(hex, 16).map_err(|_| bad());
            }
            NAMES
                .iter()
                .find(|(name, _)| *name == lower)
                .map(|&(_, e)| e)
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// The largest DSCP: 6 bits.
const MAX_DSCP: u8 = 63;

/// A number, or `"request"` (1), `"reply"` (2).
fn parse_arp_op(v: &Value) -> Result<u16, String> {
    let bad = || format!("expected an ARP opcode (a number, or request or reply), found {v}");
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(bad),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "request" => Ok(Arp::REQUEST),
            "reply" => Ok(Arp::REPLY),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A number, or `"icmp"`, `"igmp"`, `"tcp"`, `"udp"`, `"gre"`, `"icmpv6"`, `"sctp"`.
fn parse_ip_proto(v: &Value) -> Result<u8, String> {
    const NAMES: [(&str, u8); 7] = [
        ("icmp", 1),
        ("igmp", 2),
        ("tcp", 6),
        ("udp", 17),
        ("gre", 47),
        ("icmpv6", 58),
        ("sctp", 132),
    ];
    let bad = || {
        format!(
            "expected an IP protocol (0-255, or one of icmp, igmp, tcp, udp, gre, icmpv6, sctp), found {v}"
        )
    };
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(bad),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            NAMES
                .iter()
                .find(|(name, _)| *name == lower)
                .map(|&(_, p)| p)
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// A port (`443`), an inclusive range as a pair (`[1024, 65535]`) or as text (`"1024-65535"`).
fn parse_ports(v: &Value) -> Result<(u16, u16), String> {
    let bad =
        || format!("expected a port (0-65535), a range [low, high] or \"low-high\", found {v}");
    let port = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    let (lo, hi) = match v {
        Value::Number(_) => {
            let p = port(v).ok_or_else(bad)?;
            (p, p)
        }
        Value::Array(pair) => match pair.as_slice() {
            [lo, hi] => (port(lo).ok_or_else(bad)?, port(hi).ok_or_else(bad)?),
            _ => return Err(bad()),
        },
        Value::String(s) => {
            let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
            let parse = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
            (parse(lo)?, parse(hi)?)
        }
        _ => return Err(bad()),
    };
    if lo > hi {
        return Err(format!("the range {lo}-{hi} is empty (low > high)"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefixes_parse_and_match() {
        let p: Prefix = "192.0.2.0/24".parse().unwrap();
        assert!(p.contains("192.0.2.77".parse().unwrap()));
        assert!(!p.contains("192.0.3.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let p: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(p.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!p.contains("2001:db9::1".parse().unwrap()));
        let host: Prefix = "198.51.100.7".parse().unwrap();
        assert!(host.contains("198.51.100.7".parse().unwrap()));
        assert!(!host.contains("198.51.100.8".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let all6: Prefix = "::/0".parse().unwrap();
        assert!(all6.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn bad_prefixes_say_why() {
        let err = "192.0.2.1/24".parse::<Prefix>().unwrap_err();
        assert!(
            err.contains("host bits set") && err.contains("192.0.2.0/24"),
            "{err}"
        );
        let err = "2001:db8::1/32".parse::<Prefix>().unwrap_err();
        assert!(err.contains("2001:db8::/32"), "{err}");
        let err = "192.0.2.0/33".parse::<Prefix>().unwrap_err();
        assert!(err.contains("0-32"), "{err}");
        let err = "192.0.2/24".parse::<Prefix>().unwrap_err();
        assert!(err.contains("not an IP address"), "{err}");
        assert!("192.0.2.0/".parse::<Prefix>().is_err());
    }

    #[test]
    fn ports_in_three_spellings() {
        assert_eq!(parse_ports(&json!(443)), Ok((443, 443)));
        assert_eq!(parse_ports(&json!([1024, 65535])), Ok((1024, 65535)));
        assert_eq!(parse_ports(&json!("1024 - 2048")), Ok((1024, 2048)));
        for bad in [
            json!(70000),
            json!(-1),
            json!([1]),
            json!("80"),
            json!("a-b"),
            json!(true),
        ] {
            assert!(
                parse_ports(&bad).unwrap_err().contains("expected a port"),
                "{bad}"
            );
        }
        assert!(parse_ports(&json!([9, 1])).unwrap_err().contains("empty"));
    }

    #[test]
    fn protocols_and_ethertypes_by_number_or_name() {
        assert_eq!(parse_ip_proto(&json!(1)), Ok(1));
        assert_eq!(parse_ip_proto(&json!("TCP")), Ok(6));
        assert_eq!(parse_ip_proto(&json!("icmpv6")), Ok(58));
        assert!(parse_ip_proto(&json!(256)).is_err());
        assert!(
            parse_ip_proto(&json!("ospf"))
                .unwrap_err()
                .contains("one of icmp")
        );
        assert_eq!(parse_ethertype(&json!(0x0806)), Ok(0x0806));
        assert_eq!(parse_ethertype(&json!("ipv6")), Ok(0x86dd));
        assert_eq!(parse_ethertype(&json!("0x88CC")), Ok(0x88cc));
        assert!(parse_ethertype(&json!(65536)).is_err());
        assert!(parse_ethertype(&json!("0xzz")).is_err());
    }

    fn rule(raw: serde_json::Value) -> Result<Rule, String> {
        let raw: RawRule = serde_json::from_value(raw).map_err(|e| e.to_string())?;
        Rule::from_raw(raw, Action::Deny, "config.deny[0]")
    }

    #[test]
    fn interface_0_2_fields_match() {
        use std::net::Ipv4Addr;
        use wasm_vtep_plugin_sdk::{Icmp, TcpFlags};
        let base = FrameMeta::ethernet(1, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST, 0x0800);
        let syn = FrameMeta {
            tcp_flags: Some(TcpFlags::SYN),
            dscp: Some(46),
            ..base
        };
        let ack = FrameMeta {
            tcp_flags: Some(TcpFlags::ACK),
            ..base
        };
        let opening = rule(json!({"tcp_syn": true, "dscp": 46})).unwrap();
        assert!(opening.matches(&syn) && !opening.matches(&ack) && !opening.matches(&base));
        assert!(rule(json!({"tcp_syn": false})).unwrap().matches(&ack));
        let echo = FrameMeta {
            icmp: Some(Icmp {
                kind: 8,
                code: 0,
                nd_target: None,
            }),
            ..base
        };
        assert!(rule(json!({"icmp_type": 8})).unwrap().matches(&echo));
        assert!(!rule(json!({"icmp_type": 0})).unwrap().matches(&echo));
        let reply = FrameMeta {
            arp: Some(Arp {
                opcode: Arp::REPLY,
                sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                sender_ip: Ipv4Addr::new(192, 0, 2, 1),
                target_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                target_ip: Ipv4Addr::new(192, 0, 2, 2),
            }),
            ..base
        };
        assert!(rule(json!({"arp_op": "reply"})).unwrap().matches(&reply));
        assert!(!rule(json!({"arp_op": 1})).unwrap().matches(&reply));
        let err = rule(json!({"arp_op": "gratuitous"})).unwrap_err();
        assert!(
            err.contains("config.deny[0].arp_op") && err.contains("ARP opcode"),
            "{err}"
        );
        let err = rule(json!({"dscp": 64})).unwrap_err();
        assert!(
            err.contains("config.deny[0].dscp: 64 is not a DSCP"),
            "{err}"
        );
    }
}
