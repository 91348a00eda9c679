//! The file's shape, as serde reads it. Strings stay strings here so that the checks in the
//! parent module can name the field of a bad value.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    pub(super) underlay: UnderlaySection,
    pub(super) control: Option<ControlSection>,
    pub(super) datapath: Option<DatapathSection>,
    #[serde(default)]
    pub(super) vni: Vec<VniSection>,
    #[serde(default)]
    pub(super) plugin: Vec<PluginSection>,
    pub(super) evpn: Option<EvpnSection>,
    pub(super) metrics: Option<MetricsSection>,
}

/// `[underlay]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlaySection {
    /// This VTEP's address, the outer source.
    pub local: String,
    /// UDP port, default 4789.
    pub port: Option<u16>,
    /// Where multicast groups are joined and sent.
    pub interface: Option<String>,
    /// Underlay MTU, default 1500.
    pub mtu: Option<u16>,
    /// Outer TTL, default 64.
    pub ttl: Option<u8>,
    /// Outer UDP source port range, default `[49152, 65535]`.
    pub source_ports: Option<[u16; 2]>,
    /// How many ports of that range carry flows (one socket each), default 64.
    pub source_port_count: Option<usize>,
    /// Send a VM's TCP super-frames encapsulated once, through a tunnel-GSO tap, when the
    /// kernel can (default false: the host's FORWARD chain must let them through).
    pub tunnel_gso: Option<bool>,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// The control socket's path.
    pub socket: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    /// Where the Prometheus endpoint listens, `ADDRESS:PORT` (no section: no endpoint).
    pub(super) listen: String,
}

/// `[datapath]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatapathSection {
    /// Data path threads, default: the CPUs the daemon may run on.
    pub workers: Option<usize>,
    /// How long a worker keeps polling after traffic before it sleeps, in microseconds,
    /// default 50.
    pub busy_poll_us: Option<u64>,
    /// "symmetric" (default: both directions of a flow on one worker) or "kernel".
    pub steering: Option<String>,
}

/// `[[vni]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VniSection {
    /// 1..=16777215.
    pub id: u32,
    /// VM-facing interfaces.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Multicast group for BUM traffic.
    pub group: Option<String>,
    /// Head-end replication list.
    #[serde(default)]
    pub remotes: Vec<String>,
    /// Aging time in seconds, default 300.
    pub aging_secs: Option<u64>,
    /// Learn from traffic, default true.
    pub learning: Option<bool>,
    /// Learned entries at most, default 65536.
    pub max_entries: Option<usize>,
    /// Drop packets with reserved VXLAN bits set, default false.
    pub strict_reserved: Option<bool>,
    /// `[[vni.static]]` entries.
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticSection>,
    /// `[vni.evpn]`: this VNI's EVPN settings (with `[evpn]` only).
    pub evpn: Option<VniEvpnSection>,
}

/// `[evpn]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvpnSection {
    /// gobgpd's gRPC API, `ADDRESS:PORT`, default `127.0.0.1:50051`.
    pub gobgp: Option<String>,
    /// The AS for automatic route targets; default: gobgpd's.
    pub asn: Option<u32>,
    /// The router id for automatic route distinguishers; default: the underlay's local
    /// address (IPv4).
    pub router_id: Option<String>,
}

/// `[vni.evpn]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VniEvpnSection {
    /// Route distinguisher, `ADMIN:NUMBER`; default automatic.
    pub rd: Option<String>,
    /// Route targets imported; default automatic (`ASN:VNI`).
    #[serde(default)]
    pub import_rt: Vec<String>,
    /// Route targets exported; default automatic.
    #[serde(default)]
    pub export_rt: Vec<String>,
    /// Learn from VXLAN packets too, default false.
    pub learn_from_underlay: Option<bool>,
    /// Drop VXLAN packets from VTEPs no route announces, default true.
    pub source_check: Option<bool>,
    /// Answer ARP/ND for addresses MAC/IP routes resolve, default true.
    pub arp_suppress: Option<bool>,
}

/// `[[vni.static]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    /// The MAC address.
    pub mac: String,
    /// Behind this remote VTEP ...
    pub remote: Option<String>,
    /// ... or this local port.
    pub port: Option<String>,
}

/// `[[plugin]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// Unique: how the CLI names it.
    pub name: String,
    /// The `.wasm` file; relative to the configuration file's directory.
    pub path: String,
    /// The VNIs it sees; omitted: all.
    pub vnis: Option<Vec<u32>>,
    /// `"pass"` (default) or `"drop"`: what a failed call means for its frames.
    pub on_error: Option<String>,
    /// Memory cap in MiB, default 16.
    pub memory_mib: Option<u32>,
    /// Time budget of one call in microseconds, default 500.
    pub budget_us: Option<u64>,
    /// Time budget of `init` at load in milliseconds, default 100.
    pub init_budget_ms: Option<u64>,
    /// Consecutive failures before the plugin is detached, default 10.
    pub max_failures: Option<u32>,
    /// Cached filter verdicts at most, default 65536.
    pub cache_entries: Option<usize>,
    /// Handed to the plugin's `init`, as JSON.
    pub config: Option<toml::Table>,
}
