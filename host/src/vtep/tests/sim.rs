//! `Net`: VTEPs joined by an in-memory underlay that floods a group to every VTEP that joined
//! it and delivers unicast to the VTEP with that address, like the underlay switch of the
//! network tests. Each datagram is checked as a receiver would check it.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::fdb::{Location, PortId};
use crate::vtep::{Dest, OutFrame, Outbox, SourcePorts, Vtep, VtepSettings};
use crate::wire::{MacAddr, VirtioNetHdr, Vni, VxlanPacket};

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
                Dest::Underlay(_) => {
                    let local = self.vteps[v].local();
                    self.in_flight.extend(datagrams(f, local));
                }
                // As a veth underlay carries it: one packet, segmented nowhere, read whole by
                // the receiver's UDP socket.
                Dest::UnderlayWhole(dest) => self.in_flight.push_back(Wire {
                    src: self.vteps[v].local(),
                    dst: dest.dst,
                    src_port: dest.src_port,
                    payload: f.bytes.clone(),
                }),
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

/// The datagrams of an underlay frame as they leave `local`, each checked as a receiver would:
/// a VXLAN header with the I flag and no reserved bits, from a source port of the default set.
pub(super) fn datagrams(frame: &OutFrame, local: IpAddr) -> Vec<Wire> {
    let Dest::Underlay(dest) = frame.dest else {
        panic!("not an underlay frame: {:?}", frame.dest)
    };
    assert!(
        SourcePorts::default().contains(dest.src_port),
        "source port {} from the set",
        dest.src_port
    );
    frame
        .datagrams()
        .map(|d| {
            let vxlan = VxlanPacket::new_checked(d).unwrap();
            assert!(vxlan.has_vni_flag() && !vxlan.reserved_bits_set());
            Wire {
                src: local,
                dst: dest.dst,
                src_port: dest.src_port,
                payload: d.to_vec(),
            }
        })
        .collect()
}
