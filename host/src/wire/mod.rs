//! Wire layer: zero-copy views (`Packet<T: AsRef<[u8]>>`) and owned representations (`Repr`) of
//! the headers a VTEP reads and writes. Nothing here allocates, and nothing panics once a view
//! has passed `new_checked`.
//!
//! Ethernet, ARP, IPv4, IPv6, UDP and TCP are `smoltcp::wire`'s (a fuzzed, zero-copy
//! implementation); this module adds what smoltcp lacks: the 802.1Q tag, VXLAN, the
//! `virtio_net_hdr` of packet sockets, and the per-frame metadata the pipeline and plugins read.

mod error;
mod mac;
mod virtio_net;
mod vni;

pub use error::WireError;
pub use mac::{MacAddr, MacAddrParseError};
pub use virtio_net::VirtioNetHdr;
pub use vni::{Vni, VniRangeError};
