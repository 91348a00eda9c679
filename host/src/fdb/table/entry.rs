//! The packed layout of the table: a key is a VNI handle above a MAC, an entry one `u64`
//! (location, flags, hit count, last-seen time). Pure bit packing: what an entry means is the
//! table's business, how it is stored is this module's.

use super::VniIdx;
use crate::fdb::index::Key;
use crate::fdb::remotes::RemoteId;
use crate::fdb::{PortId, Tick};
use crate::wire::MacAddr;

/// Where an entry points, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Port(PortId),
    Remote(RemoteId),
}

/// An entry in one `u64`: bits 0-15 the port or remote id, 16 remote (else port), 17 static,
/// 18 sticky, 19 installed by a control plane (EVPN), 20-31 hits (saturating), 32-63 last seen
/// in hundredths of a second since the epoch (wrapping after 497 days: ages are computed
/// against `now` with wrapping arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Packed(pub(super) u64);

const REMOTE_BIT: u64 = 1 << 16;
const STATIC_BIT: u64 = 1 << 17;
const STICKY_BIT: u64 = 1 << 18;
const EVPN_BIT: u64 = 1 << 19;
const HITS_SHIFT: u32 = 20;
const HITS_MAX: u64 = (1 << 12) - 1;
const SEEN_SHIFT: u32 = 32;

/// A tick in the 32-bit wrapping hundredths that entries store.
pub(super) fn centis(t: Tick) -> u32 {
    // Wrapping on purpose: only differences are used.
    ((t / 10) & 0xffff_ffff) as u32
}

impl Packed {
    pub(super) fn new(
        slot: Slot,
        is_static: bool,
        is_sticky: bool,
        hits: u64,
        now: Tick,
    ) -> Packed {
        let loc = match slot {
            Slot::Port(p) => u64::from(p.0),
            Slot::Remote(id) => REMOTE_BIT | u64::from(id.0),
        };
        let flags = if is_static { STATIC_BIT } else { 0 } | if is_sticky { STICKY_BIT } else { 0 };
        Packed(
            loc | flags
                | (hits.min(HITS_MAX) << HITS_SHIFT)
                | (u64::from(centis(now)) << SEEN_SHIFT),
        )
    }

    /// A control plane's entry (EVPN): at a remote VTEP, never aged, never moved by what the
    /// underlay's frames say; `sticky` (a static MAC there) not moved by local frames either.
    pub(super) fn evpn(slot: Slot, sticky: bool, now: Tick) -> Packed {
        Packed(Packed::new(slot, false, sticky, 0, now).0 | EVPN_BIT)
    }

    pub(super) fn slot(self) -> Slot {
        // The low 16 bits are the id.
        let id = (self.0 & 0xffff) as u16;
        if self.0 & REMOTE_BIT != 0 {
            Slot::Remote(RemoteId(id))
        } else {
            Slot::Port(PortId(id))
        }
    }

    pub(super) fn is_static(self) -> bool {
        self.0 & STATIC_BIT != 0
    }

    pub(super) fn is_sticky(self) -> bool {
        self.0 & STICKY_BIT != 0
    }

    pub(super) fn is_evpn(self) -> bool {
        self.0 & EVPN_BIT != 0
    }

    pub(super) fn hits(self) -> u32 {
        // 12 bits.
        ((self.0 >> HITS_SHIFT) & HITS_MAX) as u32
    }

    /// When the entry was last seen, as a tick not after `now`. A refresh that another worker
    /// made after the caller read `now` is a little in the future: it counts as seen at `now`,
    /// not as seen 497 days ago.
    pub(super) fn last_seen(self, now: Tick) -> Tick {
        /// Differences this close to a full turn are times after `now` (an hour's worth).
        const FUTURE: u32 = 360_000;
        let seen = (self.0 >> SEEN_SHIFT) as u32;
        let diff = centis(now).wrapping_sub(seen);
        let idle = if diff > u32::MAX - FUTURE {
            0
        } else {
            u64::from(diff) * 10
        };
        (now - now % 10).saturating_sub(idle)
    }

    /// Seen again at `now`: one more hit.
    pub(super) fn refreshed(self, now: Tick) -> Packed {
        let hits = (u64::from(self.hits()) + 1).min(HITS_MAX);
        let kept = self.0 & (REMOTE_BIT | STATIC_BIT | STICKY_BIT | EVPN_BIT | 0xffff);
        Packed(kept | (hits << HITS_SHIFT) | (u64::from(centis(now)) << SEEN_SHIFT))
    }
}

/// The index key of `mac` on `vni`.
pub(super) fn key(vni: VniIdx, mac: MacAddr) -> Key {
    // Handles stop at `Key::MAX_TAG` (`add_vni`), so the tag is the handle itself.
    Key::tagged(vni.0, mac.to_u64())
}

/// The VNI handle and MAC of an index key.
pub(super) fn split_key(key: Key) -> (VniIdx, MacAddr) {
    let (tag, mac) = key.untag();
    (VniIdx(tag), MacAddr::from_u64(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_ages_wrap() {
        let p = Packed::new(Slot::Remote(RemoteId(65535)), false, true, 3, 12_345);
        assert_eq!(p.slot(), Slot::Remote(RemoteId(65535)));
        assert!(!p.is_static() && p.is_sticky());
        assert_eq!(p.hits(), 3);
        assert_eq!(p.last_seen(12_345), 12_340);
        assert_eq!(p.last_seen(20_000), 12_340);
        let r = p.refreshed(99_999);
        assert_eq!((r.hits(), r.last_seen(99_999)), (4, 99_990));
        assert_eq!(r.slot(), p.slot());
        assert!(r.is_sticky());
        let s = Packed::new(Slot::Port(PortId(7)), true, false, 1 << 20, 0);
        assert_eq!(s.slot(), Slot::Port(PortId(7)));
        assert!(s.is_static());
        assert_eq!(s.hits(), 4095, "saturates");
        assert!(!s.is_evpn());
        let e = Packed::evpn(Slot::Remote(RemoteId(9)), false, 500);
        assert!(e.is_evpn() && !e.is_static() && !e.is_sticky());
        assert_eq!(e.slot(), Slot::Remote(RemoteId(9)));
        assert!(e.refreshed(600).is_evpn(), "a refresh keeps the kind");
        // 497 days on, the 32-bit hundredths have wrapped; ages stay right.
        let later: Tick = (1 << 32) * 10 + 50_000;
        let seen = Packed::new(Slot::Port(PortId(1)), false, false, 1, later - 30_000);
        assert_eq!(later - seen.last_seen(later), 30_000);
        // Refreshed by another worker just after `now` was read: seen now, not long ago.
        let ahead = Packed::new(Slot::Port(PortId(1)), false, false, 1, 12_360);
        assert_eq!(ahead.last_seen(12_345), 12_340);
    }
}
