//! Flow steering: which worker reads a frame, from a port or from the underlay.
//!
//! Each worker has its own socket on every port (a `PACKET_FANOUT` group) and its own underlay
//! socket (a `SO_REUSEPORT` group). By default the kernel spreads the two groups by unrelated
//! hashes (the port frame's flow hash; the outer UDP 4-tuple), so the request of a ping or a
//! TCP segment may be read by one worker and its reply by another, which is asleep, and waking
//! it adds to every round trip (netbench's `wasm-vtep(kernel-steering)` case measures that mode
//! against the default).
//!
//! So both groups get a classic BPF program that picks the worker by one hash of the inner
//! frame, symmetric in source and destination: the XOR of the IP addresses (for IPv6 their low
//! 64 bits), and of the TCP, UDP or SCTP ports where the packet has them (not in IPv4
//! fragments, which hash by addresses alone, so that all of a packet's fragments meet). Both directions of a flow then meet on one worker, which is
//! usually still polling when the reply comes; distinct flows still spread over the workers.
//! Frames that are neither IPv4 nor IPv6 (ARP) go to the first worker.
//!
//! The port program reads the packet from its network header (`skb->data` on receive, the VLAN
//! tag already taken out into metadata) and its ethertype from `skb->protocol`; the underlay
//! program reads the UDP payload (the reuseport hook skips the UDP header): the VXLAN header,
//! then the inner Ethernet header with at most one 802.1Q or 802.1ad tag, which the pipeline puts
//! back into the frame it encapsulates. A packet socket fanout takes the program's result modulo the
//! group's size; a reuseport group takes it as the socket's index, so that program ends with the
//! modulo itself. Members are numbered in the order they joined, which is the workers' order.

use std::io;
use std::os::fd::BorrowedFd;

use super::sys::setsockopt;

/// `SO_ATTACH_REUSEPORT_CBPF`, which the `libc` crate exports only for Android: 51 in
/// `asm-generic/socket.h` (x86, ARM, RISC-V, MIPS, PowerPC); SPARC numbers it otherwise.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
compile_error!("SO_ATTACH_REUSEPORT_CBPF has another number on this architecture");

/// Bytes of a VXLAN header.
const VXLAN_LEN: u32 = 8;
/// Where the inner ethertype is in a VXLAN payload: past the header and the two MACs.
const INNER_ETHERTYPE: u32 = VXLAN_LEN + 12;
/// Where the inner network header starts, untagged.
const INNER_NET: u32 = VXLAN_LEN + 14;
/// Bytes of an 802.1Q tag.
const TAG_LEN: u32 = 4;

const ETH_P_IPV4: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_8021AD: u32 = 0x88a8;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_SCTP: u32 = 132;
/// An IPv4 fragment: more fragments follow, or the offset is nonzero.
const IPV4_FRAGMENT: u32 = 0x3fff;

/// The program a port's fanout group runs.
pub(super) fn port_program() -> Vec<libc::sock_filter> {
    let mut p = Program::default();
    // The ethertype as the kernel took it from the frame (past a VLAN tag).
    p.stmt(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL).cast_unsigned(),
    );
    p.dispatch(0, Label::Other);
    p.hash_blocks(0);
    p.finish(None);
    p.assemble()
}

/// The program the underlay's reuseport group runs, for `workers` sockets.
pub(super) fn underlay_program(workers: u32) -> Vec<libc::sock_filter> {
    let mut p = Program::default();
    p.stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, INNER_ETHERTYPE);
    p.jump(libc::BPF_JEQ, ETH_P_8021Q, Label::Tagged, Label::Next);
    p.jump(libc::BPF_JEQ, ETH_P_8021AD, Label::Tagged, Label::Next);
    p.dispatch(INNER_NET, Label::Other);
    p.label(Label::Tagged);
    p.stmt(
        libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
        INNER_ETHERTYPE + TAG_LEN,
    );
    p.dispatch(INNER_NET + TAG_LEN, Label::Other);
    p.hash_blocks(INNER_NET);
    p.hash_blocks(INNER_NET + TAG_LEN);
    p.finish(Some(workers.max(1)));
    p.assemble()
}

/// Makes `fd`'s fanout group (a port's sockets, joined as `PACKET_FANOUT_CBPF`) steer by
/// [`port_program`].
pub(super) fn attach_to_fanout(fd: BorrowedFd<'_>) -> io::Result<()> {
    attach(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_FANOUT_DATA,
        &port_program(),
    )
}

