//! `Net`: VTEPs joined by an in-memory underlay that floods a group to every VTEP that joined
//! it and delivers unicast to the VTEP with that address, like the underlay switch of the
//! network tests. Each outer packet is checked as a receiver's kernel would check it.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

use crate::fdb::Location;
use crate::vtep::{Dest, Outbox, PortId, Vtep, VtepSettings};
use crate::wire::{MacAddr, VirtioNetHdr, Vni};

/// An outer packet seen on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) src_port: u16,
    pub(super) payload: Vec<u8>,
}

pub(super) struct Net {
    pub(super) vteps: Vec<Vtep>,
    pub(super) now: Instant,
    /// Packets in flight on the underlay.
    in_flight: VecDeque<Wire>,
    /// Every packet the underlay carried, for assertions.
    pub(super) captured: Vec<Wire>,
    /// Frames delivered to ports: (vtep, port, frame).
    pub(super) delivered: Vec<(usize, PortId, Vec<u8>)>,
    out: Outbox,
}

impl Net {
    pub(super) fn new(settings: Vec<VtepSettings>) -> Net {
        let now = Instant::now();
        let vteps = settings
            .into_iter()
            .map(|s| Vtep::new(s, now).unwrap())
            .collect();
        Net {
            vteps,
            now,
            in_flight: VecDeque::new(),
            captured: Vec::new(),
            delivered: Vec::new(),
            out: Outbox::new(),
        }
    }

    /// A VM behind `port` of VTEP `v` sends `frame`; the underlay then runs until quiet.
    pub(super) fn send(&mut self, v: usize, port: u16, frame: &[u8]) {
        self.send_with(v, port, &VirtioNetHdr::NONE, frame);
    }

    pub(super) fn send_with(&mut self, v: usize, port: u16, vnet: &VirtioNetHdr, frame: &[u8]) {
        self.captured.clear();
        self.delivered.clear();
        let _ = self.vteps[v].handle_port_frame(self.now, PortId(port), vnet, frame, &mut self.out);
        self.collect(v);
        self.drive();
    }

    fn collect(&mut self, v: usize) {
        for f in self.out.frames() {
            match f.dest {
                Dest::Port(p) => self.delivered.push((v, p, f.bytes.clone())),
                Dest::Underlay(dst) => {
                    let wire = parse_outer(&f.bytes);
                    assert_eq!(wire.dst, dst, "outer destination is the one asked for");
                    assert_eq!(
                        wire.src,
                        self.vteps[v].local(),
                        "outer source is the VTEP's own"
                    );
                    self.in_flight.push_back(wire);
                }
            }
        }
        self.out.clear();
    }

    /// Delivers packets in flight until none is left.
    pub(super) fn drive(&mut self) {
        while let Some(wire) = self.in_flight.pop_front() {
            self.captured.push(wire.clone());
            let receivers: Vec<usize> = (0..self.vteps.len())
                .filter(|&i| {
                    let v = &self.vteps[i];
                    if wire.dst.is_multicast() {
                        v.local() != wire.src && v.groups().any(|(_, g)| g == wire.dst)
                    } else {
                        v.local() == wire.dst
                    }
                })
                .collect();
            for i in receivers {
                let _ =
                    self.vteps[i].handle_underlay(self.now, wire.src, &wire.payload, &mut self.out);
                self.collect(i);
            }
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        for v in &mut self.vteps {
            if v.poll_timeout().is_some_and(|t| t <= self.now) {
                v.handle_timeout(self.now);
            }
        }
    }

    /// VTEP `v`'s entry for `mac` on `vni`.
    pub(super) fn entry(&self, v: usize, vni: u32, mac: MacAddr) -> Option<Location> {
        let vni = Vni::new(vni).unwrap();
        self.vteps[v]
            .fdb_entries(self.now)
            .find(|(e, _)| e.vni == vni && e.mac == mac)
            .map(|(e, _)| e.location)
    }

    /// Frames delivered in the last step to VTEP `v`'s ports.
    pub(super) fn delivered_to(&self, v: usize) -> Vec<(PortId, Vec<u8>)> {
        self.delivered
            .iter()
            .filter(|d| d.0 == v)
            .map(|d| (d.1, d.2.clone()))
            .collect()
    }
}

/// Checks and strips the outer IP and UDP headers as the receiving kernel would.
pub(super) fn parse_outer(bytes: &[u8]) -> Wire {
    let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = match bytes[0] >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(bytes).unwrap();
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            assert_eq!(ip.next_header(), IpProtocol::Udp);
            assert_eq!(usize::from(ip.total_len()), bytes.len());
            assert!(!ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0);
            (ip.src_addr().into(), ip.dst_addr().into(), &bytes[20..])
        }
        6 => {
            let ip = Ipv6Packet::new_checked(bytes).unwrap();
            assert_eq!(ip.next_header(), IpProtocol::Udp);
            assert_eq!(usize::from(ip.payload_len()) + 40, bytes.len());
            (ip.src_addr().into(), ip.dst_addr().into(), &bytes[40..])
        }
        v => panic!("IP version {v}"),
    };
    let udp = UdpPacket::new_checked(l4).unwrap();
    assert_eq!(udp.dst_port(), 4789);
    assert!((49152..=65535).contains(&udp.src_port()));
    assert_eq!(usize::from(udp.len()), l4.len());
    if src.is_ipv6() {
        assert!(
            udp.verify_checksum(&src.into(), &dst.into()),
            "IPv6 needs a UDP checksum"
        );
    } else {
        assert_eq!(udp.checksum(), 0, "IPv4 VXLAN sends a zero UDP checksum");
    }
    Wire {
        src,
        dst,
        src_port: udp.src_port(),
        payload: udp.payload().to_vec(),
    }
}
