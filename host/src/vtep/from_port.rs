//! Frames from local ports (RFC 7348 §4.1): check, filter (hooks), learn the source as local,
//! then switch locally, encapsulate unicast to the one remote VTEP that has the destination,
//! or flood.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::batch::{Pending, PortBatch, fdb_keys, run_filters};
use super::encap::Encapsulator;
use super::hooks::{Direction, Hooks, Verdict};
use super::outbox::{Dest, Outbox};
use super::stats::{DropReason, VniStats};
use super::{Shared, Vtep, count_learn, on_vni};
use crate::fdb::{Builtin, FdbReader, LearnOutcome, LearnPolicy, Tick, VniIdx};
use crate::fdb::{Location, PortId};
use crate::offload::{self, Segmenter};
use crate::wire::{FrameMeta, VirtioNetHdr, Vni};

impl Vtep {
    /// Handles one frame a VM sent out of `port`, with the `virtio_net_hdr` its kernel gave it
    /// (partial checksum, GSO), under the built-in policies (no filter). Returns the drop
    /// reason if the frame went nowhere.
    pub fn handle_port_frame(
        &mut self,
        now: Instant,
        port: PortId,
        vnet: &VirtioNetHdr,
        frame: &[u8],
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let tick = self.tick(now);
        let shared = Arc::clone(&self.shared);
        let fdb = shared.fdb.reader();
        let result = self.admit_from_port(port, frame).and_then(|(idx, meta)| {
            self.switch_from_port(&fdb, tick, port, idx, &meta, vnet, frame, out, &mut Builtin)
        });
        if let Err(reason) = result {
            self.drops.count(reason);
        }
        result
    }

