//! Offload layer: what a VM's kernel left undone in the frames a packet socket hands over with a
//! [`VirtioNetHdr`](crate::wire::VirtioNetHdr) (`PACKET_VNET_HDR`), finished in pure code.
//!
//! - [`complete_checksum`]: a partial L4 checksum (`NEEDS_CSUM`) is finished in place, as the
//!   kernel's `skb_checksum_help` does before a frame leaves through a device that cannot.
//!   [`recover_offloads`] recognises the same partial form, and TCP super-frames, in a frame
//!   that came without a header (decapsulated from the underlay), so that it can be delivered
//!   with one.
//! - [`Segmenter`] / [`segment`]: a GSO super-frame (TSO for TCP over IPv4/IPv6, USO for UDP) is
//!   cut into wire-sized frames, each with its own IP length and ID, TCP sequence number and
//!   flags, and complete checksums, as the kernel's `skb_gso_segment` does.
//!
//! Contract: these functions trust nothing in the header or the frame. Every offset is checked
//! against the frame and the headers are located by parsing, so a hostile or buggy guest gets an
//! [`OffloadError`], never a panic, an out-of-bounds write or a truncated frame. Nothing here
//! allocates: output goes to buffers the caller owns.

mod checksum;
mod coalesce;
mod error;
mod fields;
mod gso;

pub use checksum::{complete_checksum, recover_offloads};
pub use coalesce::Run;
pub use error::OffloadError;
pub use gso::{Segmenter, segment};
