//! [`Details`]: what policy plugins ask of a frame beyond its flow (plugin interface 0.2.0):
//! the DSCP, the TCP flags, the ICMP or ICMPv6 type and code (with a neighbour discovery
//! message's target), and the fields of an ARP or RARP packet.
//!
//! Contract: read from a frame and its [`FrameMeta`], with the same leniency: a field whose
//! bytes are missing or of another kind is `None`, nothing else. Only plugins' frames are read
//! this way (the pipeline itself needs none of it), so a VTEP without plugins never pays for it.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{ArpHardware, ArpPacket};

use super::MacAddr;
use super::frame::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, FrameMeta, ip_proto};
// The plugin SDK's types, as for `MacAddr`: one definition of what the host reads and what a
// plugin is shown.
pub use wasm_vtep_plugin_sdk::types::{Arp, Icmp};

/// EtherType of RARP (RFC 903): the same packet as ARP, with opcodes 3 and 4.
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// ICMP's protocol number (IPv4).
const ICMP: u8 = 1;
/// ICMPv6 neighbour solicitation and advertisement (RFC 4861 §4.3, §4.4).
const ND_SOLICITATION: u8 = 135;
const ND_ADVERTISEMENT: u8 = 136;
/// Where in those messages the target address starts (after type, code, checksum, reserved).
const ND_TARGET_OFFSET: usize = 8;
/// The offset of the flags byte in a TCP header.
const TCP_FLAGS_OFFSET: usize = 13;

/// The fields of a frame that policies look at beyond its flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Details {
    /// The DSCP of an IP frame: the top 6 bits of the IPv4 TOS or IPv6 traffic class.
    pub dscp: Option<u8>,
    /// The TCP header's flags byte (FIN is bit 0, CWR bit 7), if not a fragment.
    pub tcp_flags: Option<u8>,
    /// The ICMP (IPv4) or ICMPv6 (IPv6) header, if not a fragment.
    pub icmp: Option<Icmp>,
    /// An ARP or RARP packet for IPv4 over Ethernet.
    pub arp: Option<Arp>,
}

impl Details {
    /// Reads the details of `frame`, which `meta` was parsed from.
    pub fn parse(frame: &[u8], meta: &FrameMeta) -> Details {
        let l3 = frame.get(meta.l3_offset..).unwrap_or_default();
        let mut details = Details::default();
        match meta.ethertype {
            ETHERTYPE_ARP | ETHERTYPE_RARP => details.arp = arp(l3),
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                let Some(ip) = meta.ip else {
                    return details;
                };
                details.dscp = dscp(l3, meta.ethertype);
                if ip.fragment {
                    return details;
                }
                let l4 = frame.get(ip.l4_offset..).unwrap_or_default();
                match (meta.ethertype, ip.protocol) {
                    (_, ip_proto::TCP) => details.tcp_flags = l4.get(TCP_FLAGS_OFFSET).copied(),
                    (ETHERTYPE_IPV4, ICMP) => details.icmp = icmp(l4, false),
                    (ETHERTYPE_IPV6, ip_proto::ICMPV6) => details.icmp = icmp(l4, true),
                    _ => {}
                }
            }
            _ => {}
        }
        details
    }
}

/// The DSCP from the first two bytes of an IP header (`meta.ip` says the header is whole).
fn dscp(l3: &[u8], ethertype: u16) -> Option<u8> {
    let (&first, &second) = (l3.first()?, l3.get(1)?);
    let traffic_class = if ethertype == ETHERTYPE_IPV4 {
        second // version and IHL, then the TOS byte
    } else {
        first << 4 | second >> 4 // version (4 bits), then the traffic class (8 bits)
    };
    Some(traffic_class >> 2) // DSCP is its top 6 bits
}

fn icmp(l4: &[u8], v6: bool) -> Option<Icmp> {
    let (&kind, &code) = (l4.first()?, l4.get(1)?);
    // The checksum (bytes 2 and 3) is not checked, but a message without one is not whole.
    l4.get(3)?;
    let nd_target = (v6 && matches!(kind, ND_SOLICITATION | ND_ADVERTISEMENT))
        .then(|| l4.get(ND_TARGET_OFFSET..ND_TARGET_OFFSET + 16))
        .flatten()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Ipv6Addr::from);
    Some(Icmp {
        kind,
        code,
        nd_target,
    })
}

