//! `FrameMeta`: one cheap, lenient parse of an Ethernet frame, read by the pipeline (learning,
//! flooding, the outer source port) and later by plugins.
//!
//! Contract: only an Ethernet header too short to hold two MACs and an EtherType (plus the tag's
//! 4 bytes, when the EtherType announces one) is an error. Anything deeper that is truncated,
//! garbled or of an unknown kind simply leaves the deeper fields `None`: the frame is still
//! switchable by its MACs. Nothing here allocates or panics, and no checksum is verified (a
//! switch forwards frames, it does not judge them).
//!
//! What is read: one optional 802.1Q / 802.1ad tag; IPv4 (any IHL ≥ 5) or IPv6 with its
//! hop-by-hop, routing, destination-options and fragment extension headers walked; TCP, UDP,
//! UDP-Lite and SCTP ports. A fragment (IPv4 MF or offset, IPv6 fragment header) reports no
//! ports: later fragments carry none, and every fragment of a datagram must hash alike so that
//! the underlay keeps them on one path.

use core::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::vlan::{self, is_tag_tpid};
use super::{MacAddr, WireError, read_u16};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The IP protocol numbers this module reads ports from, and the IPv6 extension headers it walks.
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ICMPv6 (neighbour discovery among its messages).
    pub const ICMPV6: u8 = 58;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

/// The untagged Ethernet header length.
const ETH_HEADER_LEN: usize = 14;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;

/// The seed of [`FrameMeta::flow_hash`]: fixed so that a flow keeps its outer source port across
/// restarts and on every VTEP running this build (no secrecy is needed: the hash only spreads
/// flows over underlay paths).
const FLOW_HASH_SEED: u64 = 0x7678_6c61_6e5f_7673; // "vxlan_vs"

/// What a frame is, as far as a switch and a flow hash need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// The TCI of the 802.1Q (or 802.1ad) tag, if the bytes carry one (decode with
    /// [`Tci`](super::Tci)).
    pub vlan: Option<u16>,
    /// The EtherType of the payload: after the tag, if any.
    pub ethertype: u16,
    /// Where the payload (the IP header, for IP) starts: 14, or 18 with a tag.
    pub l3_offset: usize,
    /// The whole frame's length in bytes.
    pub len: usize,
    /// The IP header's fields, if the EtherType is IPv4 or IPv6 and its fixed header is whole.
    pub ip: Option<IpMeta>,
}

/// The network-layer fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMeta {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 protocol, or the IPv6 next header after the extension headers walked (if an
    /// extension header is truncated, the number of that header).
    pub protocol: u8,
    /// The packet is a fragment (first or later); `ports` is then `None`.
    pub fragment: bool,
    /// Offset in the frame of the header `protocol` names (past IPv4 options and IPv6 extension
    /// headers). It may equal or exceed the frame's length when that header is missing.
    pub l4_offset: usize,
    /// TCP, UDP, UDP-Lite or SCTP ports, when the first 4 bytes of that header are present.
    pub ports: Option<L4Ports>,
}

/// Transport-layer ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L4Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

impl FrameMeta {
    /// Parses `frame`. Errors: [`WireError::Truncated`] only if the Ethernet header (with its
    /// tag, if the EtherType announces one) does not fit.
    pub fn parse(frame: &[u8]) -> Result<FrameMeta, WireError> {
        if frame.len() < ETH_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut dst = [0; 6];
        let mut src = [0; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        let outer = u16::from_be_bytes([frame[12], frame[13]]);
        let (vlan, ethertype, l3_offset) = if is_tag_tpid(outer) {
            let tag = vlan::VlanPacket::new_checked(&frame[ETH_HEADER_LEN..])?;
            (
                Some(tag.tci().get()),
                tag.ethertype(),
                ETH_HEADER_LEN + vlan::HEADER_LEN,
            )
        } else {
            (None, outer, ETH_HEADER_LEN)
        };
        let ip = match ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(frame, l3_offset),
            ETHERTYPE_IPV6 => parse_ipv6(frame, l3_offset),
            _ => None,
        };
        Ok(FrameMeta {
            dst: MacAddr(dst),
            src: MacAddr(src),
            vlan,
            ethertype,
            l3_offset,
            len: frame.len(),
            ip,
        })
    }

