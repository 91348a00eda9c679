//! The `vtep` daemon over the life of its forwarding table and its process: a VM migrating to
//! another host (a MAC move), learned entries aging out while static ones stay, static entries
//! from the file and from `vtep fdb add` that learning cannot move, configurations the daemon
//! must refuse, and junk on its control socket. Everything runs in namespaces with the real
//! binary on each host, and every assertion is about what a user sees: pings, `vtep fdb show`,
//! `vtep stats`, exit codes and messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::raw_frame::{gratuitous_arp, rarp_announce};
use wasm_vtep_tests::*;

const VNI: u32 = 5001;
const GROUP: &str = "239.1.1.100";

/// A `vtep` configuration for `host`: underlay on its uplink (MTU 1600), VNI 5001 on `ports`
/// flooding to the group, then `extra` lines inside the `[[vni]]` table (`aging_secs`,
/// `[[vni.static]]` entries, …).
fn config(host: &Host, ports: &[&str], extra: &str) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = 1600\n\n\
         [[vni]]\nid = {VNI}\nports = [{}]\ngroup = \"{GROUP}\"\n{extra}\n",
        host.ipv4(),
        Host::UPLINK,
        ports.join(", ")
    )
}

fn mac_str(mac: MacAddr) -> String {
    mac.to_string()
}

/// Where `daemon` has `mac` on VNI 5001: `Some("remote 198.18.0.2")`, `Some("port vm1")`.
fn place(daemon: &VtepDaemon, mac: MacAddr) -> Result<Option<String>> {
    Ok(daemon
        .entry(VNI, &mac_str(mac))?
        .map(|row| match (row.remote, row.port) {
            (Some(ip), _) => format!("remote {ip}"),
            (None, Some(port)) => format!("port {port}"),
            (None, None) => "nowhere".to_owned(),
        }))
}

fn remote(host: &Host) -> Option<String> {
    Some(format!("remote {}", host.ipv4()))
}

/// Sends `frame` out of the VM's `eth0`, as its guest would.
fn send_from(vm: &Vm, frame: &[u8]) -> Result<()> {
    PacketSocket::open(vm, Vm::IFACE)?.send(frame)
}

/// The groups the host's uplink is a member of (`ip maddr`), IPv4.
fn joined_groups(host: &Host) -> Result<Vec<String>> {
    let out = host
        .netns()
        .ip(&["-4", "maddr", "show", "dev", Host::UPLINK])?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet "))
        .map(|g| g.split_whitespace().next().unwrap_or("").to_owned())
        .collect())
}

/// A VTEP joins the group of each VNI that has local ports, and only those; it leaves them when
/// stopped by SIGINT or SIGTERM (exit code 0), and its control socket is its owner's alone.
#[test]
fn groups_are_joined_for_vnis_with_ports_and_left_on_sigint_and_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let _vm1 = Vm::numbered(&h1, 1).unwrap();
    let portless = "[[vni]]\nid = 5002\ngroup = \"239.1.1.101\"\n";
    let text = format!("{}{portless}", config(&h1, &["vm1"], ""));
    assert!(!joined_groups(&h1).unwrap().contains(&GROUP.to_owned()));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut d = VtepDaemon::start(&h1, &text).unwrap();
        let groups = joined_groups(&h1).unwrap();
        assert!(groups.contains(&GROUP.to_owned()), "{groups:?}");
        assert!(
            !groups.contains(&"239.1.1.101".to_owned()),
            "a VNI without ports joined its group: {groups:?}"
        );
        let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");
        // A second daemon with the same control socket refuses to start, saying why once.
        let mut cmd = h1
            .netns()
            .command(&vtep_bin().unwrap().display().to_string());
        cmd.args(["run", "--config", &d.config_path().display().to_string()]);
        let mut second = Process::spawn("second-run", cmd).unwrap();
        assert!(!second.wait(Duration::from_secs(5)).unwrap().success());
        let err = one_line(&second.stderr()).unwrap();
        assert_eq!(
            err.matches("in use by a running daemon").count(),
            1,
            "{err}"
        );
        let socket = d.socket().to_owned();
        d.process().signal(signal).unwrap();
        let status = d.process().wait(Duration::from_secs(5)).unwrap();
        assert!(status.success(), "signal {signal}: {status}");
        assert!(!joined_groups(&h1).unwrap().contains(&GROUP.to_owned()));
        assert!(!socket.exists(), "the control socket is removed");
    }
}

