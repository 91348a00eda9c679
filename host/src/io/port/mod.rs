//! `Port`: a VM-facing interface, read and written through an `AF_PACKET` socket.
//!
//! Contract: a frame read from a port is exactly what the VM sent: its `virtio_net_hdr` (a
//! partial checksum, a GSO super-frame of up to 64 KiB, as the VM's kernel left them) and its
//! bytes with the 802.1Q/802.1ad tag the kernel strips on receipt put back after the MACs. A
//! frame written to a port goes out as given, with its `virtio_net_hdr` telling the kernel what
//! is still to be done. The socket never reads back what is sent out of the interface (by this
//! socket or by the host), and it works on an interface that is down when opened: frames flow
//! once it comes up.
//!
//! Why each socket option (see `packet(7)` and `net/packet/af_packet.c`):
//! - `PACKET_VNET_HDR`: without it a partial checksum or a GSO super-frame arrives as bare bytes
//!   with nothing to tell which is which; forwarded as is, the far VM drops them.
//! - `PACKET_AUXDATA`: the receive path (`__netif_receive_skb_core`) strips the outer VLAN tag
//!   into the skb's metadata before packet sockets see the frame; only this control message
//!   hands it back.
//! - `PACKET_IGNORE_OUTGOING`: a packet socket otherwise also sees every frame transmitted on its
//!   interface, its own included.
//! - `PACKET_MR_PROMISC`: the VM's frames are addressed to other MACs than the interface's.
//! - `PACKET_FANOUT` (with several data path workers): each worker has its own socket on the
//!   port, and the kernel hands each frame to one of them by a hash of its flow (a classic BPF
//!   program, see `steering`), so that a flow's frames stay in order on one worker, the one
//!   that also reads the flow's replies from the underlay.
//!
//! Submodules, one job each: `open` (the socket and its options, fanout), `batch` (the receive
//! buffers), `receive` (reading a batch, restoring VLAN tags), `send`, `counts` (the receive
//! side's counters) and `uso` (whether the kernel takes UDP super-frames on a packet socket).

mod batch;
mod counts;
mod open;
mod receive;
mod send;
mod uso;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::Socket;

pub use batch::{RxBatch, RxFrame};
pub use counts::PortRxCounts;
pub use uso::kernel_takes_uso;

use counts::RxCounters;

/// A VM-facing interface, read and written through a packet socket bound to it.
#[derive(Debug)]
pub struct Port {
    socket: Socket,
    name: String,
    ifindex: u32,
    /// Atomics, so that one thread can read the port while others send on it and read these.
    counts: RxCounters,
}

impl Port {
    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index, as resolved when the port was opened.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Port {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
