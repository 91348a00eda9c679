//! Offload layer: what a VM's kernel left undone in the frames a packet socket hands over with a
//! [`VirtioNetHdr`](crate::wire::VirtioNetHdr) (`PACKET_VNET_HDR`), finished in pure code.
//!
//! - [`complete_checksum`]: a partial L4 checksum (`NEEDS_CSUM`) is finished in place, as the
//!   kernel's `skb_checksum_help` does before a frame leaves through a device that cannot.
//! - [`Segmenter`] / [`segment`]: a GSO super-frame (TSO for TCP over IPv4/IPv6, USO for UDP) is
//!   cut into wire-sized frames, each with its own IP length and ID, TCP sequence number and
//!   flags, and complete checksums, as the kernel's `skb_gso_segment` does.
//! - [`restore_offloads`]: the reverse direction. A frame decapsulated from the underlay whose
//!   checksum a sending kernel left partial (and whose metadata the UDP socket dropped) gets the
//!   `virtio_net_hdr` that lets the port's kernel finish it, and a TCP super-frame its GSO type.
//!
//! Contract: these functions trust nothing in the header or the frame. Every offset is checked
//! against the frame and the headers are located by parsing, so a hostile or buggy guest gets an
//! [`OffloadError`], never a panic, an out-of-bounds write or a truncated frame. Nothing here
//! allocates: output goes to buffers the caller owns.

mod checksum;
mod error;
mod gso;
mod restore;

pub use checksum::complete_checksum;
pub use error::OffloadError;
pub use gso::{Segmenter, segment};
pub use restore::restore_offloads;
