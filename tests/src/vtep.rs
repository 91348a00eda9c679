//! `VtepDaemon`: the real `vtep` binary running in a host's namespace with a configuration the
//! test writes, stopped on drop; and the CLI calls tests make against it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasm_vtep::control::{EvpnReport, FdbRow, Request, Response};

use crate::netns::Netns;
use crate::paths::{artifact_path, vtep_bin};
use crate::process::{Process, wait_until};

/// A running daemon.
#[derive(Debug)]
pub struct VtepDaemon {
    process: Process,
    ns_name: String,
    socket: PathBuf,
    config: PathBuf,
}

impl VtepDaemon {
    /// Writes `config` (TOML without a `[control]` section: the guard adds one with a socket of
    /// its own), starts `vtep run` in `ns` and waits until its control socket answers.
    pub fn start(ns: &impl AsRef<Netns>, config: &str) -> Result<VtepDaemon> {
        VtepDaemon::start_with_env(ns, config, &[])
    }

    /// As [`VtepDaemon::start`], with these variables in the daemon's environment.
    pub fn start_with_env(
        ns: &impl AsRef<Netns>,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<VtepDaemon> {
        let ns = ns.as_ref();
        let socket = artifact_path(&format!("{}-vtep", ns.name()), "sock")?;
        let config_path = artifact_path(&format!("{}-vtep", ns.name()), "toml")?;
        VtepDaemon::launch(ns, config, &socket, &config_path, &[], env)
    }

    /// As [`VtepDaemon::start`], but as a user that is not root (`nobody`), with the
    /// capabilities CAP_NET_RAW and CAP_NET_ADMIN and no other (`setpriv`: ambient, inheritable
    /// and bounding sets; no new privileges), as a hardened service runs it. Its configuration
    /// and control socket are in a directory of their own that user may write (`dir`).
    pub fn start_unprivileged(
        ns: &impl AsRef<Netns>,
        config: &str,
        dir: &std::path::Path,
    ) -> Result<VtepDaemon> {
        use std::os::unix::fs::PermissionsExt;
        let ns = ns.as_ref();
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
        let caps = "-all,+net_raw,+net_admin";
        let wrapper = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
            "--no-new-privs",
        ]
        .map(str::to_owned);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        VtepDaemon::launch(
            ns,
            config,
            &dir.join("vtep.sock"),
            &dir.join("vtep.toml"),
            &wrapper,
            &[],
        )
    }