    /// The IP source address, if any.
    pub fn ip_src(&self) -> Option<IpAddr> {
        self.ip.map(|ip| ip.src)
    }

    /// The IP destination address, if any.
    pub fn ip_dst(&self) -> Option<IpAddr> {
        self.ip.map(|ip| ip.dst)
    }

    /// The IP protocol (IPv6: final next header), if any.
    pub fn ip_proto(&self) -> Option<u8> {
        self.ip.map(|ip| ip.protocol)
    }

    /// Where the transport header starts, if the frame is IP.
    pub fn l4_offset(&self) -> Option<usize> {
        self.ip.map(|ip| ip.l4_offset)
    }

    /// The transport source port, if any.
    pub fn src_port(&self) -> Option<u16> {
        self.ip.and_then(|ip| ip.ports).map(|p| p.src)
    }

    /// The transport destination port, if any.
    pub fn dst_port(&self) -> Option<u16> {
        self.ip.and_then(|ip| ip.ports).map(|p| p.dst)
    }

    /// A deterministic, well-spread 32-bit hash of the inner flow, for the outer UDP source port
    /// (RFC 7348 §5; see `SourcePorts::pick` in the pipeline).
    ///
    /// It covers the MACs, the VLAN ID, the EtherType and, where present, the IP addresses, the
    /// protocol and the ports: every frame of one flow hashes alike, so the underlay keeps a
    /// flow on one path and in order. The key is ordered (source before destination), so the
    /// two directions of a flow usually hash differently, as with the kernel's `skb_get_hash`;
    /// nothing requires them to meet on one path. Deterministic for a given build (fixed seed).
    pub fn flow_hash(&self) -> u32 {
        let mut h = foldhash::fast::FixedState::with_seed(FLOW_HASH_SEED).build_hasher();
        h.write_u64(self.src.to_u64() << 16 | u64::from(self.ethertype));
        h.write_u64(self.dst.to_u64() << 16 | u64::from(self.vlan.unwrap_or(0) & 0x0fff));
        if let Some(ip) = self.ip {
            match (ip.src, ip.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.write_u64(u64::from(s.to_bits()) << 32 | u64::from(d.to_bits()));
                }
                (s, d) => {
                    h.write_u128(ip_bits(s));
                    h.write_u128(ip_bits(d));
                }
            }
            let ports = ip
                .ports
                .map_or(0, |p| u32::from(p.src) << 16 | u32::from(p.dst));
            h.write_u64(u64::from(ip.protocol) << 32 | u64::from(ports));
        }
        let x = h.finish();
        // Fold both halves in: each carries entropy from the whole key.
        let [a, b, c, d, e, f, g, i] = x.to_le_bytes();
        u32::from_le_bytes([a ^ e, b ^ f, c ^ g, d ^ i])
    }
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The ports of TCP, UDP, UDP-Lite and SCTP: the first 4 bytes of each header.
fn ports(frame: &[u8], protocol: u8, at: usize, end: usize) -> Option<L4Ports> {
    match protocol {
        ip_proto::TCP | ip_proto::UDP | ip_proto::UDPLITE | ip_proto::SCTP => {}
        _ => return None,
    }
    let l4 = frame.get(at..end)?;
    Some(L4Ports {
        src: read_u16(l4, 0)?,
        dst: read_u16(l4, 2)?,
    })
}

/// The end of an IP packet's bytes in the frame: its length field when the frame holds that many
/// (Ethernet pads short frames), else the frame's end (a GSO super-frame may carry a length of 0).
fn ip_end(frame_len: usize, l3: usize, ip_len: usize) -> usize {
    if ip_len == 0 {
        frame_len
    } else {
        frame_len.min(l3.saturating_add(ip_len))
    }
}

