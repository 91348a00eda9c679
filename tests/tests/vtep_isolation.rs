//! VNI isolation around the all-zero MAC address, on real namespaces with the real `vtep`
//! binary and the kernel's vxlan as a peer.
//!
//! The forwarding table's index once used the key of (first VNI, 00:00:00:00:00:00) as its
//! empty-slot marker. A VXLAN datagram for a first VNI without local ports, addressed to the
//! all-zero MAC, then "found" an entry and went out of port 0, a port of another VNI; and
//! `vtep fdb del` of that MAC "removed" an empty slot. These tests show what a user sees now:
//! such a frame is unknown unicast flooded within its own VNI only (here: nowhere, counted as
//! `no_destination`), with the kernel's vxlan and with wasm-vtep as the sending VTEP; deleting
//! the all-zero MAC is refused and changes nothing; a frame *from* the all-zero MAC is dropped
//! (`invalid_source_mac`) and never learned. Each test also shows the control case (the same
//! frame where it must arrive does arrive), so "not delivered" is never "not sent".

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_testkit::vxlan::encapsulate;
use wasm_vtep_tests::tools::raw_frame::{ETHERTYPE_EXPERIMENTAL, ethernet};
use wasm_vtep_tests::*;

/// Host 1's first VNI: no local port, so its handle is 0 and the all-zero MAC in it was the
/// index's empty-slot marker.
const PORTLESS: u32 = 100;
/// The VNI of VM1 (host 1) and VM2 (host 2).
const VNI: u32 = 5001;
/// A tcpdump filter that matches the probe frames only (their EtherType).
const PROBE_FILTER: &str = "ether proto 0x88b5";
/// What `vtep fdb show --json` calls the all-zero MAC.
const ZERO_MAC: &str = "00:00:00:00:00:00";
/// How long a frame may take to cross (the daemons answer their control sockets meanwhile).
const CROSSING: Duration = Duration::from_secs(5);

/// One `[[vni]]` table flooding by head-end replication to `remote`, then `extra` lines.
fn vni_section(id: u32, ports: &[&str], remote: IpAddr, extra: &str) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[[vni]]\nid = {id}\nports = [{}]\nremotes = [\"{remote}\"]\n{extra}\n",
        ports.join(", ")
    )
}

/// A configuration for `host`: the underlay on its uplink (MTU 1600, as the switch), then the
/// VNI tables in the order given (the first gets handle 0).
fn config(host: &Host, vnis: &[String]) -> String {
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n{}",
        host.ipv4(),
        Host::UPLINK,
        vnis.concat()
    )
}

/// Host 1 as the bug needed it: VNI 100 first, without ports, flooding to host 2; VNI 5001 on
/// port vm1 (port 0), flooding to host 2. `extra100` and `extra5001` go inside the tables.
fn receiver_config(h1: &Host, h2: &Host, extra100: &str, extra5001: &str) -> String {
    let to_h2 = IpAddr::V4(h2.ipv4());
    config(
        h1,
        &[
            vni_section(PORTLESS, &[], to_h2, extra100),
            vni_section(VNI, &["vm1"], to_h2, extra5001),
        ],
    )
}

/// A probe frame from `src` to `dst` with EtherType 0x88b5 (no stack on the path interprets
/// it) and a payload that names `tag`, so a capture can tell the probes apart.
fn probe(dst: MacAddr, src: MacAddr, tag: &str) -> Vec<u8> {
    ethernet(dst, src, ETHERTYPE_EXPERIMENTAL, &probe_payload(tag))
}

fn probe_payload(tag: &str) -> Vec<u8> {
    format!("wasm-vtep isolation probe [{tag}]").into_bytes()
}

/// The captured packets that carry the probe payload named `tag`.
fn carrying<'a>(seen: &'a Captured, tag: &str) -> Vec<&'a CapturedPacket> {
    let payload = probe_payload(tag);
    seen.packets
        .iter()
        .filter(|p| p.data.windows(payload.len()).any(|w| w == payload))
        .collect()
}

/// Sends `frame` out of the VM's `eth0`, as its guest would.
fn send_from(vm: &Vm, frame: &[u8]) -> Result<()> {
    PacketSocket::open(vm, Vm::IFACE)?.send(frame)
}

