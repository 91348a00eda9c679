//! Frames as numbered VMs send them: VM `n` has MAC `02:00:00:00:00:<n>` and address
//! `192.0.2.<n>`. ARP requests and replies, a hypervisor's RARP announcement, UDP with complete
//! checksums, and the minimal broadcast UDP frames of the plugin tests and benches.

use std::net::Ipv4Addr;

use smoltcp::wire::ArpOperation;

use crate::eth;
use crate::flow::{Csum, Flow, udp_frame};

/// VM `n`'s MAC address.
pub fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// VM `n`'s IPv4 address.
pub fn vm_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, n)
}

const BROADCAST: [u8; 6] = [0xff; 6];

fn arp(op: ArpOperation, src: u8, dst_mac: [u8; 6], target_mac: [u8; 6], target: u8) -> Vec<u8> {
    let payload = eth::arp(op, mac(src), vm_ip(src), target_mac, vm_ip(target));
    eth::frame(dst_mac, mac(src), 0x0806, &payload)
}

/// VM `src` asks who has VM `target`'s address: a broadcast.
pub fn arp_request(src: u8, target: u8) -> Vec<u8> {
    arp(ArpOperation::Request, src, BROADCAST, [0; 6], target)
}

/// VM `src` answers VM `dst`: a unicast.
pub fn arp_reply(src: u8, dst: u8) -> Vec<u8> {
    arp(ArpOperation::Reply, src, mac(dst), mac(dst), dst)
}

/// The RARP a hypervisor sends for a migrated VM (as QEMU's `qemu_announce_self` does):
/// broadcast, source the VM's MAC, ethertype 0x8035, unpadded.
pub fn rarp(src: u8) -> Vec<u8> {
    let mut buf = eth::frame(BROADCAST, mac(src), 0x8035, &[0; 28]);
    buf[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 3]);
    buf[22..28].copy_from_slice(&mac(src));
    buf[32..38].copy_from_slice(&mac(src));
    buf
}

/// A complete UDP/IPv4 frame from VM `src` to VM `dst` with `len` payload bytes (0, 1, ...
/// modulo 251), IP ID 0 and both checksums filled in.
pub fn udp(src: u8, dst: u8, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let flow = Flow {
        dst_mac: mac(dst),
        src_mac: mac(src),
        vlan: None,
        src: vm_ip(src).into(),
        dst: vm_ip(dst).into(),
        src_port: sport,
        dst_port: dport,
    };
    let payload: Vec<u8> = (0..len)
        .map(|i| u8::try_from(i % 251).expect("below 251"))
        .collect();
    udp_frame(&flow, 0, &payload, Csum::Full).0
}

/// A broadcast UDP/IPv4 frame from MAC `02:00:00:00:<hi>:<lo>` (hi, lo of `src`) and address
/// 192.0.2.<lo>, source port 40000, to UDP port `dport`, with `payload` zero bytes after the
/// headers. The IP ID, flags and both checksums are left zero: the pipeline checks none of them,
/// and a frame this plain keeps the plugin benches' cost about the plugin.
pub fn udp_broadcast(src: u16, dport: u16, payload: usize) -> Vec<u8> {
    let [hi, lo] = src.to_be_bytes();
    let mut f = vec![0u8; 42 + payload];
    f[..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, hi, lo]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(28 + payload).expect("a small payload");
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[192, 0, 2, lo]);
    f[30..34].copy_from_slice(&[192, 0, 2, 255]);
    f[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// `n` broadcast frames ([`udp_broadcast`], 18 payload bytes) from `n` MACs starting at `first`.
pub fn udp_broadcasts(first: u16, n: u16, dport: u16) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|s| udp_broadcast(s, dport, 18))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

    /// The VM's UDP frame is the one smoltcp's emitters write (DF set, ID 0, checksums).
    #[test]
    fn udp_is_what_smoltcp_emits() {
        let (src, dst, len) = (1, 2, 300);
        let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let udp_repr = UdpRepr {
            src_port: 4000,
            dst_port: 53,
        };
        let ip = Ipv4Repr {
            src_addr: vm_ip(src),
            dst_addr: vm_ip(dst),
            next_header: IpProtocol::Udp,
            payload_len: udp_repr.header_len() + len,
            hop_limit: 64,
        };
        let mut want = eth::frame(
            mac(dst),
            mac(src),
            0x0800,
            &vec![0; ip.buffer_len() + ip.payload_len],
        );
        let caps = ChecksumCapabilities::default();
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut want[14..34]), &caps);
        udp_repr.emit(
            &mut UdpPacket::new_unchecked(&mut want[34..]),
            &vm_ip(src).into(),
            &vm_ip(dst).into(),
            len,
            |p| p.copy_from_slice(&payload),
            &caps,
        );
        assert_eq!(udp(src, dst, 4000, 53, len), want);
    }

    #[test]
    fn broadcast_is_addressed_from_the_source_number() {
        let f = udp_broadcast(0x0102, 53, 18);
        assert_eq!(f.len(), 60);
        assert_eq!(
            &f[..12],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 1, 2]
        );
        assert_eq!(&f[26..34], &[192, 0, 2, 2, 192, 0, 2, 255]);
        assert_eq!(&f[36..40], &[0, 53, 0, 26]);
    }
}
