//! `Frr`: FRR's zebra and bgpd in a host's namespace, the reference Linux EVPN VTEP's control
//! plane, with a configuration the [`FrrBuilder`] writes; stopped and cleaned up on drop; and
//! `vtysh` queries as typed answers (the EVPN RIB, session state).
//!
//! Each instance has a path space of its own (`-N <name>`, unique per test process and
//! instance): its config in `/etc/frr/<name>/`, its pid files and sockets in
//! `/var/run/frr/<name>/`, both created for the run (owned by the `frr` user, as the daemons
//! drop to it) and removed on drop. Nothing of the machine's own FRR (`/etc/frr/frr.conf`, the
//! service) is touched. The daemons run in the foreground as children of the test, so they are
//! reaped and their output (`log stdout`) lands in the run's artifacts; the pid files they
//! write are checked against those children at start.
//!
//! The data plane is the kernel's, on the same host: a [`crate::KernelVtep`] built with
//! `learning(false)` and neither group nor remotes (zebra reads its VNI and bridge ports over
//! netlink, and programs its FDB from the routes bgpd receives).

mod config;
mod rib;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use self::config::Neighbor;
use super::route::EvpnRoute;
use crate::netns::{exec_in, run};
use crate::process::{Process, wait_until};
use crate::topology::Host;

/// Where Debian's `frr` package puts the daemons.
const DAEMON_DIR: &str = "/usr/lib/frr";

/// The roots of FRR's path spaces.
const ETC_ROOT: &str = "/etc/frr";
const RUN_ROOT: &str = "/var/run/frr";

/// How long each daemon gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running zebra + bgpd pair. Dropping the guard stops both (SIGTERM, then SIGKILL after
/// 5 s), waits for them to exit, and removes the path space.
#[derive(Debug)]
#[must_use = "dropping an Frr stops it"]
pub struct Frr {
    name: String,
    ns: String,
    zebra: Process,
    bgpd: Process,
    // Last: removed after the daemons are gone.
    paths: PathSpace,
}

/// How to start an [`Frr`]; from [`Frr::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FrrBuilder {
    asn: u32,
    router_id: Option<Ipv4Addr>,
    neighbors: Vec<Neighbor>,
    advertise_all_vni: bool,
}

impl Frr {
    /// Starts describing FRR as a VTEP in autonomous system `asn`: `advertise-all-vni` on (every
    /// VNI with a vxlan device on the host is advertised, with FRR's automatic RD
    /// `router-id:N` and RT `ASN:VNI`), the host's IPv4 underlay address as router ID, no
    /// neighbors yet.
    pub fn builder(asn: u32) -> FrrBuilder {
        FrrBuilder {
            asn,
            router_id: None,
            neighbors: Vec::new(),
            advertise_all_vni: true,
        }
    }

    /// The path space's name (`vtysh -N <name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration file both daemons read.
    pub fn config_path(&self) -> PathBuf {
        self.paths.etc.join("frr.conf")
    }

    /// zebra's process guard (logs).
    pub fn zebra(&mut self) -> &mut Process {
        &mut self.zebra
    }

    /// bgpd's process guard (logs).
    pub fn bgpd(&mut self) -> &mut Process {
        &mut self.bgpd
    }

    /// Runs `vtysh -N <name> -c COMMAND` in the host's namespace; returns stdout, fails with
    /// the output unless vtysh exits 0.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        exec_in(&self.ns, "vtysh", &["-N", &self.name, "-c", command])
    }

    /// Runs configuration commands (`vtysh -c "configure terminal" -c LINE ...`), e.g.
    /// `["router bgp 65000", "neighbor 198.18.0.1 shutdown"]`.
    pub fn configure(&self, lines: &[&str]) -> Result<String> {
        let mut args = vec!["-N", self.name.as_str(), "-c", "configure terminal"];
        for line in lines {
            args.extend(["-c", line]);
        }
        exec_in(&self.ns, "vtysh", &args)
    }

    /// The EVPN RIB (`show bgp l2vpn evpn route detail json`): FRR's own routes and those of
    /// its peers, as typed rows.
    pub fn rib(&self) -> Result<Vec<EvpnRoute>> {
        let json = self.vtysh("show bgp l2vpn evpn route detail json")?;
        rib::parse_rib_json(&json).context("parsing `show bgp l2vpn evpn route detail json`")
    }

    /// Whether the EVPN session with `peer` is established (`show bgp l2vpn evpn summary
    /// json`; the plain `show bgp summary` lists IPv4 unicast only, which is off).
    pub fn established(&self, peer: IpAddr) -> Result<bool> {
        let json = self.vtysh("show bgp l2vpn evpn summary json")?;
        rib::parse_established(&json, peer).context("parsing `show bgp l2vpn evpn summary json`")
    }

    /// Waits until the session with `peer` is established.
    pub fn wait_established(&mut self, peer: IpAddr, timeout: Duration) -> Result<()> {
        let waited = wait_until(
            &format!("FRR's session with {peer} to be established"),
            timeout,
            || {
                self.check_running()?;
                self.established(peer)
            },
        );
        waited.with_context(|| self.log_tails())
    }

    /// Both daemons' log tails, for error messages.
    pub fn log_tails(&self) -> String {
        format!(
            "zebra:\n{}\nbgpd:\n{}",
            self.zebra.log_tails(),
            self.bgpd.log_tails()
        )
    }

    /// Fails, quoting the logs, if either daemon has exited.
    fn check_running(&mut self) -> Result<()> {
        for (name, process) in [("zebra", &mut self.zebra), ("bgpd", &mut self.bgpd)] {
            if let Some(status) = process.try_status()? {
                bail!("{name} exited ({status})\n{}", process.log_tails());
            }
        }
        Ok(())
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // bgpd first, so it does not log zebra's disappearance; each stop waits for the exit.
        let _ = self.bgpd.stop();
        let _ = self.zebra.stop();
    }
}

