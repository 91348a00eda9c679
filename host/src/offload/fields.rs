//! What segmentation and coalescing both read and write in IP, TCP and UDP headers: lengths,
//! offsets, flag bits, and the writer of a 16-bit field into headers the caller has checked or
//! built itself (it indexes directly). Fields are read through the wire layer's checked
//! readers ([`crate::wire::read_u16`]), since their offsets come from the frame.

pub(super) const IPV4_HEADER_LEN: usize = 20;
pub(super) const IPV6_HEADER_LEN: usize = 40;
pub(super) const TCP_MIN_HEADER_LEN: usize = 20;
pub(super) const UDP_HEADER_LEN: usize = 8;
/// Offset of the TCP checksum in its header (what `csum_offset` must say).
pub(super) const TCP_CHECKSUM_OFFSET: usize = 16;
/// Offset of the UDP checksum in its header.
pub(super) const UDP_CHECKSUM_OFFSET: usize = 6;
pub(super) const TCP_FIN: u8 = 0x01;
pub(super) const TCP_PSH: u8 = 0x08;
pub(super) const TCP_ACK: u8 = 0x10;
pub(super) const TCP_CWR: u8 = 0x80;

/// The transport a super-frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L4 {
    Tcp,
    Udp,
}

pub(super) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
