//! The IEEE 802.1Q VLAN tag: a view of the 4-byte header that follows an Ethernet header whose
//! EtherType is a tag TPID, its `Repr`, and allocation-free helpers to put a tag into a frame or
//! take it out.
//!
//! Layout (802.1Q-2018 §9.6): the TPID sits where the untagged frame's EtherType would be, so it
//! is the Ethernet header's `ethertype`; this header is what follows it:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-----+-+-----------------------+-------------------------------+
//! | PCP |D|          VID          |     inner EtherType           |
//! +-----+-+-----------------------+-------------------------------+
//! ```
//!
//! Why the helpers exist: a packet socket hands frames over with their tag stripped (the NIC or
//! the kernel's `vlan_do_receive` moved it into the skb) and reports it beside the bytes
//! (`PACKET_AUXDATA`, `tp_vlan_tci`). The VTEP must put it back before it encapsulates or
//! delivers the frame, like the kernel's `__vlan_insert_inner_tag`. [`push_vlan_tag`] does that
//! in place when the caller reads the frame leaving [`HEADER_LEN`] bytes of headroom.
//!
//! Nothing in this module panics on any input: views check their length in `new_checked`, and
//! the helpers return [`WireError::Truncated`] when a buffer is too small.

use core::fmt;

use super::WireError;

/// The 802.1Q customer tag TPID (C-tag): what `PACKET_AUXDATA` reports for ordinary VLANs.
pub const TPID_8021Q: u16 = 0x8100;
/// The 802.1ad service tag TPID (S-tag, "QinQ"); accepted as a tag on parse.
pub const TPID_8021AD: u16 = 0x88a8;
/// The length of the tag header after the TPID (TCI + inner EtherType), which is also the number
/// of bytes a tag adds to a frame.
pub const HEADER_LEN: usize = 4;

/// Offset of the EtherType (or TPID) in an Ethernet header: after two MAC addresses.
const ETHERTYPE_OFFSET: usize = 12;
/// An untagged Ethernet header: two MACs and an EtherType.
const ETHERNET_HEADER_LEN: usize = 14;

mod field {
    use core::ops::Range;

    pub(super) const TCI: Range<usize> = 0..2;
    pub(super) const ETHERTYPE: Range<usize> = 2..4;
    pub(super) const PAYLOAD: usize = 4;
}

/// `true` if `ethertype` announces a VLAN tag (802.1Q C-tag or 802.1ad S-tag).
pub const fn is_tag_tpid(ethertype: u16) -> bool {
    ethertype == TPID_8021Q || ethertype == TPID_8021AD
}

/// A Tag Control Information word: priority (PCP), drop eligibility (DEI) and VLAN ID.
///
/// Any 16-bit value is a valid TCI, so this is a transparent wrapper; [`Tci::new`] checks the
/// field ranges when building one from parts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tci(pub u16);

impl Tci {
    /// The largest VLAN ID (4095, reserved by 802.1Q but representable).
    pub const MAX_VID: u16 = 0x0fff;

    /// Builds a TCI from its parts; `None` if `pcp > 7` or `vid > 4095`.
    pub const fn new(pcp: u8, dei: bool, vid: u16) -> Option<Tci> {
        if pcp > 7 || vid > Self::MAX_VID {
            return None;
        }
        Some(Tci(((pcp as u16) << 13) | ((dei as u16) << 12) | vid))
    }

    /// Priority Code Point (802.1p class of service), 0..=7.
    pub const fn pcp(self) -> u8 {
        // The shift leaves three bits: the value always fits.
        (self.0 >> 13) as u8
    }

    /// Drop Eligible Indicator.
    pub const fn dei(self) -> bool {
        self.0 & 0x1000 != 0
    }

    /// VLAN identifier, 0..=4095 (0 means "priority tag only, no VLAN").
    pub const fn vid(self) -> u16 {
        self.0 & Self::MAX_VID
    }

    /// The raw 16-bit word, as on the wire and in `tp_vlan_tci`.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl From<u16> for Tci {
    fn from(v: u16) -> Tci {
        Tci(v)
    }
}

impl From<Tci> for u16 {
    fn from(t: Tci) -> u16 {
        t.0
    }
}

impl fmt::Debug for Tci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tci(vid {}, pcp {}", self.vid(), self.pcp())?;
        if self.dei() {
            write!(f, ", dei")?;
        }
        write!(f, ")")
    }
}

