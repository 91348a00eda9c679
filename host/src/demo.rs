//! `vtep demo`: the seed walk-through of RFC 7348 flood-and-learn, live. Builds two hosts and
//! their VMs from network namespaces around an underlay bridge, runs this binary as the VTEP on
//! each host, sends VM1's ARP and a ping, and prints both forwarding tables after each step.
//! Everything it created is removed at the end, on error and on Ctrl-C.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::control::{FdbRow, Request, Response, client, render};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Runs the demo.
pub fn run() -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let lab = Lab::new()?;
    let result = walk(&lab);
    drop(lab);
    if INTERRUPTED.load(Ordering::Relaxed) {
        println!("\ninterrupted: topology removed");
        return Ok(());
    }
    result
}

/// Ctrl-C was pressed: the walk stops before its next step (and the lab is torn down).
fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

fn walk(lab: &Lab) -> Result<()> {
    step(
        "The underlay: a switch (Linux bridge) joining host 1 (198.18.0.1) and host 2 \
          (198.18.0.2).\nVM1 (02:00:00:00:00:01, 192.0.2.1) sits on host 1, VM2 \
          (02:00:00:00:00:02, 192.0.2.2) on host 2, both on VNI 5001.",
    );
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut daemons = Vec::new();
    for h in 1..=2u8 {
        daemons.push(lab.start_vtep(&exe, h)?);
    }
    step(
        "Both VTEPs joined the VNI's group 239.1.1.100 because each has a VM on VNI 5001.\n\
          Their forwarding tables start empty:",
    );
    lab.show_tables()?;

    interrupted()?;
    // VM2 ignores ARP requests for this first step, so that the request's effect shows alone.
    lab.exec(
        "vm2",
        &["sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_ignore=8"],
    )?;
    step(
        "1-4. VM1 ARPs for 192.0.2.2 (destination ff:ff:ff:ff:ff:ff). VTEP 1 encapsulates it \
          to the group; VTEP 2 receives it, learns MAC1 -> 198.18.0.1 and delivers it to VM2\n\
          (which, for this step, does not answer). VTEP 1 has learned VM1 on its port; nobody \
          knows VM2 yet:",
    );
    let _ = lab.exec(
        "vm1",
        &["arping", "-c", "1", "-w", "1", "-I", "eth0", "192.0.2.2"],
    );
    lab.show_tables()?;

    interrupted()?;
    lab.exec(
        "vm2",
        &["sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_ignore=0"],
    )?;
    step(
        "5-7. VM1 asks again and VM2 answers unicast to MAC1; VTEP 2 finds MAC1 behind \
          198.18.0.1 and sends one unicast packet; VTEP 1 learns MAC2 -> 198.18.0.2:",
    );
    lab.exec(
        "vm1",
        &["arping", "-c", "1", "-w", "3", "-I", "eth0", "192.0.2.2"],
    )?;
    lab.show_tables()?;

    interrupted()?;
    step(
        "Now both MACs are known: VM1 pings VM2 and every packet goes unicast between the \
          two VTEPs, no flooding.",
    );
    let out = lab.exec("vm1", &["ping", "-c", "3", "-i", "0.2", "192.0.2.2"])?;
    interrupted()?;
    print!("{out}");
    lab.show_tables()?;
    println!("\nVTEP 1 counters:");
    let stats = call(&lab.socket(1), &Request::Stats)?;
    print!("{}", render::stats(&serde_json::from_value(stats)?));
    for d in &mut daemons {
        stop(d);
    }
    step("Done: VTEPs stopped, namespaces removed.");
    Ok(())
}

fn step(text: &str) {
    println!("\n== {text}");
}

fn call(socket: &std::path::Path, request: &Request) -> Result<serde_json::Value> {
    match client::call(socket, request)? {
        Response::Ok(v) => Ok(v),
        Response::Error(e) => bail!("{e}"),
    }
}

fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid; at worst it fails with ESRCH.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM);
    }
    let _ = child.wait();
}

/// The demo's namespaces, deleted on drop.
struct Lab {
    prefix: String,
    dir: PathBuf,
    children: std::cell::RefCell<Vec<u32>>,
}

