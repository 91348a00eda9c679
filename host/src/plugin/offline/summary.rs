//! One line about a frame, as `vtep plugin test` prints it: MACs, VLAN, and what the frame
//! carries (ARP's question or answer, IP addresses, protocol and ports, ICMP type, TCP flags),
//! in tcpdump's spirit.

use core::fmt::Write;

use crate::wire::{Details, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_RARP};
use crate::wire::{FrameMeta, Tci, ip_proto};

const TCP_FLAG_NAMES: [char; 8] = ['F', 'S', 'R', 'P', '.', 'U', 'E', 'C'];

/// The summary of a frame parsed as `meta`, with its `details`.
pub(super) fn of(meta: &FrameMeta, details: &Details) -> String {
    let mut s = format!("{} > {}", meta.src, meta.dst);
    if let Some(tci) = meta.vlan {
        let _ = write!(s, " vlan {}", Tci::from(tci).vid());
    }
    match (meta.ethertype, meta.ip, details.arp) {
        (ETHERTYPE_ARP | ETHERTYPE_RARP, _, Some(arp)) => {
            let _ = match arp.opcode {
                1 if arp.sender_ip == arp.target_ip => {
                    write!(s, " ARP announcement {}", arp.sender_ip)
                }
                1 => write!(s, " ARP who-has {} tell {}", arp.target_ip, arp.sender_ip),
                2 => write!(s, " ARP reply {} is-at {}", arp.sender_ip, arp.sender_mac),
                op => write!(s, " ARP opcode {op} from {}", arp.sender_mac),
            };
        }
        (ETHERTYPE_IPV4 | ETHERTYPE_IPV6, Some(ip), _) => {
            let family = if meta.ethertype == ETHERTYPE_IPV4 {
                "IPv4"
            } else {
                "IPv6"
            };
            let _ = match ip.ports {
                Some(p) => write!(s, " {family} {}.{} > {}.{}", ip.src, p.src, ip.dst, p.dst),
                None => write!(s, " {family} {} > {}", ip.src, ip.dst),
            };
            let _ = match ip.protocol {
                ip_proto::TCP => write!(s, " TCP"),
                ip_proto::UDP => write!(s, " UDP"),
                1 | ip_proto::ICMPV6 => write!(s, " ICMP"),
                p => write!(s, " proto {p}"),
            };
            if let Some(flags) = details.tcp_flags {
                let set: String = (0..8)
                    .filter(|bit| flags >> bit & 1 == 1)
                    .map(|bit| TCP_FLAG_NAMES[bit])
                    .collect();
                let _ = write!(s, " [{set}]");
            }
            if let Some(icmp) = details.icmp {
                let _ = write!(s, " type {} code {}", icmp.kind, icmp.code);
                if let Some(target) = icmp.nd_target {
                    let _ = write!(s, " target {target}");
                }
            }
            if ip.fragment {
                s.push_str(" fragment");
            }
            if let Some(dscp) = details.dscp.filter(|&d| d != 0) {
                let _ = write!(s, " dscp {dscp}");
            }
        }
        (ethertype, _, _) => {
            let _ = write!(s, " ethertype 0x{ethertype:04x}");
        }
    }
    let _ = write!(s, " length {}", meta.len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_and_ip_summaries() {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[
            2, 0, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 192, 0, 2, 2,
        ]);
        let meta = FrameMeta::parse(&arp).unwrap();
        assert_eq!(
            of(&meta, &Details::parse(&arp, &meta)),
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 192.0.2.2 tell 192.0.2.1 length 42"
        );
        let mut tcp = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        tcp.extend_from_slice(&[0x45, 0xb8, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
        tcp.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        tcp.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02]);
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        let meta = FrameMeta::parse(&tcp).unwrap();
        assert_eq!(
            of(&meta, &Details::parse(&tcp, &meta)),
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 192.0.2.1.40000 > 192.0.2.2.80 TCP [S] dscp 46 length 54"
        );
    }
}
