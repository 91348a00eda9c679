//! Packets from the underlay (RFC 7348 §4.1, receive side): check the VXLAN header and VNI,
//! filter (hooks), learn `inner source MAC -> outer source IP`, decapsulate and deliver to this
//! VNI's local ports. Nothing received from the underlay is ever sent back into it (split
//! horizon). What a sending kernel left undone (a partial checksum, a TCP super-frame) is
//! delivered with a `virtio_net_hdr` that has the port's kernel finish it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::batch::{Pending, UnderlayBatch, fdb_keys, run_filters};
use super::hooks::{Direction, Hooks, Verdict};
use super::outbox::Outbox;
use super::stats::DropReason;
use super::{Shared, Vtep, count_learn, on_vni};
use crate::fdb::Location;
use crate::fdb::{Builtin, FdbReader, LearnPolicy, Tick, VniIdx};
use crate::offload::recover_offloads;
use crate::wire::{FrameMeta, VirtioNetHdr, VxlanPacket};

impl Vtep {
    /// Handles one UDP datagram (the VXLAN header and inner frame) that `src` sent to this
    /// VTEP's port, under the built-in policies (no filter). Returns the drop reason if it
    /// went nowhere.
    pub fn handle_underlay(
        &mut self,
        now: Instant,
        src: IpAddr,
        datagram: &[u8],
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let tick = self.tick(now);
        let shared = Arc::clone(&self.shared);
        let fdb = shared.fdb.reader();
        let result = self
            .admit_from_underlay(src, datagram)
            .and_then(|(idx, meta, offset)| {
                let inner = datagram.get(offset..).unwrap_or_default();
                self.deliver_from_underlay(&fdb, tick, src, idx, &meta, inner, out, &mut Builtin)
            });
        out.finish_merging();
        if let Err(reason) = result {
            self.drops.count(reason);
        }
        result
    }

    /// Handles a batch of datagrams from the underlay: checks each VXLAN header and parses the
    /// inner frame, offers those on VNIs that `hooks` filters to it in one call, then learns
    /// and delivers the frames that passed, in order. Every drop is counted by reason.
    pub fn handle_underlay_batch<B: UnderlayBatch + ?Sized, H: Hooks + ?Sized>(
        &mut self,
        now: Instant,
        batch: &B,
        out: &mut Outbox,
        hooks: &mut H,
    ) {
        let tick = self.tick(now);
        let mut pending = core::mem::take(&mut self.pending);
        let mut verdicts = core::mem::take(&mut self.verdicts);
        pending.clear();
        let mut wanted = false;
        for at in 0..batch.len() {
            let Some((src, datagram)) = batch.datagram(at) else {
                continue;
            };
            match self.admit_from_underlay(src, datagram) {
                Ok((idx, meta, offset)) => {
                    let vni = self.shared.vnis[idx.index()].settings.vni;
                    wanted |= hooks.filters(vni);
                    pending.push(Pending {
                        at,
                        idx,
                        vni,
                        source: Location::Remote(src),
                        meta,
                        offset,
                    });
                }
                Err(reason) => self.drops.count(reason),
            }
        }
        // One hold on the table for the batch, and its entries on their way into the cache
        // while the filters run (see `FdbReader`).
        let shared = Arc::clone(&self.shared);
        let fdb = shared.fdb.reader();
        fdb.prefetch(pending.iter().flat_map(fdb_keys));
        run_filters(
            hooks,
            now,
            Direction::FromUnderlay,
            &pending,
            wanted,
            |at| batch.datagram(at).map(|(_, bytes)| bytes),
            &mut verdicts,
        );
        for (p, verdict) in pending.iter().zip(&verdicts) {
            let inner = batch
                .datagram(p.at)
                .and_then(|(src, d)| Some((src, d.get(p.offset..)?)));
            let result = match (verdict, inner) {
                (Verdict::Drop, _) => {
                    self.stats[p.idx.index()].filtered += 1;
                    Err(DropReason::Filtered)
                }
                (Verdict::Pass, Some((src, inner))) => {
                    self.deliver_from_underlay(&fdb, tick, src, p.idx, &p.meta, inner, out, hooks)
                }
                (Verdict::Pass, None) => Ok(()), // the batch shrank: nothing to deliver
            };
            if let Err(reason) = result {
                self.drops.count(reason);
            }
        }
        out.finish_merging();
        self.pending = pending;
        self.verdicts = verdicts;
    }

