//! `Port`: a VM-facing interface, read and written through an `AF_PACKET` socket.
//!
//! Contract: a frame read from a port is exactly what the VM sent: its `virtio_net_hdr` (a
//! partial checksum, a GSO super-frame of up to 64 KiB, as the VM's kernel left them) and its
//! bytes with the 802.1Q/802.1ad tag the kernel strips on receipt put back after the MACs. A
//! frame written to a port goes out as given, with its `virtio_net_hdr` telling the kernel what
//! is still to be done. The socket never reads back what is sent out of the interface (by this
//! socket or by the host), and it works on an interface that is down when opened: frames flow
//! once it comes up.
//!
//! Why each socket option (see `packet(7)` and `net/packet/af_packet.c`):
//! - `PACKET_VNET_HDR`: without it a partial checksum or a GSO super-frame arrives as bare bytes
//!   with nothing to tell which is which; forwarded as is, the far VM drops them.
//! - `PACKET_AUXDATA`: the receive path (`__netif_receive_skb_core`) strips the outer VLAN tag
//!   into the skb's metadata before packet sockets see the frame; only this control message
//!   hands it back.
//! - `PACKET_IGNORE_OUTGOING`: a packet socket otherwise also sees every frame transmitted on its
//!   interface, its own included.
//! - `PACKET_MR_PROMISC`: the VM's frames are addressed to other MACs than the interface's.
//! - `PACKET_FANOUT` (with several data path workers): each worker has its own socket on the
//!   port, and the kernel hands each frame to one of them by a hash of its flow (a classic BPF
//!   program, see `steering`), so that a flow's frames stay in order on one worker, the one
//!   that also reads the flow's replies from the underlay.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use libc::c_int;
use socket2::{Domain, Protocol, Socket, Type};

use super::counts::{TxCounts, TxDrop};
use super::steering::{self, Steering};
use super::sys::{
    EMPTY_IOVEC, MAX_BATCH, SetupError, abi, getsockopt, if_index, recv_mmsg, send_all, set_buffer,
    setsockopt, zeroed_mmsghdrs,
};
use crate::wire::VirtioNetHdr;

/// Bytes of a frame a receive buffer holds: the largest GSO super-frame (an IPv4 packet of
/// 65,535 bytes, or an IPv6 payload of 65,535 bytes behind its 40-byte header, after a 14-byte
/// Ethernet header and an inner 802.1ad/802.1Q tag) with room to spare. Larger frames (BIG TCP)
/// arrive truncated and are dropped.
const MAX_FRAME_LEN: usize = 65_536 + 64;
/// Each slot: the `virtio_net_hdr` the kernel writes first, then the frame. Once parsed, the
/// header's 10 bytes are the frame's headroom, where a restored VLAN tag's 4 bytes go.
const SLOT_DATA: usize = VirtioNetHdr::LEN + MAX_FRAME_LEN;
/// Slots start 64-byte apart so that the IP header of every frame has the same alignment.
const SLOT_STRIDE: usize = SLOT_DATA.next_multiple_of(64);
/// Bytes of Ethernet destination and source MACs: the tag goes right after them.
const MACS_LEN: usize = 12;
/// Bytes of an 802.1Q/802.1ad tag (TPID and TCI).
const TAG_LEN: usize = 4;
const TAG_LEN_U16: u16 = 4;
/// The TPID of an 802.1Q tag, for kernels that do not report it.
const TPID_8021Q: u16 = 0x8100;
/// Control bytes per message: one `tpacket_auxdata` message (`CMSG_SPACE(20)` = 40 on 64-bit)
/// with room to spare.
const CONTROL_LEN: usize = 64;
/// Errors `recv_batch` skips in a row before it returns one.
const MAX_ERRORS_IN_A_ROW: u32 = 1024;
/// The least `cmsg_len` of a control message carrying a `tpacket_auxdata`.
const AUXDATA_CMSG_LEN: usize = size_of::<libc::cmsghdr>() + size_of::<libc::tpacket_auxdata>();

