//! The steering programs run by a classic BPF interpreter written for these tests (the subset
//! the programs use, with the kernel's rules: a load out of the packet ends the program with
//! 0), on frames built by hand: both directions of a flow and both sides (a port's frame, the
//! same frame in a VXLAN datagram) pick the same worker, and flows spread.

use super::*;

/// What a program sees: the bytes from `skb->data` on, and `skb->protocol`.
struct Skb<'a> {
    data: &'a [u8],
    protocol: u16,
}

fn run(program: &[libc::sock_filter], skb: &Skb<'_>) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let load = |at: u64, size: usize| -> Option<u32> {
        let at = usize::try_from(at).ok()?;
        let bytes = skb.data.get(at..at.checked_add(size)?)?;
        Some(bytes.iter().fold(0, |v, &b| v << 8 | u32::from(b)))
    };
    let ancillary = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL).cast_unsigned();
    let mut pc = 0;
    loop {
        let i = program[pc];
        pc += 1;
        let size = match u32::from(i.code) & 0x18 {
            libc::BPF_W => 4,
            libc::BPF_H => 2,
            _ => 1,
        };
        let code = u32::from(i.code);
        match code & 0x07 {
            libc::BPF_LD => {
                let value = match code & 0xe0 {
                    libc::BPF_ABS if i.k == ancillary => Some(u32::from(skb.protocol)),
                    libc::BPF_ABS => load(u64::from(i.k), size),
                    libc::BPF_IND => load(u64::from(x) + u64::from(i.k), size),
                    libc::BPF_MEM => Some(mem[i.k as usize]),
                    libc::BPF_IMM => Some(i.k),
                    other => panic!("unsupported load mode {other:#x}"),
                };
                match value {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
            libc::BPF_LDX => match code & 0xe0 {
                libc::BPF_MEM => x = mem[i.k as usize],
                libc::BPF_MSH => match load(u64::from(i.k), 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                other => panic!("unsupported ldx mode {other:#x}"),
            },
            libc::BPF_ST => mem[i.k as usize] = a,
            libc::BPF_ALU => {
                let operand = if code & 0x08 == libc::BPF_X { x } else { i.k };
                a = match code & 0xf0 {
                    libc::BPF_XOR => a ^ operand,
                    libc::BPF_MUL => a.wrapping_mul(operand),
                    libc::BPF_RSH => a >> operand,
                    libc::BPF_MOD => a % operand,
                    other => panic!("unsupported alu op {other:#x}"),
                };
            }
            libc::BPF_JMP => {
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => a == i.k,
                    libc::BPF_JSET => a & i.k != 0,
                    other => panic!("unsupported jump {other:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            libc::BPF_RET => return if code & 0x18 == libc::BPF_A { a } else { i.k },
            libc::BPF_MISC => x = a,
            other => panic!("unsupported class {other:#x}"),
        }
    }
}

/// An IP packet: version 4 or 6, protocol, addresses (the last byte varies), ports.
#[derive(Clone, Copy)]
struct Flow {
    v6: bool,
    proto: u8,
    src: u8,
    dst: u8,
    sport: u16,
    dport: u16,
}

impl Flow {
    fn udp(src: u8, dst: u8, sport: u16, dport: u16) -> Flow {
        Flow {
            v6: false,
            proto: 17,
            src,
            dst,
            sport,
            dport,
        }
    }

    fn reversed(self) -> Flow {
        Flow {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..self
        }
    }

    fn packet(self) -> Vec<u8> {
        let mut ports = Vec::new();
        ports.extend(self.sport.to_be_bytes());
        ports.extend(self.dport.to_be_bytes());
        ports.extend([0; 16]);
        if self.v6 {
            let addr = |last| {
                let mut a = [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
                ];
                a[8] = 0x42;
                a
            };
            let mut p = vec![0x60, 0, 0, 0, 0, 24, self.proto, 64];
            p.extend(addr(self.src));
            p.extend(addr(self.dst));
            p.extend(ports);
            p
        } else {
            let mut p = vec![0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, self.proto, 0, 0];
            p.extend([192, 0, 2, self.src, 192, 0, 2, self.dst]);
            p.extend(ports);
            p
        }
    }

    fn ethertype(self) -> u16 {
        if self.v6 { 0x86dd } else { 0x0800 }
    }

    /// The frame as the port's program sees it: from the network header, the ethertype from
    /// the skb.
    fn on_port(self, program: &[libc::sock_filter]) -> u32 {
        let data = self.packet();
        run(
            program,
            &Skb {
                data: &data,
                protocol: self.ethertype(),
            },
        )
    }

    /// The frame in a VXLAN datagram, as the underlay's program sees it (from the VXLAN
    /// header), with an inner tag `(TPID, TCI)` if given.
    fn in_vxlan(self, program: &[libc::sock_filter], tag: Option<(u16, u16)>) -> u32 {
        let mut d = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
        d.extend([0x02, 0, 0, 0, 0, self.dst, 0x02, 0, 0, 0, 0, self.src]);
        if let Some((tpid, id)) = tag {
            d.extend(tpid.to_be_bytes());
            d.extend(id.to_be_bytes());
        }
        d.extend(self.ethertype().to_be_bytes());
        d.extend(self.packet());
        run(
            program,
            &Skb {
                data: &d,
                protocol: 0x0800,
            },
        )
    }
}

/// The worker a port's fanout of `n` sockets picks: the kernel takes the result modulo `n`.
fn port_worker(flow: Flow, n: u32) -> u32 {
    flow.on_port(&port_program()) % n
}

#[test]
fn both_directions_and_both_sides_of_a_flow_pick_one_worker() {
    let flows = [
        Flow::udp(1, 2, 40_000, 5201),
        Flow {
            proto: 6,
            ..Flow::udp(1, 2, 51_234, 80)
        },
        Flow {
            proto: 1,
            ..Flow::udp(7, 3, 0, 0)
        },
        Flow {
            v6: true,
            ..Flow::udp(1, 2, 33_000, 53)
        },
        Flow {
            v6: true,
            proto: 58,
            ..Flow::udp(9, 4, 0, 0)
        },
    ];
    for n in 1..=4 {
        let underlay = underlay_program(n);
        for flow in flows {
            let w = port_worker(flow, n);
            assert!(w < n);
            for f in [flow, flow.reversed()] {
                assert_eq!(port_worker(f, n), w, "{n} workers");
                assert_eq!(f.in_vxlan(&underlay, None), w, "{n} workers, untagged");
                for tpid in [0x8100, 0x88a8] {
                    let tagged = f.in_vxlan(&underlay, Some((tpid, 100)));
                    assert_eq!(tagged, w, "{n} workers, tagged {tpid:#x}");
                }
            }
        }
    }
}

#[test]
fn flows_spread_over_the_workers() {
    // Consecutive ports, and even ones only (Linux's ephemeral ports for connections).
    for step in [1, 2, 4] {
        for n in 2..=4 {
            let underlay = underlay_program(n);
            let mut seen = vec![0; n as usize];
            for k in 0..64 {
                let flow = Flow::udp(1, 2, 40_000 + k * step, 5201);
                let w = flow.in_vxlan(&underlay, None);
                seen[w as usize] += 1;
            }
            assert!(
                seen.iter().all(|&c| c >= 64 / n / 2),
                "ports {step} apart, {n} workers: {seen:?}"
            );
        }
    }
}

#[test]
fn fragments_hash_by_addresses_so_that_they_meet() {
    let flow = Flow::udp(1, 2, 40_000, 5201);
    let mut first = flow.packet();
    first[6] = 0x20; // more fragments
    let mut later = flow.packet();
    later[6] = 0x00;
    later[7] = 0xb9; // offset 185 * 8
    later.truncate(20);
    let program = port_program();
    let on = |data: &[u8]| {
        run(
            &program,
            &Skb {
                data,
                protocol: 0x0800,
            },
        )
    };
    assert_eq!(on(&first), on(&later));
    // Equal ports cancel out of the hash: what is left is the addresses'.
    let same_ports = Flow::udp(1, 2, 7, 7).packet();
    assert_eq!(on(&first), on(&same_ports), "addresses only");
    assert_ne!(
        on(&flow.packet()),
        on(&same_ports),
        "unfragmented: ports count"
    );
}

#[test]
fn other_frames_and_short_ones_go_to_the_first_worker() {
    let arp = Skb {
        data: &[0, 1, 8, 0, 6, 4, 0, 1],
        protocol: 0x0806,
    };
    assert_eq!(run(&port_program(), &arp), 0);
    let truncated = Flow::udp(1, 2, 40_000, 5201).packet();
    let short = Skb {
        data: &truncated[..14],
        protocol: 0x0800,
    };
    assert_eq!(run(&port_program(), &short), 0);
    let underlay = underlay_program(3);
    assert_eq!(
        run(
            &underlay,
            &Skb {
                data: &[0x08, 0, 0],
                protocol: 0x0800
            }
        ),
        0
    );
}

#[test]
fn programs_end_in_returns_and_jump_within_themselves() {
    for program in [port_program(), underlay_program(2)] {
        assert!(program.len() <= usize::from(u16::MAX));
        for (pc, i) in program.iter().enumerate() {
            let code = u32::from(i.code);
            if code & 0x07 == libc::BPF_JMP {
                let far = if code & 0xf0 == libc::BPF_JA {
                    i.k as usize
                } else {
                    usize::from(i.jt.max(i.jf))
                };
                assert!(
                    pc + 1 + far < program.len(),
                    "jump at {pc} leaves the program"
                );
            }
        }
        let last = program.last().map(|i| u32::from(i.code) & 0x07);
        assert_eq!(last, Some(libc::BPF_RET));
    }
}