/// Waits until `daemon`'s counter `name` of `vni` has grown past `before`.
fn wait_counter(daemon: &VtepDaemon, vni: u32, name: &str, before: u64) -> Result<()> {
    wait_until(
        &format!("VNI {vni} {name} to grow past {before}"),
        CROSSING,
        || Ok(daemon.vni_counter(vni, name)? > before),
    )
}

/// Which VTEP encapsulates the probes on host 2.
#[derive(Debug, Clone, Copy)]
enum Sender {
    /// wasm-vtep serving VNI 5001 on vm2 and VNI 100 on vm3.
    Ours,
    /// The kernel: `vxlan5001` bridged with vm2, `vxlan100` bridged with vm3, each with an
    /// all-zero FDB entry pointing at host 1.
    Kernel,
}

/// Host 2's data plane, kept alive for the test.
enum SenderVtep {
    Ours(VtepDaemon),
    Kernel {
        _vni5001: KernelVtep,
        _vni100: KernelVtep,
    },
}

/// Host 1 (wasm-vtep, [`receiver_config`]) with VM1; host 2 with VM2 on VNI 5001 and VM3 on
/// VNI 100 behind `sender`.
struct Leak {
    d1: VtepDaemon,
    sender: SenderVtep,
    vm1: Vm,
    vm2: Vm,
    vm3: Vm,
    _h1: Host,
    h2: Host,
    _underlay: Switch,
}

fn leak_setup(sender: Sender) -> Result<Leak> {
    let underlay = Switch::new(1600)?;
    let (h1, h2) = (Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?);
    let vm1 = Vm::numbered(&h1, 1)?;
    let (vm2, vm3) = (Vm::numbered(&h2, 2)?, Vm::numbered(&h2, 3)?);
    let d1 = VtepDaemon::start(&h1, &receiver_config(&h1, &h2, "", ""))?;
    let to_h1 = IpAddr::V4(h1.ipv4());
    let sender = match sender {
        // VNI 5001 is host 2's first VNI, so that VNI 100's all-zero MAC is no marker on the
        // sending side either: whatever happens to the probe happens on host 1.
        Sender::Ours => SenderVtep::Ours(VtepDaemon::start(
            &h2,
            &config(
                &h2,
                &[
                    vni_section(VNI, &["vm2"], to_h1, ""),
                    vni_section(PORTLESS, &["vm3"], to_h1, ""),
                ],
            ),
        )?),
        Sender::Kernel => SenderVtep::Kernel {
            _vni5001: KernelVtep::builder(VNI)
                .remote(to_h1)
                .port(&vm2)
                .create(&h2)?,
            _vni100: KernelVtep::builder(PORTLESS)
                .remote(to_h1)
                .port(&vm3)
                .create(&h2)?,
        },
    };
    Ok(Leak {
        d1,
        sender,
        vm1,
        vm2,
        vm3,
        _h1: h1,
        h2,
        _underlay: underlay,
    })
}

