//! The `vtep` daemon interoperating with the Linux kernel's own VXLAN driver: host 1 runs
//! wasm-vtep, host 2 a kernel `vxlan` device (learning on) bridged to its VM. Over an IPv4 and
//! an IPv6 underlay, flooding to a multicast group or by head-end replication, pings go both
//! ways and each side's table (`vtep fdb show --json`, `bridge fdb show`) has the other's VM
//! behind the other's underlay address.
//!
//! Which side speaks first alternates between the tests, so that both our flood reaching the
//! kernel and the kernel's flood reaching us are exercised.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP_V4: &str = "239.1.1.100";
const GROUP_V6: &str = "ff05::1:100";

/// How both sides flood broadcast, multicast and unknown unicast.
#[derive(Clone, Copy)]
enum Flood {
    /// To this multicast group.
    Group(&'static str),
    /// To the other host (head-end replication).
    HeadEnd,
}

/// Switch, host 1 with VM1 and wasm-vtep, host 2 with VM2 and a kernel VTEP.
struct Interop {
    _underlay: Switch,
    h1: Host,
    h2: Host,
    vm1: Vm,
    vm2: Vm,
    ours: VtepDaemon,
    kernel: KernelVtep,
    /// The hosts' underlay addresses of the family in use.
    a1: IpAddr,
    a2: IpAddr,
}

/// Builds the topology with an IPv6 (or IPv4) underlay; with IPv6 the VMs get IPv6 too.
fn interop(ipv6: bool, flood: Flood) -> Result<Interop> {
    let underlay = Switch::new(1600)?;
    let host = |n| {
        let config = HostConfig::numbered(n);
        Host::new(&underlay, if ipv6 { config.with_ipv6() } else { config })
    };
    let (h1, h2) = (host(1)?, host(2)?);
    let vm = |h: &Host, n| {
        let config = VmConfig::numbered(n);
        Vm::new(
            h,
            &format!("vm{n}"),
            if ipv6 { config.with_ipv6() } else { config },
        )
    };
    let (vm1, vm2) = (vm(&h1, 1)?, vm(&h2, 2)?);
    let addr = |h: &Host| -> Result<IpAddr> {
        Ok(match (ipv6, h.ipv6()) {
            (true, Some(v6)) => v6.into(),
            (true, None) => anyhow::bail!("host {} has no IPv6", h.number()),
            (false, _) => h.ipv4().into(),
        })
    };
    let (a1, a2) = (addr(&h1)?, addr(&h2)?);

    let flood_line = match flood {
        Flood::Group(g) => format!("group = {g:?}"),
        Flood::HeadEnd => format!("remotes = [\"{a2}\"]"),
    };
    let config = format!(
        "[underlay]\nlocal = \"{a1}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
         [[vni]]\nid = {VNI}\nports = [\"vm1\"]\n{flood_line}\n",
        Host::UPLINK
    );
    let ours = VtepDaemon::start(&h1, &config)?;
    let builder = KernelVtep::builder(VNI).local(a2).port(&vm2);
    let builder = match flood {
        Flood::Group(g) => builder.group(g.parse()?),
        Flood::HeadEnd => builder.remote(a1),
    };
    let kernel = builder.create(&h2).context("kernel VTEP on host 2")?;
    Ok(Interop {
        _underlay: underlay,
        h1,
        h2,
        vm1,
        vm2,
        ours,
        kernel,
        a1,
        a2,
    })
}

impl Interop {
    /// Our table has VM2 behind host 2, learned; the kernel's has VM1 behind host 1, learned
    /// (its vxlan device's own entry, and its bridge's on the vxlan port).
    fn assert_each_learned_the_other(&self) {
        let row = self
            .ours
            .entry(VNI, &self.vm2.mac().to_string())
            .expect("vtep fdb show")
            .unwrap_or_else(|| panic!("vtep did not learn VM2: {:#?}", self.ours.fdb()));
        assert_eq!(row.kind, "remote", "{row:?}");
        assert_eq!(row.remote, Some(self.a2.to_string()), "{row:?}");
        assert!(!row.is_static, "{row:?}");

        let fdb = self.kernel.fdb().expect("bridge fdb show");
        let learned = fdb
            .iter()
            .find(|e| e.mac == self.vm1.mac() && e.has_flag("self"))
            .unwrap_or_else(|| panic!("the kernel did not learn VM1: {fdb:#?}"));
        assert_eq!(learned.dst, Some(self.a1), "{learned:?}");
        assert!(!learned.is_static(), "{learned:?}");
        assert!(
            fdb.iter()
                .any(|e| e.mac == self.vm1.mac()
                    && e.master.as_deref() == Some(self.kernel.bridge())),
            "{fdb:#?}"
        );
        // Same through the harness's generic `bridge fdb show dev vxlan5001`.
        let shown = bridge_fdb_show(&self.h2, self.kernel.device()).expect("bridge fdb show");
        assert_eq!(
            shown
                .iter()
                .find(|e| e.mac == self.vm1.mac() && e.has_flag("self"))
                .and_then(|e| e.dst),
            Some(self.a1)
        );
    }

    /// The kernel's flooding entry (all-zero MAC) points at `target`, and is configured.
    fn assert_kernel_floods_to(&self, target: IpAddr) {
        let fdb = self.kernel.fdb().expect("bridge fdb show");
        let flood = fdb
            .iter()
            .find(|e| e.mac == MacAddr::ZERO && e.has_flag("self"))
            .unwrap_or_else(|| panic!("no all-zero entry: {fdb:#?}"));
        assert_eq!(flood.dst, Some(target), "{flood:?}");
        assert!(flood.is_static(), "{flood:?}");
    }

    fn stop(self) {
        let Interop { ours, kernel, .. } = self;
        drop(kernel);
        ours.stop().expect("vtep stops cleanly on SIGTERM");
    }
}

/// UDP datagrams from VM1 reach VM2 intact (the kernel checks the inner checksum our side
/// completed).
fn assert_udp_delivered(from: &Vm, to: &Vm) {
    let sink_addr = SocketAddr::new(to.ipv4().into(), 9000);
    let bind = |vm: &Vm, addr: SocketAddr| -> Result<UdpSocket> {
        let _inside = vm.netns().enter()?;
        UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))
    };
    let sink = bind(to, sink_addr).expect("UDP sink in the VM");
    sink.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("socket option");
    let tx = bind(from, SocketAddr::new(from.ipv4().into(), 0)).expect("UDP sender in the VM");
    let before = NetCounters::read(to).expect("nstat");
    for i in 0..5u8 {
        tx.send_to(&[i; 1000], sink_addr).expect("sending UDP");
    }
    let mut buf = [0u8; 2048];
    for i in 0..5u8 {
        let n = sink.recv(&mut buf).unwrap_or_else(|e| {
            let grew = NetCounters::read(to).expect("nstat").since(&before);
            panic!(
                "datagram {i} not delivered ({e}); receiver's checksum errors: {:?}",
                grew.checksum_error_counters()
            )
        });
        assert_eq!(&buf[..n], &[i; 1000][..]);
    }
}

