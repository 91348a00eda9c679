//! VXLAN encapsulation (RFC 7348 §5): the 8-byte header in front of an inner frame, as a
//! datagram's UDP payload.
//!
//! Written here rather than through `wasm_vtep::wire::VxlanRepr::emit`: this crate must not
//! depend on wasm-vtep (see the crate's documentation), and a test that checks the daemon's
//! VXLAN parsing is better served by bytes the daemon's code did not write.

/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// The header: `flags`, 24 reserved bits, the low 24 bits of `vni`, 8 reserved bits.
pub fn header(flags: u8, vni: u32) -> [u8; 8] {
    let [_, v0, v1, v2] = vni.to_be_bytes();
    [flags, 0, 0, 0, v0, v1, v2, 0]
}

/// `inner` as the payload of a VXLAN packet on `vni` (I flag set, reserved bits zero).
pub fn encapsulate(vni: u32, inner: &[u8]) -> Vec<u8> {
    encapsulate_with_flags(FLAG_I, vni, inner)
}

/// `inner` behind a header with the given `flags`, for tests of what a VTEP makes of other
/// flags than I.
pub fn encapsulate_with_flags(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    [&header(flags, vni)[..], inner].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_carries_the_low_24_bits_of_the_vni() {
        assert_eq!(header(FLAG_I, 0x12_3456), [8, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(
            encapsulate(5001, &[0xaa]),
            [8, 0, 0, 0, 0, 0x13, 0x89, 0, 0xaa]
        );
    }
}
