//! Hand-made Ethernet frames and the packet socket that sends them from inside a namespace:
//! what a hypervisor sends for a migrated VM (a RARP announcement), a guest's gratuitous ARP,
//! and 802.1Q-tagged frames, none of which the usual tools send on demand.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use wasm_vtep::wire::MacAddr;

use crate::netns::Netns;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of RARP (RFC 903).
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// TPID of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// IEEE 802 "local experimental" EtherType: a payload no stack on the path interprets.
pub const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;

/// The shortest Ethernet frame without its FCS; shorter frames are padded to it.
const MIN_FRAME: usize = 60;

/// A raw `AF_PACKET` socket bound to one interface of a namespace. Frames sent through it leave
/// the interface exactly as given (no `virtio_net_hdr`, no offloads).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: libc::c_int,
}

impl PacketSocket {
    /// Opens a packet socket on `iface` inside `ns` (the socket stays in that namespace).
    pub fn open(ns: &impl AsRef<Netns>, iface: &str) -> Result<PacketSocket> {
        let _inside = ns.as_ref().enter()?;
        let index =
            wasm_vtep::io::if_index(iface).with_context(|| format!("in {}", ns.as_ref().name()))?;
        let ifindex = libc::c_int::try_from(index).context("interface index out of range")?;
        // Protocol 0: the socket only sends; it receives nothing.
        // SAFETY: socket(2) takes no pointers.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            bail!("packet socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one frame (destination MAC first, no FCS).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        let mut addr: libc::sockaddr_ll =
            // SAFETY: sockaddr_ll is plain data; all-zero bytes are a valid value of it.
            unsafe { std::mem::zeroed() };
        addr.sll_family = libc::sa_family_t::try_from(libc::AF_PACKET)?;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(frame.get(..6).context("frame shorter than a MAC")?);
        let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>())?;
        // SAFETY: `frame` is valid for reads of its length and `addr` is a valid sockaddr_ll of
        // `len` bytes; both outlive the call, which only reads them.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                len,
            )
        };
        if usize::try_from(sent).ok() != Some(frame.len()) {
            bail!(
                "sending a {}-byte frame: {}",
                frame.len(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

/// An Ethernet frame: the header, the payload, and zero padding up to 60 bytes.
pub fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = wasm_vtep_testkit::eth::frame(dst.0, src.0, ethertype, payload);
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// The RARP "request reverse" broadcast a hypervisor sends for a VM that has just arrived
/// (QEMU's `announce-self`, VMware's vMotion): source `mac`, no addresses known. Switches and
/// VTEPs learn the MAC's new place from it.
pub fn rarp_announce(mac: MacAddr) -> Vec<u8> {
    let body = arp_body(3, mac, Ipv4Addr::UNSPECIFIED, mac, Ipv4Addr::UNSPECIFIED);
    ethernet(MacAddr::BROADCAST, mac, ETHERTYPE_RARP, &body)
}

/// A gratuitous ARP request (sender and target address both `ip`), broadcast from `mac`, as
/// a guest sends when its address or location changes.
pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let body = arp_body(1, mac, ip, MacAddr::ZERO, ip);
    ethernet(MacAddr::BROADCAST, mac, ETHERTYPE_ARP, &body)
}

/// A frame with one 802.1Q tag (`pcp` 0..=7, `vid` 0..=4095) in front of `ethertype`.
pub fn vlan_tagged(
    dst: MacAddr,
    src: MacAddr,
    pcp: u8,
    vid: u16,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let tci = (u16::from(pcp & 7) << 13) | (vid & 0x0fff);
    let mut inner = Vec::with_capacity(4 + payload.len());
    inner.extend(tci.to_be_bytes());
    inner.extend(ethertype.to_be_bytes());
    inner.extend(payload);
    ethernet(dst, src, ETHERTYPE_VLAN, &inner)
}

/// An ARP/RARP body for Ethernet and IPv4 (RFC 826, RFC 903).
fn arp_body(op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend(1u16.to_be_bytes()); // hardware: Ethernet
    b.extend(0x0800u16.to_be_bytes()); // protocol: IPv4
    b.extend([6, 4]);
    b.extend(op.to_be_bytes());
    b.extend(sha.0);
    b.extend(spa.octets());
    b.extend(tha.0);
    b.extend(tpa.octets());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn rarp_is_a_padded_broadcast_from_the_mac() {
        let f = rarp_announce(MAC);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC.0);
        assert_eq!(&f[12..14], &[0x80, 0x35]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 3]);
        assert_eq!(&f[22..28], &MAC.0);
        assert_eq!(&f[32..38], &MAC.0);
    }

    #[test]
    fn gratuitous_arp_names_its_own_address_twice() {
        let ip = Ipv4Addr::new(192, 0, 2, 2);
        let f = gratuitous_arp(MAC, ip);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &ip.octets());
        assert_eq!(&f[38..42], &ip.octets());
    }

    #[test]
    fn vlan_tag_sits_after_the_macs() {
        let f = vlan_tagged(MAC, MAC, 5, 100, ETHERTYPE_EXPERIMENTAL, &[7; 50]);
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([f[14], f[15]]), (5 << 13) | 100);
        assert_eq!(&f[16..18], &[0x88, 0xb5]);
        assert_eq!(f.len(), 18 + 50);
    }
}