fn parse_ipv4(frame: &[u8], l3: usize) -> Option<IpMeta> {
    let h = frame.get(l3..l3.checked_add(IPV4_MIN_HEADER_LEN)?)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER_LEN || frame.len() < l3 + ihl {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let frag = u16::from_be_bytes([h[6], h[7]]);
    // MF (0x2000) or a non-zero offset (low 13 bits); DF (0x4000) does not make a fragment.
    let fragment = frag & 0x3fff != 0;
    let protocol = h[9];
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    let l4_offset = l3 + ihl;
    let ports = if fragment {
        None
    } else {
        ports(
            frame,
            protocol,
            l4_offset,
            ip_end(frame.len(), l3, total_len),
        )
    };
    Some(IpMeta {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol,
        fragment,
        l4_offset,
        ports,
    })
}

fn parse_ipv6(frame: &[u8], l3: usize) -> Option<IpMeta> {
    let h = frame.get(l3..l3.checked_add(IPV6_HEADER_LEN)?)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = ip_end(frame.len(), l3, IPV6_HEADER_LEN + payload_len);
    let mut addr = [[0u8; 16]; 2];
    addr[0].copy_from_slice(&h[8..24]);
    addr[1].copy_from_slice(&h[24..40]);
    let walk = walk_ipv6_extensions(frame.get(..end)?, h[6], l3 + IPV6_HEADER_LEN);
    let (protocol, l4_offset, fragment) = (walk.next, walk.at, walk.fragment);
    let ports = if fragment {
        None
    } else {
        ports(frame, protocol, l4_offset, end)
    };
    Some(IpMeta {
        src: IpAddr::V6(Ipv6Addr::from(addr[0])),
        dst: IpAddr::V6(Ipv6Addr::from(addr[1])),
        protocol,
        fragment,
        l4_offset,
        ports,
    })
}

/// Where a walk of IPv6 extension headers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv6Walk {
    /// The first header not walked: the transport protocol, or the header where the walk stopped.
    pub(crate) next: u8,
    /// Where that header starts.
    pub(crate) at: usize,
    /// A fragment header was passed.
    pub(crate) fragment: bool,
    /// A routing header was passed (the final destination is then not the IPv6 destination).
    pub(crate) routing: bool,
}

