//! Packets from the underlay (RFC 7348 §4.1, receive side): check the VXLAN header and VNI,
//! learn `inner source MAC -> outer source IP`, decapsulate and deliver to this VNI's local
//! ports. Nothing received from the underlay is ever sent back into it (split horizon). What a
//! sending kernel left undone (a partial checksum, a TCP super-frame) is delivered with a
//! `virtio_net_hdr` that has the port's kernel finish it.

use std::net::IpAddr;
use std::time::Instant;

use super::outbox::Outbox;
use super::stats::DropReason;
use super::{Location, Vtep, count_learn};
use crate::fdb::Builtin;
use crate::offload::recover_offloads;
use crate::wire::{FrameMeta, VxlanPacket};

impl Vtep {
    /// Handles one UDP datagram (the VXLAN header and inner frame) that `src` sent to this
    /// VTEP's port. Returns the drop reason if it went nowhere.
    pub fn handle_underlay(
        &mut self,
        now: Instant,
        src: IpAddr,
        datagram: &[u8],
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let result = self.decapsulate(now, src, datagram, out);
        if let Err(reason) = result {
            self.drops.count(reason);
        }
        result
    }

    fn decapsulate(
        &mut self,
        now: Instant,
        src: IpAddr,
        datagram: &[u8],
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        if src == self.local {
            return Err(DropReason::OwnPacket);
        }
        let packet = VxlanPacket::new_checked(datagram).map_err(|_| DropReason::VxlanTooShort)?;
        if !packet.has_vni_flag() {
            return Err(DropReason::VxlanFlagClear);
        }
        let idx = *self
            .by_vni
            .get(&packet.vni())
            .ok_or(DropReason::VniNotServed)?;
        let tick = self.tick(now);
        let max_inner = self.encap.max_inner();
        let Vtep { fdb, vnis, .. } = self;
        let vni = &mut vnis[idx.index()];
        if vni.settings.strict_reserved && packet.reserved_bits_set() {
            return Err(DropReason::VxlanReservedBits);
        }
        let inner = packet.payload();
        let meta = FrameMeta::parse(inner).map_err(|_| DropReason::InnerFrameTooShort)?;
        vni.stats.from_underlay.add(datagram.len());
        if !meta.src.is_valid_unicast() {
            return Err(DropReason::InvalidSourceMac);
        }
        if vni.settings.learning {
            let outcome = fdb.learn(idx, meta.src, Location::Remote(src), tick, &mut Builtin);
            count_learn(&mut vni.stats, outcome)?;
        }
        let known = if meta.dst.is_multicast() {
            None
        } else {
            fdb.lookup(idx, meta.dst)
        };
        let single;
        let ports = match known {
            Some(Location::Port(p)) => {
                single = p;
                core::slice::from_ref(&single)
            }
            Some(Location::Remote(_)) => return Err(DropReason::SplitHorizon),
            None => vni.settings.ports.as_slice(),
        };
        if ports.is_empty() {
            return Err(DropReason::NoDestination);
        }
        // A kernel VTEP on a virtual link may have left the inner checksum unfinished or a TCP
        // super-frame whole: the port's kernel finishes them, as the kernel's vxlan would.
        let vnet = recover_offloads(inner, &meta, max_inner);
        for &p in ports {
            out.push(super::Dest::Port(p), vnet)
                .extend_from_slice(inner);
            vni.stats.to_ports.add(inner.len());
        }
        Ok(())
    }
}
