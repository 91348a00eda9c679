//! The values that cross the plugin boundary, as Rust types: one per type of the WIT `types`
//! interface (`wit/plugin.wit`), with MAC and IP addresses as real address types rather than
//! the integers the canonical ABI carries. On wasm the glue converts at the boundary; on other
//! targets tests build them directly.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::mac::{MacAddr, MacAddrParseError};

/// Which way a frame is going through the VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A VM sent it out of a local port: about to be switched or encapsulated.
    FromPort,
    /// It arrived from the underlay, decapsulated: about to be delivered to local ports.
    FromUnderlay,
}

/// Where a MAC address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local port, by the index of its name in `vtep plugin show` and the config.
    Port(u16),
    /// A remote VTEP's underlay address.
    Remote(IpAddr),
}

/// What the host parsed of a frame, so that most plugins never touch its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameMeta {
    /// The VNI the frame is switched in.
    pub vni: u32,
    /// Which way it is going.
    pub direction: Direction,
    /// The ingress port (`FromPort`) or the sending VTEP (`FromUnderlay`).
    pub source: Location,
    /// The Ethernet source.
    pub src_mac: MacAddr,
    /// The Ethernet destination.
    pub dst_mac: MacAddr,
    /// The 802.1Q tag control information, if the frame is tagged.
    pub vlan: Option<u16>,
    /// The ethertype after any tag.
    pub ethertype: u16,
    /// The IPv4 or IPv6 source, if the frame carries IP.
    pub src_ip: Option<IpAddr>,
    /// The IPv4 or IPv6 destination.
    pub dst_ip: Option<IpAddr>,
    /// IP protocol / IPv6 next header after extension headers.
    pub ip_proto: Option<u8>,
    /// The TCP/UDP (or SCTP, UDP-Lite) source port.
    pub src_port: Option<u16>,
    /// The TCP/UDP destination port.
    pub dst_port: Option<u16>,
    /// The frame's length in bytes.
    pub len: u32,
    /// The DSCP of an IP frame (the top 6 bits of the IPv4 TOS or IPv6 traffic class).
    pub dscp: Option<u8>,
    /// The TCP header's flags, if the frame is TCP and not a fragment.
    pub tcp_flags: Option<TcpFlags>,
    /// The ICMP (IPv4) or ICMPv6 (IPv6) header, if not a fragment.
    pub icmp: Option<Icmp>,
    /// An ARP or RARP packet for IPv4 over Ethernet.
    pub arp: Option<Arp>,
}

/// The flags of a TCP header (RFC 9293), as its flags byte has them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(1);
    /// Synchronise sequence numbers: a connection's first segment (and its answer, with ACK).
    pub const SYN: TcpFlags = TcpFlags(1 << 1);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(1 << 2);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(1 << 3);
    /// The acknowledgement number is significant.
    pub const ACK: TcpFlags = TcpFlags(1 << 4);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(1 << 5);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(1 << 6);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(1 << 7);

    /// Every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// A connection's opening segment: SYN without ACK.
    pub const fn is_syn_only(self) -> bool {
        self.contains(TcpFlags::SYN) && !self.contains(TcpFlags::ACK)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut set = f.debug_set();
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 >> bit & 1 == 1 {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// An ICMP or ICMPv6 message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmp {
    /// The message type (ICMPv6: 135 neighbour solicitation, 136 advertisement, 128 echo
    /// request; ICMP: 8 echo request, 0 echo reply).
    pub kind: u8,
    /// The code.
    pub code: u8,
    /// The target of an ICMPv6 neighbour solicitation or advertisement.
    pub nd_target: Option<Ipv6Addr>,
}

/// An ARP (RFC 826) or RARP (RFC 903) packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arp {
    /// [`Arp::REQUEST`], [`Arp::REPLY`], or RARP's 3 and 4.
    pub opcode: u16,
    /// The sender's hardware address.
    pub sender_mac: MacAddr,
    /// The sender's IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// The target's hardware address (zero in a request).
    pub target_mac: MacAddr,
    /// The target's IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// The opcode of a request.
    pub const REQUEST: u16 = 1;
    /// The opcode of a reply.
    pub const REPLY: u16 = 2;

    /// A gratuitous ARP (RFC 5227 §3): an announcement of the sender's own address, request
    /// or reply.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

impl FrameMeta {
    /// An untagged, non-IP frame from port 0 of `vni` with the given MACs and ethertype; set
    /// the other fields with struct update syntax. Meant for tests of plugin logic.
    pub const fn ethernet(vni: u32, src_mac: MacAddr, dst_mac: MacAddr, ethertype: u16) -> Self {
        FrameMeta {
            vni,
            direction: Direction::FromPort,
            source: Location::Port(0),
            src_mac,
            dst_mac,
            vlan: None,
            ethertype,
            src_ip: None,
            dst_ip: None,
            ip_proto: None,
            src_port: None,
            dst_port: None,
            len: 64,
            dscp: None,
            tcp_flags: None,
            icmp: None,
            arp: None,
        }
    }
}

/// The filter's answer for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the frame through.
    Pass,
    /// Drop it, with a reason code the host counts per plugin.
    Drop(u16),
}

