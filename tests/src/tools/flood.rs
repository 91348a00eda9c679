//! A UDP flood between VMs, for the benchmark: [`udp_flood`] pushes fixed-size datagrams with
//! `sendmmsg` on a connected socket inside one namespace as fast as the path takes them, and
//! [`UdpSink`] counts what arrives with `recvmmsg` inside another.
//!
//! Both sides are ordinary sockets, so the frames are exactly what an application in a VM sends
//! (the VM's kernel builds them, with its offloads as they are). Each flood carries a random tag
//! in the first 8 bytes of its payload; the sink counts only datagrams with that tag, so a
//! stray packet or a previous flood's stragglers never count.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::netns::Netns;
use crate::tools::cpu::TaskCpu;

/// Ethernet (14) + IPv4 (20) + UDP (8) header bytes: a frame of `n` bytes carries `n - 42`
/// bytes of UDP payload (FCS not counted, as the kernel does not count it either).
pub const UDP_FRAME_OVERHEAD: usize = 42;

/// The payload bytes that identify a flood.
pub const TAG_LEN: usize = 8;

/// The largest frame a VM at MTU 1500 sends without fragmenting.
pub const MAX_FRAME: usize = 1514;

/// The UDP payload length that makes an Ethernet frame of `frame_len` bytes (IPv4).
pub fn udp_payload_len(frame_len: usize) -> Result<usize> {
    if !(UDP_FRAME_OVERHEAD + TAG_LEN..=MAX_FRAME).contains(&frame_len) {
        bail!(
            "frame length {frame_len} out of range {}..={MAX_FRAME}",
            UDP_FRAME_OVERHEAD + TAG_LEN
        );
    }
    Ok(frame_len - UDP_FRAME_OVERHEAD)
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FloodReport {
    /// Datagrams the kernel accepted (`sendmmsg`'s count). A datagram a device queue then
    /// drops is still counted here, and shows as loss.
    pub sent: u64,
    /// `sendmmsg` calls that failed with a transient error (`ENOBUFS`, `ECONNREFUSED` from an
    /// ICMP error, `EAGAIN`).
    pub send_errors: u64,
    /// How long the sender ran, first call to last return.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// The sending thread's CPU time (with tick accounting, the softirq work it triggered and
    /// ran on its way out of the system calls too).
    pub cpu: TaskCpu,
}

/// Sends `frame_len`-byte frames (IPv4, UDP, see [`udp_payload_len`]) tagged with `tag` from
/// a connected UDP socket inside `ns` to `dst`, `batch` datagrams per `sendmmsg`, for
/// `duration`. Runs on a thread of its own that enters `ns`; returns when done.
pub fn udp_flood(
    ns: &Netns,
    dst: SocketAddr,
    frame_len: usize,
    duration: Duration,
    tag: u64,
    batch: usize,
) -> Result<FloodReport> {
    let payload_len = udp_payload_len(frame_len)?;
    if batch == 0 || batch > 1024 {
        bail!("batch of {batch}: expected 1..=1024 (UIO_MAXIOV)");
    }
    std::thread::scope(|s| {
        s.spawn(|| -> Result<FloodReport> {
            let _inside = ns.enter()?;
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding")?;
            socket
                .connect(dst)
                .with_context(|| format!("connecting to {dst}"))?;
            let mut payload = vec![0u8; payload_len];
            payload[..TAG_LEN].copy_from_slice(&tag.to_be_bytes());
            send_for(&socket, &payload, batch, duration)
        })
        .join()
        .unwrap_or_else(|_| bail!("the flood thread panicked"))
    })
}

fn send_for(
    socket: &UdpSocket,
    payload: &[u8],
    batch: usize,
    duration: Duration,
) -> Result<FloodReport> {
    // Every message points at the same payload: the kernel copies it per datagram anyway.
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..batch)
        .map(|_| {
            // SAFETY: mmsghdr is plain data; all-zero bytes are a valid value of it (null
            // name: the socket is connected).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let vlen = libc::c_uint::try_from(batch)?;
    let cpu_start = TaskCpu::of_this_thread();
    let start = Instant::now();
    let deadline = start + duration;
    let (mut sent, mut send_errors) = (0u64, 0u64);
    while Instant::now() < deadline {
        // SAFETY: `msgs` holds `batch` initialised headers whose iovec points at `payload`,
        // which outlives the call; the kernel only reads the payload and writes `msg_len`.
        let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), vlen, 0) };
        if rc >= 0 {
            sent += u64::try_from(rc)?;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOBUFS | libc::ECONNREFUSED | libc::EAGAIN | libc::EINTR) => {
                send_errors += 1;
            }
            _ => return Err(err).context("sendmmsg"),
        }
    }
    Ok(FloodReport {
        sent,
        send_errors,
        elapsed: start.elapsed(),
        cpu: TaskCpu::of_this_thread().since(&cpu_start),
    })
}

/// What a sink counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SinkReport {
    /// Datagrams that carried the flood's tag.
    pub received: u64,
    /// Datagrams without it (anything else sent to the port).
    pub foreign: u64,
    /// The receiving thread's CPU time.
    pub cpu: TaskCpu,
}

/// A UDP socket bound inside a namespace and a thread that reads it with `recvmmsg` until
/// stopped, counting the datagrams of one flood.
#[derive(Debug)]
pub struct UdpSink {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<SinkReport>>>,
}

