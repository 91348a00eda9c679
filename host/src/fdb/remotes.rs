//! `Remotes`: interns the underlay addresses of remote VTEPs, so that an FDB entry holds a 16-bit
//! id instead of a 17-byte `IpAddr` and fits one packed word.
//!
//! Readers turn an id back into its address without a lock (the data path, on every frame sent
//! to a remote); the FDB's writer interns and releases under its own lock. Reference-counted, so
//! that addresses spoofed by a flood of bogus packets are forgotten once their entries are gone.
//! A freed id goes to the back of a queue and is reused as late as possible, so that a reader
//! still holding an entry it read just before the entry went away finds the old address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use foldhash::fast::RandomState;

/// The most remote VTEPs a table holds at once.
pub(crate) const MAX_REMOTES: usize = 1 << 16;
/// Cells are allocated in chunks as ids are first used.
const CHUNK: usize = 256;

/// Index of an interned remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RemoteId(pub(crate) u16);

/// One address, readable while it is written (the writer publishes the id afterwards).
#[derive(Debug, Default)]
struct Cell {
    hi: AtomicU64,
    lo: AtomicU64,
    v6: AtomicBool,
}

/// Id-to-address for readers; interning state for the writer.
#[derive(Debug)]
pub(crate) struct Remotes {
    chunks: Box<[OnceLock<Box<[Cell]>>]>,
}

/// The writer's side: which address has which id, how many entries use each, free ids.
#[derive(Debug, Default)]
pub(crate) struct Interning {
    index: HashMap<IpAddr, RemoteId, RandomState>,
    refs: Vec<u32>,
    free: VecDeque<RemoteId>,
}

impl Default for Remotes {
    fn default() -> Remotes {
        Remotes {
            chunks: (0..MAX_REMOTES / CHUNK).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Remotes {
    fn cell(&self, id: RemoteId) -> Option<&Cell> {
        let i = usize::from(id.0);
        self.chunks.get(i / CHUNK)?.get()?.get(i % CHUNK)
    }

    /// The address behind `id` (unspecified for an id never interned).
    pub(crate) fn addr(&self, id: RemoteId) -> IpAddr {
        let Some(c) = self.cell(id) else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        let (hi, lo) = (c.hi.load(Ordering::Acquire), c.lo.load(Ordering::Acquire));
        if c.v6.load(Ordering::Acquire) {
            IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
        } else {
            // The low 32 bits hold an IPv4 address.
            IpAddr::V4(Ipv4Addr::from(u32::try_from(lo & 0xffff_ffff).unwrap_or(0)))
        }
    }

    /// Writer: takes a reference to `addr`, interning it if new; `None` when every id is taken.
    pub(crate) fn acquire(&self, w: &mut Interning, addr: IpAddr) -> Option<RemoteId> {
        if let Some(&id) = w.index.get(&addr) {
            w.refs[usize::from(id.0)] += 1;
            return Some(id);
        }
        let id = if w.refs.len() < MAX_REMOTES {
            // Fresh ids first: freed ones wait as long as possible before reuse.
            let id = RemoteId(u16::try_from(w.refs.len()).ok()?);
            w.refs.push(0);
            id
        } else {
            w.free.pop_front()?
        };
        let i = usize::from(id.0);
        let chunk =
            self.chunks[i / CHUNK].get_or_init(|| (0..CHUNK).map(|_| Cell::default()).collect());
        let cell = &chunk[i % CHUNK];
        let (hi, lo, v6) = match addr {
            IpAddr::V4(a) => (0, u64::from(a.to_bits()), false),
            IpAddr::V6(a) => {
                let bits = a.to_bits();
                (
                    u64::try_from(bits >> 64).unwrap_or(0),
                    u64::try_from(bits & u128::from(u64::MAX)).unwrap_or(0),
                    true,
                )
            }
        };
        cell.hi.store(hi, Ordering::Release);
        cell.lo.store(lo, Ordering::Release);
        cell.v6.store(v6, Ordering::Release);
        w.refs[i] = 1;
        w.index.insert(addr, id);
        Some(id)
    }

    /// Writer: drops one reference; the address is forgotten with its last reference.
    pub(crate) fn release(&self, w: &mut Interning, id: RemoteId) {
        let i = usize::from(id.0);
        let Some(refs) = w.refs.get_mut(i) else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            w.index.remove(&self.addr(id));
            w.free.push_back(id);
        }
    }
}

impl Interning {
    /// How many distinct addresses are referenced.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_forgets() {
        let (t, mut w) = (Remotes::default(), Interning::default());
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let ia = t.acquire(&mut w, a).unwrap();
        assert_eq!(t.acquire(&mut w, a), Some(ia));
        let ib = t.acquire(&mut w, b).unwrap();
        assert_ne!(ia, ib);
        assert_eq!((t.addr(ia), t.addr(ib)), (a, b));
        assert_eq!(w.len(), 2);
        t.release(&mut w, ia);
        assert_eq!(w.len(), 2, "one reference left");
        t.release(&mut w, ia);
        assert_eq!(w.len(), 1);
        // A new address takes a fresh id, not the one just freed.
        let c: IpAddr = "198.18.0.3".parse().unwrap();
        let ic = t.acquire(&mut w, c).unwrap();
        assert_ne!(ic, ia);
        assert_eq!(t.addr(ia), a, "a freed id still reads its last address");
        assert_eq!(t.addr(RemoteId(9999)), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn freed_ids_are_reused_once_all_were_taken() {
        let (t, mut w) = (Remotes::default(), Interning::default());
        let addr = |i: usize| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
        for i in 0..MAX_REMOTES {
            t.acquire(&mut w, addr(i)).unwrap();
        }
        assert_eq!(t.acquire(&mut w, addr(MAX_REMOTES)), None, "full");
        t.release(&mut w, RemoteId(7));
        let id = t.acquire(&mut w, addr(MAX_REMOTES)).unwrap();
        assert_eq!(id, RemoteId(7));
        assert_eq!(t.addr(id), addr(MAX_REMOTES));
    }
}
