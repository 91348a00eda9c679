//! Sending a flow's frames: GSO batches and single datagrams in as few `sendmmsg` calls as
//! possible, and the fallback to one datagram per message once the kernel refuses UDP GSO.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use socket2::Socket;

use super::UnderlayTx;
use super::batch::Batch;
use crate::io::counts::{TxCounts, TxDrop};
use crate::io::sys::MAX_BATCH;
use crate::vtep::OutFrame;

impl UnderlayTx {
    /// Sends `frames` (underlay frames from source port `src_port`: one datagram each, or a GSO
    /// batch of several) with as few `sendmmsg` calls as possible ([`MAX_BATCH`] frames each),
    /// counting each datagram sent or dropped in `counts`.
    pub fn send_batch<'a, I>(&self, src_port: u16, frames: I, counts: &mut TxCounts)
    where
        I: IntoIterator<Item = (IpAddr, &'a OutFrame)>,
    {
        let frames = frames.into_iter();
        let Ok(i) = self.sockets.binary_search_by_key(&src_port, |s| s.port) else {
            let n: usize = frames.map(|(_, f)| f.datagrams().count()).sum();
            counts.record_drops(TxDrop::Other, n as u64);
            return;
        };
        let sockets = &self.sockets[i];
        let single = sockets
            .zero_checksum
            .as_ref()
            .unwrap_or(&sockets.checksummed);
        let mut frames = frames.peekable();
        while frames.peek().is_some() {
            // One kind of message per call: GSO batches and single datagrams may need
            // different sockets.
            let gso = self.gso.load(Ordering::Relaxed);
            let batched = frames.peek().is_some_and(|(_, f)| gso && is_gso(f));
            let mut batch = Batch::default();
            while let Some(&(dst, frame)) = frames.peek() {
                let room = if batched {
                    1
                } else {
                    frame.datagrams().count()
                };
                if (gso && is_gso(frame)) != batched
                    || (batch.len > 0 && batch.len + room > MAX_BATCH)
                {
                    break;
                }
                frames.next();
                if dst.is_ipv6() != self.ipv6 {
                    counts.record_drops(TxDrop::WrongFamily, frame.datagrams().count() as u64);
                    continue;
                }
                if batched {
                    batch.add(dst, self.dst_port, &frame.bytes, frame.segment_len);
                } else {
                    // One message per datagram (a GSO batch too, while GSO is off).
                    for d in frame.datagrams() {
                        batch.add(dst, self.dst_port, d, 0);
                    }
                }
            }
            if !batched {
                batch.send(single, counts, |_, _| false);
                continue;
            }
            let mut refused = Vec::new();
            batch.send(&sockets.checksummed, counts, |i, errno| {
                let gso_refused = matches!(errno, libc::EINVAL | libc::EIO);
                if gso_refused {
                    refused.push(i);
                }
                gso_refused
            });
            if !refused.is_empty() {
                self.fall_back_from_gso(&batch, &refused, single, counts);
            }
        }
    }

    /// Turns GSO off for good and sends the messages `refused` of `batch` again from `single`,
    /// cut into their datagrams, one per message.
    fn fall_back_from_gso(
        &self,
        batch: &Batch<'_>,
        refused: &[usize],
        single: &Socket,
        counts: &mut TxCounts,
    ) {
        if self.gso.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "the kernel refuses UDP GSO on this underlay: sending one datagram per message"
            );
        }
        let mut again = Batch::default();
        for &i in refused {
            for d in batch.frames[i].chunks(usize::from(batch.segments[i]).max(1)) {
                if again.len == MAX_BATCH {
                    again.send(single, counts, |_, _| false);
                }
                again.add_named(batch.names[i], batch.name_lens[i], d, 0);
            }
        }
        again.send(single, counts, |_, _| false);
    }
}

// A GSO batch split into single datagrams fits one `sendmmsg`.
const _: () = assert!(crate::vtep::MAX_GSO_SEGMENTS <= MAX_BATCH);

/// Whether `frame` holds several datagrams (a GSO batch).
fn is_gso(frame: &OutFrame) -> bool {
    frame.segment_len != 0 && frame.bytes.len() > frame.segment_len
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::AsFd;

    use libc::c_int;

    use super::*;
    use crate::io::sys::setsockopt;
    use crate::io::underlay_tx::UnderlayTxConfig;
    use crate::vtep::{Outbox, SourcePorts, UnderlayDest};

    /// When the kernel refuses a GSO send (here: a socket made to send without a UDP checksum,
    /// which GSO cannot do; in the field an IPsec route or an old kernel), the batch still leaves,
    /// one datagram per message, and GSO stays off from then on.
    #[test]
    fn a_refused_gso_send_falls_back_to_single_datagrams() {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let sink = UdpSocket::bind((local, 0)).unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut ports = SourcePorts::spread(40_000..=40_999, 1).unwrap();
        let config = UnderlayTxConfig {
            local,
            dst_port: sink.local_addr().unwrap().port(),
            ttl: 64,
            multicast_if: None,
        };
        let tx = UnderlayTx::open(&config, &mut ports).unwrap();
        let port = tx.sockets[0].port;
        let on: c_int = 1;
        setsockopt(
            tx.sockets[0].checksummed.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            &on,
        )
        .unwrap();
        let mut out = Outbox::new();
        let to = UnderlayDest {
            dst: local,
            src_port: port,
        };
        for i in 0..11u8 {
            out.append_datagram(to, 100, |b| b.extend_from_slice(&[i; 100]));
        }
        assert_eq!(out.len(), 1, "one GSO batch");
        let mut counts = TxCounts::default();
        tx.send_batch(port, out.frames().iter().map(|f| (local, f)), &mut counts);
        assert_eq!((counts.sent, counts.dropped_total()), (11, 0));
        assert!(!tx.gso.load(Ordering::Relaxed));
        let mut buf = [0u8; 256];
        for i in 0..11u8 {
            let n = sink.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 100][..]);
        }
        // Later batches go out one datagram per message straight away.
        let mut counts = TxCounts::default();
        tx.send_batch(port, out.frames().iter().map(|f| (local, f)), &mut counts);
        assert_eq!((counts.sent, counts.batched), (11, 0));
    }
}
