//! Opening a [`Port`]: the packet socket, its options (why each, see the parent module), the
//! binding to the interface, promiscuous mode, and joining a fanout group of a port's sockets.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libc::c_int;
use socket2::{Domain, Protocol, Socket, Type};

use super::Port;
use super::counts::RxCounters;
use crate::config::Steering;
use crate::io::steering;
use crate::io::sys::{SetupError, abi, getsockopt, if_index, set_buffer, setsockopt};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