    /// The checks before any policy: not our own packet, a valid VXLAN header on a served VNI,
    /// a parsable inner frame with a unicast source. Returns where the inner frame starts.
    fn admit_from_underlay(
        &mut self,
        src: IpAddr,
        datagram: &[u8],
    ) -> Result<(VniIdx, FrameMeta, usize), DropReason> {
        if src == self.shared.local {
            return Err(DropReason::OwnPacket);
        }
        let packet = VxlanPacket::new_checked(datagram).map_err(|_| DropReason::VxlanTooShort)?;
        if !packet.has_vni_flag() {
            return Err(DropReason::VxlanFlagClear);
        }
        let idx = *self
            .shared
            .by_vni
            .get(&packet.vni())
            .ok_or(DropReason::VniNotServed)?;
        let vni = &self.shared.vnis[idx.index()];
        if vni.settings.strict_reserved && packet.reserved_bits_set() {
            return Err(DropReason::VxlanReservedBits);
        }
        if vni.settings.source_check && !vni.remotes.knows(src) {
            return Err(DropReason::UnknownVtep);
        }
        let inner = packet.payload();
        let meta = FrameMeta::parse(inner).map_err(|_| DropReason::InnerFrameTooShort)?;
        self.stats[idx.index()].from_underlay.add(datagram.len());
        if !meta.src.is_valid_unicast() {
            return Err(DropReason::InvalidSourceMac);
        }
        Ok((idx, meta, datagram.len() - inner.len()))
    }

    /// Learns `inner source MAC -> src`, then delivers to the destination's port or floods to
    /// the VNI's ports.
    #[allow(clippy::too_many_arguments)] // one frame's context, split out of a batch
    fn deliver_from_underlay(
        &mut self,
        fdb: &FdbReader<'_>,
        tick: Tick,
        src: IpAddr,
        idx: VniIdx,
        meta: &FrameMeta,
        inner: &[u8],
        out: &mut Outbox,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> Result<(), DropReason> {
        let Shared {
            vnis,
            encap,
            merge_udp,
            port_vni,
            ..
        } = &*self.shared;
        let max_inner = encap.max_inner();
        let vni = &vnis[idx.index()];
        let stats = &mut self.stats[idx.index()];
        if vni.settings.learning && vni.settings.learn_from_underlay {
            let outcome = fdb.learn(idx, meta.src, Location::Remote(src), tick, policy);
            count_learn(stats, outcome)?;
        }
        let known = if meta.dst.is_multicast() {
            None
        } else {
            fdb.lookup(idx, meta.dst)
        };
        let single;
        let ports = match known {
            Some(Location::Port(p)) if on_vni(port_vni, p, idx) => {
                single = p;
                core::slice::from_ref(&single)
            }
            Some(Location::Port(_)) => return Err(DropReason::ForeignPort),
            Some(Location::Remote(_)) => return Err(DropReason::SplitHorizon),
            None => vni.settings.ports.as_slice(),
        };
        if ports.is_empty() {
            return Err(DropReason::NoDestination);
        }
        let vnet = recover_offloads(inner, meta, max_inner);
        for &p in ports {
            // Segments of a flow to one port merge back into super-frames (see `Outbox`).
            if vnet == VirtioNetHdr::NONE && known.is_some() {
                out.push_merging(p, inner, meta, *merge_udp);
            } else {
                out.push(super::Dest::Port(p), vnet)
                    .extend_from_slice(inner);
            }
            stats.to_ports.add(inner.len());
        }
        Ok(())
    }
}