/// VM2 migrates from host 2 to host 3: its interface on host 2 goes away, the same MAC and
/// address come up behind host 3, and host 3 announces it with a RARP as hypervisors do. The
/// other VTEPs point the MAC at host 3 at once, and VM1's pings follow the VM.
#[test]
fn mac_move_follows_a_migrated_vm() {
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let h2 = Host::numbered(&underlay, 2).unwrap();
    let h3 = Host::numbered(&underlay, 3).unwrap();
    let vm1 = Vm::numbered(&h1, 1).unwrap();
    let vm2 = Vm::numbered(&h2, 2).unwrap();
    // The destination's copy of VM2 exists from the start, as a VM being migrated does, but its
    // port stays down (the VM is paused) until the switch-over.
    let arrived = Vm::new(&h3, "vm2", VmConfig::numbered(2)).unwrap();
    h3.netns().ip(&["link", "set", "vm2", "down"]).unwrap();

    let d1 = VtepDaemon::start(&h1, &config(&h1, &["vm1"], "")).unwrap();
    let d2 = VtepDaemon::start(&h2, &config(&h2, &["vm2"], "")).unwrap();
    let d3 = VtepDaemon::start(&h3, &config(&h3, &["vm2"], "")).unwrap();

    assert_pings(&vm1, vm2.ipv4());
    assert_eq!(place(&d1, vm2.mac()).unwrap(), remote(&h2));
    assert_eq!(
        place(&d3, vm1.mac()).unwrap(),
        remote(&h1),
        "host 3 saw the flood"
    );

    // A ping runs across the switch-over (25 requests, 200 ms apart): the source's interface is
    // deleted, the destination's comes up and announces.
    let (moved_before, took, pinger) = std::thread::scope(|s| {
        let pinger = s.spawn(|| ping_with(&vm1, vm2.ipv4(), 25, &[]));
        std::thread::sleep(Duration::from_millis(1000));
        h2.netns().ip(&["link", "del", "vm2"]).unwrap();
        h3.netns().ip(&["link", "set", "vm2", "up"]).unwrap();
        let moved_before = d1.vni_counter(VNI, "moved").unwrap();
        let announced = Instant::now();
        send_from(&arrived, &rarp_announce(arrived.mac())).unwrap();

        wait_until(
            "host 1 to point VM2's MAC at host 3",
            Duration::from_secs(1),
            || Ok(place(&d1, arrived.mac())? == remote(&h3)),
        )
        .unwrap();
        let took = announced.elapsed();
        (moved_before, took, pinger.join().unwrap().unwrap())
    });
    drop(vm2);
    // The ping went on: at most the requests in flight during the switch-over lost, and the
    // last ones answered from host 3.
    assert!(pinger.received >= 22, "{}", pinger.output);
    let last_seq = pinger
        .output
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
        })
        .filter_map(|n| n.parse::<u32>().ok())
        .max();
    assert_eq!(last_seq, Some(25), "{}", pinger.output);
    assert_eq!(
        place(&d3, arrived.mac()).unwrap(),
        Some("port vm2".to_owned())
    );
    assert_eq!(d1.vni_counter(VNI, "moved").unwrap(), moved_before + 1);
    let row = d1.entry(VNI, &mac_str(arrived.mac())).unwrap().unwrap();
    assert!(!row.is_static && row.kind == "remote", "{row:?}");
    // Host 2 heard the announcement too and no longer sends VM2's traffic to a dead port.
    wait_until("host 2 to follow", Duration::from_secs(1), || {
        Ok(place(&d2, arrived.mac())? == remote(&h3))
    })
    .unwrap();

    // VM1 still has VM2's MAC in its ARP cache: its pings now go to host 3, unasked.
    assert_pings(&vm1, arrived.ipv4());
    assert_eq!(d1.drop_count("static_conflict").unwrap(), 0);
    eprintln!("MAC move seen by host 1 after {took:?}");
    for d in [d1, d2, d3] {
        d.stop().unwrap();
    }
}

