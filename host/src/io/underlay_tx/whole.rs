//! Sending a super-frame the pipeline encapsulated once
//! ([`Dest::UnderlayWhole`](crate::vtep::Dest::UnderlayWhole)): through the tunnel tap as one
//! packet, or, when there is no tap or it refused the frame, segmented here and sent as the
//! flow's GSO batch, as the pipeline would have written it.

use std::net::IpAddr;

use super::UnderlayTx;
use super::tunnel_tap::{SuperFrame, TapUnavailable, TunnelTap};
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

    /// Every second or so, from a thread that is not a worker: keeps the tunnel tap's settings
    /// (see `TunnelTap::keep_settings`).
    pub fn keep_tunnel_tap(&self) {
        if let Some(tap) = &self.tunnel {
            tap.keep_settings();
        }
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
        if let (Some(tap), IpAddr::V4(dst)) = (&self.tunnel, dest.dst)
            && tap.enabled()
            && !dst.is_multicast()
        {
            let sent = tap.send(
                dst,
                dest.src_port,
                &SuperFrame {
                    vnet: &frame.vnet,
                    inner_network: u16::try_from(segments.network_offset()).unwrap_or(u16::MAX),
                    inner_headers: u16::try_from(segments.header_len()).unwrap_or(u16::MAX),
                    segments: segments.segment_count(),
                    payload: &frame.bytes,
                },
            );
            if tap.record(&sent) {
                tracing::warn!(
                    tap = tap.name(),
                    "the kernel keeps refusing tunnel GSO frames: segmenting in user space"
                );
            }
            if sent.is_ok() {
                counts.sent += segments.segment_count() as u64;
                counts.batched += u64::from(segments.segment_count() > 1);
                counts.whole += 1;
                return;
            }
            // Whatever went wrong with the tap (it refused this frame, went down, ...), the
            // frame still leaves, segmented.
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
            counts.record_drops(TxDrop::Invalid, 1);
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
