//! `TunnelTap`: sends a VM's TCP super-frame into the underlay encapsulated once, as one packet
//! that the kernel segments only where a device needs it, like the kernel's vxlan does.
//!
//! A UDP socket cannot carry an encapsulated super-frame, and a packet socket cannot describe
//! one (`PACKET_VNET_HDR_SZ` takes 10 or 12 bytes; see `docs/research/udp-tunnel-gso.md`). A
//! tap with the 24-byte `virtio_net_hdr` can: since Linux 6.17 its header carries
//! `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4` with the outer UDP and inner IP offsets, and the kernel
//! makes of it the same `SKB_GSO_UDP_TUNNEL` packet its vxlan makes. The tap is in no bridge:
//! the frame is addressed to the tap's own MAC, so the kernel routes it like any packet it
//! receives (forwarding on this one device, our own address accepted as a source, no reverse
//! path filter on it), out of the underlay interface toward the remote VTEP's next hop.
//!
//! Contract: [`TunnelTap::open`] says `Err` with the reason when this kernel or host cannot do
//! it (no `/dev/net/tun`, a kernel without tunnel GSO on tun, a strict reverse path filter for
//! every interface), and the caller segments in user space as before. A frame the tap does not
//! take is segmented instead; after [`REFUSALS_TO_GIVE_UP`] writes in a row refused as
//! malformed the tap is given up for good.
//!
//! What it cannot see: the frames cross the firewall's FORWARD chain, and a chain that drops
//! them (Docker sets its policy to DROP) drops them silently; the kernel counts them forwarded
//! before that hook (`ForwDatagrams`), so no counter tells. That is why the setting that opens
//! the tap (`[underlay] tunnel_gso`) is off unless the operator turns it on.
//!
//! The tap lives as long as its descriptor: when the daemon exits, the kernel deletes it.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};

use crate::io::sys::SetupError;
use crate::wire::VirtioNetHdr;

/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17, `include/uapi/linux/if_tun.h`): the reader takes
/// UDP-tunnel GSO packets. Offered with `TUNSETOFFLOAD`, it is also how a kernel that knows the
/// tunnel header is told from one that answers `EINVAL`.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
/// The bytes in front of the inner frame: Ethernet, IPv4, UDP, VXLAN.
pub(crate) const OUTER_LEN: usize = 14 + 20 + 8 + 8;
/// [`OUTER_LEN`] as the virtio header's offsets count.
const OUTER_BEFORE_INNER: u16 = 50;
/// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` in an `ifreq`'s 16-bit flags: Ethernet frames, each
/// after its virtio header.
const TAP_FLAGS: libc::c_short = 0x5002;
/// `IFF_UP` in an `ifreq`'s 16-bit flags.
const IFF_UP: libc::c_short = 1;
/// [`VirtioNetHdr::TUNNEL_LEN`] as `TUNSETVNETHDRSZ` takes it.
const TUNNEL_HEADER: libc::c_int = 24;
// The constants above say what `libc` and the header's layout say.
const _: () = assert!(OUTER_BEFORE_INNER as usize == OUTER_LEN);
const _: () = assert!(TUNNEL_HEADER as usize == VirtioNetHdr::TUNNEL_LEN);
const _: () =
    assert!(TAP_FLAGS as libc::c_int == libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR);
const _: () = assert!(IFF_UP as libc::c_int == libc::IFF_UP);
/// Where the outer UDP header starts.
const OUTER_UDP: u16 = 14 + 20;
/// The tap's MAC, set before it goes up (so that udev's `MACAddressPolicy` leaves it alone):
/// the frames' destination, so that the kernel routes them. Locally administered.
const TAP_MAC: [u8; 6] = [0x02, 0x76, 0x74, 0x65, 0x70, 0x01];
/// The source MAC of the frames written: any unicast address other than the tap's own.
const SOURCE_MAC: [u8; 6] = [0x02, 0x76, 0x74, 0x65, 0x70, 0x00];
/// The tap's own settings: route what arrives on it, accept our own address as a source, no
/// reverse path check.
const TAP_SYSCTLS: [(&str, &str); 3] = [
    ("forwarding", "1"),
    ("accept_local", "1"),
    ("rp_filter", "0"),
];
/// Writes refused with `EINVAL` in a row after which the tap is given up.
const REFUSALS_TO_GIVE_UP: u32 = 16;
/// `ARPHRD_ETHER`: the address family of an Ethernet hardware address in an `ifreq`.
const ARPHRD_ETHER: libc::sa_family_t = 1;