/// With `aging_secs = 3`, entries learned from a short exchange are gone within 5 seconds of
/// the last frame; the static entry of the configuration file is still there.
#[test]
fn idle_learned_entries_age_out_and_static_ones_stay() {
    let underlay = Switch::new(1600).unwrap();
    let (h1, h2) = (
        Host::numbered(&underlay, 1).unwrap(),
        Host::numbered(&underlay, 2).unwrap(),
    );
    let (vm1, vm2) = (Vm::numbered(&h1, 1).unwrap(), Vm::numbered(&h2, 2).unwrap());
    let pinned = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    let extra = format!(
        "aging_secs = 3\n[[vni.static]]\nmac = \"{pinned}\"\nremote = \"{}\"\n",
        h2.ipv4()
    );
    let d1 = VtepDaemon::start(&h1, &config(&h1, &["vm1"], &extra)).unwrap();
    let _d2 = VtepDaemon::start(&h2, &config(&h2, &["vm2"], "")).unwrap();

    let stats = ping(&vm1, vm2.ipv4(), 1).unwrap();
    let last_frame = Instant::now();
    assert!(stats.all_received(), "{}", stats.output);
    for (mac, at) in [
        (vm1.mac(), Some("port vm1".to_owned())),
        (vm2.mac(), remote(&h2)),
    ] {
        let row = d1.entry(VNI, &mac_str(mac)).unwrap();
        assert!(row.as_ref().is_some_and(|r| !r.is_static), "{row:?}");
        assert_eq!(place(&d1, mac).unwrap(), at);
    }

    let deadline = Duration::from_secs(5).saturating_sub(last_frame.elapsed());
    wait_until("both learned entries to age out", deadline, || {
        let fdb = d1.fdb()?;
        Ok(!fdb
            .iter()
            .any(|r| r.mac == mac_str(vm1.mac()) || r.mac == mac_str(vm2.mac())))
    })
    .unwrap();
    let gone_after = last_frame.elapsed();
    // Not before their time either: the aging time is 3 s.
    assert!(gone_after >= Duration::from_millis(2900), "{gone_after:?}");
    assert_eq!(d1.vni_counter(VNI, "expired").unwrap(), 2);

    let fdb = d1.fdb().unwrap();
    assert_eq!(fdb.len(), 1, "{fdb:#?}");
    assert_eq!(fdb[0].mac, mac_str(pinned));
    assert!(fdb[0].is_static);
    assert_eq!(
        fdb[0].remote.as_deref(),
        Some(h2.ipv4().to_string().as_str())
    );
    // And as the operator reads it.
    let text = d1.cli(&["fdb", "show"]).unwrap();
    assert_eq!(
        text.trim(),
        format!("{pinned} vni {VNI} dst {} static", h2.ipv4())
    );
    eprintln!("learned entries aged out {gone_after:?} after the last frame");
}

