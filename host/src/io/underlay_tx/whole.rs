//! Sending a super-frame the pipeline encapsulated once
//! ([`Dest::UnderlayWhole`](crate::vtep::Dest::UnderlayWhole)): through the tunnel tap as one
//! packet, or, when there is no tap or it refused the frame, segmented here and sent as the
//! flow's GSO batch, as the pipeline would have written it.

use std::net::IpAddr;

use super::UnderlayTx;
use super::tunnel_tap::{TapUnavailable, TunnelTap};
use crate::io::counts::{TxCounts, TxDrop};
use crate::offload::Segmenter;
use crate::vtep::{OutFrame, Outbox, UnderlayDest};
use crate::wire::VXLAN_HEADER_LEN;

impl UnderlayTx {
    /// Opens the tunnel tap through which super-frames leave whole (see `tunnel_tap`), with the
    /// outer TTL `ttl`. Returns its name; on `Err` nothing changed and the caller keeps
    /// segmenting.
    pub fn open_tunnel_tap(&mut self, ttl: u8) -> Result<String, TapUnavailable> {
        let IpAddr::V4(local) = self.local else {
            return Err(TapUnavailable::NotIpv4);
        };
        let tap = TunnelTap::open(local, self.dst_port, ttl)?;
        let name = tap.name().to_owned();
        self.tunnel = Some(tap);
        Ok(name)
    }

    /// Whether super-frames may be handed over whole: a tunnel tap is open.
    pub fn takes_whole_super_frames(&self) -> bool {
        self.tunnel.is_some()
    }

    /// Sends `frame` (a VXLAN header and a super-frame) to `dest`, counting the packets it
    /// becomes on a wire. `scratch` holds the segments when it has to be segmented here.
    pub fn send_whole(
        &self,
        dest: UnderlayDest,
        frame: &OutFrame,
        scratch: &mut Outbox,
        counts: &mut TxCounts,
    ) {
        let Some(inner) = frame.bytes.get(VXLAN_HEADER_LEN..) else {
            counts.record_drops(TxDrop::Invalid, 1);
            return;
        };
        let segments = match Segmenter::new(inner, &frame.vnet) {
            Ok(s) => s,
            Err(_) => {
                counts.record_drops(TxDrop::Invalid, 1);
                return;
            }
        };
        let n = segments.segment_count() as u64;
        if let (Some(tap), IpAddr::V4(dst)) = (&self.tunnel, dest.dst)
            && tap.enabled()
        {
            let sent = tap.send(
                dst,
                dest.src_port,
                &frame.vnet,
                u16::try_from(segments.network_offset()).unwrap_or(u16::MAX),
                segments.segment_count(),
                &frame.bytes,
            );
            match sent.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)) {
                Ok(()) => {
                    counts.sent += n;
                    counts.batched += 1;
                    counts.whole += 1;
                    return;
                }
                // The kernel refuses the header itself: segment from now on.
                Err(libc::EINVAL) => {
                    if tap.disable() {
                        tracing::warn!(
                            tap = tap.name(),
                            "the kernel refuses tunnel GSO frames: segmenting in user space"
                        );
                    }
                }
                Err(errno) => {
                    counts.record_errno(errno, n);
                    return;
                }
            }
        }
        self.send_segmented(dest, frame, segments, scratch, counts);
    }

    /// Segments the super-frame into the flow's datagrams and sends them as a GSO batch.
    fn send_segmented(
        &self,
        dest: UnderlayDest,
        frame: &OutFrame,
        mut segments: Segmenter<'_>,
        scratch: &mut Outbox,
        counts: &mut TxCounts,
    ) {
        let Some(vxlan) = frame.bytes.get(..VXLAN_HEADER_LEN) else {
            return;
        };
        scratch.clear();
        while let Some(len) = segments.next_len() {
            scratch.append_datagram(dest, VXLAN_HEADER_LEN + len, |b| {
                b.extend_from_slice(vxlan);
                segments.append_next(b);
            });
        }
        self.send_batch(
            dest.src_port,
            scratch.frames().iter().map(|f| (dest.dst, f)),
            counts,
        );
        scratch.clear();
    }
}
