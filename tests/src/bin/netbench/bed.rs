//! The test bed: three hosts on an underlay switch (MTU 1600), VM1 on host 1, VM2 and VM3 on
//! host 2, VM4 on host 3, all at their defaults (MTU 1500, offloads on), built with the
//! harness; and the data plane a case puts on it, the kernel's vxlan + bridge or the `vtep`
//! daemon on every host, with the same addresses, VNI and multicast group either way.
//!
//! Most probes use only VM1 and VM2 (and count only the CPU of host 1's and host 2's daemons);
//! VM3 and VM4 are there for the 1:N probe, one VM sending to three behind two remote VTEPs.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::raw_frame::{ETHERTYPE_EXPERIMENTAL, ethernet};
use wasm_vtep_tests::*;

/// The overlay's VNI.
pub(crate) const VNI: u32 = 5001;
/// Where both data planes flood broadcast and unknown unicast.
pub(crate) const GROUP: &str = "239.1.1.100";
/// The underlay MTU: room for VXLAN's 50 bytes around 1500-byte frames.
pub(crate) const UNDERLAY_MTU: u32 = 1600;

/// Switch, three hosts: VM1 on host 1, VM2 and VM3 on host 2, VM4 on host 3.
#[derive(Debug)]
pub(crate) struct Bed {
    // Kept for its guard: dropping it deletes the underlay.
    _underlay: Switch,
    pub(crate) h1: Host,
    pub(crate) h2: Host,
    pub(crate) h3: Host,
    pub(crate) vm1: Vm,
    pub(crate) vm2: Vm,
    pub(crate) vm3: Vm,
    pub(crate) vm4: Vm,
}

impl Bed {
    pub(crate) fn build() -> Result<Bed> {
        let underlay = Switch::new(UNDERLAY_MTU)?;
        let h1 = Host::numbered(&underlay, 1)?;
        let h2 = Host::numbered(&underlay, 2)?;
        let h3 = Host::numbered(&underlay, 3)?;
        let vm1 = Vm::numbered(&h1, 1)?;
        let (vm2, vm3) = (Vm::numbered(&h2, 2)?, Vm::numbered(&h2, 3)?);
        let vm4 = Vm::numbered(&h3, 4)?;
        Ok(Bed {
            _underlay: underlay,
            h1,
            h2,
            h3,
            vm1,
            vm2,
            vm3,
            vm4,
        })
    }

    /// The VMs the 1:N probe sends to from VM1, with their hosts' numbers: VM2 and VM3 behind
    /// host 2, VM4 behind host 3.
    pub(crate) fn fan_out_targets(&self) -> [(&Vm, u8); 3] {
        [
            (&self.vm2, self.h2.number()),
            (&self.vm3, self.h2.number()),
            (&self.vm4, self.h3.number()),
        ]
    }

    /// The daemon configuration for `host` with its VMs' ports `ports` on the VNI, no plugins.
    pub(crate) fn daemon_config(host: &Host, ports: &[&str]) -> String {
        let ports = ports
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = {UNDERLAY_MTU}\n\n\
             [[vni]]\nid = {VNI}\nports = [{ports}]\ngroup = \"{GROUP}\"\n",
            host.ipv4(),
            Host::UPLINK,
        )
    }

    /// Waits until VM1 gets an answer from VM2, VM3 and VM4 in turn: ARP resolved both ways,
    /// every VTEP on the way learned both ends.
    pub(crate) fn wait_ready(&self) -> Result<()> {
        for (vm, name) in [(&self.vm2, "VM2"), (&self.vm3, "VM3"), (&self.vm4, "VM4")] {
            let to = IpAddr::V4(vm.ipv4());
            wait_until(
                &format!("VM1 to reach {name}"),
                Duration::from_secs(15),
                || Ok(ping(&self.vm1, to, 1)?.all_received()),
            )?;
        }
        Ok(())
    }
}

