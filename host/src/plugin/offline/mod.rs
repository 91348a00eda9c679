//! [`Replay`]: a plugin run over captured frames, outside the daemon, for `vtep plugin test`:
//! a vendor's CI, or an operator checking a policy against a capture before loading it.
//!
//! Contract: the plugin runs as the daemon runs it (the same runtime, sandbox, verdict cache
//! and failure policy, through a [`PluginChain`]), one frame at a time, with the capture's
//! clock as the pipeline's: a verdict cached for 10 s answers the flow's frames of the next
//! 10 s of the capture. A VXLAN packet (UDP to the VXLAN port) is decapsulated: its VNI is the
//! header's, its direction `from-underlay`, its source the outer source address; any other
//! Ethernet frame is on the VNI and in the direction given, from port 0. Frames the filter
//! passes are learned in a table of their own, through the plugin's learn hook, as the
//! pipeline learns them, but at once (the daemon's learning thread decides a moment later)
//! and whether or not the VNI's settings would learn from the underlay. A frame the capture
//! cut, a malformed one, one of another link type and one with a source MAC the pipeline
//! drops before any filter are counted and reported, never offered and never fatal.

mod capture;
mod summary;
pub mod text;

pub use capture::{CaptureError, CaptureFile, CapturedPacket, Link};

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Plugin, PluginChain};
use crate::control::PluginReport;
use crate::fdb::{Fdb, LearnOutcome, Location, PortId, VniIdx, VniTableSettings};
use crate::vtep::{Direction, FilterBatch, FilterFrame, Hooks, Verdict};
use crate::wire::{Details, FrameMeta, VXLAN_HEADER_LEN, Vni, VxlanPacket, ip_proto};

/// The UDP header's length: the VXLAN header follows it.
const UDP_HEADER_LEN: usize = 8;

/// How frames without a VXLAN header are offered.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Their VNI; without one they are not offered.
    pub vni: Option<Vni>,
    /// Their direction.
    pub direction: Direction,
    /// The VTEP they come from, when their direction is from the underlay (from port 0
    /// otherwise).
    pub remote: Option<IpAddr>,
    /// The UDP port that marks a packet as VXLAN.
    pub vxlan_port: u16,
}

/// What happened to one packet of the capture.
#[derive(Debug, Clone, Serialize)]
pub struct FrameResult {
    /// Its number in the capture, from 1.
    pub number: u64,
    /// Seconds since the capture's first packet.
    pub time: f64,
    /// MACs, ethertype, addresses and ports (of the inner frame, for VXLAN).
    pub summary: String,
    /// The VNI it was offered on.
    pub vni: Option<u32>,
    /// `from-port` or `from-underlay`.
    pub direction: Option<&'static str>,
    /// `pass`, `drop`, or `skip` (not offered: see `reason`).
    pub verdict: &'static str,
    /// A drop's reason code (`on_error` for a failed call's verdict), or why it was skipped.
    pub reason: Option<String>,
    /// Answered from the verdict cache, without a call.
    pub cached: bool,
    /// What learning its source MAC did (`learned`, `moved from ...`, `rejected`, ...), when
    /// not a mere refresh.
    pub learn: Option<String>,
}

/// Counts over the whole capture.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Packets read.
    pub packets: u64,
    /// Offered to the filter.
    pub offered: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Drops by reason code.
    pub drops_by_reason: BTreeMap<String, u64>,
    /// Not offered: cut by the capture's snapshot length.
    pub cut: u64,
    /// Not offered: too short or garbled to be a frame (or a VXLAN packet without its I flag).
    pub malformed: u64,
    /// Not offered: not Ethernet.
    pub other_link: u64,
    /// Not offered: plain frames when no VNI was given.
    pub no_vni: u64,
    /// Not offered: a multicast or all-zero source MAC, which the pipeline drops before any
    /// filter.
    pub invalid_source: u64,
    /// Learn outcomes other than refreshes, by kind.
    pub learning: BTreeMap<String, u64>,
    /// Why the capture could not be read to its end, if it could not.
    pub unreadable: Option<String>,
}