/// One message's control buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

/// Where a received frame lies in its batch.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    start: usize,
    len: usize,
    vnet: VirtioNetHdr,
}

/// Reusable receive buffers for [`Port::recv_batch`]: allocated once (about 64 KiB per frame),
/// refilled by every call.
pub struct RxBatch {
    buf: Box<[u8]>,
    control: Box<[Control]>,
    frames: Box<[FrameMeta]>,
    len: usize,
}

impl core::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RxBatch")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One frame of an [`RxBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// What the sender's kernel left undone, with offsets that account for a restored VLAN tag.
    pub vnet: VirtioNetHdr,
    /// The Ethernet frame, VLAN tag included.
    pub bytes: &'a [u8],
}

impl RxBatch {
    /// Buffers for `capacity` frames (at least 1, at most [`MAX_BATCH`]).
    pub fn new(capacity: usize) -> RxBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        RxBatch {
            buf: vec![0; capacity * SLOT_STRIDE].into_boxed_slice(),
            control: vec![Control([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            frames: vec![
                FrameMeta {
                    start: 0,
                    len: 0,
                    vnet: VirtioNetHdr::NONE,
                };
                capacity
            ]
            .into_boxed_slice(),
            len: 0,
        }
    }

    /// How many frames one call can receive.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// How many frames the last receive delivered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The last receive delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frame `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<RxFrame<'_>> {
        let meta = self.frames[..self.len].get(i)?;
        Some(RxFrame {
            vnet: meta.vnet,
            bytes: &self.buf[meta.start..meta.start + meta.len],
        })
    }

    /// The bytes of frame `i`, to finish a checksum in place.
    pub fn bytes_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let meta = self.frames[..self.len].get(i)?;
        Some(&mut self.buf[meta.start..meta.start + meta.len])
    }

    /// The frames of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = RxFrame<'_>> {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

/// The pipeline reads a received batch in place.
impl crate::vtep::PortBatch for RxBatch {
    fn len(&self) -> usize {
        RxBatch::len(self)
    }

    fn frame(&self, i: usize) -> Option<(VirtioNetHdr, &[u8])> {
        self.get(i).map(|f| (f.vnet, f.bytes))
    }
}

impl Default for RxBatch {
    /// A batch of 32 frames (about 2 MiB).
    fn default() -> RxBatch {
        RxBatch::new(32)
    }
}

/// What a port's receive side has seen, beyond the frames it delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRxCounts {
    /// Frames delivered.
    pub frames: u64,
    /// Frames dropped because they did not fit a receive buffer (or their control data did not).
    pub truncated: u64,
    /// Frames the kernel dropped while reading them, e.g. a GSO type a `virtio_net_hdr` cannot
    /// express (`EINVAL`).
    pub rejected: u64,
    /// Frames too short to hold their Ethernet addresses.
    pub malformed: u64,
    /// Times the kernel reported the interface down (`ENETDOWN`): at open if it was down, and
    /// each time it goes down.
    pub link_down: u64,
    /// Frames the kernel dropped because the socket's receive buffer was full, as of the last
    /// [`Port::refresh_kernel_drops`].
    pub kernel_drops: u64,
    /// Of the frames delivered, GSO super-frames (a VM's TSO or USO send).
    pub gso: u64,
    /// Of the frames delivered, frames whose checksum the VM's kernel left partial.
    pub csum_partial: u64,
}