/// The data plane of one case, torn down when dropped (kernel devices deleted, daemons
/// killed); [`DataPlane::finish`] stops daemons cleanly and says whether they exited well.
/// One VTEP per host, in host order.
// One exists at a time, for a whole case: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum DataPlane {
    Kernel(KernelVtep, KernelVtep, KernelVtep),
    Daemons(VtepDaemon, VtepDaemon, VtepDaemon),
}

impl DataPlane {
    /// Kernel vxlan + bridge on every host, flooding to the group; host 2's bridge has both
    /// VM2's and VM3's ports.
    pub(crate) fn kernel(bed: &Bed) -> Result<DataPlane> {
        let group: IpAddr = GROUP.parse()?;
        let v1 = KernelVtep::builder(VNI)
            .group(group)
            .port(&bed.vm1)
            .create(&bed.h1)?;
        let v2 = KernelVtep::builder(VNI)
            .group(group)
            .port(&bed.vm2)
            .port(&bed.vm3)
            .create(&bed.h2)?;
        let v3 = KernelVtep::builder(VNI)
            .group(group)
            .port(&bed.vm4)
            .create(&bed.h3)?;
        Ok(DataPlane::Kernel(v1, v2, v3))
    }

    /// The daemon on every host (host 2's with VM2's and VM3's ports); `extra` is appended to
    /// each configuration (plugins).
    pub(crate) fn daemons(bed: &Bed, extra: &str) -> Result<DataPlane> {
        DataPlane::daemons_with(bed, "", extra)
    }

    /// [`DataPlane::daemons`] with `underlay` lines added to the `[underlay]` section.
    pub(crate) fn daemons_with(bed: &Bed, underlay: &str, extra: &str) -> Result<DataPlane> {
        let config = |h: &Host, ports: &[&str]| {
            let base = Bed::daemon_config(h, ports).replacen(
                "[underlay]\n",
                &format!("[underlay]\n{underlay}\n"),
                1,
            );
            format!("{base}\n{extra}")
        };
        let d1 = VtepDaemon::start(&bed.h1, &config(&bed.h1, &[bed.vm1.host_port()]))?;
        let d2 = VtepDaemon::start(
            &bed.h2,
            &config(&bed.h2, &[bed.vm2.host_port(), bed.vm3.host_port()]),
        )?;
        let d3 = VtepDaemon::start(&bed.h3, &config(&bed.h3, &[bed.vm4.host_port()]))?;
        Ok(DataPlane::Daemons(d1, d2, d3))
    }

    /// The pids of host 1's and host 2's daemons, those on the path from VM1 to VM2 that
    /// every probe but the 1:N one measures (none for the kernel).
    pub(crate) fn daemon_pids(&mut self) -> Vec<u32> {
        match self {
            DataPlane::Kernel(..) => Vec::new(),
            DataPlane::Daemons(d1, d2, _) => vec![d1.process().pid(), d2.process().pid()],
        }
    }

    /// The pids of all three daemons, in host order (none for the kernel): what the 1:N
    /// probe measures.
    pub(crate) fn all_daemon_pids(&mut self) -> Vec<u32> {
        match self {
            DataPlane::Kernel(..) => Vec::new(),
            DataPlane::Daemons(d1, d2, d3) => {
                vec![d1.process().pid(), d2.process().pid(), d3.process().pid()]
            }
        }
    }

    /// Host 1's and host 2's daemons' `vtep stats --json` (nothing for the kernel), kept with
    /// the results.
    pub(crate) fn stats(&self) -> Result<Option<[serde_json::Value; 2]>> {
        match self {
            DataPlane::Kernel(..) => Ok(None),
            DataPlane::Daemons(d1, d2, _) => Ok(Some([d1.stats()?, d2.stats()?])),
        }
    }

