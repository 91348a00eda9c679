//! The VXLAN header of [RFC 7348 §5](https://www.rfc-editor.org/rfc/rfc7348#section-5): a view,
//! its `Repr`, and the outer UDP source port chosen from the inner flow's hash.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Receive rules (§5): the I flag must be set; every other bit marked R is ignored on receipt and
//! sent as zero. So [`VxlanRepr::parse`] reports the two ways a datagram can fail with distinct
//! errors the pipeline counts separately:
//! - [`WireError::Truncated`]: shorter than the 8-byte header;
//! - [`WireError::Malformed`]: the I flag is clear.
//!
//! Reserved bits do not fail parsing; [`VxlanPacket::reserved_bits_set`] lets a caller count
//! them (the kernel accepts them too unless an extension such as GBP claims them).

use super::{Vni, WireError};

/// The VXLAN header's length.
pub const HEADER_LEN: usize = 8;

/// The I flag: "the VNI is valid". Must be set on every packet.
pub const FLAG_I: u8 = 0x08;

mod field {
    use core::ops::Range;

    pub(super) const FLAGS: usize = 0;
    pub(super) const RESERVED1: Range<usize> = 1..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED2: usize = 7;
    pub(super) const PAYLOAD: usize = 8;
}

/// A view of a VXLAN header and the inner Ethernet frame after it (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic until [`Self::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }

    /// Wraps a buffer, checking that the header fits: after this no accessor panics.
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// [`WireError::Truncated`] if the buffer is shorter than [`HEADER_LEN`].
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag is set: the VNI field is valid.
    pub fn has_vni_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// Any bit that RFC 7348 reserves is set: a flag other than I, or a reserved byte non-zero.
    pub fn reserved_bits_set(&self) -> bool {
        let b = self.buffer.as_ref();
        self.flags() & !FLAG_I != 0
            || b[field::RESERVED1].iter().any(|&x| x != 0)
            || b[field::RESERVED2] != 0
    }

    /// The 24-bit VNI (meaningful only if [`Self::has_vni_flag`]).
    pub fn vni(&self) -> Vni {
        let b = self.buffer.as_ref();
        let v = &b[field::VNI];
        Vni::from_u24(u32::from_be_bytes([0, v[0], v[1], v[2]]))
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Sets the whole flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI field.
    pub fn set_vni(&mut self, vni: Vni) {
        let [_, a, b, c] = vni.get().to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&[a, b, c]);
    }

    /// Zeroes the reserved bytes (not the flags byte).
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED1].fill(0);
        b[field::RESERVED2] = 0;
    }

    /// The inner Ethernet frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// What a VXLAN header says: only the VNI (the I flag is implied, reserved bits are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// The VXLAN Network Identifier.
    pub vni: Vni,
}

impl VxlanRepr {
    /// The header's length, [`HEADER_LEN`].
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the header. Errors: [`WireError::Truncated`] if shorter than 8 bytes,
    /// [`WireError::Malformed`] if the I flag is clear. Reserved bits are ignored (§5).
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Result<VxlanRepr, WireError> {
        packet.check_len()?;
        if !packet.has_vni_flag() {
            return Err(WireError::Malformed);
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    /// The header's length, [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: the I flag, the VNI, every reserved bit zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VNI 5001 (0x001389), I flag only, followed by the first bytes of an inner frame.
    const PACKET: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, // flags, reserved
        0x00, 0x13, 0x89, 0x00, // VNI 5001, reserved
        0xff, 0xff, 0xff, 0xff, // inner frame
    ];

    #[test]
    fn parses_fixed_bytes() {
        let view = VxlanPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(view.flags(), 0x08);
        assert!(view.has_vni_flag());
        assert!(!view.reserved_bits_set());
        assert_eq!(view.vni().get(), 5001);
        assert_eq!(view.payload(), &[0xff; 4]);
        let repr = VxlanRepr::parse(&view).unwrap();
        assert_eq!(repr.vni.get(), 5001);
        assert_eq!(repr.header_len(), 8);
    }

    #[test]
    fn emits_fixed_bytes_with_reserved_zero() {
        let mut buf = [0xaau8; 12];
        let repr = VxlanRepr {
            vni: Vni::new(5001).unwrap(),
        };
        let mut view = VxlanPacket::new_checked(&mut buf[..]).unwrap();
        repr.emit(&mut view);
        view.payload_mut().fill(0xff);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn i_flag_clear_is_malformed_short_is_truncated() {
        let mut no_i = PACKET;
        no_i[0] = 0x00;
        let view = VxlanPacket::new_checked(&no_i[..]).unwrap();
        assert!(!view.has_vni_flag());
        assert_eq!(VxlanRepr::parse(&view), Err(WireError::Malformed));
        assert_eq!(
            VxlanPacket::new_checked(&PACKET[..7]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            VxlanRepr::parse(&VxlanPacket::new_unchecked(&PACKET[..7])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn reserved_bits_are_reported_and_ignored() {
        for (i, bit) in [(0, 0x80), (0, 0x01), (1, 0x01), (3, 0x80), (7, 0x01)] {
            let mut p = PACKET;
            p[i] |= bit;
            let view = VxlanPacket::new_checked(&p[..]).unwrap();
            assert!(view.reserved_bits_set(), "byte {i} bit {bit:#x}");
            assert_eq!(VxlanRepr::parse(&view).unwrap().vni.get(), 5001);
        }
    }

    #[test]
    fn max_vni_round_trips() {
        let mut buf = [0u8; 8];
        let repr = VxlanRepr {
            vni: Vni::new(Vni::MAX).unwrap(),
        };
        repr.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
        let view = VxlanPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&view).unwrap(), repr);
    }
}
