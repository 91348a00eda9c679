//! `nstat`: a namespace's SNMP and netstat counters (`/proc/net/snmp`, `netstat`, `snmp6`), read
//! absolute (`nstat -asz`: ignoring and not updating nstat's history file, which would otherwise be
//! shared by every namespace). The checksum-error counters show when a data plane delivered
//! frames whose checksums nobody finished.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::netns::Netns;

/// A snapshot of a namespace's counters, by nstat's names (`UdpInCsumErrors`, `TcpInSegs`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    counters: BTreeMap<String, u64>,
}

impl NetCounters {
    /// Reads all counters inside `ns` (a VM, usually).
    pub fn read(ns: &impl AsRef<Netns>) -> Result<NetCounters> {
        let json = ns.as_ref().exec("nstat", &["-asz", "--json"])?;
        parse_nstat_json(&json).context("parsing `nstat -asz --json`")
    }

    /// One counter; 0 if the kernel does not have it.
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The sum of every `*InCsumErrors` counter (IP, ICMP, ICMPv6, TCP, UDP, UDP-Lite, both
    /// families): packets the stack dropped for a bad checksum.
    pub fn checksum_errors(&self) -> u64 {
        self.counters
            .iter()
            .filter(|(name, _)| name.ends_with("InCsumErrors"))
            .map(|(_, v)| *v)
            .sum()
    }

    /// The nonzero `*CsumErrors` counters by name, for assertion messages.
    pub fn checksum_error_counters(&self) -> BTreeMap<&str, u64> {
        self.counters
            .iter()
            .filter(|(name, v)| name.contains("CsumErrors") && **v > 0)
            .map(|(name, v)| (name.as_str(), *v))
            .collect()
    }

    /// How much each counter grew since `earlier` (counters that shrank or vanished read 0).
    pub fn since(&self, earlier: &NetCounters) -> NetCounters {
        let counters = self
            .counters
            .iter()
            .map(|(name, v)| (name.clone(), v.saturating_sub(earlier.get(name))))
            .collect();
        NetCounters { counters }
    }

    /// All counters.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counters.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[derive(Deserialize)]
struct NstatJson {
    kernel: BTreeMap<String, u64>,
}

fn parse_nstat_json(json: &str) -> Result<NetCounters> {
    let parsed: NstatJson = serde_json::from_str(json)?;
    Ok(NetCounters {
        counters: parsed.kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sums_checksum_errors() {
        let c = parse_nstat_json(
            r#"{"kernel":{"IpExtInCsumErrors":1,"UdpInCsumErrors":2,"Udp6InCsumErrors":3,
                "TcpInCsumErrors":0,"UdpInDatagrams":50}}"#,
        )
        .unwrap();
        assert_eq!(c.checksum_errors(), 6);
        assert_eq!(c.get("UdpInDatagrams"), 50);
        assert_eq!(c.get("NoSuchCounter"), 0);
        assert_eq!(c.checksum_error_counters().len(), 3);

        let later =
            parse_nstat_json(r#"{"kernel":{"UdpInCsumErrors":5,"UdpInDatagrams":40}}"#).unwrap();
        let d = later.since(&c);
        assert_eq!((d.get("UdpInCsumErrors"), d.get("UdpInDatagrams")), (3, 0));
        assert!(parse_nstat_json("{}").is_err());
    }

    #[test]
    fn reads_a_fresh_namespace() {
        let ns = Netns::new("ns").unwrap();
        let c = NetCounters::read(&ns).unwrap();
        assert!(c.iter().any(|(name, _)| name == "UdpInCsumErrors"));
        assert_eq!(c.checksum_errors(), 0);
        ns.exec("ping", &["-c", "1", "-W", "1", "127.0.0.1"])
            .unwrap();
        let later = NetCounters::read(&ns).unwrap();
        assert!(later.since(&c).get("IcmpInEchos") >= 1);
    }
}
