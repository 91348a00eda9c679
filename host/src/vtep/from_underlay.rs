//! Packets from the underlay (RFC 7348 §4.1, receive side): check the VXLAN header and VNI,
//! learn `inner source MAC -> outer source IP`, decapsulate and deliver to this VNI's local
//! ports. Nothing received from the underlay is ever sent back into it (split horizon). Offloads
//! a sending kernel left pending go to the ports marked as such ([`offload::restore_offloads`]).

use std::net::IpAddr;
use std::time::Instant;

use super::outbox::Outbox;
use super::stats::DropReason;
use super::{Location, Vtep, count_learn};
use crate::fdb::Builtin;
use crate::offload;
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
        let Vtep {
            fdb, vnis, encap, ..
        } = self;
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
        // A kernel VTEP on a software underlay leaves checksums partial and TCP super-frames
        // whole; the UDP socket lost the metadata that says so, and this puts it back.
        let vnet = offload::restore_offloads(inner, &meta, encap.max_inner());
        for &p in ports {
            out.push(super::Dest::Port(p), vnet)
                .extend_from_slice(inner);
            vni.stats.to_ports.add(inner.len());
        }
        Ok(())
    }
}
