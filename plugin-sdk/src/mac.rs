//! `MacAddr`: a 48-bit IEEE 802 address, as Ethernet headers, FDB keys and the plugin
//! interface carry it (the WIT as the low 48 bits of a `u64`). The one definition: the host
//! (`wasm_vtep::wire::MacAddr`) re-exports this type, so that the daemon, its configuration and
//! plugins parse, print and classify addresses alike.

use core::fmt;
use core::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddrParseError;

impl fmt::Display for MacAddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address (expected six hex octets such as 02:00:00:00:00:01)")
    }
}

impl std::error::Error for MacAddrParseError {}

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the "default" entry of head-end replication lists in `bridge fdb`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads the first six bytes of `bytes`; `None` if there are fewer.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6)?.try_into().ok().map(MacAddr)
    }

    /// The group bit (I/G) is set: broadcast or multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// A unicast address other than all-zero: the only kind a bridge learns (the kernel's
    /// `is_valid_ether_addr`).
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// The address as the low 48 bits of a `u64`, first octet most significant: how the WIT
    /// carries it, and a compact table key.
    pub const fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The inverse of [`MacAddr::to_u64`]; bits above 48 are ignored.
    pub const fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    /// Accepts `02:00:00:00:00:01` and `02-00-00-00-00-01`, any case, one or two hex digits
    /// per octet (as `bridge fdb` and `ip link` print them), and nothing else: no sign, no
    /// empty octet, no seventh one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(MacAddrParseError)?;
            // `from_str_radix` alone would take a sign ("+f").
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacAddrParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacAddrParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacAddrParseError);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "02:00:0A:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [0x02, 0x00, 0x0a, 0xff, 0x00, 0x01]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert_eq!(format!("{m:?}"), "02:00:0a:ff:00:01");
        assert_eq!("02-00-0a-ff-00-01".parse::<MacAddr>().unwrap(), m);
        assert_eq!("2-0-a-ff-0-1".parse::<MacAddr>().unwrap(), m);
    }

    /// The host's parser used to take a sign before an octet (`u8::from_str_radix` does):
    /// "+2:00:00:00:00:00" was 02:00:00:00:00:00 to the daemon and an error to plugins. Neither
    /// IEEE 802's notation nor iproute2 has a sign; both sides now refuse it.
    #[test]
    fn rejects_malformed_and_signed_octets() {
        for s in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "020:0:0:0:0:0",
            "+2:00:00:00:00:00",
            "02:00:00:00:00:+1",
            "-2:00:00:00:00:00",
            "02::00:00:00:00",
            " 2:00:00:00:00:00",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Err(MacAddrParseError), "{s}");
        }
    }

    #[test]
    fn classifies() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_valid_unicast());
        assert!(!MacAddr::ZERO.is_valid_unicast());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_valid_unicast());
        // Locally administered is still unicast.
        assert!(MacAddr([0x02, 0, 0, 0, 0, 0]).is_valid_unicast());
    }

    #[test]
    fn u64_round_trip() {
        let m = MacAddr([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
        assert_eq!(m.to_u64(), 0x1234_5678_9abc);
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert_eq!(
            MacAddr::from_u64(0xffff_0200_0aff_0001),
            MacAddr([2, 0, 0x0a, 0xff, 0, 1])
        );
    }

    #[test]
    fn from_bytes_needs_six() {
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }
}