fn arp(l3: &[u8]) -> Option<Arp> {
    let packet = ArpPacket::new_checked(l3).ok()?;
    let ethernet_ipv4 = packet.hardware_type() == ArpHardware::Ethernet
        && packet.protocol_type() == smoltcp::wire::EthernetProtocol::Ipv4
        && packet.hardware_len() == 6
        && packet.protocol_len() == 4;
    if !ethernet_ipv4 {
        return None;
    }
    let mac = |b: &[u8]| <[u8; 6]>::try_from(b).ok().map(MacAddr);
    let ip = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    Some(Arp {
        opcode: u16::from(packet.operation()),
        sender_mac: mac(packet.source_hardware_addr())?,
        sender_ip: ip(packet.source_protocol_addr())?,
        target_mac: mac(packet.target_hardware_addr())?,
        target_ip: ip(packet.target_protocol_addr())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn details(frame: &[u8]) -> Details {
        Details::parse(frame, &FrameMeta::parse(frame).unwrap())
    }

    fn arp_payload(opcode: u16, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&opcode.to_be_bytes());
        p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&sender);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&target);
        p
    }

    #[test]
    fn arp_requests_replies_and_rarp() {
        let request = eth(
            ETHERTYPE_ARP,
            &arp_payload(1, [192, 0, 2, 1], [192, 0, 2, 2]),
        );
        let arp = details(&request).arp.unwrap();
        assert_eq!(arp.opcode, 1);
        assert_eq!(arp.sender_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp.sender_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(arp.target_mac, MacAddr([0; 6]));
        assert_eq!(arp.target_ip, Ipv4Addr::new(192, 0, 2, 2));
        let rarp = eth(ETHERTYPE_RARP, &arp_payload(3, [0; 4], [0; 4]));
        assert_eq!(details(&rarp).arp.unwrap().opcode, 3);
        // Cut short, or for another protocol: none, and no error.
        assert_eq!(details(&request[..request.len() - 1]).arp, None);
        let mut ipx = arp_payload(1, [0; 4], [0; 4]);
        ipx[2] = 0x81;
        assert_eq!(details(&eth(ETHERTYPE_ARP, &ipx)).arp, None);
    }

    fn ipv4(tos: u8, proto: u8, fragment: bool, l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut p = vec![0x45, tos];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, if fragment { 0x20 } else { 0 }, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        p.extend_from_slice(l4);
        eth(ETHERTYPE_IPV4, &p)
    }

    #[test]
    fn dscp_and_tcp_flags() {
        let mut tcp = [0u8; 20];
        tcp[13] = 0x12; // SYN and ACK
        let d = details(&ipv4(46 << 2 | 1, ip_proto::TCP, false, &tcp));
        assert_eq!(d.dscp, Some(46));
        assert_eq!(d.tcp_flags, Some(0x12));
        assert_eq!(d.icmp, None);
        // 13 bytes of TCP header: no flags. A fragment: DSCP, but no flags.
        assert_eq!(
            details(&ipv4(0, ip_proto::TCP, false, &tcp[..13])).tcp_flags,
            None
        );
        let d = details(&ipv4(8 << 2, ip_proto::TCP, true, &tcp));
        assert_eq!((d.dscp, d.tcp_flags), (Some(8), None));
    }

    #[test]
    fn icmp_echo() {
        let d = details(&ipv4(0, ICMP, false, &[8, 0, 0xf7, 0xff]));
        assert_eq!(
            d.icmp,
            Some(Icmp {
                kind: 8,
                code: 0,
                nd_target: None
            })
        );
        assert_eq!(details(&ipv4(0, ICMP, false, &[8, 0, 0xf7])).icmp, None);
    }

    fn ipv6(traffic_class: u8, next: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60 | traffic_class >> 4, traffic_class << 4, 0, 0];
        p.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[next, 255]);
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2]);
        p.extend_from_slice(l4);
        eth(ETHERTYPE_IPV6, &p)
    }

    #[test]
    fn neighbour_solicitations_name_their_target() {
        let target: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut ns = vec![ND_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&target.octets());
        let d = details(&ipv6(0xb8, ip_proto::ICMPV6, &ns));
        assert_eq!(d.dscp, Some(46));
        assert_eq!(
            d.icmp,
            Some(Icmp {
                kind: ND_SOLICITATION,
                code: 0,
                nd_target: Some(target)
            })
        );
        // Cut inside the target: the type, not the target.
        let d = details(&ipv6(0, ip_proto::ICMPV6, &ns[..20]));
        assert_eq!(d.icmp.map(|i| (i.kind, i.nd_target)), Some((135, None)));
        // ICMP's number inside IPv6 is not ICMPv6.
        assert_eq!(details(&ipv6(0, ICMP, &ns)).icmp, None);
    }

    #[test]
    fn other_frames_have_none() {
        assert_eq!(details(&eth(0x88cc, &[0; 46])), Details::default());
        // IPv4 ethertype, header cut: no IP, so no DSCP.
        assert_eq!(
            details(&eth(ETHERTYPE_IPV4, &[0x45, 0xb8])),
            Details::default()
        );
    }
}