/// The receive side's counters, shared between the reading thread and `rx_counts` callers.
#[derive(Debug, Default)]
struct RxCounters {
    frames: AtomicU64,
    truncated: AtomicU64,
    rejected: AtomicU64,
    malformed: AtomicU64,
    link_down: AtomicU64,
    kernel_drops: AtomicU64,
    gso: AtomicU64,
    csum_partial: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A VM-facing interface, read and written through a packet socket bound to it.
#[derive(Debug)]
pub struct Port {
    socket: Socket,
    name: String,
    ifindex: u32,
    /// Atomics, so that one thread can read the port while others send on it and read these.
    counts: RxCounters,
}

impl Port {
    /// Opens the interface called `name` in the calling thread's network namespace. It may be
    /// down (a VM not yet running): frames flow once it comes up.
    pub fn open(name: &str) -> Result<Port, SetupError> {
        let ifindex = if_index(name)?;
        let target = || format!("port {name:?}");
        let fail = |what: &'static str| move |e: io::Error| SetupError::socket(what, target(), e);

        // Protocol 0: the socket receives nothing until `bind` names the interface and protocol,
        // so no frame of another interface, nor one read before the options below, slips in.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(fail("opening a packet socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("setting O_NONBLOCK"))?;
        let fd = socket.as_fd();
        let on: c_int = 1;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on)
            .map_err(fail("setting PACKET_VNET_HDR"))?;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &on)
            .map_err(fail("setting PACKET_AUXDATA"))?;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on)
            .map_err(fail("setting PACKET_IGNORE_OUTGOING"))?;
        set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF).map_err(fail("setting SO_RCVBUF"))?;
        set_buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF).map_err(fail("setting SO_SNDBUF"))?;

        let ifindex_c = c_int::try_from(ifindex)
            .map_err(|_| fail("binding")(io::Error::from_raw_os_error(libc::ENODEV)))?;
        let addr = libc::sockaddr_ll {
            sll_family: abi::AF_PACKET,
            sll_protocol: abi::ETH_P_ALL.to_be(),
            sll_ifindex: ifindex_c,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_ll that outlives the call and the length passed is
        // its size; the kernel only reads it. `fd` is open for the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                abi::SOCKADDR_LL_LEN,
            )
        };
        if rc != 0 {
            return Err(fail("binding")(io::Error::last_os_error()));
        }
        // Binding to a down interface succeeds but leaves ENETDOWN pending (`packet_do_bind`);
        // `recv_batch` consumes it, and the kernel hooks the socket in when the link comes up.

        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex_c,
            mr_type: abi::PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(fail("joining promiscuous mode"))?;

        Ok(Port {
            socket,
            name: name.to_owned(),
            ifindex,
            counts: RxCounters::default(),
        })
    }

    /// Joins this socket to a fanout group of the port's sockets that spreads frames by flow:
    /// with [`Steering::Symmetric`], by the symmetric hash of the `steering` module's program
    /// (both directions of a flow to the worker of the same index in the underlay's group),
    /// else by the kernel's flow hash. `None` creates a group (the kernel picks an unused id)
    /// and gives it the program, `Some(id)` joins the group another socket of the port created.
    /// Members are numbered in the order they join. Returns the group's id.
    pub fn join_fanout(&self, group: Option<u16>, steering: Steering) -> Result<u16, SetupError> {
        let fail = |what: &'static str| {
            let target = format!("port {:?}", self.name);
            move |e| SetupError::socket(what, target, e)
        };
        let fd = self.socket.as_fd();
        let kind = match steering {
            Steering::Symmetric => libc::PACKET_FANOUT_CBPF,
            Steering::Kernel => libc::PACKET_FANOUT_HASH,
        };
        // A fanout group registers one hook for all its sockets, which ignores each socket's
        // PACKET_IGNORE_OUTGOING: the group must be told so itself (Linux 4.20 and later).
        let kind = kind | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let (id, flags) = match group {
            Some(id) => (u32::from(id), kind),
            None => (0, kind | libc::PACKET_FANOUT_FLAG_UNIQUEID),
        };
        let arg: u32 = id | (flags << 16);
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            .map_err(fail("joining a fanout group"))?;
        if group.is_none() && steering == Steering::Symmetric {
            steering::attach_to_fanout(fd).map_err(fail(
                "setting the fanout's steering program ([datapath] steering = \"kernel\" does without)",
            ))?;
        }
        let mut joined: u32 = 0;
        getsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &mut joined)
            .map_err(fail("reading the fanout group's id"))?;
        // The low 16 bits are the id.
        Ok((joined & 0xffff) as u16)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index, as resolved when the port was opened.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What the receive side has counted so far.
    pub fn rx_counts(&self) -> PortRxCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PortRxCounts {
            frames: get(&self.counts.frames),
            truncated: get(&self.counts.truncated),
            rejected: get(&self.counts.rejected),
            malformed: get(&self.counts.malformed),
            link_down: get(&self.counts.link_down),
            kernel_drops: get(&self.counts.kernel_drops),
            gso: get(&self.counts.gso),
            csum_partial: get(&self.counts.csum_partial),
        }
    }

    /// Adds the frames the kernel dropped since the last call because the receive buffer was
    /// full (`PACKET_STATISTICS`, which reading resets) to `rx_counts().kernel_drops`, and
    /// returns that total. A system call: call it when reporting, not per batch.
    pub fn refresh_kernel_drops(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        getsockopt(
            self.socket.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats,
        )?;
        bump(&self.counts.kernel_drops, u64::from(stats.tp_drops));
        Ok(self.counts.kernel_drops.load(Ordering::Relaxed))
    }

    /// Receives up to `batch.capacity()` frames with one `recvmmsg`, replacing the batch's
    /// previous contents. Returns how many (at least 1), or `Err(WouldBlock)` once nothing is
    /// left to read. Frames that arrive truncated or malformed are counted and skipped, and so
    /// are the interface's down events; other errors are returned.
    pub fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.len = 0;
        // Each dropped message and each of the errors below consumed a frame or a pending error,
        // so reading on makes progress; the bound only guards against an error that repeats
        // without consuming anything (which would be a bug, reported rather than spun on).
        let mut errors_in_a_row = 0u32;
        loop {
            match self.recv_once(batch) {
                Ok(0) => errors_in_a_row = 0, // every message of this call was dropped: read on
                Ok(n) => return Ok(n),
                Err(e) => {
                    errors_in_a_row += 1;
                    match e.raw_os_error() {
                        _ if errors_in_a_row > MAX_ERRORS_IN_A_ROW => return Err(e),
                        Some(libc::ENETDOWN) => bump(&self.counts.link_down, 1),
                        // packet_recvmsg frees a frame whose GSO type no virtio_net_hdr can
                        // express and fails the read with EINVAL.
                        Some(libc::EINVAL) => bump(&self.counts.rejected, 1),
                        Some(libc::EINTR) => {}
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    fn recv_once(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let capacity = batch.capacity();
        let mut iovs = [EMPTY_IOVEC; MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        let buf = batch.buf.as_mut_ptr();
        let control = batch.control.as_mut_ptr();
        for (i, iov) in iovs.iter_mut().enumerate().take(capacity) {
            iov.iov_base = buf.wrapping_add(i * SLOT_STRIDE).cast();
            iov.iov_len = SLOT_DATA;
        }
        let iov_base = iovs.as_mut_ptr();
        for (i, msg) in msgs.iter_mut().enumerate().take(capacity) {
            msg.msg_hdr.msg_iov = iov_base.wrapping_add(i);
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.wrapping_add(i).cast();
            msg.msg_hdr.msg_controllen = CONTROL_LEN as _;
        }
        // SAFETY: `msgs[..capacity]` are valid mmsghdrs; each points to one iovec of `iovs` that
        // covers SLOT_DATA bytes inside slot `i` of `batch.buf` (capacity * SLOT_STRIDE bytes),
        // and to CONTROL_LEN bytes of control slot `i` of `batch.control`. All of them outlive
        // the call and nothing else accesses them during it.
        let received = unsafe { recv_mmsg(self.socket.as_fd(), &mut msgs[..capacity])? };

        let mut delivered = 0;
        for (slot, msg) in msgs.iter().enumerate().take(received) {
            let flags = msg.msg_hdr.msg_flags;
            if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                bump(&self.counts.truncated, 1);
                continue;
            }
            let vlan = vlan_tag(&msg.msg_hdr);
            let start = slot * SLOT_STRIDE;
            let data = &mut batch.buf[start..start + SLOT_DATA];
            let Some(meta) = restore(data, msg.msg_len as usize, vlan) else {
                bump(&self.counts.malformed, 1);
                continue;
            };
            if meta.vnet.is_gso() {
                bump(&self.counts.gso, 1);
            } else if meta.vnet.needs_csum() {
                bump(&self.counts.csum_partial, 1);
            }
            batch.frames[delivered] = FrameMeta {
                start: start + meta.start,
                ..meta
            };
            delivered += 1;
        }
        batch.len = delivered;
        bump(&self.counts.frames, delivered as u64);
        Ok(delivered)
    }

    /// Sends one frame, preceded by its `virtio_net_hdr` (in the same write, without copying).
    pub fn send(&self, vnet: &VirtioNetHdr, frame: &[u8]) -> Result<(), TxDrop> {
        let mut hdr = [0u8; VirtioNetHdr::LEN];
        vnet.emit(&mut hdr).map_err(|_| TxDrop::Invalid)?;
        loop {
            match self.socket.send_vectored_with_flags(
                &[IoSlice::new(&hdr), IoSlice::new(frame)],
                libc::MSG_DONTWAIT,
            ) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(TxDrop::from_errno(e.raw_os_error().unwrap_or(0))),
            }
        }
    }

    /// Sends frames with as few `sendmmsg` calls as possible ([`MAX_BATCH`] frames each),
    /// counting each frame sent or dropped in `counts`.
    pub fn send_batch<'a, I>(&self, frames: I, counts: &mut TxCounts)
    where
        I: IntoIterator<Item = (&'a VirtioNetHdr, &'a [u8])>,
    {
        let mut frames = frames.into_iter();
        let mut hdrs = [[0u8; VirtioNetHdr::LEN]; MAX_BATCH];
        let mut bodies: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        // Packets per frame: a super-frame counts as the segments it will be cut into.
        let mut weights = [1u64; MAX_BATCH];
        let mut iovs = [EMPTY_IOVEC; 2 * MAX_BATCH];
        let mut msgs = zeroed_mmsghdrs();
        loop {
            let mut n = 0;
            for (vnet, frame) in frames.by_ref() {
                if vnet.emit(&mut hdrs[n]).is_err() {
                    counts.record_drops(TxDrop::Invalid, 1);
                    continue;
                }
                bodies[n] = frame;
                weights[n] = match (vnet.is_gso(), usize::from(vnet.gso_size)) {
                    (true, size) if size > 0 => {
                        let payload = frame.len().saturating_sub(usize::from(vnet.hdr_len));
                        payload.div_ceil(size).max(1) as u64
                    }
                    _ => 1,
                };
                n += 1;
                if n == MAX_BATCH {
                    break;
                }
            }
            if n == 0 {
                return;
            }
            let hdr_base = hdrs.as_mut_ptr();
            for (i, pair) in iovs.chunks_exact_mut(2).enumerate().take(n) {
                pair[0].iov_base = hdr_base.wrapping_add(i).cast();
                pair[0].iov_len = VirtioNetHdr::LEN;
                // The kernel only reads through a send's iovecs; `*mut` is the C type's.
                pair[1].iov_base = bodies[i].as_ptr().cast_mut().cast();
                pair[1].iov_len = bodies[i].len();
            }
            let iov_base = iovs.as_mut_ptr();
            for (i, msg) in msgs.iter_mut().enumerate().take(n) {
                msg.msg_hdr.msg_iov = iov_base.wrapping_add(2 * i);
                msg.msg_hdr.msg_iovlen = 2;
            }
            // SAFETY: each of `msgs[..n]` points to two iovecs of `iovs`: a 10-byte header in
            // `hdrs` and a frame borrowed from the caller for 'a; all outlive the call.
            unsafe {
                send_all(
                    self.socket.as_fd(),
                    &mut msgs[..n],
                    &weights[..n],
                    counts,
                    |_, _| false,
                )
            };
            if n < MAX_BATCH {
                return;
            }
        }
    }
}

impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Port {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Whether this kernel takes UDP super-frames (`VIRTIO_NET_HDR_GSO_UDP_L4`) from a packet
/// socket: Linux 6.2 and later. Older kernels refuse them (`EINVAL`), so merging UDP for the
/// ports must be off there.
pub fn kernel_takes_uso() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| release_at_least(&release, 6, 2))
        .unwrap_or(false)
}

/// Whether a kernel release string (`6.18.44-fc`) is at least `major.minor`.
fn release_at_least(release: &str, major: u32, minor: u32) -> Option<bool> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let have_major: u32 = parts.next()?.parse().ok()?;
    let have_minor: u32 = parts.next()?.parse().ok()?;
    Some((have_major, have_minor) >= (major, minor))
}