/// VM3 (VNI 100, host 2) sends a frame to 00:00:00:00:00:00: host 1 receives it on VNI 100,
/// which has no local port, and drops it as `no_destination`; nothing reaches VM1 (VNI 5001).
/// The same frame from VM2 on VNI 5001 is unknown unicast there and flooded to VM1, as the
/// kernel's vxlan and bridge would.
fn zero_mac_frame_stays_in_its_vni(sender: Sender) -> Result<()> {
    let t = leak_setup(sender)?;
    let d1 = &t.d1;
    let no_destination = d1.drop_count("no_destination")?;
    let received_100 = d1.vni_counter(PORTLESS, "from_underlay_packets")?;
    let delivered_5001 = d1.vni_counter(VNI, "to_ports_frames")?;
    // The probe on VNI 100; once host 1 has counted it, whatever it did with the frame is done
    // (the capture's stop waits for the last frames in flight).
    let at_vm1 = Capture::start(&t.vm1, Vm::IFACE, PROBE_FILTER)?;
    let leak = probe(MacAddr::ZERO, t.vm3.mac(), "vni 100");
    send_from(&t.vm3, &leak)?;
    wait_counter(d1, PORTLESS, "from_underlay_packets", received_100)
        .context("host 1 never received the VNI 100 probe")?;
    let seen = at_vm1.stop()?;
    assert_eq!(seen.dropped_by_kernel, Some(0));
    assert!(
        seen.packets.is_empty(),
        "a VNI 100 frame to {ZERO_MAC} came out of vm1, a port of VNI 5001:\n{}",
        seen.text()?
    );

    // The control: the same frame on VNI 5001 is flooded to VM1.
    let at_vm1 = Capture::start(&t.vm1, Vm::IFACE, PROBE_FILTER)?;
    let control = probe(MacAddr::ZERO, t.vm2.mac(), "vni 5001");
    send_from(&t.vm2, &control)?;
    wait_counter(d1, VNI, "to_ports_frames", delivered_5001)
        .context("the VNI 5001 probe never reached VM1's port")?;
    let seen = at_vm1.stop()?;
    assert_eq!(seen.dropped_by_kernel, Some(0));
    assert!(carrying(&seen, "vni 100").is_empty(), "{}", seen.text()?);
    let flooded = carrying(&seen, "vni 5001");
    assert_eq!(flooded.len(), 1, "{}", seen.text()?);
    assert_eq!(
        flooded[0].data, control,
        "the VNI 5001 probe arrived changed"
    );

    assert_eq!(
        d1.vni_counter(PORTLESS, "from_underlay_packets")?,
        received_100 + 1
    );
    assert_eq!(
        d1.drop_count("no_destination")?,
        no_destination + 1,
        "{}",
        d1.cli(&["stats"])?
    );
    assert_eq!(d1.drop_count("foreign_port")?, 0);
    assert_eq!(d1.vni_counter(PORTLESS, "to_ports_frames")?, 0);

    // Both probes were learned from, each in its own VNI and behind host 2; the all-zero MAC
    // is nowhere in the table.
    let h2 = Some(t.h2.ipv4().to_string());
    for (vni, vm) in [(PORTLESS, &t.vm3), (VNI, &t.vm2)] {
        let row = d1.entry(vni, &vm.mac().to_string())?;
        let row = row.unwrap_or_else(|| panic!("{vm:?} not learned on {vni}"));
        assert_eq!((row.kind.as_str(), &row.remote), ("remote", &h2), "{row:?}");
    }
    let fdb = d1.fdb()?;
    assert!(fdb.iter().all(|r| r.mac != ZERO_MAC), "{fdb:#?}");
    assert!(
        fdb.iter()
            .all(|r| !(r.vni == PORTLESS && r.mac == t.vm2.mac().to_string())),
        "{fdb:#?}"
    );

    let Leak { d1, sender, .. } = t;
    if let SenderVtep::Ours(d2) = sender {
        // Host 2 flooded both to host 1, the only remote of each VNI.
        assert_eq!(d2.drop_count("no_destination")?, 0);
        assert!(d2.vni_counter(PORTLESS, "floods")? >= 1);
        d2.stop()?;
    }
    d1.stop()
}

/// The leak with wasm-vtep encapsulating on host 2.
#[test]
fn zero_mac_frame_from_wasm_vtep_stays_in_its_vni() {
    zero_mac_frame_stays_in_its_vni(Sender::Ours).unwrap();
}

/// The leak with the kernel's vxlan encapsulating on host 2 (bridge floods the unknown
/// destination to `vxlan100`, whose all-zero entry sends it to host 1).
#[test]
fn zero_mac_frame_from_the_kernel_stays_in_its_vni() {
    zero_mac_frame_stays_in_its_vni(Sender::Kernel).unwrap();
}

