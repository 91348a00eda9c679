//! Counters: frames and bytes per VNI and direction, learning events, and every drop by reason.
//! Plain integers updated in place on the per-packet path; each worker has its own, and the
//! control plane adds them up.

use crate::wire::Vni;

/// Defines [`DropReason`] from one table: each reason's variant, its doc and its counter's name
/// in `vtep stats` (adding a reason is one line here, and its count where it happens).
macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why the pipeline dropped a frame or packet. Each has a counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: [DropReason; [$($name),*].len()] = [$(DropReason::$variant),*];

            /// The counter's name in `vtep stats`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// A frame from a port that is on no VNI.
    PortNotOnVni => "port_not_on_vni",
    /// Shorter than an Ethernet header.
    FrameTooShort => "frame_too_short",
    /// The source MAC is broadcast, multicast or all-zero: no bridge forwards such a frame.
    InvalidSourceMac => "invalid_source_mac",
    /// The destination is behind the port the frame came in on.
    DestOnIngressPort => "dest_on_ingress_port",
    /// The source MAC is a static entry elsewhere: a spoofed or misplaced frame.
    StaticConflict => "static_conflict",
    /// The `virtio_net_hdr` asked for a checksum or segmentation that cannot be done.
    BadOffload => "bad_offload",
    /// The outer packet would exceed the underlay MTU.
    MtuExceeded => "mtu_exceeded",
    /// A VNI with no other port and no flood target: the frame has nowhere to go.
    NoDestination => "no_destination",
    /// From our own underlay address (a multicast flood looped back).
    OwnPacket => "own_packet",
    /// Shorter than a VXLAN header.
    VxlanTooShort => "vxlan_too_short",
    /// The VXLAN I flag is clear (RFC 7348 §5: "MUST be set to 1 for a valid VNI").
    VxlanFlagClear => "vxlan_flag_clear",
    /// Reserved VXLAN bits set on a VNI in strict mode.
    VxlanReservedBits => "vxlan_reserved_bits",
    /// A VNI this VTEP does not serve.
    VniNotServed => "vni_not_served",
    /// The inner frame is shorter than an Ethernet header.
    InnerFrameTooShort => "inner_frame_too_short",
    /// From the underlay to a MAC that is not local: never sent back into the underlay.
    SplitHorizon => "split_horizon",
    /// A filter hook (a plugin) said drop, or failed with `on_error = "drop"`.
    Filtered => "filtered",
    /// The forwarding table pointed at a port of another VNI: never delivered there (a
    /// defence in depth; no entry should ever say so).
    ForeignPort => "foreign_port",
    /// From an underlay source that the VNI's source check does not know (no configured
    /// remote, no VTEP a control plane announces).
    UnknownVtep => "unknown_vtep",
}

impl DropReason {
    const fn index(self) -> usize {
        self as usize
    }
}

/// Frames and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Frames (or packets).
    pub frames: u64,
    /// Bytes (inner frame bytes for port directions, outer packet bytes for the underlay).
    pub bytes: u64,
}

impl Counter {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }

    /// Adds `frames` frames of `bytes` bytes in all.
    pub(crate) fn add_many(&mut self, frames: usize, bytes: usize) {
        self.frames += frames as u64;
        self.bytes += bytes as u64;
    }
}

/// Defines [`VniStats`] from one table: the traffic counters (frames or packets, and bytes,
/// each with its two names in `vtep stats`) and the event counters (each with its name), with
/// `new`, `merge`, `named` and `DESCRIBED` (adding a counter is one line here, and its count
/// where it happens).
macro_rules! vni_stats {
    (
        traffic { $($(#[doc = $tdoc:literal])* $traffic:ident => ($units:literal, $bytes:literal),)* }
        events { $($(#[doc = $edoc:literal])* $event:ident => $name:literal,)* }
    ) => {
        /// One VNI's counters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct VniStats {
            /// The VNI.
            pub vni: Vni,
            $($(#[doc = $tdoc])* pub $traffic: Counter,)*
            $($(#[doc = $edoc])* pub $event: u64,)*
        }

        impl VniStats {
            /// Every counter with its name in `vtep stats`, in the order of the table.
            pub fn named(&self) -> [(&'static str, u64); [$($units, $bytes,)* $($name,)*].len()] {
                [
                    $(($units, self.$traffic.frames), ($bytes, self.$traffic.bytes),)*
                    $(($name, self.$event),)*
                ]
            }

            /// Every counter's name with what it counts (its doc comment, one line), for the
            /// metrics' help texts.
            pub const DESCRIBED: [(&'static str, &'static str); [$($units, $bytes,)* $($name,)*].len()] = [
                $(($units, concat!($($tdoc),*)), ($bytes, concat!($($tdoc,)* " Their bytes.")),)*
                $(($name, concat!($($edoc),*)),)*
            ];

            /// Adds another worker's counters of the same VNI.
            pub fn merge(&mut self, other: &VniStats) {
                $(self.$traffic += other.$traffic;)*
                $(self.$event += other.$event;)*
            }

            pub(crate) fn new(vni: Vni) -> VniStats {
                VniStats {
                    vni,
                    $($traffic: Counter::default(),)*
                    $($event: 0,)*
                }
            }
        }
    };
}

vni_stats! {
    traffic {
        /// Frames received from local ports.
        from_ports => ("from_ports_frames", "from_ports_bytes"),
        /// Frames delivered to local ports.
        to_ports => ("to_ports_frames", "to_ports_bytes"),
        /// VXLAN packets received from the underlay.
        from_underlay => ("from_underlay_packets", "from_underlay_bytes"),
        /// VXLAN packets sent into the underlay.
        to_underlay => ("to_underlay_packets", "to_underlay_bytes"),
    }
    events {
        /// Frames flooded (broadcast, multicast or unknown unicast).
        floods => "floods",
        /// New FDB entries.
        learned => "learned",
        /// Entries that moved (a VM migrated, or a MAC flapped).
        moved => "moved",
        /// Entries aged out.
        expired => "expired",
        /// New MACs not learned because the VNI's table was full.
        learn_limit => "learn_limit",
        /// New MACs or moves refused by the learning policy.
        learn_rejected => "learn_rejected",
        /// Frames whose new MAC or move was left to the learning thread (a learn plugin decides
        /// it there, off the data path): every such frame, while a worker offers each MAC at
        /// most once per 100 ms; what the thread then does is counted as learned, moved or
        /// rejected.
        learn_deferred => "learn_deferred",
        /// Frames a filter hook dropped (both directions).
        filtered => "filtered",
        /// ARP requests and IPv6 neighbour solicitations the VTEP answered on the port from
        /// what a control plane knows (EVPN MAC/IP routes), instead of flooding them.
        arp_suppressed => "arp_suppressed",
    }
}

impl core::ops::AddAssign for Counter {
    fn add_assign(&mut self, other: Counter) {
        self.frames += other.frames;
        self.bytes += other.bytes;
    }
}

/// Drop counters by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops([u64; DropReason::ALL.len()]);

impl Drops {
    pub(crate) fn count(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    /// The counter of one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// Every reason with its counter.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl core::ops::AddAssign<&Drops> for Drops {
    fn add_assign(&mut self, other: &Drops) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_in_index_order_with_unique_names() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