/// Static entries, one from the file and one from `vtep fdb add`: frames to them go unicast to
/// their remote without flooding, learning never moves them (a frame claiming the MAC from
/// another VTEP is dropped as `static_conflict`), they never age, and `vtep fdb del` removes
/// the added one, after which its MAC is flooded and learned like any other.
#[test]
fn static_entries_forward_resist_learning_and_never_age() {
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let h2 = Host::numbered(&underlay, 2).unwrap();
    let h3 = Host::numbered(&underlay, 3).unwrap();
    let vm1 = Vm::numbered(&h1, 1).unwrap();
    let vm2 = Vm::numbered(&h2, 2).unwrap();
    let vm3 = Vm::numbered(&h3, 3).unwrap();
    // A guest on host 3 that claims VM2's MAC.
    let impostor = VmConfig {
        ipv4: vec![(Ipv4Addr::new(192, 0, 2, 66), 24)],
        ..VmConfig::numbered(2)
    };
    let impostor = Vm::new(&h3, "imp", impostor).unwrap();

    let file_static = format!(
        "aging_secs = 2\n[[vni.static]]\nmac = \"{}\"\nremote = \"{}\"\n",
        vm2.mac(),
        h2.ipv4()
    );
    let d1 = VtepDaemon::start(&h1, &config(&h1, &["vm1"], &file_static)).unwrap();
    let _d2 = VtepDaemon::start(&h2, &config(&h2, &["vm2"], "")).unwrap();
    let _d3 = VtepDaemon::start(&h3, &config(&h3, &["vm3", "imp"], "")).unwrap();
    let (vm3_mac, h3_addr) = (mac_str(vm3.mac()), h3.ipv4().to_string());
    let added = ["--vni", "5001", "--mac", &vm3_mac, "--remote", &h3_addr];
    d1.cli(&[&["fdb", "add"][..], &added].concat()).unwrap();
    // A group, or the VTEP's own address, is nobody's location.
    for bad in [GROUP.to_owned(), h1.ipv4().to_string()] {
        let args = [
            "fdb",
            "add",
            "--vni",
            "5001",
            "--mac",
            "02:00:00:00:77:77",
            "--remote",
            &bad,
        ];
        let out = d1.cli_output(&args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("not a remote"),
            "{bad}: {err}"
        );
    }
    // `fdb show --vni` shows that VNI's entries only.
    let shown = d1.cli(&["fdb", "show", "--vni", "5001"]).unwrap();
    assert!(shown.contains(&vm3_mac), "{shown}");
    let other = d1.cli(&["fdb", "show", "--vni", "5002"]).unwrap();
    assert!(other.trim().is_empty(), "{other}");
    for (vm, host) in [(&vm2, &h2), (&vm3, &h3)] {
        let row = d1.entry(VNI, &mac_str(vm.mac())).unwrap().unwrap();
        assert!(row.is_static, "{row:?}");
        assert_eq!(row.remote, Some(host.ipv4().to_string()));
    }

    // The VMs know each other's MACs (no ARP broadcast), so every frame VM1 sends is unicast:
    // host 1 must find both destinations in its table and flood nothing.
    for (a, b) in [(&vm1, &vm2), (&vm1, &vm3), (&vm2, &vm1), (&vm3, &vm1)] {
        let (ip, mac) = (b.ipv4().to_string(), b.mac().to_string());
        a.netns()
            .ip(&[
                "neigh",
                "add",
                &ip,
                "lladdr",
                &mac,
                "dev",
                Vm::IFACE,
                "nud",
                "permanent",
            ])
            .unwrap();
    }
    let capture = Capture::start(&underlay, Switch::BRIDGE, "udp port 4789").unwrap();
    assert_pings(&vm1, vm2.ipv4());
    assert_pings(&vm1, vm3.ipv4());
    let last_frame = Instant::now();
    let seen = capture.stop().unwrap();
    assert_eq!(d1.vni_counter(VNI, "floods").unwrap(), 0);
    let from_h1: Vec<_> = seen
        .vxlan(4789)
        .into_iter()
        .filter(|p| p.src == IpAddr::V4(h1.ipv4()))
        .collect();
    assert_eq!(
        from_h1.len(),
        6,
        "three echo requests to each: {from_h1:#?}"
    );
    for p in &from_h1 {
        let expected = if p.inner_dst() == Some(vm2.mac()) {
            h2.ipv4()
        } else {
            h3.ipv4()
        };
        assert_eq!(p.dst, IpAddr::V4(expected), "{p:?}");
    }

    // The impostor announces itself with a gratuitous ARP; host 3 floods it, and host 1
    // refuses to move the static entry.
    let garp = gratuitous_arp(impostor.mac(), impostor.ipv4());
    send_from(&impostor, &garp).unwrap();
    wait_until(
        "host 1 to count the conflict",
        Duration::from_secs(2),
        || Ok(d1.drop_count("static_conflict")? >= 1),
    )
    .unwrap();
    assert_eq!(d1.drop_count("static_conflict").unwrap(), 1);
    assert_eq!(place(&d1, vm2.mac()).unwrap(), remote(&h2));
    assert_eq!(d1.vni_counter(VNI, "moved").unwrap(), 0);

    // Aging (2 s) runs: the learned entry of VM1's own MAC goes, the static ones stay, 4 s on.
    wait_until(
        "VM1's learned entry to age out",
        Duration::from_secs(4),
        || Ok(place(&d1, vm1.mac())?.is_none()),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(4).saturating_sub(last_frame.elapsed()));
    let statics: Vec<FdbRow> = d1.fdb().unwrap();
    assert_eq!(statics.len(), 2, "{statics:#?}");
    assert!(statics.iter().all(|r| r.is_static && r.age_secs == 0));
    assert_eq!(place(&d1, vm2.mac()).unwrap(), remote(&h2));
    assert_eq!(place(&d1, vm3.mac()).unwrap(), remote(&h3));

    // `vtep fdb del` removes the added entry (and only it); VM3 is then flooded to and learned.
    d1.cli(&["fdb", "del", "--vni", "5001", "--mac", &vm3_mac])
        .unwrap();
    assert_eq!(place(&d1, vm3.mac()).unwrap(), None);
    assert_eq!(place(&d1, vm2.mac()).unwrap(), remote(&h2));
    let again = d1
        .cli_output(&["fdb", "del", "--vni", "5001", "--mac", &vm3_mac])
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no entry"),
        "{again:?}"
    );
    assert_pings(&vm1, vm3.ipv4());
    assert!(d1.vni_counter(VNI, "floods").unwrap() >= 1);
    let row = d1.entry(VNI, &vm3_mac).unwrap().unwrap();
    assert!(
        !row.is_static && row.remote.as_deref() == Some(h3_addr.as_str()),
        "{row:?}"
    );
}

