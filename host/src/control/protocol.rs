//! The messages. Requests are tagged by `cmd`; a response is `{"ok": DATA}` or
//! `{"error": "why"}` whose data is one of the reports below. Addresses and MACs travel as
//! strings, as people write them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest request line accepted; longer ones get an error and the connection is closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The forwarding table, optionally of one VNI.
    FdbShow {
        /// Only this VNI.
        #[serde(default)]
        vni: Option<u32>,
    },
    /// Adds a static entry.
    FdbAdd {
        /// The VNI.
        vni: u32,
        /// The MAC address.
        mac: String,
        /// Behind this remote VTEP ...
        #[serde(default)]
        remote: Option<String>,
        /// ... or this local port.
        #[serde(default)]
        port: Option<String>,
    },
    /// Removes an entry.
    FdbDel {
        /// The VNI.
        vni: u32,
        /// The MAC address.
        mac: String,
    },
    /// Every counter.
    Stats,
    /// The plugins, in order.
    PluginList,
    /// One plugin in detail.
    PluginShow {
        /// Its name.
        name: String,
    },
    /// Loads a plugin anew (compiled and initialised off the data path) and swaps it in. Its
    /// `[[plugin]]` section is read again from the daemon's configuration file (all of it:
    /// path, config, sandbox, VNIs), unless `config_json` replaces its `config`.
    PluginReload {
        /// Its name.
        name: String,
        /// Another module file (absolute); default: the one its section names.
        #[serde(default)]
        path: Option<String>,
        /// Its `config` table as a JSON object, instead of the file's.
        #[serde(default)]
        config_json: Option<String>,
        /// Start its counters from zero (by default they go on from the running plugin's).
        #[serde(default)]
        reset_counters: bool,
    },
    /// The BGP EVPN control plane: the session to gobgpd, per VNI what is announced and
    /// held.
    EvpnShow,
    /// Makes a worker panic at its next turn (tests of supervision; only in builds with the
    /// `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    PanicWorker {
        /// The worker's index.
        worker: usize,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Done; the data depends on the request (`null` for changes).
    Ok(serde_json::Value),
    /// Not done, and why.
    Error(String),
}

/// One FDB entry, as `vtep fdb show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    /// The VNI.
    pub vni: u32,
    /// The MAC, lower-case with colons.
    pub mac: String,
    /// `"local"`, `"remote"`, or `"evpn"` (behind a remote VTEP, as a control plane's route
    /// says: never aged nor moved by the underlay).
    pub kind: String,
    /// The remote VTEP's address, for remote entries.
    pub remote: Option<String>,
    /// The port's name, for local entries.
    pub port: Option<String>,
    /// Configured rather than learned.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Learned as sticky (a learn plugin said so): it moves only if a plugin accepts.
    #[serde(default)]
    pub sticky: bool,
    /// Seconds since the entry was learned or refreshed (0 for static entries).
    pub age_secs: u64,
}

/// One VNI's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniStatsRow {
    /// The VNI.
    pub vni: u32,
    /// Counters by name (`from_ports_frames`, `learned`, ...).
    pub counters: BTreeMap<String, u64>,
}

/// `vtep stats --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Per VNI.
    pub vnis: Vec<VniStatsRow>,
    /// Pipeline drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Socket-level counters of the I/O shell (send failures and the like).
    pub io: BTreeMap<String, u64>,
    /// Per plugin: the host's counters of it (`filter_calls`, `dropped`, `traps`, ...) and the
    /// plugin's own, prefixed `plugin.`.
    #[serde(default)]
    pub plugins: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The call statistics part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReport {
    /// `filter_calls`, `frames`, `cache_hits`, `passed`, `dropped`, `traps`, `timeouts`, ...
    pub counters: BTreeMap<String, u64>,
    /// Frames dropped, by the plugin's reason code.
    pub drops: BTreeMap<String, u64>,
    /// Verdicts not cached because the cache was full.
    pub cache_full: u64,
    /// Mean time per call, all hooks, in nanoseconds.
    pub avg_call_ns: u64,
    /// Mean time of a filter call with one frame (most calls of a quiet port, whose frames come
    /// one by one: the plugin's code and data are then cold in the CPU's caches).
    #[serde(default)]
    pub avg_one_frame_call_ns: u64,
    /// Mean time of a filter call with more frames (a busy port's batches) ...
    #[serde(default)]
    pub avg_batch_call_ns: u64,
    /// ... and per frame of those calls.
    #[serde(default)]
    pub avg_batch_frame_ns: u64,
    /// The longest call.
    pub max_call_ns: u64,
    /// Every call's time (all hooks), as a histogram.
    #[serde(default)]
    pub call_times: CallHistogram,
    /// The last failure, with its hook.
    pub last_error: Option<String>,
}