/// `vtep fdb del` of 00:00:00:00:00:00 on either VNI of host 1 fails, saying there is no such
/// entry, and `vtep fdb show --json` is the same before and after, with static entries only and
/// with learned ones too; VM1 and VM2 keep pinging each other across the two hosts, and a real
/// entry can still be deleted.
#[test]
fn deleting_the_zero_mac_fails_and_changes_nothing() {
    let underlay = Switch::new(1600).unwrap();
    let (h1, h2) = (
        Host::numbered(&underlay, 1).unwrap(),
        Host::numbered(&underlay, 2).unwrap(),
    );
    let (vm1, vm2) = (Vm::numbered(&h1, 1).unwrap(), Vm::numbered(&h2, 2).unwrap());
    let static_at_h2 = |mac: &str| {
        format!(
            "[[vni.static]]\nmac = \"{mac}\"\nremote = \"{}\"\n",
            h2.ipv4()
        )
    };
    let (s100, s5001) = ("02:00:00:00:01:00", "02:00:00:00:50:01");
    let d1 = VtepDaemon::start(
        &h1,
        &receiver_config(&h1, &h2, &static_at_h2(s100), &static_at_h2(s5001)),
    )
    .unwrap();
    let to_h1 = IpAddr::V4(h1.ipv4());
    let d2 =
        VtepDaemon::start(&h2, &config(&h2, &[vni_section(VNI, &["vm2"], to_h1, "")])).unwrap();

    let delete_zero = |d: &VtepDaemon| {
        for vni in [PORTLESS, VNI] {
            let vni_s = vni.to_string();
            let out = d
                .cli_output(&["fdb", "del", "--vni", &vni_s, "--mac", ZERO_MAC])
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "fdb del of {ZERO_MAC} on VNI {vni} succeeded: {out:?}"
            );
            let expected = format!("no entry for {ZERO_MAC} in VNI {vni}");
            assert!(err.contains(&expected), "VNI {vni}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    };

    // Static entries only: the listing must be byte for byte the same.
    let before = d1.cli(&["fdb", "show", "--json"]).unwrap();
    assert_eq!(d1.fdb().unwrap().len(), 2, "{before}");
    delete_zero(&d1);
    let after = d1.cli(&["fdb", "show", "--json"]).unwrap();
    assert_eq!(before, after);

    assert_pings(&vm1, vm2.ipv4());

    // With learned entries too (whose age may tick between two listings: compared without it).
    let without_age = |rows: Vec<FdbRow>| -> Vec<FdbRow> {
        rows.into_iter()
            .map(|r| FdbRow { age_secs: 0, ..r })
            .collect()
    };
    let before = without_age(d1.fdb().unwrap());
    assert_eq!(before.len(), 4, "{before:#?}");
    let local = before
        .iter()
        .find(|r| r.mac == vm1.mac().to_string())
        .expect("VM1 learned");
    assert_eq!((local.vni, local.port.as_deref()), (VNI, Some("vm1")));
    delete_zero(&d1);
    assert_eq!(without_age(d1.fdb().unwrap()), before);
    assert_pings(&vm1, vm2.ipv4());
    assert_pings(&vm2, vm1.ipv4());

    // A real entry is still deleted, and only it.
    d1.cli(&["fdb", "del", "--vni", &PORTLESS.to_string(), "--mac", s100])
        .unwrap();
    let rest = without_age(d1.fdb().unwrap());
    let expected: Vec<FdbRow> = before.into_iter().filter(|r| r.mac != s100).collect();
    assert_eq!(rest, expected);
    assert!(rest.iter().all(|r| r.mac != ZERO_MAC), "{rest:#?}");

    d1.stop().unwrap();
    d2.stop().unwrap();
}

/// VM1 sends frames from 00:00:00:00:00:00 (a broadcast and a unicast to VM2), and host 2
/// sends host 1 a VXLAN datagram from that MAC: each is dropped and counted as
/// `invalid_source_mac`, reaches neither VM nor the underlay, and is not learned. VM1's first
/// VNI carries its port here, so (first VNI, all-zero MAC) is the very key that was the
/// index's marker. The same broadcast from VM1's own MAC does reach VM2. (The source check
/// predates the index fix, which this test guards rather than reproduces.)
#[test]
fn frames_from_the_zero_mac_are_dropped_and_not_learned() {
    let underlay = Switch::new(1600).unwrap();
    let (h1, h2) = (
        Host::numbered(&underlay, 1).unwrap(),
        Host::numbered(&underlay, 2).unwrap(),
    );
    let (vm1, vm2) = (Vm::numbered(&h1, 1).unwrap(), Vm::numbered(&h2, 2).unwrap());
    let (to_h1, to_h2) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    let d1 = VtepDaemon::start(
        &h1,
        &config(
            &h1,
            &[
                vni_section(VNI, &["vm1"], to_h2, ""),
                vni_section(PORTLESS, &[], to_h2, ""),
            ],
        ),
    )
    .unwrap();
    let d2 =
        VtepDaemon::start(&h2, &config(&h2, &[vni_section(VNI, &["vm2"], to_h1, "")])).unwrap();
    let invalid = d1.drop_count("invalid_source_mac").unwrap();
    let from_vm1 = d1.vni_counter(VNI, "from_ports_frames").unwrap();
    let at_vm1 = Capture::start(&vm1, Vm::IFACE, PROBE_FILTER).unwrap();
    let at_vm2 = Capture::start(&vm2, Vm::IFACE, PROBE_FILTER).unwrap();
    let on_wire = Capture::start(&underlay, Switch::BRIDGE, "udp port 4789").unwrap();

    // From VM1.
    send_from(
        &vm1,
        &probe(MacAddr::BROADCAST, MacAddr::ZERO, "zero to all"),
    )
    .unwrap();
    send_from(&vm1, &probe(vm2.mac(), MacAddr::ZERO, "zero to vm2")).unwrap();
    wait_until("host 1 to count both frames", CROSSING, || {
        Ok(d1.drop_count("invalid_source_mac")? >= invalid + 2)
    })
    .unwrap();
    assert_eq!(
        d1.vni_counter(VNI, "from_ports_frames").unwrap(),
        from_vm1 + 2,
        "the two frames were read from vm1"
    );
    // From the underlay: host 2 sends host 1 a VNI 5001 broadcast from the all-zero MAC.
    let sock = {
        let _inside = h2.netns().enter().unwrap();
        UdpSocket::bind(SocketAddr::new(to_h2, 0)).unwrap()
    };
    let inner = probe(MacAddr::BROADCAST, MacAddr::ZERO, "zero via underlay");
    sock.send_to(&encapsulate(VNI, &inner), SocketAddr::new(to_h1, 4789))
        .unwrap();
    wait_until("host 1 to count the datagram", CROSSING, || {
        Ok(d1.drop_count("invalid_source_mac")? >= invalid + 3)
    })
    .unwrap();

    // Control: the same broadcast from VM1's own MAC crosses to VM2.
    let delivered = d2.vni_counter(VNI, "to_ports_frames").unwrap();
    let control = probe(MacAddr::BROADCAST, vm1.mac(), "vm1 to all");
    send_from(&vm1, &control).unwrap();
    wait_counter(&d2, VNI, "to_ports_frames", delivered)
        .context("the control broadcast never reached VM2's port")
        .unwrap();

    let (seen1, seen2, wire) = (
        at_vm1.stop().unwrap(),
        at_vm2.stop().unwrap(),
        on_wire.stop().unwrap(),
    );
    for tag in ["zero to all", "zero to vm2", "zero via underlay"] {
        for (where_, seen) in [("vm1", &seen1), ("vm2", &seen2)] {
            let got = carrying(seen, tag);
            // VM1's own capture sees what VM1 sent; nothing else may show it anywhere.
            let sent_here = where_ == "vm1" && tag != "zero via underlay";
            assert_eq!(
                got.len(),
                usize::from(sent_here),
                "{tag} at {where_}:\n{}",
                seen.text().unwrap()
            );
        }
    }
    let vxlan = wire.vxlan(4789);
    let zero_sourced: Vec<_> = vxlan
        .iter()
        .filter(|p| p.inner_src() == Some(MacAddr::ZERO))
        .collect();
    // The one host 2 sent by hand, and nothing from host 1.
    assert_eq!(zero_sourced.len(), 1, "{zero_sourced:#?}");
    assert_eq!(zero_sourced[0].src, to_h2);
    let crossed = carrying(&seen2, "vm1 to all");
    assert_eq!(crossed.len(), 1, "{}", seen2.text().unwrap());
    assert_eq!(crossed[0].data, control);

    assert_eq!(
        d1.drop_count("invalid_source_mac").unwrap(),
        invalid + 3,
        "{}",
        d1.cli(&["stats"]).unwrap()
    );
    assert_eq!(d2.drop_count("invalid_source_mac").unwrap(), 0);
    for d in [&d1, &d2] {
        let fdb = d.fdb().unwrap();
        assert!(fdb.iter().all(|r| r.mac != ZERO_MAC), "{fdb:#?}");
    }
    // VM1's own MAC was learned from the control frame, on host 1 and behind host 1 on host 2.
    let row = d1.entry(VNI, &vm1.mac().to_string()).unwrap().unwrap();
    assert_eq!(row.port.as_deref(), Some("vm1"), "{row:?}");
    let row = d2.entry(VNI, &vm1.mac().to_string()).unwrap().unwrap();
    assert_eq!(row.remote, Some(h1.ipv4().to_string()), "{row:?}");

    d1.stop().unwrap();
    d2.stop().unwrap();
}
