//! Checked big-endian field access: the one place the wire and offload layers read a 16- or
//! 32-bit field at an offset they computed themselves (outside smoltcp's views). Every reader
//! returns `None` when the field does not fit in the bytes, so an offset taken from a hostile
//! header can never panic.

/// The big-endian `u16` at `at`; `None` if `b` is shorter than `at + 2`.
pub(crate) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let field = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(field.try_into().ok()?))
}

/// The big-endian `u32` at `at`; `None` if `b` is shorter than `at + 4`.
pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let field = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_and_refuses_past_the_end() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(read_u16(&b, 0), Some(0x1234));
        assert_eq!(read_u16(&b, 3), Some(0x789a));
        assert_eq!(read_u16(&b, 4), None);
        assert_eq!(read_u32(&b, 1), Some(0x3456_789a));
        assert_eq!(read_u32(&b, 2), None);
        assert_eq!(read_u16(&b, usize::MAX), None);
        assert_eq!(read_u32(&b, usize::MAX - 1), None);
    }
}