/// Why a tunnel tap is not used (each says what the user can do).
#[derive(Debug, thiserror::Error)]
pub enum TapUnavailable {
    /// A device or system call failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The kernel does not know UDP-tunnel GSO on tun (before Linux 6.17).
    #[error("this kernel has no UDP-tunnel GSO on tun/tap (Linux 6.17 or later has it)")]
    NoTunnelGso,
    /// IPv6 underlays: forwarding cannot be enabled for one device alone.
    #[error("only an IPv4 underlay can use it")]
    NotIpv4,
    /// `net.ipv4.conf.all.rp_filter` is not 0: it applies to every device (the larger of it
    /// and the device's own value counts), and the tap, which has no address, fails both the
    /// strict and the loose check.
    #[error("net.ipv4.conf.all.rp_filter is {0}, which would drop its frames (tunnel GSO needs 0)")]
    ReversePathFilter(String),
}

/// A VXLAN header and a super-frame behind it, as [`TunnelTap::send`] takes them.
#[derive(Debug, Clone, Copy)]
pub(super) struct SuperFrame<'a> {
    /// The VM's header for the super-frame (offsets from its start).
    pub(super) vnet: &'a VirtioNetHdr,
    /// Where the super-frame's IP header starts.
    pub(super) inner_network: u16,
    /// The super-frame's headers through TCP.
    pub(super) inner_headers: u16,
    /// How many segments it makes.
    pub(super) segments: usize,
    /// The VXLAN header and the super-frame.
    pub(super) payload: &'a [u8],
}

/// The tap and what the frames written to it need.
#[derive(Debug)]
pub(super) struct TunnelTap {
    file: File,
    name: String,
    local: Ipv4Addr,
    dst_port: u16,
    /// Outer TTL as written: one more than configured, since forwarding takes one.
    ttl: u8,
    /// Outer IPv4 IDs: each super-frame's segments take consecutive ones.
    ip_id: AtomicU16,
    /// Cleared for good when the kernel keeps refusing the tunnel header.
    enabled: AtomicBool,
    /// Writes refused with `EINVAL` in a row (by any worker).
    refused_in_a_row: AtomicU32,
}