/// Call times as a histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHistogram {
    /// Per upper bound, the calls that took at most that long (cumulative).
    pub buckets: Vec<CallBucket>,
    /// Every call, those past the last bound too.
    pub calls: u64,
    /// Their total time, in nanoseconds.
    pub sum_ns: u64,
}

/// One bucket of a [`CallHistogram`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBucket {
    /// The upper bound, in nanoseconds.
    pub le_ns: u64,
    /// Calls that took at most that long.
    pub calls: u64,
}

/// Everything `vtep plugin show` says about a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginReport {
    /// Its configured name.
    pub name: String,
    /// The file it was loaded from.
    pub path: String,
    /// The interface version it was built for.
    pub interface: String,
    /// `"attached"` or `"detached"`.
    pub state: String,
    /// Why it was detached.
    pub detached_reason: Option<String>,
    /// The hooks it implements (`filter`, `learn`, `age`).
    pub hooks: Vec<String>,
    /// The VNIs it is attached to; `None`: all.
    pub vnis: Option<Vec<u32>>,
    /// `"pass"` or `"drop"`.
    pub on_error: String,
    /// Sandbox: memory cap, in bytes.
    pub memory_limit: u64,
    /// Sandbox: linear memory in use now.
    pub memory_used: u64,
    /// Sandbox: budget per call, in microseconds.
    pub budget_us: u64,
    /// Sandbox: consecutive failures before detachment.
    pub max_failures: u32,
    /// Consecutive failures now.
    pub failures_in_row: u32,
    /// Verdicts in the cache now.
    pub cached_flows: u64,
    /// Log lines refused by the rate limit, not yet reported.
    pub logs_suppressed: u64,
    /// Calls, drops, failures and timing.
    pub calls: CallReport,
    /// The counters the plugin declared.
    pub plugin_counters: BTreeMap<String, u64>,
}

/// `vtep evpn show --json`: the BGP EVPN control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnReport {
    /// gobgpd's API address.
    pub gobgp: String,
    /// `"connected"`, `"connecting"` (never reached yet) or `"unreachable"` (retrying).
    pub session: String,
    /// Seconds in that state.
    pub session_secs: u64,
    /// Why the last connection failed or ended, if one did.
    pub last_error: Option<String>,
    /// The AS automatic route targets derive from (unknown until gobgpd says, when not
    /// configured).
    pub asn: Option<u32>,
    /// The router id automatic RDs derive from.
    pub router_id: String,
    /// gobgpd's BGP sessions, as it last said.
    pub peers: Vec<EvpnPeerRow>,
    /// Per EVPN VNI.
    pub vnis: Vec<EvpnVniRow>,
    /// Remote route changes applied.
    pub routes_received: u64,
    /// Our own routes read back from the RIB (skipped).
    pub own_routes_read: u64,
    /// Routes refused, by reason.
    pub refused: BTreeMap<String, u64>,
}

/// One of gobgpd's BGP sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnPeerRow {
    pub address: String,
    /// As GoBGP says: `established`, `active`, `idle`, ...
    pub state: String,
}

/// One EVPN VNI in `vtep evpn show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvpnVniRow {
    pub vni: u32,
    /// Route distinguisher.
    pub rd: String,
    pub import_rt: Vec<String>,
    pub export_rt: Vec<String>,
    /// A type 3 route is announced (the VNI has local ports).
    pub inclusive_multicast: bool,
    /// Our routes on it (type 3, MAC, MAC/IP).
    pub local_routes: usize,
    /// Local MACs announced.
    pub local_macs: usize,
    /// Remote VTEPs BUM frames go to (their type 3 routes).
    pub flood: Vec<String>,
    /// Remote VTEPs with any route on it (accepted as sources).
    pub remote_vteps: Vec<String>,
    /// Remote MACs.
    pub remote_macs: usize,
    /// MAC/IP bindings (remote and local) ARP and ND suppression answer from.
    pub mac_ips: usize,
    /// ARP requests and neighbour solicitations answered here rather than flooded.
    pub suppressed: u64,
}
