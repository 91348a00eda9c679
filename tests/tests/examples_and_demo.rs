//! The shipped example configurations pass `vtep check` on a host that has their interfaces,
//! and the demo (`cargo run -p wasm-vtep-tests --bin demo`) walks through the seed scenario and
//! leaves nothing behind, with flood-and-learn and with BGP EVPN (`-- --evpn`).

use std::path::Path;

use anyhow::Result;
use wasm_vtep_tests::paths::artifacts_dir;
use wasm_vtep_tests::{Netns, vtep_bin, vtep_check};

/// A namespace with the interfaces the examples name: uplink0 and vm1..vm2.
fn example_host() -> Result<Netns> {
    let ns = Netns::new("ex")?;
    ns.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ])?;
    ns.ip(&["link", "add", "vm1", "type", "veth", "peer", "name", "vm1p"])?;
    ns.ip(&["link", "add", "vm2", "type", "veth", "peer", "name", "vm2p"])?;
    Ok(ns)
}

#[test]
fn every_example_configuration_checks() -> Result<()> {
    let ns = example_host()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)?;
            let (ok, stdout, stderr) = vtep_check(&ns, &text)?;
            assert!(ok, "{}: {stderr}", path.display());
            assert!(stdout.contains(": ok"), "{stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "host1, host2, head-end, ipv6 and evpn examples"
    );
    Ok(())
}

#[test]
fn check_names_a_missing_interface() -> Result<()> {
    let ns = Netns::new("ex")?; // no vm1 here
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/host1.toml"),
    )?;
    let (ok, _, stderr) = vtep_check(&ns, &text)?;
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "vtep: vni[0].ports: no such interface \"vm1\""
    );
    Ok(())
}

#[test]
fn demo_walks_through_flood_and_learn_and_cleans_up() -> Result<()> {
    let child = demo()?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After VM1's ARP, each host has the other's VM behind the other's underlay address.
    assert!(
        stdout.contains("02:00:00:00:00:02 vni 5001 dst 198.18.0.2 learned"),
        "{stdout}"
    );
    assert!(
        stdout.contains("02:00:00:00:00:01 vni 5001 dst 198.18.0.1 learned"),
        "{stdout}"
    );
    assert!(stdout.contains("3 received"), "{stdout}");
    // Step by step: after the ARP request alone, host 2 knows VM1 and host 1 does not know VM2.
    let first = stdout
        .split("== 1-4.")
        .nth(1)
        .and_then(|s| s.split("== 5-7.").next())
        .unwrap_or("");
    assert!(
        first.contains("02:00:00:00:00:01 vni 5001 dst 198.18.0.1"),
        "{first}"
    );
    assert!(!first.contains("02:00:00:00:00:02"), "{first}");
    assert_no_namespaces_left(pid)
}