/// A verdict, and how long the host may reuse it for the same flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterResult {
    /// What to do with the frame.
    pub verdict: Verdict,
    /// Seconds the host may answer frames of the same flow with this verdict without calling
    /// the plugin; 0: ask every time.
    pub cache_secs: u32,
}

impl FilterResult {
    /// Pass, not cacheable.
    pub const PASS: FilterResult = FilterResult {
        verdict: Verdict::Pass,
        cache_secs: 0,
    };

    /// Pass this frame (not cacheable; see [`FilterResult::cache_for`]).
    pub const fn pass() -> Self {
        Self::PASS
    }

    /// Drop this frame with `reason` (not cacheable; see [`FilterResult::cache_for`]).
    pub const fn drop(reason: u16) -> Self {
        FilterResult {
            verdict: Verdict::Drop(reason),
            cache_secs: 0,
        }
    }

    /// The same verdict, which the host may reuse for the flow for `secs` seconds. Only for
    /// verdicts that depend on nothing but the frame's metadata (not its bytes, not plugin
    /// state that may change within `secs`).
    #[must_use]
    pub const fn cache_for(self, secs: u32) -> Self {
        FilterResult {
            verdict: self.verdict,
            cache_secs: secs,
        }
    }
}

/// The FDB would add an entry or move one (never asked on a mere refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LearnEvent {
    /// The VNI.
    pub vni: u32,
    /// The source MAC being learned.
    pub mac: MacAddr,
    /// Where the frame came from.
    pub new_location: Location,
    /// Where the table has the MAC now, for a move; `None` for a new entry.
    pub current: Option<Location>,
    /// The current entry was accepted as sticky.
    pub current_sticky: bool,
    /// Learned entries in the VNI now (before this one).
    pub vni_entries: u32,
}

impl LearnEvent {
    /// The event moves an existing entry (rather than adding one).
    pub const fn is_move(&self) -> bool {
        self.current.is_some()
    }
}

/// What to do with a learn event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnDecision {
    /// Add or move the entry.
    Accept,
    /// Leave the table as it is (the frame is still forwarded).
    Reject,
    /// Accept, and mark the entry sticky: it moves again only if a plugin accepts the move.
    AcceptSticky,
}

/// A learned entry's deadline has come: its MAC sent nothing for the VNI's aging time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgeEvent {
    /// The VNI.
    pub vni: u32,
    /// The entry's MAC.
    pub mac: MacAddr,
    /// Milliseconds since its MAC last sent.
    pub idle_ms: u64,
    /// Frames from the MAC since it was learned where it is.
    pub hits: u32,
    /// Where the entry points.
    pub location: Location,
}

/// What to do with an age event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgeDecision {
    /// Remove the entry.
    Expire,
    /// Keep the entry this many more seconds, then ask again.
    Keep(u32),
}

/// Log levels for [`crate::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is wrong but the plugin goes on.
    Warn,
    /// Worth knowing in normal operation.
    Info,
    /// Detail for debugging.
    Debug,
}

/// The set of hooks a plugin implements (the WIT `hooks` flags). The host never calls the
/// others, so an unimplemented hook costs nothing at all.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hooks(u8);

impl Hooks {
    /// No hook.
    pub const NONE: Hooks = Hooks(0);
    /// [`crate::Plugin::filter`].
    pub const FILTER: Hooks = Hooks(1);
    /// [`crate::Plugin::learn`].
    pub const LEARN: Hooks = Hooks(1 << 1);
    /// [`crate::Plugin::age`].
    pub const AGE: Hooks = Hooks(1 << 2);

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    /// Every hook of `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }

    /// No hook at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for Hooks {
    type Output = Hooks;

    fn bitor(self, rhs: Hooks) -> Hooks {
        self.union(rhs)
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Hooks::FILTER, "filter"),
            (Hooks::LEARN, "learn"),
            (Hooks::AGE, "age"),
        ];
        let mut set = f.debug_set();
        for (hook, name) in names {
            if self.contains(hook) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_combine_and_print() {
        let h = Hooks::FILTER | Hooks::AGE;
        assert!(h.contains(Hooks::FILTER) && h.contains(Hooks::AGE));
        assert!(!h.contains(Hooks::LEARN) && !h.is_empty());
        assert!(Hooks::NONE.is_empty());
        assert_eq!(format!("{h:?}"), "{filter, age}");
    }

    #[test]
    fn tcp_flags_and_arp() {
        let synack = TcpFlags::SYN | TcpFlags::ACK;
        assert_eq!(synack, TcpFlags(0x12));
        assert!(TcpFlags::SYN.is_syn_only() && !synack.is_syn_only());
        assert_eq!(format!("{synack:?}"), "{SYN, ACK}");
        let garp = Arp {
            opcode: Arp::REQUEST,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: MacAddr([0; 6]),
            target_ip: Ipv4Addr::new(192, 0, 2, 1),
        };
        assert!(garp.is_gratuitous());
        let ask = Arp {
            target_ip: Ipv4Addr::new(192, 0, 2, 2),
            ..garp
        };
        assert!(!ask.is_gratuitous());
    }

    #[test]
    fn filter_results_carry_their_cache_time() {
        assert_eq!(FilterResult::pass(), FilterResult::PASS);
        let r = FilterResult::drop(3).cache_for(10);
        assert_eq!(r.verdict, Verdict::Drop(3));
        assert_eq!(r.cache_secs, 10);
    }
}
