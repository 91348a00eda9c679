//! Convergence times: a new MAC reaching FRR's kernel FDB, and a migration reaching every VTEP.
//! Each sample is timed from the frame that starts it to the first poll that sees the result
//! (polls 2 ms apart, each a `bridge` or `vtep` call of a few ms: the resolution).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::raw_frame::{ethernet, gratuitous_arp};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const ASN: u32 = 65000;
const SESSION_UP: Duration = Duration::from_secs(60);
const CONVERGED: Duration = Duration::from_secs(30);

/// What runs on h1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    WasmVtep,
    Frr,
}

/// Polls `done` every 2 ms until it holds; the time since `start`.
fn time_until(start: Instant, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    while start.elapsed() < CONVERGED {
        if done()? {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("no convergence within {CONVERGED:?}")
}

/// h1 (`origin`) and h2 (FRR + kernel): each sample a frame from a MAC never seen, sent on
/// VM1's link, until h2's kernel FDB points it at h1.
pub(crate) fn install_latency(origin: Origin, samples: usize) -> Result<Vec<Duration>> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let (a1, a2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let (vm1, vm2) = (Vm::numbered(&h1, 1)?, Vm::numbered(&h2, 2)?);
    let kernel2 = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm2)
        .create(&h2)?;
    let mut frr2 = Frr::builder(ASN).neighbor(a1).start(&h2)?;
    // The guards of h1's side live until the end of the run.
    let mut guards: (
        Option<Gobgpd>,
        Option<VtepDaemon>,
        Option<KernelVtep>,
        Option<Frr>,
    ) = (None, None, None, None);
    match origin {
        Origin::WasmVtep => {
            let mut g1 = Gobgpd::builder(ASN).neighbor(a2).start(&h1)?;
            let v1 = VtepDaemon::start(
                &h1,
                &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"]).to_string(),
            )?;
            g1.wait_established(a2, SESSION_UP)?;
            guards.0 = Some(g1);
            guards.1 = Some(v1);
        }
        Origin::Frr => {
            let k1 = KernelVtep::builder(VNI)
                .learning(false)
                .port(&vm1)
                .create(&h1)?;
            let mut frr1 = Frr::builder(ASN).neighbor(a2).start(&h1)?;
            frr1.wait_established(a2, SESSION_UP)?;
            guards.2 = Some(k1);
            guards.3 = Some(frr1);
        }
    }
    frr2.wait_established(a1, SESSION_UP)?;
    let socket = PacketSocket::open(&vm1, Vm::IFACE)?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let n = u8::try_from(i % 250)?;
        let mac = MacAddr([0x02, 0, 0, 0xab, u8::from(origin == Origin::Frr), n]);
        let frame = ethernet(MacAddr::BROADCAST, mac, 0x88b5, b"evpnbench: a new MAC");
        let start = Instant::now();
        socket.send(&frame)?;
        times.push(time_until(start, || {
            Ok(kernel2.remote_of(mac)? == Some(a1))
        })?);
    }
    Ok(times)
}

/// Three VTEPs (h1, h2 wasm-vtep + gobgpd; h3 FRR + kernel), a VM moving between h2 and h3:
/// each sample from the GARP on the new host to h1, the old host and the new host's peers all
/// pointing at the new host. Returns the samples of each direction.
pub(crate) fn migration(samples: usize) -> Result<Vec<(String, Vec<Duration>)>> {
    let underlay = Switch::new(1600)?;
    let (h1, h2, h3) = (
        Host::numbered(&underlay, 1)?,
        Host::numbered(&underlay, 2)?,
        Host::numbered(&underlay, 3)?,
    );
    let a = |h: &Host| IpAddr::V4(h.ipv4());
    let (a1, a2, a3) = (a(&h1), a(&h2), a(&h3));
    let _vm1 = Vm::numbered(&h1, 1)?;
    let vm3 = Vm::numbered(&h3, 3)?;
    let mover = VmConfig::numbered(50).mac(MacAddr([0x02, 0, 0, 0, 0, 0x50]));
    let on_h2 = Vm::new(&h2, "vmm", mover.clone())?;
    let on_h3 = Vm::new(&h3, "vmm", mover)?;
    let kernel = KernelVtep::builder(VNI)
        .learning(false)
        .port(&vm3)
        .port(&on_h3)
        .create(&h3)?;
    let mut g1 = Gobgpd::builder(ASN).neighbor(a2).neighbor(a3).start(&h1)?;
    let mut g2 = Gobgpd::builder(ASN).neighbor(a1).neighbor(a3).start(&h2)?;
    let mut frr = Frr::builder(ASN).neighbor(a1).neighbor(a2).start(&h3)?;
    let v1 = VtepDaemon::start(
        &h1,
        &EvpnVtepConfig::new(a1, &g1.api_address(), ASN, &["vm1"]).to_string(),
    )?;
    let v2 = VtepDaemon::start(
        &h2,
        &EvpnVtepConfig::new(a2, &g2.api_address(), ASN, &["vmm"]).to_string(),
    )?;
    for (g, peers) in [(&mut g1, [a2, a3]), (&mut g2, [a1, a3])] {
        for p in peers {
            g.wait_established(p, SESSION_UP)?;
        }
    }
    frr.wait_established(a1, SESSION_UP)?;
    frr.wait_established(a2, SESSION_UP)?;
    let mac = on_h2.mac();
    let evpn_at = |v: &VtepDaemon, at: IpAddr| -> Result<bool> {
        Ok(v.entry(VNI, &mac.to_string())?
            .is_some_and(|r| r.kind == "evpn" && r.remote == Some(at.to_string())))
    };
    let local_at = |v: &VtepDaemon| -> Result<bool> {
        Ok(v.entry(VNI, &mac.to_string())?
            .is_some_and(|r| r.kind == "local"))
    };
    let link = |vm: &Vm, up: bool| {
        vm.netns()
            .ip(&["link", "set", Vm::IFACE, if up { "up" } else { "down" }])
            .map(drop)
    };
    let ip = match on_h2.addrs().next() {
        Some(IpAddr::V4(v4)) => v4,
        _ => bail!("the mover has no IPv4 address"),
    };
    // Start on h2, converged.
    link(&on_h3, false)?;
    PacketSocket::open(&on_h2, Vm::IFACE)?.send(&gratuitous_arp(mac, ip))?;
    time_until(Instant::now(), || {
        Ok(evpn_at(&v1, a2)? && kernel.remote_of(mac)? == Some(a2))
    })?;
    let (mut to_frr, mut to_ours) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let to_h3 = i % 2 == 0;
        let (from, to) = if to_h3 {
            (&on_h2, &on_h3)
        } else {
            (&on_h3, &on_h2)
        };
        link(from, false)?;
        link(to, true)?;
        let socket = PacketSocket::open(to, Vm::IFACE)?;
        let start = Instant::now();
        socket.send(&gratuitous_arp(mac, ip))?;
        if to_h3 {
            to_frr.push(time_until(start, || {
                Ok(evpn_at(&v1, a3)? && evpn_at(&v2, a3)?)
            })?);
        } else {
            to_ours.push(time_until(start, || {
                Ok(local_at(&v2)? && evpn_at(&v1, a2)? && kernel.remote_of(mac)? == Some(a2))
            })?);
        }
    }
    Ok(vec![
        (
            "migration wasm-vtep -> FRR host (GARP -> h1, h2 at h3)".to_owned(),
            to_frr,
        ),
        (
            "migration FRR -> wasm-vtep host (GARP -> h1, h3 at h2)".to_owned(),
            to_ours,
        ),
    ])
}
