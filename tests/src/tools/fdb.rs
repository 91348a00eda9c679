//! `bridge fdb show`, parsed: what an operator sees of a kernel bridge's or vxlan device's
//! forwarding table (read through iproute2's JSON output, `bridge -j`).

use std::net::IpAddr;

use anyhow::{Context, Result};
use serde::Deserialize;
use wasm_vtep::wire::MacAddr;

use crate::netns::{Netns, exec_in};

/// One line of `bridge fdb show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// The MAC address; 00:00:00:00:00:00 for a head-end replication entry.
    pub mac: MacAddr,
    /// The remote VTEP (`dst`) for vxlan entries.
    pub dst: Option<IpAddr>,
    /// The device, when the listing was not already for one device.
    pub dev: Option<String>,
    /// The bridge the entry belongs to (`master br-5001`), for bridge-side entries.
    pub master: Option<String>,
    /// The VLAN, if any.
    pub vlan: Option<u16>,
    /// The VNI, when it differs from the device's (collect-metadata devices).
    pub vni: Option<u32>,
    /// `permanent`, `static`, `stale`, or empty for a dynamically learned entry.
    pub state: String,
    /// Flags such as `self` (the device's own table), `master`, `extern_learn`, `offload`.
    pub flags: Vec<String>,
}

impl FdbEntry {
    /// A configured entry that never ages (`permanent` or `static`).
    pub fn is_static(&self) -> bool {
        matches!(self.state.as_str(), "permanent" | "static")
    }

    /// Whether `flag` (e.g. `"self"`) is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// `bridge fdb show dev DEV` inside `ns` (a host, usually), parsed.
pub fn bridge_fdb_show(ns: &impl AsRef<Netns>, dev: &str) -> Result<Vec<FdbEntry>> {
    fdb_show_in(ns.as_ref().name(), dev)
}

pub(crate) fn fdb_show_in(ns: &str, dev: &str) -> Result<Vec<FdbEntry>> {
    let json = exec_in(ns, "bridge", &["-j", "fdb", "show", "dev", dev])?;
    parse_fdb_json(&json).with_context(|| format!("parsing `bridge -j fdb show dev {dev}`"))
}

#[derive(Deserialize)]
struct RawEntry {
    mac: String,
    dst: Option<String>,
    ifname: Option<String>,
    master: Option<String>,
    vlan: Option<u16>,
    vni: Option<u32>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    flags: Vec<String>,
}

fn parse_fdb_json(json: &str) -> Result<Vec<FdbEntry>> {
    // An empty table prints nothing at all with some iproute2 versions.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawEntry> = serde_json::from_str(json)?;
    raw.into_iter()
        .map(|r| {
            Ok(FdbEntry {
                mac: r
                    .mac
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{e}: {:?}", r.mac))?,
                dst: r
                    .dst
                    .map(|d| d.parse().with_context(|| format!("dst {d:?}")))
                    .transpose()?,
                dev: r.ifname,
                master: r.master,
                vlan: r.vlan,
                vni: r.vni,
                state: r.state,
                flags: r.flags,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iproute2_json() {
        // Captured from `bridge -j fdb show dev vxlan5001` (iproute2 6.1).
        let json = r#"[{"mac":"5a:1f:62:17:bd:0f","flags":[],"master":"br-5001","state":"permanent"},
            {"mac":"02:00:00:00:00:01","dst":"198.18.0.1","flags":["self"],"state":""},
            {"mac":"00:00:00:00:00:00","dst":"2001:db8::2","flags":["self"],"state":"permanent"}]"#;
        let e = parse_fdb_json(json).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].master.as_deref(), Some("br-5001"));
        assert!(e[0].is_static() && e[0].dst.is_none());
        assert_eq!(e[1].mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e[1].dst, Some("198.18.0.1".parse().unwrap()));
        assert!(e[1].has_flag("self") && !e[1].is_static());
        assert_eq!(e[2].mac, MacAddr::ZERO);
        assert_eq!(e[2].dst, Some("2001:db8::2".parse().unwrap()));
        assert!(parse_fdb_json("").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "[",
            "{}",
            r#"[{"mac":"zz"}]"#,
            r#"[{"mac":"02:00:00:00:00:01","dst":"x"}]"#,
        ] {
            assert!(parse_fdb_json(bad).is_err(), "{bad}");
        }
    }
}
