//! What the offload property tests share beyond the test kit's frames: the GSO
//! `virtio_net_hdr` a VM's kernel would hand over with a super-frame (a wasm-vtep type, which
//! the kit cannot depend on).

use wasm_vtep::wire::VirtioNetHdr;
use wasm_vtep_testkit::flow::Layout;

/// A GSO `virtio_net_hdr` of `kind` with a partial checksum at `layout`'s transport header.
pub(crate) fn gso_hdr(kind: u8, gso_size: u16, layout: Layout, csum_offset: u16) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: kind,
        hdr_len: 0,
        gso_size,
        csum_start: u16::try_from(layout.l4).expect("L4 offset fits 16 bits"),
        csum_offset,
    }
}