impl FrrBuilder {
    /// Peers with `address` in the same AS (iBGP) and activates it for L2VPN EVPN.
    pub fn neighbor(self, address: IpAddr) -> Self {
        let asn = self.asn;
        self.neighbor_as(address, asn)
    }

    /// Peers with `address` in AS `remote_as` and activates it for L2VPN EVPN.
    pub fn neighbor_as(mut self, address: IpAddr, remote_as: u32) -> Self {
        self.neighbors.push(Neighbor { address, remote_as });
        self
    }

    /// Sets the router ID (by default the host's IPv4 underlay address).
    pub fn router_id(mut self, id: Ipv4Addr) -> Self {
        self.router_id = Some(id);
        self
    }

    /// Whether `advertise-all-vni` is configured (default on).
    pub fn advertise_all_vni(mut self, on: bool) -> Self {
        self.advertise_all_vni = on;
        self
    }

    /// Creates the path space, writes the configuration, starts zebra, waits for its API
    /// socket, starts bgpd and waits until `vtysh` answers for both. Sessions come up later:
    /// see [`Frr::wait_established`]. Both daemons use FRR's `datacenter` defaults profile.
    pub fn start(&self, host: &Host) -> Result<Frr> {
        let paths = PathSpace::create()?;
        let name = paths.name.clone();
        let ns = host.netns();
        let conf = config::render(self, &name, host.ipv4(), host.ipv6().map(IpAddr::V6));
        let conf_path = paths.etc.join("frr.conf");
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        // vtysh reads its own file from the path space and complains when there is none.
        std::fs::write(paths.etc.join("vtysh.conf"), "").context("writing vtysh.conf")?;
        paths.give_to_frr()?;

        let mut zebra = start_daemon(host, &name, "zebra", &conf_path)?;
        wait_for_daemon(&mut zebra, &paths.run, "zebra", "zserv.api")?;
        let mut bgpd = start_daemon(host, &name, "bgpd", &conf_path)?;
        wait_for_daemon(&mut bgpd, &paths.run, "bgpd", "bgpd.vty")?;
        let mut frr = Frr {
            name,
            ns: ns.name().to_owned(),
            zebra,
            bgpd,
            paths,
        };
        let answered = wait_until("vtysh to answer", START_TIMEOUT, || {
            frr.check_running()?;
            Ok(frr.vtysh("show bgp l2vpn evpn summary json").is_ok())
        });
        answered.with_context(|| frr.log_tails())?;
        Ok(frr)
    }
}

/// Starts `/usr/lib/frr/<daemon> -N <name> -F datacenter -f <conf>` in the foreground, with
/// no TCP vty (`-P 0`: the unix sockets of the path space are enough).
fn start_daemon(host: &Host, name: &str, daemon: &str, conf: &Path) -> Result<Process> {
    let mut cmd = host.netns().command(&format!("{DAEMON_DIR}/{daemon}"));
    cmd.args(["-N", name, "-F", "datacenter", "-P", "0", "-f"])
        .arg(conf);
    Process::spawn(&format!("{}-{daemon}", host.netns().name()), cmd)
}

/// Waits until `daemon` has written its pid file (with its own pid: no other instance owns the
/// path space) and created `socket` in `run_dir`.
fn wait_for_daemon(
    process: &mut Process,
    run_dir: &Path,
    daemon: &str,
    socket: &str,
) -> Result<()> {
    let pid_file = run_dir.join(format!("{daemon}.pid"));
    let socket = run_dir.join(socket);
    let waited = wait_until(&format!("{daemon} to start"), START_TIMEOUT, || {
        if let Some(status) = process.try_status()? {
            bail!("{daemon} exited ({status})");
        }
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        Ok(pid.trim() == process.pid().to_string() && socket.exists())
    });
    waited.with_context(|| process.log_tails())
}

/// An FRR path space: `/etc/frr/<name>` and `/var/run/frr/<name>`, removed on drop.
#[derive(Debug)]
struct PathSpace {
    name: String,
    etc: PathBuf,
    run: PathBuf,
}

impl PathSpace {
    /// Creates both directories for a name unique to this process and call (`wv-<pid>-<n>`),
    /// after removing leftovers of an earlier process with the same pid.
    fn create() -> Result<PathSpace> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("wv-{}-{n}", std::process::id());
        let space = PathSpace {
            etc: Path::new(ETC_ROOT).join(&name),
            run: Path::new(RUN_ROOT).join(&name),
            name,
        };
        for dir in [&space.etc, &space.run] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(space)
    }

    /// Hands both directories to the `frr` user, which the daemons switch to after start-up
    /// and which must then write pid files and sockets.
    fn give_to_frr(&self) -> Result<()> {
        run(Command::new("chown")
            .args(["-R", "frr:frr"])
            .arg(&self.etc)
            .arg(&self.run))
        .map(drop)
        .context("is FRR installed (tests/setup.sh)?")
    }
}

impl Drop for PathSpace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
        let _ = std::fs::remove_dir_all(&self.run);
    }
}