/// A second of TCP bulk each way between `a` and `b` (GSO super-frames from both senders,
/// segmented by whichever side encapsulates them), with no checksum error in either VM.
/// Failures quote `ours`'s counters.
fn assert_tcp_both_ways(a: &Vm, b: &Vm, ours: &VtepDaemon) {
    let _server = IperfServer::start(b).expect("iperf3 server");
    let before = (
        NetCounters::read(a).expect("nstat"),
        NetCounters::read(b).expect("nstat"),
    );
    for reverse in [false, true] {
        let opts = IperfOptions {
            reverse,
            ..IperfOptions::tcp(Duration::from_secs(1))
        };
        let report = iperf3(a, b.ipv4(), &opts).expect("iperf3 client");
        eprintln!(
            "TCP {} -> {}: {:.2} Gbit/s",
            if reverse {
                b.host_port()
            } else {
                a.host_port()
            },
            if reverse {
                a.host_port()
            } else {
                b.host_port()
            },
            report.received_bps / 1e9
        );
        // Far below what even a debug build moves; a broken path moves nothing.
        assert!(
            report.received_bps > 10e6,
            "TCP (reverse: {reverse}) at {:.0} bit/s; vtep stats:\n{}",
            report.received_bps,
            ours.cli(&["stats"]).unwrap_or_default()
        );
    }
    let grew_a = NetCounters::read(a).expect("nstat").since(&before.0);
    let grew_b = NetCounters::read(b).expect("nstat").since(&before.1);
    assert_eq!(
        grew_a.checksum_errors(),
        0,
        "{:?}",
        grew_a.checksum_error_counters()
    );
    assert_eq!(
        grew_b.checksum_errors(),
        0,
        "{:?}",
        grew_b.checksum_error_counters()
    );
}

#[test]
fn kernel_interop_multicast_ipv4() {
    let t = interop(false, Flood::Group(GROUP_V4)).unwrap();
    // Our flood first: VM1's ARP request reaches the kernel through the group.
    assert_pings(&t.vm1, t.vm2.ipv4());
    assert_pings(&t.vm2, t.vm1.ipv4());
    assert_udp_delivered(&t.vm1, &t.vm2);
    assert_udp_delivered(&t.vm2, &t.vm1);
    assert_tcp_both_ways(&t.vm1, &t.vm2, &t.ours);
    t.assert_each_learned_the_other();
    t.assert_kernel_floods_to(GROUP_V4.parse().unwrap());
    t.stop();
}

#[test]
fn kernel_interop_head_end_replication_ipv4() {
    let t = interop(false, Flood::HeadEnd).unwrap();
    // The kernel's flood first: VM2's ARP request reaches us through its all-zero entry.
    assert_pings(&t.vm2, t.vm1.ipv4());
    assert_pings(&t.vm1, t.vm2.ipv4());
    assert_udp_delivered(&t.vm2, &t.vm1);
    t.assert_each_learned_the_other();
    t.assert_kernel_floods_to(t.a1);
    t.stop();
}

#[test]
fn kernel_interop_multicast_ipv6_underlay() {
    let t = interop(true, Flood::Group(GROUP_V6)).unwrap();
    assert_pings(&t.vm2, t.vm1.ipv4());
    assert_pings(&t.vm1, t.vm2.ipv4());
    assert_pings(&t.vm1, t.vm2.ipv6());
    assert_pings(&t.vm2, t.vm1.ipv6());
    assert_udp_delivered(&t.vm2, &t.vm1);
    assert_udp_delivered(&t.vm1, &t.vm2);
    assert_tcp_both_ways(&t.vm1, &t.vm2, &t.ours);
    t.assert_each_learned_the_other();
    t.assert_kernel_floods_to(GROUP_V6.parse().unwrap());
    assert_eq!(t.h1.ipv6().map(IpAddr::V6), Some(t.a1));
    t.stop();
}

#[test]
fn kernel_interop_head_end_replication_ipv6_underlay() {
    let t = interop(true, Flood::HeadEnd).unwrap();
    assert_pings(&t.vm1, t.vm2.ipv6());
    assert_pings(&t.vm2, t.vm1.ipv4());
    assert_udp_delivered(&t.vm2, &t.vm1);
    t.assert_each_learned_the_other();
    t.assert_kernel_floods_to(t.a1);
    t.stop();
}