/// A view of the 802.1Q header (TCI and inner EtherType) and what follows it.
///
/// `buffer` starts right after the TPID, i.e. it is the payload of an Ethernet frame whose
/// EtherType satisfies [`is_tag_tpid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic until [`Self::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> VlanPacket<T> {
        VlanPacket { buffer }
    }

    /// Wraps a buffer, checking that the header fits: after this no accessor panics.
    pub fn new_checked(buffer: T) -> Result<VlanPacket<T>, WireError> {
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

    /// The Tag Control Information.
    pub fn tci(&self) -> Tci {
        let b = self.buffer.as_ref();
        Tci(u16::from_be_bytes([
            b[field::TCI.start],
            b[field::TCI.start + 1],
        ]))
    }

    /// The EtherType of what the tag encloses (IPv4, ARP, another tag...).
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]])
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanPacket<T> {
    /// Sets the Tag Control Information.
    pub fn set_tci(&mut self, tci: Tci) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.0.to_be_bytes());
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// The bytes after the tag, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The fields of an 802.1Q header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// Priority, drop eligibility and VLAN ID.
    pub tci: Tci,
    /// The EtherType of the enclosed payload.
    pub ethertype: u16,
}

impl VlanRepr {
    /// Reads the header from a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &VlanPacket<T>) -> Result<VlanRepr, WireError> {
        packet.check_len()?;
        Ok(VlanRepr {
            tci: packet.tci(),
            ethertype: packet.ethertype(),
        })
    }

    /// The header's length, [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a view (whose length the caller checked).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VlanPacket<T>) {
        packet.set_tci(self.tci);
        packet.set_ethertype(self.ethertype);
    }
}