    /// Writes the configuration, starts `wrapper... vtep run` in `ns` and waits until its
    /// control socket answers.
    fn launch(
        ns: &Netns,
        config: &str,
        socket: &std::path::Path,
        config_path: &std::path::Path,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Result<VtepDaemon> {
        let _ = std::fs::remove_file(socket);
        let text = format!(
            "{config}\n[control]\nsocket = {:?}\n",
            socket.display().to_string()
        );
        std::fs::write(config_path, text).context("writing the vtep config")?;
        let bin = vtep_bin()?.display().to_string();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = ns.command(program);
                cmd.args(args).arg(&bin);
                cmd
            }
            None => ns.command(&bin),
        };
        cmd.args(["run", "--config", &config_path.display().to_string()]);
        cmd.env("RUST_LOG", "info");
        cmd.envs(env.iter().copied());
        let process = Process::spawn(&format!("{}-vtep", ns.name()), cmd)?;
        let mut daemon = VtepDaemon {
            process,
            ns_name: ns.name().to_owned(),
            socket: socket.to_path_buf(),
            config: config_path.to_path_buf(),
        };
        // Ready when the control plane answers, not when its socket accepts a connection: the
        // socket is bound (and queues connections) before the ports and the underlay are
        // opened, and it is served only once the workers run.
        let started = wait_until(
            "vtep answering on its control socket",
            Duration::from_secs(10),
            || {
                if let Some(status) = daemon.process.try_status()? {
                    bail!("vtep exited with {status}:\n{}", daemon.process.log_tails());
                }
                Ok(daemon.socket.exists() && daemon.cli_output(&["stats"])?.status.success())
            },
        );
        started.with_context(|| daemon.process.log_tails())?;
        Ok(daemon)
    }

    /// The daemon's process id (`ip netns exec` and `setpriv` exec it: the same process).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The control socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The configuration file's path.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// The daemon's process guard (logs, signals).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Runs `vtep --socket S ARGS` (in the daemon's namespace) and returns its stdout; fails
    /// with its stderr unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self.cli_output(args)?;
        if !out.status.success() {
            bail!(
                "vtep {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI and returns its whole output, whatever the exit status.
    pub fn cli_output(&self, args: &[&str]) -> Result<std::process::Output> {
        let bin = vtep_bin()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name])
            .arg(bin)
            .arg("--socket")
            .arg(&self.socket);
        cmd.args(args);
        cmd.output().context("running the vtep CLI")
    }

    /// Sends one request over the control socket from this process, as the CLI would but
    /// without starting one (no process start-up in the way: for timing the daemon's answer),
    /// and returns the data of its `ok` answer; fails on an `error` answer or no answer.
    /// The socket is a path on the file system, reachable from any network namespace.
    pub fn request(&self, request: &Request) -> Result<serde_json::Value> {
        let response = wasm_vtep::control::client::call(&self.socket, request)
            .with_context(|| format!("{request:?} on {}", self.socket.display()))?;
        match response {
            Response::Ok(data) => Ok(data),
            Response::Error(e) => bail!("{request:?}: the daemon answered: {e}"),
        }
    }

    /// `vtep fdb show --json`.
    pub fn fdb(&self) -> Result<Vec<FdbRow>> {
        let out = self.cli(&["fdb", "show", "--json"])?;
        serde_json::from_str(&out).context("parsing vtep fdb show --json")
    }

    /// Where the daemon has `mac` (lower-case) on `vni`, if anywhere.
    pub fn entry(&self, vni: u32, mac: &str) -> Result<Option<FdbRow>> {
        Ok(self
            .fdb()?
            .into_iter()
            .find(|r| r.vni == vni && r.mac == mac))
    }

    /// `vtep evpn show --json`.
    pub fn evpn(&self) -> Result<EvpnReport> {
        let out = self.cli(&["evpn", "show", "--json"])?;
        serde_json::from_str(&out).context("parsing vtep evpn show --json")
    }

    /// `vtep stats --json`.
    pub fn stats(&self) -> Result<serde_json::Value> {
        let out = self.cli(&["stats", "--json"])?;
        serde_json::from_str(&out).context("parsing vtep stats --json")
    }

    /// A pipeline drop counter by name (`vni_not_served`, ...).
    pub fn drop_count(&self, reason: &str) -> Result<u64> {
        let stats = self.stats()?;
        stats["drops"][reason]
            .as_u64()
            .with_context(|| format!("no drop counter {reason:?}"))
    }

    /// A per-VNI counter by name (`learned`, `moved`, `floods`, `to_underlay_packets`, ...).
    pub fn vni_counter(&self, vni: u32, name: &str) -> Result<u64> {
        let stats = self.stats()?;
        let rows = stats["vnis"].as_array().context("no vnis in stats")?;
        let row = rows
            .iter()
            .find(|r| r["vni"] == vni)
            .with_context(|| format!("no VNI {vni}"))?;
        row["counters"][name]
            .as_u64()
            .with_context(|| format!("no counter {name:?}"))
    }

    /// An I/O counter of `vtep stats --json` by name (`worker_panics`, `learn_queue_full`,
    /// `port_rx_frames`, ...).
    pub fn io_counter(&self, name: &str) -> Result<u64> {
        let stats = self.stats()?;
        stats["io"][name]
            .as_u64()
            .with_context(|| format!("no io counter {name:?}"))
    }

    /// SIGTERM, then waits for a clean exit; fails unless the exit code is 0.
    pub fn stop(mut self) -> Result<()> {
        let status = self.process.stop()?;
        if !status.success() {
            bail!("vtep exited with {status}:\n{}", self.process.log_tails());
        }
        Ok(())
    }
}

/// `vtep check --config FILE` on a configuration text in `ns`: exit status success, and
/// stdout/stderr.
pub fn vtep_check(ns: &impl AsRef<Netns>, config: &str) -> Result<(bool, String, String)> {
    let ns = ns.as_ref();
    let path = artifact_path(&format!("{}-check", ns.name()), "toml")?;
    std::fs::write(&path, config)?;
    let bin = vtep_bin()?;
    let out = ns
        .command(&bin.display().to_string())
        .args(["check", "--config", &path.display().to_string()])
        .output()
        .context("running vtep check")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