/// Makes `fd`'s reuseport group (the workers' underlay sockets) steer by
/// [`underlay_program`].
pub(super) fn attach_to_reuseport(fd: BorrowedFd<'_>, workers: u32) -> io::Result<()> {
    attach(
        fd,
        libc::SOL_SOCKET,
        SO_ATTACH_REUSEPORT_CBPF,
        &underlay_program(workers),
    )
}

fn attach(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    program: &[libc::sock_filter],
) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        // The kernel only reads the program, and copies it during the call.
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(fd, level, name, &fprog)
}

/// Jump targets, resolved when the program is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    /// The next instruction.
    Next,
    /// Not IP: the first worker.
    Other,
    /// An inner 802.1Q tag.
    Tagged,
    /// IPv4 at this offset.
    V4(u32),
    /// IPv6 at this offset.
    V6(u32),
    /// IPv4 at this offset, with ports.
    V4Ports(u32),
    /// IPv6 at this offset, with ports.
    V6Ports(u32),
    /// The hash in M[0] is complete.
    Fold,
}

#[derive(Debug, Clone, Copy)]
enum Insn {
    Stmt(u32, u32),
    Jump {
        op: u32,
        k: u32,
        yes: Label,
        no: Label,
    },
    Goto(Label),
    Label(Label),
}

/// A classic BPF program under construction, with symbolic jumps.
#[derive(Debug, Default)]
struct Program(Vec<Insn>);

/// 2^32 divided by the golden ratio, odd: the multiplier of Knuth's multiplicative hash.
const GOLDEN_RATIO_32: u32 = 0x9e37_79b1;
/// The scratch word holding the hash.
const HASH: u32 = 0;
/// The scratch word holding a source port.
const PORT: u32 = 1;

impl Program {
    fn stmt(&mut self, code: u32, k: u32) {
        self.0.push(Insn::Stmt(code, k));
    }

    fn jump(&mut self, op: u32, k: u32, yes: Label, no: Label) {
        self.0.push(Insn::Jump { op, k, yes, no });
    }

    fn label(&mut self, l: Label) {
        self.0.push(Insn::Label(l));
    }

    /// A = load of `size` at absolute offset `k`.
    fn load(&mut self, size: u32, k: u32) {
        self.stmt(libc::BPF_LD | size | libc::BPF_ABS, k);
    }

    /// M[HASH] ^= A (X is clobbered).
    fn mix_into_hash(&mut self) {
        self.stmt(libc::BPF_LDX | libc::BPF_MEM, HASH);
        self.stmt(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0);
        self.stmt(libc::BPF_ST, HASH);
    }

    /// With the ethertype in A: on to the IPv4 or IPv6 block for a network header at `net`,
    /// else to `other`.
    fn dispatch(&mut self, net: u32, other: Label) {
        self.jump(libc::BPF_JEQ, ETH_P_IPV4, Label::V4(net), Label::Next);
        self.jump(libc::BPF_JEQ, ETH_P_IPV6, Label::V6(net), other);
    }