/// The socket's receive buffer: a few tens of milliseconds of a flood, so that a reader
/// preempted for a moment on a busy machine does not turn into loss.
const SINK_RCVBUF: libc::c_int = 16 << 20;

/// How often the reader looks at its stop flag when nothing arrives.
const SINK_POLL: Duration = Duration::from_millis(50);

impl UdpSink {
    /// Binds `0.0.0.0:port` inside `ns` and starts counting datagrams tagged `tag`.
    pub fn start(ns: &Netns, port: u16, tag: u64) -> Result<UdpSink> {
        let socket = {
            let _inside = ns.enter()?;
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .with_context(|| format!("binding UDP port {port} in {}", ns.name()))?
        };
        socket.set_read_timeout(Some(SINK_POLL))?;
        set_rcvbuf(&socket, SINK_RCVBUF)?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            std::thread::Builder::new()
                .name("udp-sink".into())
                .spawn(move || receive_until(&socket, tag, &stop, &received))
                .context("spawning the sink thread")?
        };
        Ok(UdpSink {
            stop,
            received,
            thread: Some(thread),
        })
    }

    /// Tagged datagrams counted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops the reader (within 50 ms) and returns its counts.
    pub fn stop(mut self) -> Result<SinkReport> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| bail!("the sink thread panicked")),
            None => bail!("sink already stopped"),
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Room for any datagram a VM at MTU 1500 sends unfragmented.
const SINK_BUF: usize = 2048;
/// Datagrams per `recvmmsg`.
const SINK_BATCH: usize = 64;

fn receive_until(
    socket: &UdpSocket,
    tag: u64,
    stop: &AtomicBool,
    received: &AtomicU64,
) -> Result<SinkReport> {
    let cpu_start = TaskCpu::of_this_thread();
    let mut bufs = vec![[MaybeUninit::<u8>::uninit(); SINK_BUF]; SINK_BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SINK_BUF,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero bytes are a valid value of it.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let vlen = libc::c_uint::try_from(SINK_BATCH)?;
    let want = tag.to_be_bytes();
    let (mut tagged, mut foreign) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: each header's single iovec points at its own SINK_BUF-byte buffer in
        // `bufs`, which outlives the call; the kernel writes at most iov_len bytes there and
        // sets msg_len. MSG_WAITFORONE returns as soon as one datagram is in, SO_RCVTIMEO
        // bounds the wait for that one.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                vlen,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let Ok(n) = usize::try_from(rc) else {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED) => continue,
                _ => return Err(err).context("recvmmsg"),
            }
        };
        for (msg, buf) in msgs.iter().zip(&bufs).take(n) {
            let len = usize::try_from(msg.msg_len).unwrap_or(0);
            // SAFETY: the kernel initialised the first msg_len bytes of this buffer, and
            // only TAG_LEN of them are read, after checking that many were written.
            let head = (len >= TAG_LEN)
                .then(|| unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), TAG_LEN) });
            if head == Some(&want[..]) {
                tagged += 1;
            } else {
                foreign += 1;
            }
        }
        received.store(tagged, Ordering::Relaxed);
    }
    Ok(SinkReport {
        received: tagged,
        foreign,
        cpu: TaskCpu::of_this_thread().since(&cpu_start),
    })
}

/// Sets the receive buffer past `net.core.rmem_max` if allowed (`SO_RCVBUFFORCE` needs
/// CAP_NET_ADMIN), else as far as the limit lets `SO_RCVBUF` go.
fn set_rcvbuf(socket: &UdpSocket, bytes: libc::c_int) -> Result<()> {
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>())?;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `bytes` is a valid c_int of `len` bytes that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                len,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(std::io::Error::last_os_error()).context("setting SO_RCVBUF")
}

/// Serializes a duration as seconds.
fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_lengths() {
        assert_eq!(udp_payload_len(64).unwrap(), 22);
        assert_eq!(udp_payload_len(1400).unwrap(), 1358);
        assert_eq!(udp_payload_len(1514).unwrap(), 1472);
        assert!(udp_payload_len(49).is_err());
        assert!(udp_payload_len(1515).is_err());
    }

    #[test]
    fn a_flood_arrives_tagged_inside_one_namespace() {
        let ns = Netns::new("fl").unwrap();
        let sink = UdpSink::start(&ns, 9001, 0xfeed).unwrap();
        // A datagram from someone else is counted apart.
        {
            let _in = ns.enter().unwrap();
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"not a flood", "127.0.0.1:9001").unwrap();
        }
        let dst: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let sent = udp_flood(&ns, dst, 64, Duration::from_millis(200), 0xfeed, 16).unwrap();
        assert!(sent.sent > 100, "{sent:?}");
        std::thread::sleep(Duration::from_millis(100));
        let got = sink.stop().unwrap();
        assert_eq!(got.foreign, 1, "{got:?}");
        // Loopback may drop when the reader falls behind, but most arrive.
        assert!(
            got.received > 0 && got.received <= sent.sent,
            "{got:?} {sent:?}"
        );
        assert!(sent.cpu.total() > 0.0, "{sent:?}");
    }

    #[test]
    fn refuses_bad_arguments() {
        let ns = Netns::new("fl").unwrap();
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(udp_flood(&ns, dst, 20, Duration::ZERO, 1, 8).is_err());
        assert!(udp_flood(&ns, dst, 64, Duration::ZERO, 1, 0).is_err());
    }
}