    /// Handles a batch of frames a VM sent out of `port`: checks and parses each, offers those
    /// on VNIs that `hooks` filters to it in one call, then learns and forwards the frames that
    /// passed, in order. Every drop is counted by reason.
    pub fn handle_port_batch<B: PortBatch + ?Sized, H: Hooks + ?Sized>(
        &mut self,
        now: Instant,
        port: PortId,
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
            let Some((_, frame)) = batch.frame(at) else {
                continue;
            };
            match self.admit_from_port(port, frame) {
                Ok((idx, meta)) => {
                    let vni = self.shared.vnis[idx.index()].settings.vni;
                    wanted |= hooks.filters(vni);
                    pending.push(Pending {
                        at,
                        idx,
                        vni,
                        source: Location::Port(port),
                        meta,
                        offset: 0,
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
            Direction::FromPort,
            &pending,
            wanted,
            |at| batch.frame(at).map(|(_, bytes)| bytes),
            &mut verdicts,
        );
        for (p, verdict) in pending.iter().zip(&verdicts) {
            let result = match (verdict, batch.frame(p.at)) {
                (Verdict::Drop, _) => {
                    self.stats[p.idx.index()].filtered += 1;
                    Err(DropReason::Filtered)
                }
                (Verdict::Pass, Some((vnet, frame))) => self
                    .switch_from_port(&fdb, tick, port, p.idx, &p.meta, &vnet, frame, out, hooks),
                (Verdict::Pass, None) => Ok(()), // the batch shrank: nothing to forward
            };
            if let Err(reason) = result {
                self.drops.count(reason);
            }
        }
        self.pending = pending;
        self.verdicts = verdicts;
    }

    /// The checks before any policy: the port's VNI, a parsable frame, a unicast source.
    fn admit_from_port(
        &mut self,
        port: PortId,
        frame: &[u8],
    ) -> Result<(VniIdx, FrameMeta), DropReason> {
        let idx = self
            .shared
            .port_vni
            .get(usize::from(port.0))
            .copied()
            .flatten()
            .ok_or(DropReason::PortNotOnVni)?;
        let meta = FrameMeta::parse(frame).map_err(|_| DropReason::FrameTooShort)?;
        self.stats[idx.index()].from_ports.add(frame.len());
        if !meta.src.is_valid_unicast() {
            return Err(DropReason::InvalidSourceMac);
        }
        Ok((idx, meta))
    }

    /// Learns the source as local, then switches locally, encapsulates or floods.
    #[allow(clippy::too_many_arguments)] // one frame's context, split out of a batch
    fn switch_from_port(
        &mut self,
        fdb: &FdbReader<'_>,
        tick: Tick,
        port: PortId,
        idx: VniIdx,
        meta: &FrameMeta,
        vnet: &VirtioNetHdr,
        frame: &[u8],
        out: &mut Outbox,
        policy: &mut (impl LearnPolicy + ?Sized),
    ) -> Result<(), DropReason> {
        let Vtep {
            shared,
            stats,
            scratch,
            ..
        } = self;
        let Shared {
            vnis,
            encap,
            port_vni,
            ..
        } = &**shared;
        let vni = &vnis[idx.index()];
        let stats = &mut stats[idx.index()];
        if vni.settings.learning {
            let outcome = fdb.learn(idx, meta.src, Location::Port(port), tick, policy);
            // The addresses of a MAC the table holds here (not one a policy rejected, or left
            // to decide later): what a control plane may announce with it.
            let local = matches!(
                outcome,
                LearnOutcome::Learned
                    | LearnOutcome::Refreshed
                    | LearnOutcome::Moved { .. }
                    | LearnOutcome::Static
            );
            count_learn(stats, outcome)?;
            if local {
                vni.local_ips.snoop(meta, frame);
            }
        }
        if vni.settings.arp_suppress
            && let Some(answer) = vni
                .neighbors
                .answer_arp(meta, frame)
                .or_else(|| vni.neighbors.answer_nd(meta, frame))
        {
            stats.arp_suppressed += 1;
            deliver(out, stats, port, &VirtioNetHdr::NONE, answer.bytes());
            return Ok(());
        }
        let hash = meta.flow_hash();
        let id = vni.settings.vni;
        let known = if meta.dst.is_multicast() {
            None
        } else {
            fdb.lookup(idx, meta.dst)
        };
        match known {
            Some(Location::Port(p)) if p == port => Err(DropReason::DestOnIngressPort),
            Some(Location::Port(p)) if on_vni(port_vni, p, idx) => {
                deliver(out, stats, p, vnet, frame);
                Ok(())
            }
            Some(Location::Port(_)) => Err(DropReason::ForeignPort),
            Some(Location::Remote(ip)) => {
                let targets = core::slice::from_ref(&ip);
                encapsulate_all(encap, scratch, stats, targets, id, hash, vnet, frame, out)
            }
            None => {
                stats.floods += 1;
                let mut sent = 0;
                for &p in vni.settings.ports.iter().filter(|&&p| p != port) {
                    deliver(out, stats, p, vnet, frame);
                    sent += 1;
                }
                vni.remotes.with_flood(|targets| {
                    if targets.is_empty() {
                        return if sent > 0 {
                            Ok(())
                        } else {
                            Err(DropReason::NoDestination)
                        };
                    }
                    encapsulate_all(encap, scratch, stats, targets, id, hash, vnet, frame, out)
                })
            }
        }
    }
}

/// A copy of the frame for a local port, offloads still pending: the receiving VM's kernel
/// takes a partial checksum or a super-frame as it would from any veth.
fn deliver(
    out: &mut Outbox,
    stats: &mut VniStats,
    port: PortId,
    vnet: &VirtioNetHdr,
    frame: &[u8],
) {
    out.push(Dest::Port(port), *vnet).extend_from_slice(frame);
    stats.to_ports.add(frame.len());
}

/// Encapsulates the frame to each target, finishing what the VM's kernel left undone first:
/// a TCP super-frame to one target goes whole when the shell can send it so; otherwise a
/// super-frame is segmented (straight into the outbox for one target; once into scratch and
/// copied for several), a partial checksum completed (once, not once per target).
#[allow(clippy::too_many_arguments)] // split borrows of `Vtep`'s fields
fn encapsulate_all(
    encap: &Encapsulator,
    scratch: &mut [u8],
    stats: &mut VniStats,
    targets: &[IpAddr],
    vni: Vni,
    hash: u32,
    vnet: &VirtioNetHdr,
    frame: &[u8],
    out: &mut Outbox,
) -> Result<(), DropReason> {
    if let ([dst], true) = (targets, vnet.is_gso()) {
        let mut segments = Segmenter::new(frame, vnet).map_err(|_| DropReason::BadOffload)?;
        let whole = encap.encapsulate_whole(out, *dst, vni, hash, vnet, frame, &segments)?;
        let (packets, bytes) = match whole {
            Some(counts) => counts,
            None => encap.encapsulate_segments(out, *dst, vni, hash, &mut segments)?,
        };
        stats.to_underlay.add_many(packets, bytes);
        return Ok(());
    }
    let mut result = Ok(());
    let mut send = |inner: &[u8]| {
        for &dst in targets {
            match encap.encapsulate(out, dst, vni, hash, inner) {
                Ok(len) => stats.to_underlay.add(len),
                Err(reason) => result = Err(reason),
            }
        }
    };
    if vnet.is_gso() {
        offload::segment(frame, vnet, scratch, &mut send).map_err(|_| DropReason::BadOffload)?;
    } else if vnet.needs_csum() {
        let copy = scratch
            .get_mut(..frame.len())
            .ok_or(DropReason::BadOffload)?;
        copy.copy_from_slice(frame);
        offload::complete_checksum(copy, vnet).map_err(|_| DropReason::BadOffload)?;
        send(copy);
    } else {
        send(frame);
    }
    result
}