/// The outer VLAN tag (TPID, TCI) the kernel stripped, from the `PACKET_AUXDATA` control message
/// of a received message.
fn vlan_tag(hdr: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `hdr` is a msghdr the kernel filled: `msg_control` points to the message's control
    // buffer and `msg_controllen` is at most its size (the kernel never writes more), so
    // CMSG_FIRSTHDR/NXTHDR return either null or a pointer to a whole `cmsghdr` inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null, so it points to a whole cmsghdr inside the control buffer
        // (see above), 8-byte aligned as the buffer and CMSG_NXTHDR keep it.
        let c = unsafe { cmsg.read() };
        if c.cmsg_level == libc::SOL_PACKET
            && c.cmsg_type == libc::PACKET_AUXDATA
            && c.cmsg_len as usize >= AUXDATA_CMSG_LEN
        {
            // SAFETY: `cmsg_len` covers a whole tpacket_auxdata after the header, inside the
            // buffer the kernel wrote; read_unaligned makes no assumption on its alignment.
            let aux = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned()
            };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                TPID_8021Q
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: as for CMSG_FIRSTHDR: `hdr` describes the control buffer and `cmsg` is a
        // header inside it; the result is null or a whole header inside it.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    None
}

/// Turns a slot the kernel wrote (`msg_len` bytes: the `virtio_net_hdr`, then the frame) into a
/// frame, putting a stripped VLAN tag back in place. Returns where the frame lies in the slot.
fn restore(data: &mut [u8], msg_len: usize, vlan: Option<(u16, u16)>) -> Option<FrameMeta> {
    let mut vnet = VirtioNetHdr::parse(data).ok()?;
    let len = msg_len.checked_sub(VirtioNetHdr::LEN)?;
    if len < MACS_LEN || msg_len > data.len() {
        return None;
    }
    let Some((tpid, tci)) = vlan else {
        return Some(FrameMeta {
            start: VirtioNetHdr::LEN,
            len,
            vnet,
        });
    };
    // The MACs move 4 bytes into the header's headroom; the tag goes between them and the
    // EtherType. The rest of the frame stays where the kernel put it.
    let start = VirtioNetHdr::LEN - TAG_LEN;
    data.copy_within(VirtioNetHdr::LEN..VirtioNetHdr::LEN + MACS_LEN, start);
    let tag = start + MACS_LEN;
    data[tag..tag + 2].copy_from_slice(&tpid.to_be_bytes());
    data[tag + 2..tag + 4].copy_from_slice(&tci.to_be_bytes());
    // Offsets the kernel computed on the untagged frame move with everything after the MACs.
    if vnet.needs_csum() {
        vnet.csum_start = vnet.csum_start.saturating_add(TAG_LEN_U16);
    }
    if vnet.hdr_len != 0 {
        vnet.hdr_len = vnet.hdr_len.saturating_add(TAG_LEN_U16);
    }
    Some(FrameMeta {
        start,
        len: len + TAG_LEN,
        vnet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(vnet: VirtioNetHdr, frame: &[u8]) -> (Vec<u8>, usize) {
        let mut data = vec![0u8; 128];
        vnet.emit(&mut data).unwrap();
        data[VirtioNetHdr::LEN..VirtioNetHdr::LEN + frame.len()].copy_from_slice(frame);
        (data, VirtioNetHdr::LEN + frame.len())
    }

    #[test]
    fn restore_puts_the_tag_after_the_macs_and_moves_offsets() {
        let frame: Vec<u8> = (0u8..40).collect();
        let vnet = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let (mut data, len) = slot(vnet, &frame);
        let meta = restore(&mut data, len, Some((0x88a8, 0x2064))).unwrap();
        let out = &data[meta.start..meta.start + meta.len];
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x88, 0xa8, 0x20, 0x64]);
        assert_eq!(&out[16..], &frame[12..]);
        assert_eq!(meta.vnet.csum_start, 38);
        assert_eq!(meta.vnet.hdr_len, 70);
        assert_eq!(meta.vnet.csum_offset, 16);
        assert_eq!(meta.vnet.gso_size, 1448);
    }

    #[test]
    fn restore_leaves_untagged_frames_and_unset_offsets_alone() {
        let frame: Vec<u8> = (0u8..20).collect();
        let (mut data, len) = slot(VirtioNetHdr::NONE, &frame);
        let meta = restore(&mut data, len, None).unwrap();
        assert_eq!(&data[meta.start..meta.start + meta.len], &frame[..]);

        let (mut data, len) = slot(VirtioNetHdr::NONE, &frame);
        let meta = restore(&mut data, len, Some((0x8100, 5))).unwrap();
        assert_eq!(meta.vnet, VirtioNetHdr::NONE);
        assert_eq!(meta.len, 24);
    }

    #[test]
    fn restore_rejects_what_cannot_be_a_frame() {
        let (mut data, _) = slot(VirtioNetHdr::NONE, &[0; 11]);
        assert!(restore(&mut data, VirtioNetHdr::LEN + 11, Some((0x8100, 1))).is_none());
        assert!(restore(&mut data, 3, None).is_none());
        assert!(restore(&mut data, 1000, None).is_none());
    }

    #[test]
    fn batch_sizes_are_clamped_and_slots_hold_a_64k_frame_with_tag() {
        assert_eq!(RxBatch::new(0).capacity(), 1);
        assert_eq!(RxBatch::new(1000).capacity(), MAX_BATCH);
        const { assert!(SLOT_DATA - VirtioNetHdr::LEN >= 65_535 + 40 + 14 + 4) };
        const { assert!(CONTROL_LEN >= AUXDATA_CMSG_LEN + 8) };
        let b = RxBatch::default();
        assert!(b.is_empty() && b.get(0).is_none());
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert_eq!(release_at_least("6.18.44-fc-v1098\n", 6, 2), Some(true));
        assert_eq!(release_at_least("6.2.0", 6, 2), Some(true));
        assert_eq!(release_at_least("6.1.187", 6, 2), Some(false));
        assert_eq!(release_at_least("5.19.0-rc1", 6, 2), Some(false));
        assert_eq!(release_at_least("garbage", 6, 2), None);
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let err = Port::open("wv-no-such-if").unwrap_err();
        assert!(err.to_string().contains("wv-no-such-if"), "{err}");
        assert!(matches!(err, SetupError::NoSuchInterface { .. }));
        assert!(matches!(
            Port::open("a-name-longer-than-ifnamsiz"),
            Err(SetupError::InvalidInterfaceName { .. })
        ));
    }
}
