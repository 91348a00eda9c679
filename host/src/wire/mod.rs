//! Wire layer: zero-copy views (`Packet<T: AsRef<[u8]>>`) and owned representations (`Repr`) of
//! the headers a VTEP reads and writes. Nothing here allocates, and nothing panics once a view
//! has passed `new_checked`.
//!
//! Here: the 802.1Q tag, VXLAN, the `virtio_net_hdr` of packet sockets, MAC addresses, and
//! [`FrameMeta`], the per-frame metadata the pipeline and plugins read, parsed by hand in one
//! lenient pass over the Ethernet, IPv4/IPv6 and TCP/UDP headers (`frame.rs`), and the
//! [`Details`] only plugins read (ARP, ICMP, TCP flags, DSCP: `details.rs`). The outer IP and
//! UDP headers are the underlay sockets' to write and read. `smoltcp::wire` does not parse the
//! pipeline's frames (one lenient pass by hand is cheaper); the offloads take its pseudo-header
//! checksum and address types, and `Details` its ARP packet view. [`MacAddr`] is
//! the plugin SDK's (one type for the host and plugins).

mod bytes;
mod details;
mod error;
mod frame;
mod virtio_net;
mod vlan;
mod vni;
mod vxlan;

pub(crate) use bytes::{read_u16, read_u32};
pub use details::{Arp, Details, ETHERTYPE_RARP, Icmp};
pub use error::WireError;
pub(crate) use frame::walk_ipv6_extensions;
pub use frame::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, FrameMeta, IpMeta, L4Ports, ip_proto,
};
// One MAC address type for the daemon and its plugins: the SDK's (it has no dependencies a
// plugin would not have, and the WIT carries the same value).
pub use virtio_net::VirtioNetHdr;
pub use vlan::{
    HEADER_LEN as VLAN_HEADER_LEN, TPID_8021AD, TPID_8021Q, Tci, VlanPacket, VlanRepr,
    insert_vlan_tag, is_tag_tpid, pop_vlan_tag, push_vlan_tag,
};
pub use vni::{Vni, VniRangeError};
pub use vxlan::{FLAG_I as VXLAN_FLAG_I, HEADER_LEN as VXLAN_HEADER_LEN, VxlanPacket, VxlanRepr};
pub use wasm_vtep_plugin_sdk::types::{MacAddr, MacAddrParseError};
