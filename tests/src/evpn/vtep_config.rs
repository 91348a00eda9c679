//! [`EvpnVtepConfig`]: the `vtep` configuration of an EVPN test host (its underlay address on
//! the harness's uplink, MTU 1600, `[evpn]` pointing at its gobgpd, one VNI with the host's VM
//! ports and no group or remotes), with room for what a test adds.

use std::fmt;
use std::net::IpAddr;

use crate::topology::Host;

/// The VNI every EVPN test uses.
pub const EVPN_VNI: u32 = 5001;

/// A configuration being written; [`fmt::Display`] gives the TOML.
#[derive(Debug, Clone)]
#[must_use]
pub struct EvpnVtepConfig {
    local: IpAddr,
    gobgp: String,
    asn: u32,
    ports: Vec<String>,
    evpn_lines: String,
    vni_lines: String,
    tail: String,
}

impl EvpnVtepConfig {
    /// `vtep` at `local` with gobgpd's API at `gobgp`, AS `asn` for automatic route targets,
    /// VNI [`EVPN_VNI`] on `ports`.
    pub fn new(local: IpAddr, gobgp: &str, asn: u32, ports: &[&str]) -> EvpnVtepConfig {
        EvpnVtepConfig {
            local,
            gobgp: gobgp.to_owned(),
            asn,
            ports: ports.iter().map(|p| format!("{p:?}")).collect(),
            evpn_lines: String::new(),
            vni_lines: String::new(),
            tail: String::new(),
        }
    }

    /// A line of the `[evpn]` table (`router_id = "..."`).
    pub fn evpn(mut self, line: &str) -> Self {
        self.evpn_lines.push_str(line);
        self.evpn_lines.push('\n');
        self
    }

    /// A line of the `[[vni]]` table (`aging_secs = 5`, `remotes = [...]`).
    pub fn vni(mut self, line: &str) -> Self {
        self.vni_lines.push_str(line);
        self.vni_lines.push('\n');
        self
    }

    /// Tables after the VNI's (`[[vni.static]]`, `[[plugin]]`).
    pub fn tail(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }
}

impl fmt::Display for EvpnVtepConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
             [evpn]\ngobgp = \"{}\"\nasn = {}\n{}\n\
             [[vni]]\nid = {EVPN_VNI}\nports = [{}]\n{}\n{}",
            self.local,
            Host::UPLINK,
            self.gobgp,
            self.asn,
            self.evpn_lines,
            self.ports.join(", "),
            self.vni_lines,
            self.tail
        )
    }
}
