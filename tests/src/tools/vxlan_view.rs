//! `VxlanPacket`: a captured underlay frame read as VXLAN (RFC 7348 §5): the outer IP and UDP
//! fields a test checks (addresses, TTL, source-port entropy, destination port), the VXLAN
//! header, and the inner frame. Outer Ethernet, IPv4 or IPv6 (no extension headers, no
//! fragments), UDP: anything else is `None`, never a panic.

use std::net::IpAddr;

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket,
};
use wasm_vtep::wire::MacAddr;

/// The VXLAN header's I flag: the VNI field is valid.
pub const VXLAN_FLAG_I: u8 = 0x08;

/// A VXLAN packet decoded from an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanPacket<'a> {
    /// Outer source address: the sending VTEP.
    pub src: IpAddr,
    /// Outer destination: a VTEP or a multicast group.
    pub dst: IpAddr,
    /// Outer TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Outer UDP source port (the per-flow entropy).
    pub src_port: u16,
    /// Outer UDP destination port.
    pub dst_port: u16,
    /// Outer UDP checksum as sent (0: none, allowed over IPv4).
    pub udp_checksum: u16,
    /// The VXLAN flags byte ([`VXLAN_FLAG_I`] must be set).
    pub flags: u8,
    /// The 24-bit VNI.
    pub vni: u32,
    /// The encapsulated Ethernet frame.
    pub inner: &'a [u8],
}

impl<'a> VxlanPacket<'a> {
    /// Reads `frame` as Ethernet / IP / UDP to `port` / VXLAN.
    pub fn decode(frame: &'a [u8], port: u16) -> Option<VxlanPacket<'a>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let (src, dst, ttl, l4): (IpAddr, IpAddr, u8, &'a [u8]) = match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip =
                    Ipv4Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
                if ip.next_header() != IpProtocol::Udp || ip.more_frags() || ip.frag_offset() != 0 {
                    return None;
                }
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.hop_limit(),
                    ip.payload(),
                )
            }
            EthernetProtocol::Ipv6 => {
                let ip =
                    Ipv6Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
                if ip.next_header() != IpProtocol::Udp {
                    return None;
                }
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.hop_limit(),
                    ip.payload(),
                )
            }
            _ => return None,
        };
        let udp = UdpPacket::new_checked(l4).ok()?;
        if udp.dst_port() != port {
            return None;
        }
        let payload = udp.payload();
        let header = payload.get(..8)?;
        Some(VxlanPacket {
            src,
            dst,
            ttl,
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
            udp_checksum: udp.checksum(),
            flags: header[0],
            vni: u32::from_be_bytes([0, header[4], header[5], header[6]]),
            inner: &payload[8..],
        })
    }

    /// The inner frame's destination MAC.
    pub fn inner_dst(&self) -> Option<MacAddr> {
        MacAddr::from_bytes(self.inner)
    }

    /// The inner frame's source MAC.
    pub fn inner_src(&self) -> Option<MacAddr> {
        MacAddr::from_bytes(self.inner.get(6..)?)
    }

    /// The inner frame's EtherType (0x0806 ARP, 0x0800 IPv4, 0x8100 a VLAN tag, …).
    pub fn inner_ethertype(&self) -> Option<u16> {
        let b = self.inner.get(12..14)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP broadcast from 02:00:00:00:00:01 in VNI 5001, sent by 198.18.0.1 to group
    /// 239.1.1.100 (layout of a kernel vxlan packet; checksums not checked by the view).
    fn sample() -> Vec<u8> {
        let inner: Vec<u8> = [
            [0xff; 6].as_slice(),
            &[2, 0, 0, 0, 0, 1],
            &[0x08, 0x06],
            &[0; 28],
        ]
        .concat();
        let vxlan = [0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0];
        let udp_len = u16::try_from(8 + vxlan.len() + inner.len()).unwrap();
        let mut udp = vec![0xc3, 0x50, 0x12, 0xb5];
        udp.extend(udp_len.to_be_bytes());
        udp.extend([0, 0]);
        let ip_len = 20 + udp_len;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 239, 1, 1, 100,
        ];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let eth = [
            [1, 0, 0x5e, 1, 1, 100].as_slice(),
            &[2, 0, 0, 0, 0xaa, 1],
            &[0x08, 0x00],
        ]
        .concat();
        [eth, ip, udp, vxlan.to_vec(), inner].concat()
    }

    #[test]
    fn decodes_a_vxlan_frame() {
        let frame = sample();
        let v = VxlanPacket::decode(&frame, 4789).unwrap();
        assert_eq!(v.src, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(v.dst, "239.1.1.100".parse::<IpAddr>().unwrap());
        assert_eq!((v.ttl, v.src_port, v.dst_port), (64, 50000, 4789));
        assert_eq!((v.flags, v.vni), (VXLAN_FLAG_I, 5001));
        assert_eq!(v.inner_dst(), Some(MacAddr::BROADCAST));
        assert_eq!(v.inner_src(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(v.inner_ethertype(), Some(0x0806));
        assert!(VxlanPacket::decode(&frame, 8472).is_none());
    }

    #[test]
    fn never_panics_on_truncation() {
        let frame = sample();
        for cut in 0..frame.len() {
            // Shorter than the IP total length: rejected, never read past the end.
            assert!(
                VxlanPacket::decode(&frame[..cut], 4789).is_none(),
                "cut at {cut}"
            );
        }
    }
}