/// Skips hop-by-hop, routing and destination-options headers of the packet whose bytes end at
/// `packet.len()`, starting with header type `next` at `at`, and stops after a fragment header.
/// A truncated extension header stops the walk at itself.
pub(crate) fn walk_ipv6_extensions(packet: &[u8], next: u8, at: usize) -> Ipv6Walk {
    let mut w = Ipv6Walk {
        next,
        at,
        fragment: false,
        routing: false,
    };
    // Each header is at least 8 bytes long, so the walk ends within len / 8 steps on any input.
    loop {
        match w.next {
            ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS => {
                let (Some(&nh), Some(&units)) = (packet.get(w.at), packet.get(w.at + 1)) else {
                    return w;
                };
                let len = (usize::from(units) + 1) * 8;
                if packet.len() < w.at + len {
                    return w;
                }
                w.routing |= w.next == ip_proto::ROUTING;
                w.next = nh;
                w.at += len;
            }
            ip_proto::FRAGMENT => {
                if packet.len() < w.at + IPV6_FRAGMENT_HEADER_LEN {
                    return w;
                }
                w.next = packet[w.at];
                w.at += IPV6_FRAGMENT_HEADER_LEN;
                w.fragment = true;
                return w;
            }
            _ => return w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 02:..:02 -> 02:..:01, IPv4 192.0.2.1 -> 192.0.2.2, TCP 40000 -> 5201, SYN, no payload.
    const TCP4: [u8; 54] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // IPv4
        192, 0, 2, 1, 192, 0, 2, 2, //
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0,
        0, // TCP
    ];

    #[test]
    fn parses_tcp4() {
        let m = FrameMeta::parse(&TCP4).unwrap();
        assert_eq!(m.dst, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(m.src, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            (m.vlan, m.ethertype, m.l3_offset, m.len),
            (None, 0x0800, 14, 54)
        );
        assert_eq!(m.ip_src(), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(m.ip_dst(), Some("192.0.2.2".parse().unwrap()));
        assert_eq!(m.ip_proto(), Some(6));
        assert_eq!(m.l4_offset(), Some(34));
        assert_eq!((m.src_port(), m.dst_port()), (Some(40000), Some(5201)));
        assert!(!m.ip.unwrap().fragment);
    }

    fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mut f = frame.to_vec();
        vlan::insert_vlan_tag(&mut f, tpid, tci).unwrap();
        f
    }

    #[test]
    fn parses_through_a_tag() {
        for tpid in [vlan::TPID_8021Q, vlan::TPID_8021AD] {
            let f = tagged(&TCP4, tpid, 0x2064);
            let m = FrameMeta::parse(&f).unwrap();
            assert_eq!(
                (m.vlan, m.ethertype, m.l3_offset),
                (Some(0x2064), 0x0800, 18)
            );
            assert_eq!(m.l4_offset(), Some(38));
            assert_eq!(m.dst_port(), Some(5201));
        }
    }

    #[test]
    fn short_ethernet_is_the_only_error() {
        assert_eq!(FrameMeta::parse(&TCP4[..13]), Err(WireError::Truncated));
        let f = tagged(&TCP4, 0x8100, 1);
        assert_eq!(FrameMeta::parse(&f[..17]), Err(WireError::Truncated));
        // A tag with nothing after it is still a frame.
        let m = FrameMeta::parse(&f[..18]).unwrap();
        assert_eq!((m.ethertype, m.ip), (0x0800, None));
        // A cut IP header leaves L3 unknown.
        assert_eq!(FrameMeta::parse(&TCP4[..33]).unwrap().ip, None);
        // A cut TCP header leaves the ports unknown.
        let m = FrameMeta::parse(&TCP4[..37]).unwrap();
        assert_eq!((m.ip_proto(), m.src_port()), (Some(6), None));
        // A garbled version or IHL leaves L3 unknown.
        let mut bad = TCP4;
        bad[14] = 0x65;
        assert_eq!(FrameMeta::parse(&bad).unwrap().ip, None);
        bad[14] = 0x44;
        assert_eq!(FrameMeta::parse(&bad).unwrap().ip, None);
    }

    #[test]
    fn arp_has_no_l3_fields() {
        let mut f = TCP4;
        f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        let m = FrameMeta::parse(&f).unwrap();
        assert_eq!((m.ethertype, m.ip), (ETHERTYPE_ARP, None));
    }

    #[test]
    fn ipv4_fragments_report_no_ports() {
        let mut f = TCP4;
        f[20] = 0x20; // MF
        let m = FrameMeta::parse(&f).unwrap();
        assert!(m.ip.unwrap().fragment);
        assert_eq!(m.src_port(), None);
        f[20] = 0x40; // DF only
        assert!(!FrameMeta::parse(&f).unwrap().ip.unwrap().fragment);
    }

    #[test]
    fn ipv4_padding_is_not_l4() {
        // total length 20: a bare IP header in a padded frame: no TCP ports in the padding.
        let mut f = TCP4;
        f[16..18].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(FrameMeta::parse(&f).unwrap().src_port(), None);
    }

    /// IPv6 2001:db8::1 -> 2001:db8::2, hop-by-hop (8 bytes), dest-opts (16 bytes), UDP 53 -> 9.
    fn udp6_with_extensions() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, ip_proto::HOPOPTS, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[ip_proto::DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&[ip_proto::UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[0, 53, 0, 9, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn parses_ipv6_through_extension_headers() {
        let f = udp6_with_extensions();
        let m = FrameMeta::parse(&f).unwrap();
        assert_eq!(m.ethertype, ETHERTYPE_IPV6);
        assert_eq!(m.ip_src(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(m.ip_dst(), Some("2001:db8::2".parse().unwrap()));
        assert_eq!(m.ip_proto(), Some(ip_proto::UDP));
        assert_eq!(m.l4_offset(), Some(14 + 40 + 8 + 16));
        assert_eq!((m.src_port(), m.dst_port()), (Some(53), Some(9)));
    }

    #[test]
    fn ipv6_truncated_extension_stops_there() {
        let f = udp6_with_extensions();
        let m = FrameMeta::parse(&f[..14 + 40 + 8 + 10]).unwrap();
        assert_eq!(m.ip_proto(), Some(ip_proto::DSTOPTS));
        assert_eq!(m.l4_offset(), Some(14 + 40 + 8));
        assert_eq!(m.src_port(), None);
    }

    #[test]
    fn ipv6_fragment_header() {
        let mut f = udp6_with_extensions();
        // Replace the destination options with a fragment header (first fragment, M set).
        f[14 + 40] = ip_proto::FRAGMENT;
        f[14 + 48..14 + 56].copy_from_slice(&[ip_proto::UDP, 0, 0, 1, 0, 0, 0, 7]);
        let m = FrameMeta::parse(&f).unwrap();
        let ip = m.ip.unwrap();
        assert!(ip.fragment);
        assert_eq!(
            (ip.protocol, ip.l4_offset, ip.ports),
            (ip_proto::UDP, 14 + 56, None)
        );
    }

    #[test]
    fn flow_hash_is_deterministic_and_sensitive() {
        let base = FrameMeta::parse(&TCP4).unwrap();
        assert_eq!(
            base.flow_hash(),
            FrameMeta::parse(&TCP4).unwrap().flow_hash()
        );
        let mut hashes = vec![base.flow_hash()];
        for (i, v) in [
            (5, 0x03),
            (11, 0x09),
            (29, 9),
            (33, 9),
            (35, 0x41),
            (37, 0x52),
        ] {
            let mut f = TCP4;
            f[i] = v;
            hashes.push(FrameMeta::parse(&f).unwrap().flow_hash());
        }
        // A different VLAN is a different flow.
        hashes.push(
            FrameMeta::parse(&tagged(&TCP4, 0x8100, 7))
                .unwrap()
                .flow_hash(),
        );
        // The reverse direction hashes differently.
        let mut rev = TCP4;
        rev[0..6].copy_from_slice(&TCP4[6..12]);
        rev[6..12].copy_from_slice(&TCP4[0..6]);
        rev[26..30].copy_from_slice(&TCP4[30..34]);
        rev[30..34].copy_from_slice(&TCP4[26..30]);
        rev[34..36].copy_from_slice(&TCP4[36..38]);
        rev[36..38].copy_from_slice(&TCP4[34..36]);
        hashes.push(FrameMeta::parse(&rev).unwrap().flow_hash());
        let n = hashes.len();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), n, "every field changes the hash");
        // Payload and TTL are not part of the flow.
        let mut f = TCP4;
        f[22] = 1;
        f[53] = 0xaa;
        assert_eq!(FrameMeta::parse(&f).unwrap().flow_hash(), base.flow_hash());
    }

    #[test]
    fn flow_hash_spreads_over_ports() {
        // 4096 flows differing only in the source port, bucketed by the top 4 bits: each of the
        // 16 buckets should get about 256; a poor hash would leave some far off.
        let mut buckets = [0u32; 16];
        for port in 0..4096u16 {
            let mut f = TCP4;
            f[34..36].copy_from_slice(&(30000 + port).to_be_bytes());
            let h = FrameMeta::parse(&f).unwrap().flow_hash();
            buckets[usize::try_from(h >> 28).unwrap()] += 1;
        }
        for b in buckets {
            assert!((176..=336).contains(&b), "{buckets:?}");
        }
    }
}
