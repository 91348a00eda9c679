//! The daemon under a service manager, as systemd runs it (`Type=notify`): told through a
//! fake `NOTIFY_SOCKET` (a Unix datagram socket this test reads), it says `READY=1` once up,
//! `RELOADING=1` (with `MONOTONIC_USEC`, as systemd 253's `Type=notify-reload` wants) and
//! `READY=1` again around a SIGHUP, which reloads every plugin from the configuration file,
//! and `STOPPING=1` on SIGTERM. The reload is real: the file's plugin now denies ICMP, and
//! VM1's pings to VM2 (behind the kernel's VTEP) stop getting through; a file that no longer
//! parses is refused, the running plugin stays, and `STATUS=` says how each reload went.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::{KernelPeer, VtepDaemon, ping};

fn config(acl: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"acl\"\npath = {:?}\nvnis = [5001]\nconfig = {acl}\n",
        wasm("vni-filter").display().to_string(),
    )
}

/// The first line of the next message the daemon sent, and its `STATUS=` line if any.
fn next_state(socket: &UnixDatagram) -> Result<(String, Option<String>)> {
    let lines = next(socket)?;
    let status = lines
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .map(str::to_owned);
    Ok((lines.first().cloned().unwrap_or_default(), status))
}

/// The next message the daemon sent, as its lines.
fn next(socket: &UnixDatagram) -> Result<Vec<String>> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .context("a message on NOTIFY_SOCKET within 10 s")?;
    Ok(String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn the_daemon_tells_its_service_manager_ready_reloading_and_stopping() -> Result<()> {
    let bed = KernelPeer::new()?;
    let (host1, vm1, vm2) = (&bed.host1, &bed.vm1, &bed.vm2);

    // A path in the file system: the daemon runs in another network namespace, where an
    // abstract socket of this one would not be found.
    let path = std::env::temp_dir().join(format!("wv-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let notify = path.display().to_string();
    let mut daemon = VtepDaemon::start_with_env(
        host1,
        &config("{ allow = [] }"),
        &[("NOTIFY_SOCKET", &notify)],
    )?;
    let (state, status) = next_state(&socket)?;
    ensure!(
        state == "READY=1" && status.as_deref() == Some("running"),
        "READY=1 once up: {state} {status:?}"
    );
    ensure!(ping(vm1, vm2.ipv4(), 2)?.all_received(), "pings pass");

    // The file's plugin section changes; SIGHUP reloads it.
    let file = daemon.config_path().to_path_buf();
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(
        &file,
        text.replace("{ allow = [] }", "{ deny = [{ ip_proto = \"icmp\" }] }"),
    )?;
    daemon.process().signal(libc::SIGHUP)?;
    let reloading = next(&socket)?;
    ensure!(
        reloading.first().map(String::as_str) == Some("RELOADING=1")
            && reloading.iter().any(|l| l
                .strip_prefix("MONOTONIC_USEC=")
                .is_some_and(|t| t.parse::<u64>().is_ok())),
        "RELOADING=1 with MONOTONIC_USEC: {reloading:?}"
    );
    let (state, status) = next_state(&socket)?;
    ensure!(
        state == "READY=1"
            && status
                .as_deref()
                .is_some_and(|s| s.contains("reloaded 1, refused 0")),
        "READY=1 after the reload, saying how it went: {state} {status:?}"
    );
    let stats = ping(vm1, vm2.ipv4(), 2)?;
    ensure!(
        stats.received == 0,
        "the reloaded plugin denies ICMP: {stats:?}"
    );

    // A file that no longer parses: the reload is refused, the running plugin stays (ICMP
    // still denied), and the status says so.
    std::fs::write(&file, "[underlay\nthis is not TOML")?;
    daemon.process().signal(libc::SIGHUP)?;
    ensure!(next_state(&socket)?.0 == "RELOADING=1", "RELOADING=1 again");
    let (state, status) = next_state(&socket)?;
    ensure!(
        state == "READY=1"
            && status
                .as_deref()
                .is_some_and(|s| s.contains("reloaded 0, refused 1")),
        "a refused reload keeps the daemon ready and says so: {state} {status:?}"
    );
    let stats = ping(vm1, vm2.ipv4(), 2)?;
    ensure!(stats.received == 0, "the running plugin stays: {stats:?}");

    daemon.stop()?;
    ensure!(
        next_state(&socket)?.0 == "STOPPING=1",
        "STOPPING=1 on SIGTERM"
    );
    std::fs::remove_file(&path)?;
    Ok(())
}
