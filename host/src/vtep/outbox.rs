//! `Outbox`: where the pipeline writes what it wants sent, so that the I/O shell can send a whole
//! batch with one system call per destination kind.
//!
//! The buffers are reused: `clear` keeps their capacity, so once warm the pipeline writes frames
//! without allocating.

use std::net::IpAddr;

use super::settings::PortId;
use crate::wire::VirtioNetHdr;

/// Where an outgoing frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Out of a local port: the bytes are an Ethernet frame.
    Port(PortId),
    /// Into the underlay, to this remote VTEP or group: the bytes are a whole outer IP packet
    /// (IPv4 or IPv6 header, UDP, VXLAN, inner frame).
    Underlay(IpAddr),
}

/// One frame to send.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// Where it goes.
    pub dest: Dest,
    /// For port frames: the offloads still pending (a super-frame switched locally stays one).
    pub vnet: VirtioNetHdr,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A reusable batch of outgoing frames.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: Vec<OutFrame>,
    len: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Starts a new frame and returns its (empty) buffer to write into.
    pub fn push(&mut self, dest: Dest, vnet: VirtioNetHdr) -> &mut Vec<u8> {
        if self.len == self.frames.len() {
            self.frames.push(OutFrame {
                dest,
                vnet,
                bytes: Vec::with_capacity(2048),
            });
        }
        let frame = &mut self.frames[self.len];
        self.len += 1;
        frame.dest = dest;
        frame.vnet = vnet;
        frame.bytes.clear();
        &mut frame.bytes
    }

    /// Takes back the frame most recently pushed (when writing it failed half-way).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The frames pushed since the last `clear`.
    pub fn frames(&self) -> &[OutFrame] {
        &self.frames[..self.len]
    }

    /// How many frames are waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the frames, keeping their buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}
