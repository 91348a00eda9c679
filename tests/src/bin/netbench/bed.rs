//! The test bed: two hosts on an underlay switch (MTU 1600), one VM on each at its defaults
//! (MTU 1500, offloads on), built with the harness; and the data plane a case puts on it, the
//! kernel's vxlan + bridge or the `vtep` daemon on both hosts, with the same addresses, VNI
//! and multicast group either way.

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

/// Switch, two hosts, one VM each.
#[derive(Debug)]
pub(crate) struct Bed {
    // Kept for its guard: dropping it deletes the underlay.
    _underlay: Switch,
    pub(crate) h1: Host,
    pub(crate) h2: Host,
    pub(crate) vm1: Vm,
    pub(crate) vm2: Vm,
}

impl Bed {
    pub(crate) fn build() -> Result<Bed> {
        let underlay = Switch::new(UNDERLAY_MTU)?;
        let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
        let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
        Ok(Bed {
            _underlay: underlay,
            h1,
            h2,
            vm1,
            vm2,
        })
    }

    /// The daemon configuration for `host` with its VM's port `port`, no plugins.
    pub(crate) fn daemon_config(host: &Host, port: &str) -> String {
        format!(
            "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = {UNDERLAY_MTU}\n\n\
             [[vni]]\nid = {VNI}\nports = [\"{port}\"]\ngroup = \"{GROUP}\"\n",
            host.ipv4(),
            Host::UPLINK,
        )
    }

    /// Waits until VM1 gets an answer from VM2: ARP resolved both ways, both VTEPs learned
    /// both VMs.
    pub(crate) fn wait_ready(&self) -> Result<()> {
        let to = IpAddr::V4(self.vm2.ipv4());
        wait_until("VM1 to reach VM2", Duration::from_secs(15), || {
            Ok(ping(&self.vm1, to, 1)?.all_received())
        })
    }
}

/// The data plane of one case, torn down when dropped (kernel devices deleted, daemons
/// killed); [`DataPlane::finish`] stops daemons cleanly and says whether they exited well.
// One exists at a time, for a whole case: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum DataPlane {
    Kernel(KernelVtep, KernelVtep),
    Daemons(VtepDaemon, VtepDaemon),
}

impl DataPlane {
    /// Kernel vxlan + bridge on both hosts, flooding to the group.
    pub(crate) fn kernel(bed: &Bed) -> Result<DataPlane> {
        let group: IpAddr = GROUP.parse()?;
        let v1 = KernelVtep::builder(VNI)
            .group(group)
            .port(&bed.vm1)
            .create(&bed.h1)?;
        let v2 = KernelVtep::builder(VNI)
            .group(group)
            .port(&bed.vm2)
            .create(&bed.h2)?;
        Ok(DataPlane::Kernel(v1, v2))
    }

    /// The daemon on both hosts; `extra` is appended to each configuration (plugins).
    pub(crate) fn daemons(bed: &Bed, extra: &str) -> Result<DataPlane> {
        DataPlane::daemons_with(bed, "", extra)
    }

    /// [`DataPlane::daemons`] with `underlay` lines added to the `[underlay]` section.
    pub(crate) fn daemons_with(bed: &Bed, underlay: &str, extra: &str) -> Result<DataPlane> {
        let config = |h: &Host, port: &str| {
            let base = Bed::daemon_config(h, port).replacen(
                "[underlay]\n",
                &format!("[underlay]\n{underlay}\n"),
                1,
            );
            format!("{base}\n{extra}")
        };
        let d1 = VtepDaemon::start(&bed.h1, &config(&bed.h1, bed.vm1.host_port()))?;
        let d2 = VtepDaemon::start(&bed.h2, &config(&bed.h2, bed.vm2.host_port()))?;
        Ok(DataPlane::Daemons(d1, d2))
    }

    /// The daemons' pids (none for the kernel).
    pub(crate) fn daemon_pids(&mut self) -> Vec<u32> {
        match self {
            DataPlane::Kernel(..) => Vec::new(),
            DataPlane::Daemons(d1, d2) => vec![d1.process().pid(), d2.process().pid()],
        }
    }

    /// The daemons' `vtep stats --json` (nothing for the kernel), kept with the results.
    pub(crate) fn stats(&self) -> Result<Option<[serde_json::Value; 2]>> {
        match self {
            DataPlane::Kernel(..) => Ok(None),
            DataPlane::Daemons(d1, d2) => Ok(Some([d1.stats()?, d2.stats()?])),
        }
    }

    /// How many MACs with the pre-learning prefix host 2 has behind host 1.
    fn prelearned_on_h2(&self, bed: &Bed) -> Result<usize> {
        let h1: IpAddr = bed.h1.ipv4().into();
        match self {
            DataPlane::Kernel(_, v2) => Ok(v2
                .fdb()?
                .iter()
                .filter(|e| e.has_flag("self") && e.dst == Some(h1) && is_prelearned(e.mac))
                .count()),
            DataPlane::Daemons(_, d2) => {
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

    /// Stops the daemons with SIGTERM and fails unless both exit 0; deletes kernel devices.
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            DataPlane::Kernel(v1, v2) => {
                drop((v1, v2));
                Ok(())
            }
            DataPlane::Daemons(d1, d2) => {
                let (r1, r2) = (d1.stop(), d2.stop());
                r1.context("host 1's daemon")?;
                r2.context("host 2's daemon")
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
