//! `OffloadError`: why a frame's pending offload work cannot be done.

/// A small, `Copy` error: the daemon counts it as a drop reason, never formats it per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The frame is shorter than its headers or than the length an IP header declares.
    #[error("frame truncated")]
    Truncated,
    /// `csum_start` / `csum_offset` point outside the frame or, for a super-frame, not at the
    /// transport header's checksum field.
    #[error("checksum offsets out of place")]
    BadChecksumOffset,
    /// `gso_size` is zero, or so large that a segment's IP length would not fit in 16 bits.
    #[error("bad GSO segment size")]
    BadGsoSize,
    /// The frame's headers do not match its GSO type (not IP, wrong IP version or protocol, an
    /// IP fragment, a bad header length).
    #[error("frame headers do not match the offload requested")]
    Malformed,
    /// Well-formed but not handled: legacy UDP fragmentation offload (UFO), an unknown GSO
    /// type, an IPv6 routing header in a super-frame.
    #[error("unsupported offload")]
    Unsupported,
    /// `segment` was asked to cut a frame that is not a GSO super-frame.
    #[error("not a GSO super-frame")]
    NotGso,
    /// `complete_checksum` was asked to finish a GSO super-frame: segment it instead (each
    /// segment gets a complete checksum). The kernel refuses the same (`skb_checksum_help`).
    #[error("checksum completion on a GSO super-frame")]
    IsGso,
    /// The output buffer cannot hold the segment (segments are never truncated).
    #[error("output buffer too small")]
    BufferTooSmall,
}