/// A plugin and the state of a replay.
#[derive(Debug)]
pub struct Replay {
    chain: PluginChain,
    options: ReplayOptions,
    fdb: Fdb,
    vnis: HashMap<Vni, VniIdx>,
    /// The pipeline's clock at the capture's first packet.
    start: Instant,
    totals: Totals,
}

/// One frame, as the filter hook takes it.
struct OneFrame<'a>(FilterFrame<'a>);

impl FilterBatch for OneFrame<'_> {
    fn len(&self) -> usize {
        1
    }

    fn frame(&self, i: usize) -> Option<FilterFrame<'_>> {
        (i == 0).then_some(FilterFrame { ..self.0 })
    }
}

/// A frame ready to offer, or why it is not.
enum Prepared<'a> {
    Offer {
        vni: Vni,
        direction: Direction,
        source: Location,
        meta: FrameMeta,
        bytes: &'a [u8],
    },
    Skip {
        reason: String,
        summary: String,
    },
}

impl Replay {
    /// A replay of `plugin` (loaded by the caller as the daemon would).
    pub fn new(plugin: Plugin, options: ReplayOptions) -> Replay {
        let mut chain = PluginChain::new();
        // One plugin in an empty chain: no name can clash.
        let _ = chain.push(plugin);
        Replay {
            chain,
            options,
            fdb: Fdb::new(),
            vnis: HashMap::new(),
            start: Instant::now(),
            totals: Totals::default(),
        }
    }

    /// Offers `packet` to the plugin (if it can be), and says what happened.
    pub fn frame(&mut self, packet: &CapturedPacket) -> FrameResult {
        self.totals.packets += 1;
        let mut result = FrameResult {
            number: packet.number,
            time: packet.time.as_secs_f64(),
            summary: String::new(),
            vni: None,
            direction: None,
            verdict: "skip",
            reason: None,
            cached: false,
            learn: None,
        };
        let (vni, direction, source, meta, bytes) = match self.prepare(packet) {
            Prepared::Skip { reason, summary } => {
                result.summary = summary;
                result.reason = Some(reason);
                return result;
            }
            Prepared::Offer {
                vni,
                direction,
                source,
                meta,
                bytes,
            } => (vni, direction, source, meta, bytes),
        };
        result.summary = summary::of(&meta, &Details::parse(bytes, &meta));
        result.vni = Some(vni.get());
        result.direction = Some(match direction {
            Direction::FromPort => "from-port",
            Direction::FromUnderlay => "from-underlay",
        });
        self.totals.offered += 1;
        let before = self.report();
        let now = self.start + packet.time;
        let mut verdicts = [Verdict::Pass];
        let frame = FilterFrame {
            vni,
            direction,
            source,
            meta: &meta,
            bytes,
        };
        self.chain.filter(now, &OneFrame(frame), &mut verdicts);
        let after = self.report();
        result.cached = counter(&after, "cache_hits") > counter(&before, "cache_hits");
        if verdicts[0] == Verdict::Drop {
            self.totals.dropped += 1;
            result.verdict = "drop";
            let reason = if counter(&after, "error_verdicts") > counter(&before, "error_verdicts") {
                "on_error".to_owned()
            } else {
                new_drop_reason(&before, &after).unwrap_or_else(|| "?".to_owned())
            };
            *self
                .totals
                .drops_by_reason
                .entry(reason.clone())
                .or_default() += 1;
            result.reason = Some(reason);
        } else {
            self.totals.passed += 1;
            result.verdict = "pass";
            if counter(&after, "error_verdicts") > counter(&before, "error_verdicts") {
                result.reason = Some("on_error".to_owned());
            }
            result.learn = self.learn(vni, &meta, source, packet.time);
        }
        result
    }