/// Tags the Ethernet frame at `buf[start..]` in place, using the [`HEADER_LEN`] bytes of
/// headroom before it: the two MAC addresses move 4 bytes down and `tpid`, `tci` go between
/// them and the old EtherType. Returns the new start: the tagged frame is `buf[start - 4..]`.
///
/// This is the per-packet path: the I/O layer reads each frame at offset [`HEADER_LEN`] (or
/// more) of its buffer, and tags it here without copying the payload.
///
/// A `virtio_net_hdr` that came with the frame describes the untagged bytes (packet sockets pass
/// no `vlan_hlen`): move it with [`super::VirtioNetHdr::shifted`] by [`HEADER_LEN`].
///
/// Errors: [`WireError::Truncated`] if `start < 4` or the frame is shorter than an Ethernet
/// header; the buffer is unchanged then.
pub fn push_vlan_tag(
    buf: &mut [u8],
    start: usize,
    tpid: u16,
    tci: u16,
) -> Result<usize, WireError> {
    let new_start = start.checked_sub(HEADER_LEN).ok_or(WireError::Truncated)?;
    let frame_len = buf.len().checked_sub(start).ok_or(WireError::Truncated)?;
    if frame_len < ETHERNET_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    buf.copy_within(start..start + ETHERTYPE_OFFSET, new_start);
    let tag = new_start + ETHERTYPE_OFFSET;
    buf[tag..tag + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[tag + 2..tag + 4].copy_from_slice(&tci.to_be_bytes());
    Ok(new_start)
}

/// Removes the outermost tag of the Ethernet frame at `buf[start..]` in place: the MAC addresses
/// move 4 bytes up over the tag. Returns the new start (`start + 4`) and the tag's TPID and TCI.
///
/// Errors: [`WireError::Truncated`] if the frame is shorter than a tagged Ethernet header,
/// [`WireError::Unsupported`] if it carries no tag; the buffer is unchanged then.
pub fn pop_vlan_tag(buf: &mut [u8], start: usize) -> Result<(usize, u16, u16), WireError> {
    let frame = buf.get(start..).ok_or(WireError::Truncated)?;
    if frame.len() < ETHERNET_HEADER_LEN + HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let tpid = u16::from_be_bytes([frame[ETHERTYPE_OFFSET], frame[ETHERTYPE_OFFSET + 1]]);
    if !is_tag_tpid(tpid) {
        return Err(WireError::Unsupported);
    }
    let tci = u16::from_be_bytes([frame[ETHERTYPE_OFFSET + 2], frame[ETHERTYPE_OFFSET + 3]]);
    buf.copy_within(start..start + ETHERTYPE_OFFSET, start + HEADER_LEN);
    Ok((start + HEADER_LEN, tpid, tci))
}

/// Tags the untagged Ethernet frame held in `frame`, shifting everything after the MAC
/// addresses. Allocates only if `frame` lacks 4 bytes of spare capacity; prefer
/// [`push_vlan_tag`] with headroom on the per-packet path.
///
/// Errors: [`WireError::Truncated`] if the frame is shorter than an Ethernet header.
pub fn insert_vlan_tag(frame: &mut Vec<u8>, tpid: u16, tci: u16) -> Result<(), WireError> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let [t0, t1] = tpid.to_be_bytes();
    let [c0, c1] = tci.to_be_bytes();
    frame.splice(ETHERTYPE_OFFSET..ETHERTYPE_OFFSET, [t0, t1, c0, c1]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP request on VLAN 100, priority 5: dst ff.., src 02:00:00:00:00:01.
    const TAGGED: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, // MACs
        0x81, 0x00, // TPID
        0xa0, 0x64, // PCP 5, DEI 0, VID 100
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, // start of the ARP header
    ];

    #[test]
    fn parses_fixed_bytes() {
        let view = VlanPacket::new_checked(&TAGGED[14..]).unwrap();
        let repr = VlanRepr::parse(&view).unwrap();
        assert_eq!(repr.tci.vid(), 100);
        assert_eq!(repr.tci.pcp(), 5);
        assert!(!repr.tci.dei());
        assert_eq!(repr.ethertype, 0x0806);
        assert_eq!(view.payload(), &[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(repr.header_len(), 4);
    }

    #[test]
    fn emits_fixed_bytes() {
        let repr = VlanRepr {
            tci: Tci::new(5, false, 100).unwrap(),
            ethertype: 0x0806,
        };
        let mut buf = [0u8; 4];
        repr.emit(&mut VlanPacket::new_checked(&mut buf[..]).unwrap());
        assert_eq!(buf, TAGGED[14..18]);
        assert_eq!(
            VlanRepr::parse(&VlanPacket::new_checked(&buf[..]).unwrap()).unwrap(),
            repr
        );
    }

    #[test]
    fn tci_fields() {
        let t = Tci::new(7, true, 4095).unwrap();
        assert_eq!(t.get(), 0xffff);
        assert_eq!((t.pcp(), t.dei(), t.vid()), (7, true, 4095));
        assert_eq!(Tci::new(8, false, 1), None);
        assert_eq!(Tci::new(0, false, 4096), None);
        assert_eq!(format!("{:?}", Tci(0x3064)), "Tci(vid 100, pcp 1, dei)");
    }

    #[test]
    fn short_is_truncated() {
        assert_eq!(
            VlanPacket::new_checked(&TAGGED[14..17]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn accepts_both_tpids() {
        assert!(is_tag_tpid(0x8100));
        assert!(is_tag_tpid(0x88a8));
        assert!(!is_tag_tpid(0x0800));
    }

    fn untagged() -> Vec<u8> {
        let mut f = TAGGED[..12].to_vec();
        f.extend_from_slice(&TAGGED[16..]);
        f
    }

    #[test]
    fn push_in_headroom_then_pop() {
        let frame = untagged();
        let mut buf = vec![0xeeu8; 4];
        buf.extend_from_slice(&frame);
        let start = push_vlan_tag(&mut buf, 4, TPID_8021Q, 0xa064).unwrap();
        assert_eq!(start, 0);
        assert_eq!(buf[start..], TAGGED);
        let (start, tpid, tci) = pop_vlan_tag(&mut buf, start).unwrap();
        assert_eq!((start, tpid, tci), (4, TPID_8021Q, 0xa064));
        assert_eq!(buf[start..], frame[..]);
    }

    #[test]
    fn push_needs_headroom_and_a_header() {
        let mut buf = untagged();
        let before = buf.clone();
        assert_eq!(
            push_vlan_tag(&mut buf, 0, TPID_8021Q, 1),
            Err(WireError::Truncated)
        );
        assert_eq!(
            push_vlan_tag(&mut buf, 5, TPID_8021Q, 1),
            Err(WireError::Truncated)
        );
        assert_eq!(
            push_vlan_tag(&mut buf, 99, TPID_8021Q, 1),
            Err(WireError::Truncated)
        );
        assert_eq!(buf, before);
    }

    #[test]
    fn pop_untagged_is_unsupported() {
        let mut buf = untagged();
        buf.extend_from_slice(&[0; 8]);
        assert_eq!(pop_vlan_tag(&mut buf, 0), Err(WireError::Unsupported));
        assert_eq!(pop_vlan_tag(&mut buf, 1000), Err(WireError::Truncated));
    }

    #[test]
    fn insert_into_vec() {
        let mut f = untagged();
        insert_vlan_tag(&mut f, TPID_8021Q, 0xa064).unwrap();
        assert_eq!(f, TAGGED);
        let mut short = vec![0u8; 13];
        assert_eq!(
            insert_vlan_tag(&mut short, TPID_8021Q, 1),
            Err(WireError::Truncated)
        );
    }
}
