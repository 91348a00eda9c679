//! [`DatagramBatch`]: the receive buffers of an [`UnderlayRx`](super::UnderlayRx), allocated
//! once, and the datagrams of the last receive read in place (a GRO batch handed out as its
//! datagrams, each with its source).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::io::sys::MAX_BATCH;

/// The largest UDP payload an IPv6 datagram can carry; an IPv4 one carries less.
pub(super) const MAX_DATAGRAM: usize = 65_527;

/// A source address as the kernel writes it (`sockaddr_in` or `sockaddr_in6`), kept as bytes so
/// that reading it needs no cast: family (native order), port (network order), then the IPv4
/// address at 4..8, or the IPv6 flow info at 4..8 and address at 8..24.
#[derive(Clone, Copy)]
#[repr(C, align(4))]
pub(super) struct Name([u8; size_of::<libc::sockaddr_in6>()]);

impl Name {
    pub(super) fn source(&self, namelen: u32) -> Option<(IpAddr, u16)> {
        let b = &self.0;
        let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
        let port = u16::from_be_bytes([b[2], b[3]]);
        let len = namelen as usize;
        if family == libc::AF_INET && len >= size_of::<libc::sockaddr_in>() {
            let ip: [u8; 4] = b[4..8].try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(ip)), port))
        } else if family == libc::AF_INET6 && len >= size_of::<libc::sockaddr_in6>() {
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(ip)), port))
        } else {
            None
        }
    }
}

/// Control bytes per message: one `UDP_GRO` message (`CMSG_SPACE(sizeof(int))` = 24 on 64-bit)
/// with room to spare.
pub(super) const CONTROL_LEN: usize = 32;

/// One message's control buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Control([u8; CONTROL_LEN]);

/// Where a received datagram lies in its batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct DatagramMeta {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) source: IpAddr,
    pub(super) source_port: u16,
}

/// Reusable receive buffers for [`UnderlayRx::recv_batch`](super::UnderlayRx::recv_batch), allocated once.
pub struct DatagramBatch {
    pub(super) buf: Box<[u8]>,
    pub(super) slot_len: usize,
    pub(super) names: Box<[Name]>,
    pub(super) control: Box<[Control]>,
    /// One per datagram, several per slot when GRO coalesced them; grows (rarely) past the
    /// largest GRO batch seen and keeps its capacity.
    pub(super) datagrams: Vec<DatagramMeta>,
}

impl core::fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("capacity", &self.capacity())
            .field("slot_len", &self.slot_len)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// One datagram of a [`DatagramBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The sending VTEP's address.
    pub source: IpAddr,
    /// The outer UDP source port (the sender's per-flow entropy).
    pub source_port: u16,
    /// The UDP payload: VXLAN header and inner frame.
    pub payload: &'a [u8],
}

impl DatagramBatch {
    /// Buffers for `capacity` receives (at least 1, at most [`MAX_BATCH`]) of any size UDP
    /// allows (64 KiB each: a GRO batch, or a datagram reassembled from fragments).
    pub fn new(capacity: usize) -> DatagramBatch {
        DatagramBatch::with_slot_len(capacity, MAX_DATAGRAM)
    }

    /// Buffers for `capacity` receives of at most `slot_len` bytes (at least 1): longer ones
    /// are dropped and counted as truncated.
    pub fn with_slot_len(capacity: usize, slot_len: usize) -> DatagramBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let slot_len = slot_len.clamp(1, MAX_DATAGRAM);
        DatagramBatch {
            buf: vec![0; capacity * slot_len].into_boxed_slice(),
            slot_len,
            names: vec![Name([0; size_of::<libc::sockaddr_in6>()]); capacity].into_boxed_slice(),
            control: vec![Control([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            datagrams: Vec::with_capacity(capacity),
        }
    }

    /// How many receives (datagrams, or GRO batches of them) one call can take.
    pub fn capacity(&self) -> usize {
        self.names.len()
    }

    /// How many datagrams the last receive delivered.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// The last receive delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let meta = self.datagrams.get(i)?;
        Some(Datagram {
            source: meta.source,
            source_port: meta.source_port,
            payload: &self.buf[meta.start..meta.start + meta.len],
        })
    }

    /// The datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// The pipeline reads a received batch in place.
impl crate::vtep::UnderlayBatch for DatagramBatch {
    fn len(&self) -> usize {
        DatagramBatch::len(self)
    }

    fn datagram(&self, i: usize) -> Option<(IpAddr, &[u8])> {
        self.get(i).map(|d| (d.source, d.payload))
    }
}

impl Default for DatagramBatch {
    /// A batch of 32 datagrams of up to 64 KiB each.
    fn default() -> DatagramBatch {
        DatagramBatch::new(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sys::abi;

    #[test]
    fn names_decode_both_families_and_reject_short_ones() {
        let mut n = Name([0; 28]);
        n.0[..2].copy_from_slice(&abi::AF_INET.to_ne_bytes());
        n.0[2..4].copy_from_slice(&54321u16.to_be_bytes());
        n.0[4..8].copy_from_slice(&[198, 18, 0, 1]);
        assert_eq!(
            n.source(16),
            Some((IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 54321))
        );
        assert_eq!(n.source(8), None);

        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut n = Name([0; 28]);
        n.0[..2].copy_from_slice(&abi::AF_INET6.to_ne_bytes());
        n.0[2..4].copy_from_slice(&4789u16.to_be_bytes());
        n.0[8..24].copy_from_slice(&ip.octets());
        assert_eq!(n.source(28), Some((IpAddr::V6(ip), 4789)));
        n.0[..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(n.source(28), None);
    }
}
