//! `WireError`: why bytes are not the packet they claim to be.

/// A small, `Copy` parse error: per-packet code matches on it and counts it, never formats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length a header field declares).
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the format forbids.
    #[error("malformed header")]
    Malformed,
    /// Well-formed, but of a kind this code does not handle.
    #[error("unsupported packet type")]
    Unsupported,
}