    /// Records that the capture could not be read past a damaged record.
    pub fn unreadable(&mut self, why: String) {
        self.totals.unreadable = Some(why);
    }

    /// The counts so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The plugin's report (what `vtep plugin show` prints): its calls, drops, failures and
    /// its own counters.
    pub fn report(&self) -> Option<PluginReport> {
        self.chain.reports().into_iter().next()
    }

    fn prepare<'a>(&mut self, packet: &'a CapturedPacket) -> Prepared<'a> {
        let totals = &mut self.totals;
        if let Link::Other(link) = packet.link {
            return skipped(
                &mut totals.other_link,
                format!(
                    "link type {link}, not Ethernet (capture on the port or uplink, not \"any\")"
                ),
                String::new(),
            );
        }
        if packet.is_cut() {
            let why = format!(
                "cut by the capture: {} of {} bytes",
                packet.data.len(),
                packet.wire_len
            );
            return skipped(&mut totals.cut, why, String::new());
        }
        let Ok(outer) = FrameMeta::parse(&packet.data) else {
            let why = format!("malformed: {} bytes, no Ethernet header", packet.data.len());
            return skipped(&mut totals.malformed, why, String::new());
        };
        let vxlan = match vxlan_payload(&packet.data, &outer, self.options.vxlan_port) {
            Ok(vxlan) => vxlan,
            Err(why) => {
                let summary = summary::of(&outer, &Details::default());
                return skipped(&mut totals.malformed, why, summary);
            }
        };
        let Some(vxlan) = vxlan else {
            let Some(vni) = self.options.vni else {
                let summary = summary::of(&outer, &Details::parse(&packet.data, &outer));
                let why = "a plain Ethernet frame, and no --vni to offer it on".to_owned();
                return skipped(&mut totals.no_vni, why, summary);
            };
            let source = match (self.options.direction, self.options.remote) {
                (Direction::FromUnderlay, Some(remote)) => Location::Remote(remote),
                _ => Location::Port(PortId(0)),
            };
            return offer(
                totals,
                vni,
                self.options.direction,
                source,
                outer,
                &packet.data,
            );
        };
        let outer_summary = || summary::of(&outer, &Details::default());
        let Some(header) = VxlanPacket::new_checked(vxlan)
            .ok()
            .filter(VxlanPacket::has_vni_flag)
        else {
            let why = "malformed: a VXLAN header cut short or without its I flag".to_owned();
            return skipped(&mut totals.malformed, why, outer_summary());
        };
        let vni = header.vni();
        let inner = &vxlan[VXLAN_HEADER_LEN..];
        let Ok(meta) = FrameMeta::parse(inner) else {
            let why = format!("malformed: VXLAN (VNI {vni}) with no Ethernet frame inside");
            return skipped(&mut totals.malformed, why, outer_summary());
        };
        // The sending VTEP: the outer source (an IP packet, or it would not be VXLAN).
        let source = outer
            .ip_src()
            .map_or(Location::Port(PortId(0)), Location::Remote);
        offer(totals, vni, Direction::FromUnderlay, source, meta, inner)
    }

    /// Learns the frame's source as the pipeline would after the filter passed it; what
    /// happened, unless a mere refresh.
    fn learn(
        &mut self,
        vni: Vni,
        meta: &FrameMeta,
        source: Location,
        time: Duration,
    ) -> Option<String> {
        if meta.src.is_multicast() {
            return None; // never learned (RFC 7348 §4: only unicast sources)
        }
        let idx = match self.vnis.get(&vni) {
            Some(&idx) => idx,
            None => {
                let settings = VniTableSettings {
                    aging_ms: 300_000,
                    max_entries: usize::MAX,
                };
                let idx = self.fdb.add_vni(vni, settings).ok()?;
                self.vnis.insert(vni, idx);
                idx
            }
        };
        let tick = u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
        let outcome = self.fdb.learn(idx, meta.src, source, tick, &mut self.chain);
        let said = match outcome {
            LearnOutcome::Refreshed | LearnOutcome::Static => return None,
            LearnOutcome::Learned => "learned".to_owned(),
            LearnOutcome::Moved { from } => format!("moved from {}", location(from)),
            LearnOutcome::Rejected => "rejected".to_owned(),
            LearnOutcome::Deferred => "deferred".to_owned(),
            LearnOutcome::LimitReached => "limit-reached".to_owned(),
            LearnOutcome::StaticConflict => "static-conflict".to_owned(),
            LearnOutcome::Evpn => "evpn".to_owned(),
            LearnOutcome::Superseded => "superseded".to_owned(),
            LearnOutcome::UnknownVni => "unknown-vni".to_owned(),
        };
        let kind = said.split(' ').next().unwrap_or_default().to_owned();
        *self.totals.learning.entry(kind).or_default() += 1;
        Some(said)
    }
}

