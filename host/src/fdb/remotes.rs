//! `RemoteTable`: interns the underlay addresses of remote VTEPs so that an FDB entry holds a
//! 4-byte index instead of a 17-byte `IpAddr`. Reference-counted, so that addresses spoofed by
//! a flood of bogus packets are forgotten once their entries are gone.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

/// Index of an interned remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RemoteId(u32);

#[derive(Debug, Default)]
pub(crate) struct RemoteTable {
    /// Address and number of entries that point at it; a freed slot has count 0.
    slots: Vec<(IpAddr, u32)>,
    index: HashMap<IpAddr, RemoteId, RandomState>,
    free: Vec<RemoteId>,
}

impl RemoteTable {
    /// Takes a reference to `addr`, interning it if new.
    pub(crate) fn acquire(&mut self, addr: IpAddr) -> RemoteId {
        if let Some(&id) = self.index.get(&addr) {
            self.slots[id.0 as usize].1 += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id.0 as usize] = (addr, 1);
                id
            }
            None => {
                // More than 2^32 distinct remotes cannot be held in memory anyway.
                let id = RemoteId(u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
                self.slots.push((addr, 1));
                id
            }
        };
        self.index.insert(addr, id);
        id
    }

    /// Drops one reference; the address is forgotten with its last reference.
    pub(crate) fn release(&mut self, id: RemoteId) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        slot.1 = slot.1.saturating_sub(1);
        if slot.1 == 0 {
            self.index.remove(&slot.0);
            self.free.push(id);
        }
    }

    /// The address behind `id`.
    pub(crate) fn addr(&self, id: RemoteId) -> IpAddr {
        self.slots[id.0 as usize].0
    }

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
        let mut t = RemoteTable::default();
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let ia = t.acquire(a);
        assert_eq!(t.acquire(a), ia);
        let ib = t.acquire(b);
        assert_ne!(ia, ib);
        assert_eq!((t.addr(ia), t.addr(ib)), (a, b));
        t.release(ia);
        assert_eq!(t.len(), 2);
        t.release(ia);
        assert_eq!(t.len(), 1);
        // The freed slot is reused.
        let c: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(t.acquire(c), ia);
        assert_eq!(t.addr(ia), c);
    }
}
