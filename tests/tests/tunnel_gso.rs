//! `[underlay] tunnel_gso`: TCP super-frames sent whole through the daemon's tap when it is
//! turned on, segmented in user space when it is not (the default) or when the host would drop
//! them (a strict reverse path filter), the VMs' TCP flowing either way.

use std::time::Duration;

use anyhow::{Result, ensure};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP: &str = "239.1.1.100";
/// What a working overlay moves at the least in the debug build (it moves Gbit/s).
const MIN_TCP_BPS: f64 = 50e6;

/// `tunnel_gso` is `Some(setting)` or left out.
fn config(host: &Host, port: &str, tunnel_gso: Option<bool>) -> String {
    let setting = tunnel_gso.map_or(String::new(), |on| format!("tunnel_gso = {on}\n"));
    format!(
        "[underlay]\n{setting}local = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
         [[vni]]\nid = {VNI}\nports = [\"{port}\"]\ngroup = \"{GROUP}\"\n",
        host.ipv4(),
        Host::UPLINK,
    )
}

struct Bed {
    _underlay: Switch,
    h1: Host,
    h2: Host,
    vm1: Vm,
    vm2: Vm,
}

fn bed() -> Result<Bed> {
    let underlay = Switch::new(1600)?;
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

/// One TCP stream VM1 -> VM2 for `seconds`; its rate in bit/s.
fn tcp(b: &Bed, seconds: u64) -> Result<f64> {
    let _server = IperfServer::start(&b.vm2)?;
    let r = iperf3(
        &b.vm1,
        std::net::IpAddr::V4(b.vm2.ipv4()),
        &IperfOptions::tcp(Duration::from_secs(seconds)),
    )?;
    Ok(r.received_bps)
}

#[test]
fn super_frames_go_whole_when_turned_on() {
    let b = bed().unwrap();
    let d1 = VtepDaemon::start(&b.h1, &config(&b.h1, "vm1", Some(true))).unwrap();
    let _d2 = VtepDaemon::start(&b.h2, &config(&b.h2, "vm2", None)).unwrap();
    let bps = tcp(&b, 3).unwrap();
    assert!(bps > MIN_TCP_BPS, "{bps}");
    let whole = d1.io_counter("underlay_tx_whole").unwrap();
    assert!(whole > 1000, "{whole} super-frames whole");
    // The tap is the daemon's: it goes when the daemon stops.
    assert!(b.h1.netns().ip(&["link", "show", "vtep-gso0"]).is_ok());
    d1.stop().unwrap();
    ensure_no_tap(&b.h1).unwrap();
}

#[test]
fn super_frames_are_segmented_by_default() {
    let b = bed().unwrap();
    let d1 = VtepDaemon::start(&b.h1, &config(&b.h1, "vm1", None)).unwrap();
    let _d2 = VtepDaemon::start(&b.h2, &config(&b.h2, "vm2", Some(false))).unwrap();
    let bps = tcp(&b, 3).unwrap();
    assert!(bps > MIN_TCP_BPS, "{bps}");
    assert_eq!(d1.io_counter("underlay_tx_whole").unwrap(), 0);
    assert!(d1.io_counter("underlay_tx_batched").unwrap() > 0);
    ensure_no_tap(&b.h1).unwrap();
}

/// A reverse path filter in `mode` (1 strict, 2 loose) would drop the tap's frames (it has no
/// address): the daemon says so, and segments in user space.
fn a_reverse_path_filter_keeps_super_frames_segmented(mode: &str) -> anyhow::Result<()> {
    let b = bed()?;
    b.h1.netns().sysctl("net.ipv4.conf.all.rp_filter", mode)?;
    let mut d1 = VtepDaemon::start(&b.h1, &config(&b.h1, "vm1", Some(true)))?;
    let _d2 = VtepDaemon::start(&b.h2, &config(&b.h2, "vm2", None))?;
    d1.process()
        .wait_for_stderr(&format!("rp_filter is {mode}"), Duration::from_secs(5))?;
    let bps = tcp(&b, 3)?;
    anyhow::ensure!(bps > MIN_TCP_BPS, "{bps}");
    anyhow::ensure!(d1.io_counter("underlay_tx_whole")? == 0, "no whole frames");
    anyhow::ensure!(
        d1.io_counter("underlay_tx_batched")? > 0,
        "segmented batches"
    );
    ensure_no_tap(&b.h1)
}

#[test]
fn a_strict_reverse_path_filter_keeps_super_frames_segmented() {
    a_reverse_path_filter_keeps_super_frames_segmented("1").unwrap();
}

/// Ubuntu's default (`net.ipv4.conf.all.rp_filter = 2`, loose).
#[test]
fn a_loose_reverse_path_filter_keeps_super_frames_segmented() {
    a_reverse_path_filter_keeps_super_frames_segmented("2").unwrap();
}

/// What udev does on a systemd host when a device appears (`systemd-sysctl` applying
/// `net.ipv4.conf.*.rp_filter = 2` to it) is undone within a second or two, and the frames
/// keep going whole.
#[test]
fn the_taps_settings_are_kept() {
    let b = bed().unwrap();
    let mut d1 = VtepDaemon::start(&b.h1, &config(&b.h1, "vm1", Some(true))).unwrap();
    let _d2 = VtepDaemon::start(&b.h2, &config(&b.h2, "vm2", None)).unwrap();
    b.h1.netns()
        .sysctl("net.ipv4.conf.vtep-gso0.rp_filter", "2")
        .unwrap();
    d1.process()
        .wait_for_stderr("set again", Duration::from_secs(5))
        .unwrap();
    let value =
        b.h1.netns()
            .exec("sysctl", &["-n", "net.ipv4.conf.vtep-gso0.rp_filter"])
            .unwrap();
    assert_eq!(value.trim(), "0");
    let bps = tcp(&b, 3).unwrap();
    assert!(bps > MIN_TCP_BPS, "{bps}");
    assert!(d1.io_counter("underlay_tx_whole").unwrap() > 1000);
}

fn ensure_no_tap(h: &Host) -> Result<()> {
    ensure!(
        h.netns().ip(&["link", "show", "vtep-gso0"]).is_err(),
        "a tap exists"
    );
    Ok(())
}