    /// The IPv4 and IPv6 hash blocks for a network header at `net`.
    fn hash_blocks(&mut self, net: u32) {
        // IPv4: addresses, then ports unless a fragment.
        self.label(Label::V4(net));
        self.load(libc::BPF_W, net + 12);
        self.stmt(libc::BPF_ST, HASH);
        self.load(libc::BPF_W, net + 16);
        self.mix_into_hash();
        self.load(libc::BPF_H, net + 6);
        self.jump(libc::BPF_JSET, IPV4_FRAGMENT, Label::Fold, Label::Next);
        self.load(libc::BPF_B, net + 9);
        self.has_ports(Label::V4Ports(net));
        self.label(Label::V4Ports(net));
        // X = the IPv4 header's length.
        self.stmt(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, net);
        self.stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, net);
        self.stmt(libc::BPF_ST, PORT);
        self.stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, net + 2);
        self.mix_ports();
        self.0.push(Insn::Goto(Label::Fold));

        // IPv6: the low 64 bits of both addresses, then ports if the next header has them
        // (extension headers are not followed: such packets hash by addresses alone).
        self.label(Label::V6(net));
        self.load(libc::BPF_W, net + 16);
        self.stmt(libc::BPF_ST, HASH);
        for offset in [20, 32, 36] {
            self.load(libc::BPF_W, net + offset);
            self.mix_into_hash();
        }
        self.load(libc::BPF_B, net + 6);
        self.has_ports(Label::V6Ports(net));
        self.label(Label::V6Ports(net));
        self.load(libc::BPF_H, net + 40);
        self.stmt(libc::BPF_ST, PORT);
        self.load(libc::BPF_H, net + 42);
        self.mix_ports();
        self.0.push(Insn::Goto(Label::Fold));
    }

    /// With the IP protocol in A: on to `ports` for TCP, UDP and SCTP, else to the fold.
    fn has_ports(&mut self, ports: Label) {
        self.jump(libc::BPF_JEQ, IPPROTO_TCP, ports, Label::Next);
        self.jump(libc::BPF_JEQ, IPPROTO_UDP, ports, Label::Next);
        self.jump(libc::BPF_JEQ, IPPROTO_SCTP, ports, Label::Fold);
    }

    /// With the destination port in A and the source port in M[PORT]: M[HASH] ^= both.
    fn mix_ports(&mut self) {
        self.stmt(libc::BPF_LDX | libc::BPF_MEM, PORT);
        self.stmt(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0);
        self.mix_into_hash();
    }

    /// Mixes the hash (a multiplicative hash: every bit of the XOR reaches the middle bits of
    /// the product, which it keeps) and returns it, modulo `workers` if given; the non-IP
    /// frames return 0. Without the mixing, flows whose ports differ only in bits that fold
    /// away (Linux picks even ephemeral ports for connections) would all meet on one worker.
    fn finish(&mut self, workers: Option<u32>) {
        self.label(Label::Fold);
        self.stmt(libc::BPF_LD | libc::BPF_MEM, HASH);
        self.stmt(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K, GOLDEN_RATIO_32);
        self.stmt(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16);
        if let Some(n) = workers {
            self.stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n);
        }
        self.stmt(libc::BPF_RET | libc::BPF_A, 0);
        self.label(Label::Other);
        self.stmt(libc::BPF_RET | libc::BPF_K, 0);
    }

    /// The instructions, with jumps resolved to relative offsets. Every label is defined
    /// once and jumped to only forwards (what classic BPF allows), within 255 instructions.
    fn assemble(&self) -> Vec<libc::sock_filter> {
        let mut at = Vec::new();
        let mut pc = 0usize;
        for insn in &self.0 {
            match insn {
                Insn::Label(l) => at.push((*l, pc)),
                _ => pc += 1,
            }
        }
        let target = |l: Label, pc: usize| -> u32 {
            if l == Label::Next {
                return 0;
            }
            let (_, to) = at
                .iter()
                .find(|(m, _)| *m == l)
                .copied()
                .unwrap_or_else(|| panic!("steering program: label {l:?} never defined"));
            assert!(to > pc, "steering program: jump backwards to {l:?}");
            u32::try_from(to - pc - 1).unwrap_or(u32::MAX)
        };
        let short = |offset: u32| {
            u8::try_from(offset)
                .unwrap_or_else(|_| panic!("steering program: conditional jump too far"))
        };
        let mut out = Vec::with_capacity(pc);
        for insn in &self.0 {
            let pc = out.len();
            out.push(match *insn {
                Insn::Label(_) => continue,
                Insn::Stmt(code, k) => libc::sock_filter {
                    code: opcode(code),
                    jt: 0,
                    jf: 0,
                    k,
                },
                Insn::Jump { op, k, yes, no } => libc::sock_filter {
                    code: opcode(libc::BPF_JMP | op | libc::BPF_K),
                    jt: short(target(yes, pc)),
                    jf: short(target(no, pc)),
                    k,
                },
                Insn::Goto(l) => libc::sock_filter {
                    code: opcode(libc::BPF_JMP | libc::BPF_JA),
                    jt: 0,
                    jf: 0,
                    k: target(l, pc),
                },
            });
        }
        out
    }
}

/// A classic BPF opcode (class, size, mode, operation: 8 bits) in its 16-bit field.
fn opcode(code: u32) -> u16 {
    u16::try_from(code).unwrap_or_else(|_| panic!("steering program: opcode {code:#x}"))
}

#[cfg(test)]
mod tests;
