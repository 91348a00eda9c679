//! `Transmitter`: drains the pipeline's [`Outbox`] into the sockets, one batched system call per
//! port and per underlay source port (per [`MAX_BATCH`](super::MAX_BATCH) frames).
//!
//! Contract: frames to the same destination (one port, or the underlay) leave in the order the
//! pipeline pushed them, so no flow is reordered; frames to different destinations may leave in
//! any order relative to each other. Every frame is counted as sent or dropped by reason.

use super::counts::{TxCounts, TxDrop};
use super::port::Port;
use super::underlay_tx::UnderlayTx;
use crate::fdb::PortId;
use crate::vtep::{Dest, Outbox};

/// The sort keys of underlay frames: after every port's, one per source port (a socket each).
const UNDERLAY_KEYS: u32 = 1 << 16;

/// What one [`Transmitter::transmit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransmitCounts {
    /// Frames to local ports.
    pub ports: TxCounts,
    /// Packets to the underlay.
    pub underlay: TxCounts,
}

impl core::ops::AddAssign for TransmitCounts {
    fn add_assign(&mut self, other: TransmitCounts) {
        self.ports += other.ports;
        self.underlay += other.underlay;
    }
}

/// Sends what the pipeline wrote into an [`Outbox`]. Keeps one reusable index buffer, so once it
/// has seen the largest outbox it allocates nothing.
#[derive(Debug, Default)]
pub struct Transmitter {
    /// (destination key, frame index), sorted to group frames by destination; the index as a
    /// second key keeps each destination's frames in push order.
    order: Vec<(u32, u32)>,
    /// Segments of a super-frame that could not leave whole.
    scratch: Outbox,
}

impl Transmitter {
    /// A transmitter.
    pub fn new() -> Transmitter {
        Transmitter::default()
    }

    /// Sends every frame of `outbox` (`Dest::Port(id)` out of `ports[id]`, `Dest::Underlay`
    /// through `underlay`), then clears it.
    pub fn transmit(
        &mut self,
        outbox: &mut Outbox,
        ports: &[Port],
        underlay: &UnderlayTx,
    ) -> TransmitCounts {
        let mut counts = TransmitCounts::default();
        let frames = outbox.frames();
        self.order.clear();
        for (i, frame) in frames.iter().enumerate() {
            let key = match frame.dest {
                Dest::Port(PortId(p)) => u32::from(p),
                // A flow's whole super-frames sort with its datagrams: one order on the wire.
                Dest::Underlay(d) | Dest::UnderlayWhole(d) => UNDERLAY_KEYS + u32::from(d.src_port),
            };
            self.order.push((key, u32::try_from(i).unwrap_or(u32::MAX)));
        }
        self.order.sort_unstable();

        let mut rest = &self.order[..];
        while let Some(&(key, _)) = rest.first() {
            let run_len = rest.iter().take_while(|(k, _)| *k == key).count();
            let (run, tail) = rest.split_at(run_len);
            rest = tail;
            let run_frames = run.iter().filter_map(|&(_, i)| frames.get(i as usize));
            if let Some(src_port) = key.checked_sub(UNDERLAY_KEYS) {
                let src_port = u16::try_from(src_port).unwrap_or(u16::MAX);
                let mut run_frames = run_frames.peekable();
                while run_frames.peek().is_some() {
                    // The datagrams up to the next whole super-frame in one batch, then it.
                    let datagrams = core::iter::from_fn(|| {
                        run_frames
                            .next_if(|f| matches!(f.dest, Dest::Underlay(_)))
                            .and_then(|f| match f.dest {
                                Dest::Underlay(d) => Some((d.dst, f)),
                                _ => None,
                            })
                    });
                    underlay.send_batch(src_port, datagrams, &mut counts.underlay);
                    if let Some(f) =
                        run_frames.next_if(|f| matches!(f.dest, Dest::UnderlayWhole(_)))
                        && let Dest::UnderlayWhole(d) = f.dest
                    {
                        underlay.send_whole(d, f, &mut self.scratch, &mut counts.underlay);
                    }
                }
            } else if let Some(port) = ports.get(key as usize) {
                port.send_batch(
                    run_frames.map(|f| (&f.vnet, &f.bytes[..])),
                    &mut counts.ports,
                );
            } else {
                counts
                    .ports
                    .record_drops(TxDrop::NoSuchPort, run_len as u64);
            }
        }
        outbox.clear();
        counts
    }
}
