//! `Process`: a program running in the background inside a namespace, killed when the guard
//! drops (also on panic), with stdout and stderr kept in files for debugging; and `wait_until`,
//! the polling loop tests use instead of sleeping.
//!
//! Log files live in [`crate::paths::artifacts_dir`] and survive the test, so a failure can be
//! read after the fact; error messages name them and quote their last lines.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::paths::artifact_path;

/// How often the `wait_*` helpers look again.
const POLL: Duration = Duration::from_millis(20);

/// How long [`Process::stop`] waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A background process; SIGKILLed and reaped on drop unless it already exited.
#[derive(Debug)]
pub struct Process {
    label: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args` inside `ns`; the logs are named after the namespace and program.
    pub fn start(ns: &impl AsRef<Netns>, program: &str, args: &[&str]) -> Result<Process> {
        let ns = ns.as_ref();
        let mut cmd = ns.command(program);
        cmd.args(args);
        let name = Path::new(program)
            .file_name()
            .map_or(program.into(), |n| n.to_string_lossy());
        Process::spawn(&format!("{}-{name}", ns.name()), cmd)
    }

    /// Starts a prepared command, e.g. `ns.command("vtep")` with arguments and environment
    /// added. `label` names the log files. Stdin is closed; stdout and stderr go to files.
    pub fn spawn(label: &str, mut cmd: Command) -> Result<Process> {
        let stdout_path = artifact_path(label, "stdout")?;
        let stderr_path = artifact_path(label, "stderr")?;
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(Process {
            label: label.to_owned(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        })
    }

    /// The process id (of the program itself: `ip netns exec` execs in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The file that collects stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// The file that collects stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// `Some(status)` once the process has exited (it is reaped then), `None` while it runs.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("waiting for child")?;
        }
        Ok(self.status)
    }

    /// Waits until `pred(stdout, stderr)` holds. Fails on timeout, and at once if the process
    /// exits first, quoting the end of both logs.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str, &str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Read the logs before checking for exit so output written just before exiting
            // still counts.
            let exited = self.try_status()?;
            if pred(&self.stdout(), &self.stderr()) {
                return Ok(());
            }
            if let Some(status) = exited {
                bail!(
                    "{}: exited ({status}) before {what}\n{}",
                    self.label,
                    self.log_tails()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: no {what} within {timeout:?}\n{}",
                    self.label,
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for(&format!("{needle:?} on stdout"), timeout, |out, _| {
            out.contains(needle)
        })
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for(&format!("{needle:?} on stderr"), timeout, |_, err| {
            err.contains(needle)
        })
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) unless the process was already reaped.
    pub fn signal(&mut self, signal: i32) -> Result<()> {
        if self.try_status()?.is_some() {
            bail!("{}: already exited, cannot signal it", self.label);
        }
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill(2) has no memory effects. The child is not reaped yet (checked above,
        // and only this guard reaps it), so `pid` still names it, at worst as a zombie.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: still running after {timeout:?}\n{}",
                    self.label,
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks the process to end (SIGTERM), SIGKILLs it if it is still there after 5 s, and
    /// returns how it ended. A process that already exited just reports its status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.signal(libc::SIGTERM)?;
        match self.wait(STOP_GRACE) {
            Ok(status) => Ok(status),
            Err(_) => {
                self.child.kill().context("SIGKILL")?;
                let status = self.child.wait().context("reaping child")?;
                self.status = Some(status);
                Ok(status)
            }
        }
    }

    /// The last lines of both logs, with their paths, for error messages.
    pub fn log_tails(&self) -> String {
        format!(
            "--- stdout ({}), last lines:\n{}\n--- stderr ({}), last lines:\n{}",
            self.stdout_path.display(),
            tail(&self.stdout(), 20),
            self.stderr_path.display(),
            tail(&self.stderr(), 20)
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it returns `Ok(true)`; fails with `what` on timeout or with
/// the first error `cond` returns.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond().with_context(|| format!("while waiting for {what}"))? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid_alive(pid: u32) -> bool {
        // A reaped process has no /proc entry (a zombie would, but the guard reaps).
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn captures_output_and_sees_exit() {
        let ns = Netns::new("pr").unwrap();
        let mut p = Process::start(
            &ns,
            "sh",
            &["-c", "echo ready; echo oops >&2; sleep 0.2; exit 3"],
        )
        .unwrap();
        p.wait_for_stdout("ready", Duration::from_secs(5)).unwrap();
        p.wait_for_stderr("oops", Duration::from_secs(5)).unwrap();
        let status = p.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(status.code(), Some(3));
        let err = p
            .wait_for_stdout("never", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("exited"), "{err:#}");
    }

    #[test]
    fn runs_inside_the_namespace() {
        let ns = Netns::new("pr").unwrap();
        ns.ip(&[
            "link", "add", "wvtest0", "type", "veth", "peer", "name", "wvtest1",
        ])
        .unwrap();
        let mut p = Process::start(&ns, "ip", &["-o", "link", "show", "wvtest0"]).unwrap();
        assert!(
            p.wait(Duration::from_secs(5)).unwrap().success(),
            "{}",
            p.log_tails()
        );
        assert!(p.stdout().contains("wvtest0"));
    }

    #[test]
    fn wait_for_times_out_and_drop_kills() {
        let ns = Netns::new("pr").unwrap();
        let mut p = Process::start(&ns, "sleep", &["30"]).unwrap();
        let err = p
            .wait_for_stdout("never", Duration::from_millis(100))
            .unwrap_err();
        assert!(
            err.to_string().contains("no \"never\" on stdout"),
            "{err:#}"
        );
        let pid = p.pid();
        assert!(pid_alive(pid));
        drop(p);
        assert!(!pid_alive(pid));
    }

    #[test]
    fn stop_terminates() {
        let ns = Netns::new("pr").unwrap();
        let mut p = Process::start(&ns, "sleep", &["30"]).unwrap();
        let status = p.stop().unwrap();
        assert!(!status.success());
        assert!(!pid_alive(p.pid()));
    }

    #[test]
    fn wait_until_polls_and_times_out() {
        let mut n = 0;
        wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            Ok(n >= 3)
        })
        .unwrap();
        assert_eq!(n, 3);
        let err = wait_until("never", Duration::from_millis(50), || Ok(false)).unwrap_err();
        assert!(err.to_string().contains("never"));
    }
}
