//! I/O layer: the thin shell of sockets around the sans-IO pipeline.
//!
//! - [`Port`] (`port/`): a VM-facing interface, read and written with an `AF_PACKET` socket that
//!   hands over each frame exactly as the VM's kernel left it (its `virtio_net_hdr`: partial
//!   checksum, GSO super-frame) with its 802.1Q tag put back into the bytes; and
//!   [`kernel_takes_uso`], a probe of whether such a socket takes UDP super-frames.
//! - [`UnderlayRx`]: the VXLAN UDP port, unicast and joined multicast groups, with `UDP_GRO`.
//! - [`UnderlayTx`] (`underlay_tx/`): UDP sockets bound to the flows' source ports, so that the
//!   per-flow outer UDP source port the pipeline chose is the one on the wire, sending a flow's
//!   batches of datagrams with UDP GSO.
//! - [`Transmitter`]: drains an [`Outbox`](crate::vtep::Outbox) into those sockets.
//! - `steering`: the classic BPF programs that hand both directions of a flow to one worker, as
//!   [`Steering`](crate::config::Steering) (a setting) asks.
//!
//! `port/` and `underlay_tx/` are directories of one-job submodules (opening, receiving,
//! sending, counting); their public types are re-exported here, so callers name them
//! `crate::io::Port`, never by their file.
//!
//! Contract: every socket is nonblocking and exposes its descriptor (`AsFd`) for the caller's
//! event loop; receiving returns `Err(WouldBlock)` once drained, like `std`'s sockets. Receive and
//! send are batched (`recvmmsg`/`sendmmsg`) into buffers allocated once, so nothing here allocates
//! per packet. A frame the kernel refuses to send is a counted [`TxDrop`], never an error that
//! stops the daemon; setting sockets up fails with a typed [`SetupError`].

mod counts;
mod port;
mod steering;
mod sys;
mod transmit;
mod underlay_rx;
mod underlay_tx;

pub use counts::{TxCounts, TxDrop};
pub use port::{Port, PortRxCounts, RxBatch, RxFrame, kernel_takes_uso};
pub use sys::{MAX_BATCH, SetupError, if_index};
pub use transmit::{TransmitCounts, Transmitter};
pub use underlay_rx::{Datagram, DatagramBatch, UnderlayRx, UnderlayRxCounts};
pub use underlay_tx::{TapUnavailable, UnderlayTx, UnderlayTxConfig};
