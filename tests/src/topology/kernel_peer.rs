//! [`KernelPeer`]: the bed most daemon tests start from: VM1 on host 1, where the test runs the
//! daemon under test (port `vm1`, underlay 198.18.0.1), and VM2 on host 2 behind the kernel's
//! own VXLAN on VNI 5001 (198.18.0.2), on an underlay switch with MTU 1600.

use std::net::IpAddr;

use anyhow::Result;

use super::{Host, KernelVtep, Switch, Vm};

/// Two hosts, one VM each, the kernel's VTEP on host 2. Fields drop in declaration order:
/// the kernel's VTEP first, the switch last.
#[derive(Debug)]
pub struct KernelPeer {
    /// VNI 5001 on host 2, with VM2's port and host 1 as its remote.
    pub kernel: KernelVtep,
    /// Behind the kernel's VTEP.
    pub vm2: Vm,
    /// Behind the daemon under test.
    pub vm1: Vm,
    /// The kernel's host.
    pub host2: Host,
    /// Where the test runs its daemon.
    pub host1: Host,
    /// The underlay.
    pub switch: Switch,
}

impl KernelPeer {
    /// Builds the bed; the daemon on host 1 is the test's to start.
    pub fn new() -> Result<KernelPeer> {
        let switch = Switch::new(1600)?;
        let host1 = Host::numbered(&switch, 1)?;
        let host2 = Host::numbered(&switch, 2)?;
        let vm1 = Vm::numbered(&host1, 1)?;
        let vm2 = Vm::numbered(&host2, 2)?;
        let kernel = KernelVtep::builder(5001)
            .remote(IpAddr::from(host1.ipv4()))
            .port(&vm2)
            .create(&host2)?;
        Ok(KernelPeer {
            kernel,
            vm2,
            vm1,
            host2,
            host1,
            switch,
        })
    }
}