    /// How many MACs with the pre-learning prefix host 2 has behind host 1.
    fn prelearned_on_h2(&self, bed: &Bed) -> Result<usize> {
        let h1: IpAddr = bed.h1.ipv4().into();
        match self {
            DataPlane::Kernel(_, v2, _) => Ok(v2
                .fdb()?
                .iter()
                .filter(|e| e.has_flag("self") && e.dst == Some(h1) && is_prelearned(e.mac))
                .count()),
            DataPlane::Daemons(_, d2, _) => {
                let h1 = h1.to_string();
                Ok(d2
                    .fdb()?
                    .iter()
                    .filter(|r| {
                        r.vni == VNI
                            && r.remote.as_deref() == Some(&h1)
                            && r.mac.starts_with(PRELEARN_PREFIX_TEXT)
                    })
                    .count())
            }
        }
    }

    /// Stops the daemons with SIGTERM and fails unless all exit 0; deletes kernel devices.
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            DataPlane::Kernel(v1, v2, v3) => {
                drop((v1, v2, v3));
                Ok(())
            }
            DataPlane::Daemons(d1, d2, d3) => {
                let (r1, r2, r3) = (d1.stop(), d2.stop(), d3.stop());
                r1.context("host 1's daemon")?;
                r2.context("host 2's daemon")?;
                r3.context("host 3's daemon")
            }
        }
    }
}

/// The first two octets of every pre-learned MAC (locally administered, unicast).
const PRELEARN_PREFIX: [u8; 2] = [0x02, 0x10];
const PRELEARN_PREFIX_TEXT: &str = "02:10:";

fn is_prelearned(mac: MacAddr) -> bool {
    mac.0[..2] == PRELEARN_PREFIX
}

/// MAC number `i` of the pre-learned set: 02:10 and `i` in the low 32 bits.
fn prelearn_mac(i: u32) -> MacAddr {
    let [a, b, c, d] = i.to_be_bytes();
    MacAddr([PRELEARN_PREFIX[0], PRELEARN_PREFIX[1], a, b, c, d])
}

/// Frames sent per burst while pre-learning, and the pause between bursts: the VTEP on
/// host 1 reads its port's packet socket in batches, and a socket buffer that overflows
/// would only mean sending again.
const PRELEARN_BURST: u32 = 256;
const PRELEARN_PAUSE: Duration = Duration::from_millis(2);

/// Makes both VTEPs learn `n` more MACs behind VM1: frames from `n` source MACs to VM2's MAC
/// (an experimental ethertype VM2's stack ignores) sent through a packet socket on VM1's
/// `eth0`, the way frames from `n` guests behind one port would come. Host 1 learns them
/// on its port, host 2 behind host 1. Returns how many host 2 has, which is at least `n`.
pub(crate) fn prelearn(bed: &Bed, plane: &DataPlane, n: u32) -> Result<usize> {
    let socket = PacketSocket::open(&bed.vm1, Vm::IFACE)?;
    let frames: Vec<Vec<u8>> = (1..=n)
        .map(|i| {
            ethernet(
                bed.vm2.mac(),
                prelearn_mac(i),
                ETHERTYPE_EXPERIMENTAL,
                &[0; 46],
            )
        })
        .collect();
    let want = usize::try_from(n)?;
    let mut have = 0;
    // Sending again refreshes what is known and adds what was missed.
    for _ in 0..3 {
        for (i, frame) in (0u32..).zip(&frames) {
            socket.send(frame)?;
            if i % PRELEARN_BURST == PRELEARN_BURST - 1 {
                std::thread::sleep(PRELEARN_PAUSE);
            }
        }
        let learned = wait_until("host 2 to learn the MACs", Duration::from_secs(5), || {
            have = plane.prelearned_on_h2(bed)?;
            Ok(have >= want)
        });
        if learned.is_ok() {
            return Ok(have);
        }
    }
    bail!("host 2 learned {have} of {n} MACs after sending them three times")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelearned_macs_are_distinct_unicast_and_recognised() {
        let (a, b) = (prelearn_mac(1), prelearn_mac(10_000));
        assert_ne!(a, b);
        assert_eq!(b.to_string(), "02:10:00:00:27:10");
        assert!(b.to_string().starts_with(PRELEARN_PREFIX_TEXT));
        assert!(is_prelearned(a) && !is_prelearned(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(a.0[0] & 1, 0, "unicast");
    }
}
