//! `Netns`: a named network namespace that is deleted when dropped, even if the test panics.
//!
//! Names are `wv-<tag>-<pid>-<n>`: unique across tests that run in parallel threads of one
//! process (the counter) and across processes (the pid), and short enough that interface names
//! derived from them fit in IFNAMSIZ where a test needs that.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by a test.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `wv-<tag>-<pid>-<n>` with its loopback up.
    pub fn new(tag: &str) -> Result<Netns> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("wv-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating namespace {name}"))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace; fails unless it exits 0. Returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        self.exec("ip", args)
    }

    /// Moves the calling thread into the namespace until the guard drops, so that sockets the
    /// thread opens meanwhile live there.
    pub fn enter(&self) -> Result<Entered> {
        let own = File::open("/proc/thread-self/ns/net").context("opening own netns")?;
        let target = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        setns(&target)?;
        Ok(Entered { own })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then delete. Errors are ignored: a drop must not panic.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|out| {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Returned by [`Netns::enter`]: moves the thread back to its own namespace on drop.
#[derive(Debug)]
pub struct Entered {
    own: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = setns(&self.own);
    }
}

fn setns(ns: &File) -> Result<()> {
    // SAFETY: `ns` is an open namespace file descriptor for the lifetime of the call; setns only
    // changes the calling thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs a command; fails with its stderr unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_deleted_on_drop_and_on_panic() {
        let name = {
            let ns = Netns::new("t").unwrap();
            assert!(ns.ip(&["link", "show", "lo"]).unwrap().contains("LOOPBACK"));
            ns.name().to_owned()
        };
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());

        let panicked = std::thread::spawn(|| {
            let ns = Netns::new("p").unwrap();
            std::fs::write("/tmp/wv-last-panic-ns", ns.name()).unwrap();
            panic!("test failure inside a namespace");
        })
        .join();
        assert!(panicked.is_err());
        let name = std::fs::read_to_string("/tmp/wv-last-panic-ns").unwrap();
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    }

    #[test]
    fn enter_moves_sockets_into_the_namespace() {
        let ns = Netns::new("e").unwrap();
        ns.ip(&["addr", "add", "198.18.200.1/32", "dev", "lo"])
            .unwrap();
        {
            let _in = ns.enter().unwrap();
            // Binding works only where the address exists: inside the namespace.
            std::net::UdpSocket::bind("198.18.200.1:0").unwrap();
        }
        assert!(std::net::UdpSocket::bind("198.18.200.1:0").is_err());
    }
}