/// `demo --evpn`: both type 3 routes before any VM speaks, type 2 routes and `evpn` entries
/// after the ping, VM1's second ARP answered by VTEP 1, VTEP 1's routes withdrawn when it
/// stops, and no namespace or gobgpd left behind.
#[test]
fn demo_evpn_exchanges_routes_and_cleans_up() -> Result<()> {
    let child = demo()?
        .arg("--evpn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let type3 = |host: u8| format!("[type:multicast][rd:198.18.0.{host}:5001][etag:0]");
    let type2 = |host: u8, ip: &str| {
        format!(
            "[type:macadv][rd:198.18.0.{host}:5001][etag:0][mac:02:00:00:00:00:0{host}][ip:{ip}]"
        )
    };

    // Sessions up, before any VM speaks: both type 3 routes, each VTEP floods to the other,
    // no MAC anywhere.
    let up = section(&stdout, "== The BGP session is up", "== VM1 pings VM2");
    for line in [
        type3(1),
        type3(2),
        "flood to: 198.18.0.2".into(),
        "flood to: 198.18.0.1".into(),
        "peer 198.18.0.2 established".into(),
    ] {
        assert!(up.contains(&line), "{line} missing from\n{up}");
    }
    assert!(!up.contains("[type:macadv]"), "{up}");
    assert!(!up.contains("02:00:00:00:00:0"), "{up}");

    // After the ping: each VM's MAC and MAC/IP routes, installed on the other host as `evpn`.
    let ping = section(&stdout, "== VM1 pings VM2", "== VM1 forgets");
    assert!(ping.contains("3 received"), "{ping}");
    for line in [
        type2(1, "<nil>"),
        type2(1, "192.0.2.1"),
        type2(2, "<nil>"),
        type2(2, "192.0.2.2"),
        "02:00:00:00:00:02 vni 5001 dst 198.18.0.2 evpn".into(),
        "02:00:00:00:00:01 vni 5001 dst 198.18.0.1 evpn".into(),
    ] {
        assert!(ping.contains(&line), "{line} missing from\n{ping}");
    }

    // VM1's second ARP is answered by VTEP 1 (host 1's report comes first).
    let arp = section(&stdout, "== VM1 forgets", "== VTEP 1 stops");
    let answered: u64 = arp
        .lines()
        .find_map(|l| l.split("ARP/ND answered ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(answered >= 1, "{arp}");

    // VTEP 1 stopped: host 2 holds none of its routes and no entry behind it.
    let stopped = section(&stdout, "== VTEP 1 stops", "== Done");
    assert!(stopped.contains("flood to: -"), "{stopped}");
    assert!(!stopped.contains("rd:198.18.0.1:"), "{stopped}");
    assert!(!stopped.contains("dst 198.18.0.1"), "{stopped}");
    assert_no_namespaces_left(pid)?;
    assert_no_gobgpd_left(pid)
}

/// Without gobgpd on the PATH, `demo --evpn` names the Debian package and fails before it
/// creates anything.
#[test]
fn demo_evpn_without_gobgpd_names_the_package() -> Result<()> {
    let child = demo()?
        .arg("--evpn")
        .env("PATH", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("install the Debian package gobgpd"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Not even its run directory (made with the first namespace or log).
    let run_dir = artifacts_dir()?.with_file_name(pid.to_string());
    assert!(!run_dir.exists(), "{}", run_dir.display());
    assert_no_namespaces_left(pid)
}

/// The part of the demo's output from the step starting with `from` to the one starting with
/// `to`.
fn section<'a>(stdout: &'a str, from: &str, to: &str) -> &'a str {
    stdout
        .split(from)
        .nth(1)
        .and_then(|s| s.split(to).next())
        .unwrap_or("")
}

/// No gobgpd of the demo process `pid` is running (the harness writes their configs into the
/// run directory `wv-netlogs/<pid>/` and passes them with `-f`).
fn assert_no_gobgpd_left(pid: u32) -> Result<()> {
    let ours = format!("/wv-netlogs/{pid}/");
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let gobgpd = args
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "gobgpd"));
        if gobgpd && args.iter().any(|a| a.contains(&ours)) {
            left.push(args.join(" "));
        }
    }
    assert!(left.is_empty(), "gobgpd left behind: {left:?}");
    Ok(())
}

/// The demo binary, running the `vtep` this test run uses.
fn demo() -> Result<std::process::Command> {
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_demo"));
    demo.env("VTEP_BIN", vtep_bin()?);
    Ok(demo)
}

/// No namespace of the demo process `pid` is left (the harness names them `wv-TAG-PID-N`).
fn assert_no_namespaces_left(pid: u32) -> Result<()> {
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let list = String::from_utf8_lossy(&list.stdout);
    let ours = format!("-{pid}-");
    let left: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("wv-") && l.contains(&ours))
        .collect();
    assert!(left.is_empty(), "demo namespaces left behind: {left:?}");
    Ok(())
}

/// Ctrl-C in the middle of the walk: the demo stops at the next step, removes what it built and
/// exits 0.
#[test]
fn demo_interrupted_by_ctrl_c_cleans_up() -> Result<()> {
    use std::io::BufRead;
    let mut child = demo()?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("== Both VTEPs joined") {
            break;
        }
    }
    let pid = child.id();
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(i32::try_from(pid)?, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.collect::<Result<_, _>>()?;
    let status = child.wait()?;
    let rest = rest.join("\n");
    assert!(status.success(), "{status}\n{seen}{rest}");
    assert!(
        rest.contains("interrupted: topology removed"),
        "{seen}{rest}"
    );
    assert!(!rest.contains("== Now both MACs are known"), "{rest}");
    assert_no_namespaces_left(pid)
}