/// A frame to offer, unless its source MAC is one the pipeline drops before any filter (as
/// `Vtep::handle_port_batch` and `handle_underlay_batch` do).
fn offer<'a>(
    totals: &mut Totals,
    vni: Vni,
    direction: Direction,
    source: Location,
    meta: FrameMeta,
    bytes: &'a [u8],
) -> Prepared<'a> {
    if !meta.src.is_valid_unicast() {
        let why = format!(
            "source MAC {} is not a unicast address: dropped before any filter",
            meta.src
        );
        return skipped(
            &mut totals.invalid_source,
            why,
            summary::of(&meta, &Details::parse(bytes, &meta)),
        );
    }
    Prepared::Offer {
        vni,
        direction,
        source,
        meta,
        bytes,
    }
}

/// A packet not offered, counted in `count`.
fn skipped(count: &mut u64, reason: String, summary: String) -> Prepared<'static> {
    *count += 1;
    Prepared::Skip { reason, summary }
}

fn counter(report: &Option<PluginReport>, name: &str) -> u64 {
    report
        .as_ref()
        .and_then(|r| r.calls.counters.get(name).copied())
        .unwrap_or(0)
}

/// The reason code whose count went up between two reports.
fn new_drop_reason(before: &Option<PluginReport>, after: &Option<PluginReport>) -> Option<String> {
    let (before, after) = (before.as_ref()?, after.as_ref()?);
    after
        .calls
        .drops
        .iter()
        .find(|(code, n)| before.calls.drops.get(*code).copied().unwrap_or(0) < **n)
        .map(|(code, _)| code.clone())
}

fn location(at: Location) -> String {
    match at {
        Location::Port(p) => format!("port {}", p.0),
        Location::Remote(ip) => format!("VTEP {ip}"),
    }
}

/// The VXLAN header and what follows, within the UDP datagram's length, if `frame` is UDP to
/// `port` (`Ok(None)`: not VXLAN); an error if its UDP header or length is not whole.
fn vxlan_payload<'a>(
    frame: &'a [u8],
    meta: &FrameMeta,
    port: u16,
) -> Result<Option<&'a [u8]>, String> {
    let Some(ip) = meta.ip else {
        return Ok(None);
    };
    if ip.protocol != ip_proto::UDP || ip.fragment || meta.dst_port() != Some(port) {
        return Ok(None);
    }
    let udp = frame.get(ip.l4_offset..).unwrap_or_default();
    let length = udp
        .get(4..6)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| "malformed: a UDP header cut short".to_owned())?;
    // A trailer or a captured FCS after the datagram is not the inner frame's.
    match udp.get(UDP_HEADER_LEN..length) {
        Some(payload) if length >= UDP_HEADER_LEN => Ok(Some(payload)),
        _ => Err(format!(
            "malformed: a UDP length of {length} for {} bytes",
            udp.len()
        )),
    }
}
