//! `Vni`: the 24-bit VXLAN Network Identifier (RFC 7348 §5).

use core::fmt;

/// A VXLAN Network Identifier, always within 0..=0xff_ffff.
///
/// VNI 0 is representable (it can arrive on the wire) but not configurable: the config layer
/// accepts 1..=16777215 as the kernel's `ip link add type vxlan id` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

/// Why a number is not a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("VNI {0} is outside the 24-bit range 0..=16777215")]
pub struct VniRangeError(pub u32);

impl Vni {
    /// The largest VNI, 2^24 - 1.
    pub const MAX: u32 = 0x00ff_ffff;

    /// Validates a 24-bit value.
    pub const fn new(v: u32) -> Result<Vni, VniRangeError> {
        if v <= Self::MAX {
            Ok(Vni(v))
        } else {
            Err(VniRangeError(v))
        }
    }

    /// Builds a VNI from the low 24 bits of `v`: for values read from a 24-bit wire field.
    pub const fn from_u24(v: u32) -> Vni {
        Vni(v & Self::MAX)
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Vni {
    type Error = VniRangeError;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Vni::new(v)
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vni({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range() {
        assert_eq!(Vni::new(5001).unwrap().get(), 5001);
        assert!(Vni::new(Vni::MAX).is_ok());
        assert_eq!(Vni::new(Vni::MAX + 1), Err(VniRangeError(Vni::MAX + 1)));
        assert_eq!(Vni::from_u24(0xff00_1389).get(), 0x1389);
    }
}