impl TunnelTap {
    /// Creates the tap (named by the kernel, `vtep-gso<N>`), sets it up for routing our own
    /// packets, and brings it up. Needs `CAP_NET_ADMIN`.
    pub(super) fn open(
        local: Ipv4Addr,
        dst_port: u16,
        ttl: u8,
    ) -> Result<TunnelTap, TapUnavailable> {
        if let Some(mode) = all_rp_filter() {
            return Err(TapUnavailable::ReversePathFilter(mode));
        }
        let fail =
            |what: &'static str| move |e: io::Error| SetupError::socket(what, "tunnel tap", e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(fail("opening /dev/net/tun"))?;
        let fd = file.as_raw_fd();
        let mut ifr = ifreq(c"vtep-gso%d");
        ifr.ifr_ifru.ifru_flags = TAP_FLAGS;
        // SAFETY: TUNSETIFF reads and writes an `ifreq`, which `ifr` is, for the call only.
        ioctl(unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut ifr) }).map_err(fail("TUNSETIFF"))?;
        let name = name_of(&ifr);
        let size: libc::c_int = TUNNEL_HEADER;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` from the pointer.
        ioctl(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &size) })
            .map_err(fail("TUNSETVNETHDRSZ"))?;
        let offloads = libc::TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        match ioctl(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, offloads as libc::c_ulong) }) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(TapUnavailable::NoTunnelGso);
            }
            r => r.map_err(fail("TUNSETOFFLOAD"))?,
        }
        // Route what arrives on it, accept our own address as a source, no reverse path check;
        // no IPv6 on it (nothing is ever sent to it).
        for (key, value) in TAP_SYSCTLS {
            let path = tap_sysctl(&name, key);
            std::fs::write(&path, value).map_err(|e| {
                SetupError::socket("writing a sysctl", format!("{path} = {value}"), e)
            })?;
        }
        // Only to keep IPv6 autoconfiguration quiet on it: absent where IPv6 is disabled.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        set_hardware_address(&file, TAP_MAC).map_err(fail("SIOCSIFHWADDR"))?;
        set_up(&name).map_err(fail("bringing it up"))?;
        Ok(TunnelTap {
            file,
            name,
            local,
            dst_port,
            ttl: ttl.saturating_add(1),
            ip_id: AtomicU16::new(0),
            enabled: AtomicBool::new(true),
            refused_in_a_row: AtomicU32::new(0),
        })
    }

    /// The device's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames still go this way.
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Every second or so, from a thread that is not a worker: puts the tap's settings back
    /// where something changed them (udev runs `systemd-sysctl` for every new device, whose
    /// `net.ipv4.conf.*.rp_filter = 2` would drop every frame), and gives the tap up when
    /// `net.ipv4.conf.all.rp_filter` became non-zero.
    pub(super) fn keep_settings(&self) {
        if !self.enabled() {
            return;
        }
        if let Some(mode) = all_rp_filter() {
            if self.enabled.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    tap = %self.name,
                    rp_filter = %mode,
                    "net.ipv4.conf.all.rp_filter is no longer 0: segmenting in user space"
                );
            }
            return;
        }
        for (key, value) in TAP_SYSCTLS {
            let path = tap_sysctl(&self.name, key);
            let now = std::fs::read_to_string(&path).unwrap_or_default();
            if now.trim() != value {
                match std::fs::write(&path, value) {
                    Ok(()) => tracing::info!(path, was = now.trim(), value, "set again"),
                    Err(error) => {
                        if self.enabled.swap(false, Ordering::Relaxed) {
                            tracing::warn!(path, %error, "cannot keep the tunnel tap's settings: segmenting in user space");
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Records the outcome of a write: after [`REFUSALS_TO_GIVE_UP`] writes in a row refused
    /// with `EINVAL` the tap is turned off for good (this kernel refuses the header itself, not
    /// one odd frame); returns true the one time that happens.
    pub(super) fn record(&self, result: &io::Result<()>) -> bool {
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let n = self.refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                n >= REFUSALS_TO_GIVE_UP && self.enabled.swap(false, Ordering::Relaxed)
            }
            Ok(()) => {
                self.refused_in_a_row.store(0, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    }

    /// Writes `frame` to `dst` from `src_port` as one packet.
    ///
    /// Errors: the kernel's (`EINVAL`: it refused the header or the frame), or
    /// [`io::ErrorKind::InvalidInput`] when the frame's offsets do not fit a header.
    pub(super) fn send(
        &self,
        dst: Ipv4Addr,
        src_port: u16,
        frame: &SuperFrame<'_>,
    ) -> io::Result<()> {
        let SuperFrame {
            vnet,
            inner_network,
            inner_headers,
            segments,
            payload,
        } = *frame;
        let mut header = [0u8; VirtioNetHdr::TUNNEL_LEN];
        // The inner frame starts after the outer headers and the VXLAN header.
        let unfit = || io::Error::new(io::ErrorKind::InvalidInput, "offsets do not fit a header");
        vnet.emit_tunnel(
            OUTER_BEFORE_INNER,
            OUTER_UDP,
            inner_network,
            inner_headers,
            &mut header,
        )
        .ok_or_else(unfit)?;
        let ip_len = u16::try_from(20 + 8 + payload.len()).map_err(|_| unfit())?;
        let id = self.ip_id.fetch_add(
            u16::try_from(segments).unwrap_or(u16::MAX),
            Ordering::Relaxed,
        );
        let outer = outer_headers(
            TAP_MAC,
            self.local,
            dst,
            self.ttl,
            id,
            src_port,
            self.dst_port,
            ip_len,
        );
        let iov = [
            IoSlice::new(&header),
            IoSlice::new(&outer),
            IoSlice::new(payload),
        ];
        let n = (&self.file).write_vectored(&iov)?;
        if n < header.len() + outer.len() + payload.len() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// The outer Ethernet, IPv4 and UDP headers of a super-frame (the kernel's segmentation
/// rewrites the lengths, IDs and IP checksum of each segment from these).
#[allow(clippy::too_many_arguments)] // one header's fields
fn outer_headers(
    tap_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    id: u16,
    src_port: u16,
    dst_port: u16,
    ip_len: u16,
) -> [u8; OUTER_LEN - 8] {
    let mut h = [0u8; OUTER_LEN - 8];
    h[0..6].copy_from_slice(&tap_mac);
    h[6..12].copy_from_slice(&SOURCE_MAC);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    // Flags and fragment offset 0: DF clear, as the kernel's vxlan leaves it (RFC 7348 §4.3).
    ip[8] = ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = ipv4_header_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut h[34..42];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // Checksum 0: none, as RFC 7348 recommends over IPv4.
    h
}

/// The IPv4 header checksum (RFC 791): the complement of the header's ones' complement sum.
fn ipv4_header_checksum(header: &[u8]) -> u16 {
    !smoltcp::wire::checksum::data(header)
}

/// An `ifreq` naming `name` (at most `IFNAMSIZ - 1` bytes), every other byte zero.
fn ifreq(name: &CStr) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name and a union of integers and addresses), for
    // which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.to_bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// The name the kernel wrote back into `ifr`.
fn name_of(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `ioctl`'s return value as a result.
fn ioctl(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the tap's MAC address (tun answers `SIOCSIFHWADDR` on its own descriptor).
fn set_hardware_address(tap: &File, mac: [u8; 6]) -> io::Result<()> {
    let mut ifr = ifreq(c"");
    // SAFETY: writing the plain-data union member SIOCSIFHWADDR reads.
    unsafe {
        ifr.ifr_ifru.ifru_hwaddr.sa_family = ARPHRD_ETHER;
        for (d, &m) in ifr.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(&mac) {
            *d = m as libc::c_char;
        }
    }
    // SAFETY: SIOCSIFHWADDR reads the `ifreq` it is given, for the call only.
    ioctl(unsafe { libc::ioctl(tap.as_raw_fd(), libc::SIOCSIFHWADDR, &ifr) })
}

/// Sets the interface `name` up (`SIOCSIFFLAGS` through a throwaway socket).
fn set_up(name: &str) -> io::Result<()> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a plain socket(2) call; the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = ifreq(&cname);
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the `ifreq` given, for the call only.
    ioctl(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | IFF_UP;
    // SAFETY: as above.
    ioctl(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) })
}

/// `net.ipv4.conf.all.rp_filter` when it is not 0, or why it cannot be read (a sandbox that
/// hides /proc/sys, such as systemd's `ProcSubset=pid`): what cannot be checked is not taken
/// for 0, since a reverse path filter would blackhole every frame the tap forwards.
fn all_rp_filter() -> Option<String> {
    match std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter") {
        Ok(mode) => {
            let mode = mode.trim();
            (mode != "0").then(|| mode.to_owned())
        }
        Err(e) => Some(format!("unreadable ({e})")),
    }
}

/// The path of the tap's IPv4 setting `key`.
fn tap_sysctl(tap: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{tap}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_headers_are_a_valid_ipv4_udp_packet_start() {
        let h = outer_headers(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
            65,
            7,
            49_152,
            4789,
            20 + 8 + 8 + 1000,
        );
        assert_eq!(&h[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&h[12..14], &[0x08, 0x00]);
        let ip = &h[14..34];
        assert_eq!((ip[0], ip[8], ip[9]), (0x45, 65, 17));
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 1036);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 7);
        assert_eq!(&ip[6..8], &[0, 0], "DF clear, no fragment");
        // A header with its checksum sums to 0xffff.
        assert_eq!(ipv4_header_checksum(ip), 0);
        let udp = &h[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 49_152);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 1016);
        assert_eq!(&udp[6..8], &[0, 0]);
    }
}
