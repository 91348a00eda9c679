//! The socket layer against the real kernel: ports (`AF_PACKET`) on veth pairs and the underlay
//! (UDP, with GSO and GRO) between network namespaces. Needs root (namespaces, packet sockets).
//!
//! Each test builds its own namespaces: a "vm" namespace holds the VM's end of a veth (`vm0`), a
//! "host" namespace the end a [`Port`] is opened on (`h0`); underlay tests join two namespaces
//! with `u0`/`u1`. Sockets are opened inside a namespace by entering it with the opening thread.
//!
//! Modules by subject: `ports`, `underlay`, `gso` (super-frames on ports and the underlay),
//! `transmit`, `measurement` (run by hand); `support` and `packets` hold what they share.

mod gso;
mod measurement;
mod packets;
mod ports;
mod support;
mod transmit;
mod underlay;