/// What `vtep check` and `vtep run` say about a configuration in `host`'s namespace: both must
/// fail, each with one line on stderr. Returns the two lines.
fn refused(host: &Host, text: &str) -> Result<(String, String)> {
    let (ok, out, err) = vtep_check(host, text)?;
    anyhow::ensure!(!ok, "vtep check accepted it: {out}");
    let check = one_line(&err).context("vtep check")?;

    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "wv-refused-{}-{}.toml",
        std::process::id(),
        host.number()
    ));
    std::fs::write(&path, text)?;
    let bin = vtep_bin()?;
    let mut cmd = host.netns().command(&bin.display().to_string());
    cmd.args(["run", "--config", &path.display().to_string()]);
    let mut daemon = Process::spawn("refused-run", cmd)?;
    let status = daemon.wait(Duration::from_secs(5))?;
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(!status.success(), "vtep run exited 0");
    let run = one_line(&daemon.stderr()).context("vtep run")?;
    Ok((check, run))
}

fn one_line(stderr: &str) -> Result<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    anyhow::ensure!(lines.len() == 1, "not one line on stderr: {stderr:?}");
    Ok(lines[0].to_owned())
}

/// Bad configurations are refused before anything starts, by `vtep check` and `vtep run` alike,
/// with one line that names the field.
#[test]
fn bad_configurations_are_refused_with_the_field_named() {
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let _vm1 = Vm::numbered(&h1, 1).unwrap();
    let _vm3 = Vm::new(&h1, "vm3", VmConfig::numbered(3)).unwrap();
    let head = "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\n";
    let vni = |body: &str| format!("{head}[[vni]]\n{body}\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown field",
            format!("{head}colour = \"blue\"\n[[vni]]\nid = 5001\nports = [\"vm1\"]\n"),
            &["unknown field", "colour", "line 4"],
        ),
        (
            "VNI 0",
            vni("id = 0\nports = [\"vm1\"]"),
            &["vni[0].id", "0"],
        ),
        (
            "VNI 2^24",
            vni("id = 16777216\nports = [\"vm1\"]"),
            &["vni[0].id", "16777216"],
        ),
        (
            "port on two VNIs",
            vni("id = 5001\nports = [\"vm1\"]\n[[vni]]\nid = 5002\nports = [\"vm3\", \"vm1\"]"),
            &["vni[1].ports", "vm1"],
        ),
        (
            "no such interface",
            vni("id = 5001\nports = [\"vm1\", \"vm9\"]"),
            &["vni[0].ports", "vm9", "no such interface"],
        ),
        (
            "EVPN VNI above 65535 without an RD",
            format!("{head}[evpn]\n[[vni]]\nid = 100100\nports = [\"vm1\"]\n"),
            &["vni[0].evpn.rd", "65535"],
        ),
        (
            "bad local address",
            "[underlay]\nlocal = \"198.18.0.300\"\n[[vni]]\nid = 5001\nports = [\"vm1\"]\n"
                .to_owned(),
            &["underlay.local", "198.18.0.300"],
        ),
        (
            "bad remote address",
            vni("id = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\", \"h2.example\"]"),
            &["vni[0].remotes[1]", "h2.example"],
        ),
        (
            "bad group address",
            vni("id = 5001\nports = [\"vm1\"]\ngroup = \"239.1.1\""),
            &["vni[0].group"],
        ),
        (
            "bad static MAC",
            vni(
                "id = 5001\nports = [\"vm1\"]\n[[vni.static]]\nmac = \"02:00:00:00:00\"\nport = \"vm1\"",
            ),
            &["vni[0].static[0].mac"],
        ),
        (
            "no such underlay interface",
            "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"eth7\"\n[[vni]]\nid = 5001\n"
                .to_owned(),
            &["underlay.interface", "eth7"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, needles) in &cases {
        match refused(&h1, text) {
            Ok((check, run)) => {
                for (cmd, line) in [("check", &check), ("run", &run)] {
                    let missing: Vec<_> = needles.iter().filter(|n| !line.contains(*n)).collect();
                    if !line.starts_with("vtep: ") || !missing.is_empty() {
                        failures.push(format!(
                            "{what}: vtep {cmd} said {line:?}, lacks {missing:?}"
                        ));
                    }
                }
                eprintln!("{what}: {check}");
            }
            Err(e) => failures.push(format!("{what}: {e:#}")),
        }
    }
    // The same file with the mistakes fixed is accepted: the checks above can pass.
    let (ok, out, err) = vtep_check(&h1, &vni("id = 5001\nports = [\"vm1\", \"vm3\"]")).unwrap();
    assert!(ok, "{out}{err}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads one reply line.
fn reply(reader: &mut impl BufRead) -> Result<serde_json::Value> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    serde_json::from_str(&line).with_context(|| format!("reply {line:?}"))
}

/// Junk on the control socket gets an error reply; the connection (for junk that ends in a
/// newline) and the daemon (always) carry on.
#[test]
fn malformed_control_requests_get_errors_and_the_daemon_carries_on() {
    let underlay = Switch::new(1600).unwrap();
    let h1 = Host::numbered(&underlay, 1).unwrap();
    let _vm1 = Vm::numbered(&h1, 1).unwrap();
    let mut d1 = VtepDaemon::start(&h1, &config(&h1, &["vm1"], "")).unwrap();

    let stream = UnixStream::connect(d1.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let junk: [&[u8]; 6] = [
        b"hello daemon\n",
        b"\n",
        b"{\"cmd\":\"reboot\"}\n",
        b"{\"cmd\":\"fdb_add\",\"vni\":5001}\n",
        b"\xff\xfe\x00garbage\n",
        b"{\"cmd\":\"fdb_add\",\"vni\":0,\"mac\":\"zz\",\"port\":\"vm1\"}\n",
    ];
    for j in junk {
        writer.write_all(j).unwrap();
        let r = reply(&mut reader).unwrap();
        let e = r["error"].as_str();
        assert!(e.is_some_and(|e| !e.is_empty()), "{j:?} => {r}");
    }
    // The same connection still answers a good request.
    writer.write_all(b"{\"cmd\":\"stats\"}\n").unwrap();
    let r = reply(&mut reader).unwrap();
    assert!(r["ok"]["drops"].is_object(), "{r}");

    // A line longer than the limit (64 KiB): an error, then the daemon hangs up, since the rest
    // of the line cannot be told from a next request.
    let long = UnixStream::connect(d1.socket()).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = long.try_clone().unwrap();
    let writer_thread = std::thread::spawn(move || {
        let line = vec![b'x'; 256 * 1024];
        // The daemon stops reading at the limit and closes: the tail may fail to send.
        let _ = w.write_all(&line).and_then(|()| w.write_all(b"\n"));
    });
    let mut long = BufReader::new(long);
    let r = reply(&mut long).unwrap();
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("longer than 65536"), "{r}");
    // Then the end of the stream: EOF, or ECONNRESET since the daemon hung up on unread bytes.
    let mut rest = Vec::new();
    match long.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    writer_thread.join().unwrap();

    // A client that connects and says nothing, or half a line, does not block others.
    let _idle = UnixStream::connect(d1.socket()).unwrap();
    let mut half = UnixStream::connect(d1.socket()).unwrap();
    half.write_all(b"{\"cmd\":").unwrap();

    assert!(
        d1.process().try_status().unwrap().is_none(),
        "the daemon died"
    );
    let stats = d1.stats().unwrap();
    assert!(stats["drops"].is_object());
    assert!(d1.fdb().unwrap().is_empty());
    d1.stop().unwrap();
}