impl Lab {
    const NAMES: [&'static str; 5] = ["sw", "h1", "h2", "vm1", "vm2"];

    fn new() -> Result<Lab> {
        let prefix = format!("wv-demo-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let lab = Lab {
            prefix,
            dir,
            children: std::cell::RefCell::new(Vec::new()),
        };
        for n in Self::NAMES {
            sh(&["ip", "netns", "add", &lab.ns(n)])?;
            lab.ip(n, &["link", "set", "lo", "up"])?;
            // IPv4 only: IPv6's automatic traffic (neighbour discovery, MLD) would be learned
            // too and blur what each step shows.
            for conf in ["all", "default"] {
                let key = format!("net.ipv6.conf.{conf}.disable_ipv6=1");
                lab.exec(n, &["sysctl", "-q", "-w", &key])?;
            }
        }
        lab.ip(
            "sw",
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        lab.ip("sw", &["link", "set", "br0", "up"])?;
        for h in 1..=2u8 {
            let host = format!("h{h}");
            let vm = format!("vm{h}");
            let (swp, port) = (format!("p{h}"), format!("vm{h}"));
            lab.ip(
                "sw",
                &[
                    "link",
                    "add",
                    &swp,
                    "mtu",
                    "1600",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "uplink0",
                    "mtu",
                    "1600",
                    "netns",
                    &lab.ns(&host),
                ],
            )?;
            lab.ip("sw", &["link", "set", &swp, "master", "br0", "up"])?;
            lab.ip(
                &host,
                &["addr", "add", &format!("198.18.0.{h}/24"), "dev", "uplink0"],
            )?;
            lab.ip(&host, &["link", "set", "uplink0", "up"])?;
            lab.ip(
                &host,
                &[
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &lab.ns(&vm),
                ],
            )?;
            lab.ip(&host, &["link", "set", &port, "up"])?;
            lab.ip(
                &vm,
                &[
                    "link",
                    "set",
                    "eth0",
                    "address",
                    &format!("02:00:00:00:00:0{h}"),
                ],
            )?;
            lab.ip(
                &vm,
                &["addr", "add", &format!("192.0.2.{h}/24"), "dev", "eth0"],
            )?;
            lab.ip(&vm, &["link", "set", "eth0", "up"])?;
            let config = format!(
                "[underlay]\nlocal = \"198.18.0.{h}\"\ninterface = \"uplink0\"\nmtu = 1600\n\n\
                 [control]\nsocket = {:?}\n\n[[vni]]\nid = 5001\nports = [\"{port}\"]\n\
                 group = \"239.1.1.100\"\n",
                lab.socket(h).display().to_string()
            );
            std::fs::write(lab.dir.join(format!("h{h}.toml")), config)?;
        }
        Ok(lab)
    }

    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    fn socket(&self, h: u8) -> PathBuf {
        self.dir.join(format!("h{h}.sock"))
    }

    fn ip(&self, n: &str, args: &[&str]) -> Result<()> {
        let ns = self.ns(n);
        let mut full = vec!["ip", "-n", &ns];
        full.extend_from_slice(args);
        sh(&full).map(|_| ())
    }

    fn exec(&self, n: &str, args: &[&str]) -> Result<String> {
        let ns = self.ns(n);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn start_vtep(&self, exe: &std::path::Path, h: u8) -> Result<Child> {
        let config = self.dir.join(format!("h{h}.toml"));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(&format!("h{h}"))])
            .arg(exe)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("starting vtep")?;
        self.children.borrow_mut().push(child.id());
        let socket = self.socket(h);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("vtep on host {h} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    fn show_tables(&self) -> Result<()> {
        for h in 1..=2u8 {
            let rows: Vec<FdbRow> =
                serde_json::from_value(call(&self.socket(h), &Request::FdbShow { vni: None })?)?;
            println!("  host {h} (vtep fdb show):");
            let table = render::fdb(&rows);
            if table.is_empty() {
                println!("    (empty)");
            }
            for line in table.lines() {
                println!("    {line}");
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.children.borrow().iter() {
            // SAFETY: signalling our own children; at worst ESRCH.
            unsafe {
                libc::kill(i32::try_from(*pid).unwrap_or(0), libc::SIGTERM);
            }
        }
        for n in Self::NAMES {
            let ns = self.ns(n);
            let _ = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").arg(pid).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command; its stdout, or an error with its stderr.
fn sh(args: &[&str]) -> Result<String> {
    let (program, rest) = args.split_first().context("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
