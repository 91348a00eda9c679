//! The `virtio_net_hdr` that a packet socket with `PACKET_VNET_HDR` puts before each frame.
//!
//! It tells what the sending VM's kernel left undone: a checksum to finish (`NEEDS_CSUM`, with
//! where the sum starts and where it goes) and a GSO super-frame to segment (type and segment
//! size). Layout per the virtio spec §5.1.6 (the 10-byte legacy header, no `num_buffers`).
//! Packet sockets use the host's byte order for the 16-bit fields (`vio_le()` in
//! `net/packet/af_packet.c`), so this module reads and writes native-endian.

use super::WireError;

/// The header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioNetHdr {
    /// `NEEDS_CSUM` and/or `DATA_VALID`.
    pub flags: u8,
    /// One of the `GSO_*` constants, possibly with `GSO_ECN` or'ed in.
    pub gso_type: u8,
    /// Length of the headers up to the GSO payload (a hint; may be 0).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Offset from the start of the frame where the checksum computation begins.
    pub csum_start: u16,
    /// Offset from `csum_start` where the 16-bit checksum is stored.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The header's size on a packet socket.
    pub const LEN: usize = 10;
    /// The L4 checksum is partial: finish it before the frame leaves the host.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum has been verified (receive side).
    pub const F_DATA_VALID: u8 = 2;
    /// Not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 (TSO).
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (legacy UFO: IP fragments).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6.
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation offload (USO, `UDP_SEGMENT`): one UDP datagram per segment.
    pub const GSO_UDP_L4: u8 = 5;
    /// The ECN bit: the sender's TCP uses ECN (carried through segmentation, CWR on the first).
    pub const GSO_ECN: u8 = 0x80;
    /// Or'ed into an inner type: the frame is that inner packet inside a UDP tunnel over IPv4
    /// (`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`, Linux 6.17; tun/tap with a 24-byte header).
    pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
    /// The size of the header that carries the tunnel offsets
    /// (`struct virtio_net_hdr_v1_hash_tunnel`): the 12-byte v1 header, 8 bytes of hash
    /// report, then the outer transport and inner network header offsets.
    pub const TUNNEL_LEN: usize = 24;

    /// Nothing left undone: a complete, ordinary frame.
    pub const NONE: VirtioNetHdr = VirtioNetHdr {
        flags: 0,
        gso_type: Self::GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header from the first [`VirtioNetHdr::LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<VirtioNetHdr, WireError> {
        let b: &[u8; Self::LEN] = bytes
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::Truncated)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VirtioNetHdr::LEN`] bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let b: &mut [u8; Self::LEN] = out
            .get_mut(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::Truncated)?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        Ok(())
    }

    /// Writes this header as the 24-byte tunnel header ([`VirtioNetHdr::TUNNEL_LEN`]) of a
    /// frame that is this frame behind `outer` bytes of outer headers (Ethernet, IPv4, UDP,
    /// VXLAN): GSO type or'ed with [`VirtioNetHdr::GSO_UDP_TUNNEL_IPV4`], the checksum start
    /// moved by `outer`, the header length `outer + inner_headers` (the inner frame's headers
    /// through TCP, computed, not the VM's hint), the outer UDP header at `outer_transport`
    /// and the inner frame's network header at `inner_network + outer`. The outer UDP checksum
    /// is left zero (no `UDP_TUNNEL_CSUM` flag), as RFC 7348 recommends over IPv4. Every field
    /// is little-endian: the kernel reads a header with tunnel offsets as virtio 1.0 does,
    /// whatever the host's byte order. `None` if an offset overflows.
    pub fn emit_tunnel(
        &self,
        outer: u16,
        outer_transport: u16,
        inner_network: u16,
        inner_headers: u16,
        out: &mut [u8; Self::TUNNEL_LEN],
    ) -> Option<()> {
        let csum_start = self.csum_start.checked_add(outer)?;
        let hdr_len = inner_headers.checked_add(outer)?;
        let inner_network = inner_network.checked_add(outer)?;
        *out = [0; Self::TUNNEL_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type | Self::GSO_UDP_TUNNEL_IPV4;
        out[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        // Bytes 10..12: num_buffers (0); 12..20: hash value and report (0).
        out[20..22].copy_from_slice(&outer_transport.to_le_bytes());
        out[22..24].copy_from_slice(&inner_network.to_le_bytes());
        Some(())
    }

    /// The checksum is partial and must be finished.
    pub const fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// The GSO type without the ECN bit.
    pub const fn gso_kind(&self) -> u8 {
        self.gso_type & !Self::GSO_ECN
    }

    /// The frame is a GSO super-frame to be segmented.
    pub const fn is_gso(&self) -> bool {
        self.gso_kind() != Self::GSO_NONE
    }

    /// The header for the same frame after `delta` bytes were inserted in front of its network
    /// header (a VLAN tag put back with `push_vlan_tag`): `csum_start` and a non-zero `hdr_len`
    /// move by `delta`, as the tun driver's `vlan_hlen` does. `None` if a field would overflow.
    pub const fn shifted(self, delta: u16) -> Option<VirtioNetHdr> {
        let csum_start = if self.needs_csum() {
            match self.csum_start.checked_add(delta) {
                Some(v) => v,
                None => return None,
            }
        } else {
            self.csum_start
        };
        let hdr_len = if self.hdr_len == 0 {
            0
        } else {
            match self.hdr_len.checked_add(delta) {
                Some(v) => v,
                None => return None,
            }
        };
        Some(VirtioNetHdr {
            csum_start,
            hdr_len,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fixed_bytes() {
        // A TCPv4 TSO frame as a veth hands it over: NEEDS_CSUM, gso 1448, csum at 34+16.
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut bytes = [0u8; VirtioNetHdr::LEN];
        hdr.emit(&mut bytes).unwrap();
        let expect_le: [u8; 10] = [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0];
        if cfg!(target_endian = "little") {
            assert_eq!(bytes, expect_le);
        }
        assert_eq!(VirtioNetHdr::parse(&bytes).unwrap(), hdr);
        assert!(hdr.needs_csum() && hdr.is_gso());
    }

    #[test]
    fn short_input_is_an_error() {
        assert_eq!(VirtioNetHdr::parse(&[0; 9]), Err(WireError::Truncated));
        assert_eq!(
            VirtioNetHdr::NONE.emit(&mut [0; 3]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn shifted_moves_offsets() {
        let h = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            hdr_len: 66,
            ..VirtioNetHdr::NONE
        };
        let s = h.shifted(4).unwrap();
        assert_eq!((s.csum_start, s.csum_offset, s.hdr_len), (38, 16, 70));
        assert_eq!(VirtioNetHdr::NONE.shifted(4), Some(VirtioNetHdr::NONE));
        assert_eq!(h.shifted(u16::MAX), None);
    }

    #[test]
    fn tunnel_header_moves_offsets_and_names_the_tunnel() {
        // The research's probe header (docs/research/udp-tunnel-gso.md, Q3): a VM's TSO frame
        // (inner IP at 14, TCP at 34) behind 50 bytes of Ethernet, IPv4, UDP and VXLAN.
        let vm = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut out = [0xff; VirtioNetHdr::TUNNEL_LEN];
        // The VM's hint is not used (a packet socket gives the skb's head length, up to the
        // whole frame): the header length is the outer headers' and the inner ones'.
        let vm = VirtioNetHdr {
            hdr_len: 65_500,
            ..vm
        };
        vm.emit_tunnel(50, 34, 14, 54, &mut out).unwrap();
        let le = |i: usize| u16::from_le_bytes([out[i], out[i + 1]]);
        assert_eq!((out[0], out[1]), (VirtioNetHdr::F_NEEDS_CSUM, 0x21));
        assert_eq!((le(2), le(4), le(6), le(8)), (104, 1448, 84, 16));
        assert_eq!(out[10..20], [0; 10]);
        assert_eq!((le(20), le(22)), (34, 64));
        assert_eq!(vm.emit_tunnel(u16::MAX, 34, 14, 54, &mut out), None);
    }

    #[test]
    fn ecn_bit_is_not_a_kind() {
        let h = VirtioNetHdr {
            gso_type: VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_ECN,
            ..VirtioNetHdr::NONE
        };
        assert_eq!(h.gso_kind(), VirtioNetHdr::GSO_TCPV6);
    }
}
