//! The verdict cache: a plugin that returns `cache-secs > 0` is not asked again about the
//! same flow until that time has passed (or it is reloaded, which starts a new cache).
//!
//! A flow is everything the plugin was shown except the frame's length: VNI, direction,
//! source location, MACs, VLAN, ethertype, IP addresses and protocol, L4 ports, and (for
//! plugins of interface 0.2.0 on, which are shown them) the frame's [`Details`]: DSCP, TCP
//! flags, ICMP and ARP fields. A plugin whose verdict depends on more (the length, the bytes,
//! its own state) should not cache it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use crate::fdb::Location;
use crate::vtep::{Direction, FilterFrame};
use crate::wire::{Details, L4Ports, MacAddr, Vni};

/// The cache key of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    vni: Vni,
    direction: Direction,
    source: Location,
    src: MacAddr,
    dst: MacAddr,
    vlan: Option<u16>,
    ethertype: u16,
    ip: Option<(IpAddr, IpAddr, u8)>,
    ports: Option<L4Ports>,
    details: Details,
}

impl FlowKey {
    /// The key of `f`, with the details its plugin was shown (none for 0.1.0 plugins).
    pub(crate) fn of(f: &FilterFrame<'_>, details: Details) -> FlowKey {
        let m = f.meta;
        FlowKey {
            vni: f.vni,
            direction: f.direction,
            source: f.source,
            src: m.src,
            dst: m.dst,
            vlan: m.vlan,
            ethertype: m.ethertype,
            ip: m.ip.map(|ip| (ip.src, ip.dst, ip.protocol)),
            ports: m.ip.and_then(|ip| ip.ports),
            details,
        }
    }
}

/// A cached verdict: pass, or drop with the plugin's reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cached {
    Pass,
    Drop(u16),
}

/// Verdicts by flow, each with its expiry. Bounded: when full, expired entries are swept (at
/// most once a second) and, if that frees nothing, new verdicts are not cached.
#[derive(Debug)]
pub(crate) struct VerdictCache {
    map: HashMap<FlowKey, (Cached, Instant), RandomState>,
    capacity: usize,
    last_sweep: Option<Instant>,
}

impl VerdictCache {
    pub(crate) fn new(capacity: usize) -> VerdictCache {
        VerdictCache {
            map: HashMap::default(),
            capacity,
            last_sweep: None,
        }
    }

    /// The live verdict for `key` at `now`, if any.
    pub(crate) fn get(&mut self, key: &FlowKey, now: Instant) -> Option<Cached> {
        match self.map.get(key) {
            Some(&(v, expires)) if expires > now => Some(v),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `verdict` for `secs` from `now`; false if the cache is full.
    pub(crate) fn insert(
        &mut self,
        key: FlowKey,
        verdict: Cached,
        secs: u32,
        now: Instant,
    ) -> bool {
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            let swept_lately = self
                .last_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
            if swept_lately {
                return false;
            }
            self.last_sweep = Some(now);
            self.map.retain(|_, (_, expires)| *expires > now);
            if self.map.len() >= self.capacity {
                return false;
            }
        }
        let expires = now + Duration::from_secs(u64::from(secs));
        self.map.insert(key, (verdict, expires));
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::PortId;
    use crate::wire::FrameMeta;

    fn frame(n: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, n]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    fn key(bytes: &[u8], len: usize) -> FlowKey {
        detailed_key(bytes, len, Details::default())
    }

    fn detailed_key(bytes: &[u8], len: usize, details: Details) -> FlowKey {
        let meta = FrameMeta::parse(&bytes[..len]).unwrap();
        FlowKey::of(
            &FilterFrame {
                vni: Vni::new(5001).unwrap(),
                direction: Direction::FromPort,
                source: Location::Port(PortId(0)),
                meta: &meta,
                bytes,
            },
            details,
        )
    }

    #[test]
    fn details_shown_are_part_of_the_flow() {
        let mut c = VerdictCache::new(4);
        let now = Instant::now();
        let f = frame(1);
        let syn = Details {
            tcp_flags: Some(0x02),
            ..Details::default()
        };
        let ack = Details {
            tcp_flags: Some(0x10),
            ..Details::default()
        };
        assert!(c.insert(detailed_key(&f, 60, syn), Cached::Drop(1), 10, now));
        assert_eq!(
            c.get(&detailed_key(&f, 60, syn), now),
            Some(Cached::Drop(1))
        );
        assert_eq!(c.get(&detailed_key(&f, 60, ack), now), None);
    }

    #[test]
    fn verdicts_expire_and_the_length_is_not_part_of_the_flow() {
        let mut c = VerdictCache::new(2);
        let now = Instant::now();
        let f = frame(1);
        assert!(c.insert(key(&f, 60), Cached::Drop(7), 2, now));
        assert_eq!(c.get(&key(&f, 40), now), Some(Cached::Drop(7)));
        assert_eq!(c.get(&key(&frame(2), 60), now), None);
        assert_eq!(c.get(&key(&f, 60), now + Duration::from_secs(2)), None);
        assert_eq!(c.len(), 0, "an expired entry is removed when seen");
    }

    #[test]
    fn full_cache_sweeps_then_refuses() {
        let mut c = VerdictCache::new(2);
        let now = Instant::now();
        assert!(c.insert(key(&frame(1), 60), Cached::Pass, 1, now));
        assert!(c.insert(key(&frame(2), 60), Cached::Pass, 10, now));
        assert!(!c.insert(key(&frame(3), 60), Cached::Pass, 10, now));
        // Later, a sweep frees frame 1's expired entry; at once after, a full cache is not
        // swept again.
        let t = now + Duration::from_millis(1500);
        assert!(
            c.insert(key(&frame(3), 60), Cached::Pass, 10, t),
            "sweeps frame 1"
        );
        assert!(!c.insert(key(&frame(4), 60), Cached::Pass, 10, t));
    }
}
