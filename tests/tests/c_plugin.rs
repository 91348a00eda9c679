//! A plugin in C, from nothing but the WIT file: `plugins/c-arp-guard`, whose bindings
//! wit-bindgen's C generator makes from `plugin-sdk/wit` and which Debian's clang and wasi-libc
//! compile, by `plugins/c-arp-guard/build.sh`, during the test run. It uses interface 0.2.0's
//! `arp` metadata: the new fields reach a plugin that is not Rust.
//!
//! What it shows:
//! - the module imports nothing but `wasm-vtep:plugin/host@0.2.0` functions (no WASI, no
//!   `env`), and the daemon reports it as speaking interface 0.2.0;
//! - on a real network (VM1 and VM3 behind the daemon on host 1, their addresses protected; VM2
//!   behind the kernel's VXLAN on host 2), ordinary traffic passes, ARP included;
//! - ARP requests, replies and gratuitous ARPs from the underlay that claim a protected address with a
//!   forged MAC are dropped (reason 1) and counted (its counter `spoofed`): VM1's ARP entry for
//!   VM3 keeps VM3's MAC. The same frame claiming VM2's address, which is not protected, goes
//!   through and does move VM1's entry for VM2: the forged frames would have poisoned VM1;
//! - announcements from a local port pass, even of a new MAC (a VM may move its address);
//! - a bad configuration is refused with the plugin's own words: at daemon start, and in process
//!   for each mistake its JSON parser knows, while well-formed ones load.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use smoltcp::wire::ArpOperation;
use wasm_vtep::config::PluginSpec;
use wasm_vtep::plugin::{Plugin, Runtime};
use wasm_vtep::wire::MacAddr;
use wasm_vtep_tests::tools::raw_frame::{ETHERTYPE_ARP, ethernet, gratuitous_arp};
use wasm_vtep_tests::{
    Host, KernelVtep, PacketSocket, Switch, Vm, VtepDaemon, built_once, ping, wait_until,
};

/// The MAC the forged frames claim the protected addresses are at.
const FORGED: MacAddr = MacAddr([0x02, 0, 0, 0, 0x66, 0x66]);
/// How long a frame sent from a VM may take to reach the other side and be judged.
const ARRIVAL: Duration = Duration::from_secs(5);

/// `plugins/c-arp-guard/build.sh target/plugins/c-arp-guard`, once per test binary (the tests
/// here run on threads of one process and would otherwise build into one directory at once).
/// Its messages go to the test's stderr; returns the module's path.
fn built() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built_once(&BUILT, build)
}

fn build() -> Result<PathBuf> {
    let root = wasm_vtep_testkit::workspace();
    let started = Instant::now();
    let out = Command::new(root.join("plugins/c-arp-guard/build.sh"))
        .arg(root.join("target/plugins/c-arp-guard"))
        .stderr(Stdio::inherit())
        .output()
        .context("running plugins/c-arp-guard/build.sh")?;
    ensure!(
        out.status.success(),
        "plugins/c-arp-guard/build.sh failed ({}): see its message above; tests/setup.sh \
         installs its tools",
        out.status
    );
    let wasm = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    ensure!(
        wasm.is_file(),
        "build.sh printed {}, no file",
        wasm.display()
    );
    eprintln!(
        "built {} ({} bytes) in {:?}",
        wasm.display(),
        std::fs::metadata(&wasm)?.len(),
        started.elapsed()
    );
    Ok(wasm)
}

/// Reads a core module just far enough to list its imports.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).context("length overflow")?;
        let slice = self.bytes.get(self.pos..end).context("truncated module")?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 number of at most 32 bits.
    fn u32(&mut self) -> Result<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("LEB128 number longer than 5 bytes")
    }

    fn len(&mut self) -> Result<usize> {
        Ok(usize::try_from(self.u32()?)?)
    }

    fn name(&mut self) -> Result<String> {
        let n = self.len()?;
        Ok(std::str::from_utf8(self.take(n)?)?.to_owned())
    }
}

/// The imports of a core module, as `module/name`; fails on an import that is not a function.
fn imports(wasm: &[u8]) -> Result<Vec<String>> {
    let mut module = Reader {
        bytes: wasm,
        pos: 0,
    };
    ensure!(
        module.take(8)? == b"\0asm\x01\0\0\0",
        "not a core wasm module"
    );
    let mut found = Vec::new();
    while module.pos < wasm.len() {
        let id = module.byte()?;
        let size = module.len()?;
        let body = module.take(size)?;
        if id != 2 {
            continue; // not the import section
        }
        let mut section = Reader {
            bytes: body,
            pos: 0,
        };
        for _ in 0..section.u32()? {
            let (from, name) = (section.name()?, section.name()?);
            let kind = section.byte()?;
            ensure!(
                kind == 0,
                "{from}/{name} is not a function import (kind {kind})"
            );
            section.u32()?; // its type
            found.push(format!("{from}/{name}"));
        }
    }
    Ok(found)
}

fn config(wasm: &Path, protect: &[Ipv4Addr]) -> String {
    let list: Vec<String> = protect.iter().map(|ip| format!("\"{ip}\"")).collect();
    config_with(wasm, &list.join(", "))
}

fn config_with(wasm: &Path, protect: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\ninterface = \"uplink\"\nmtu = 1600\n\
         [[vni]]\nid = 5001\nports = [\"vm1\", \"vm3\"]\nremotes = [\"198.18.0.2\"]\n\
         [[plugin]]\nname = \"arp-guard\"\npath = {:?}\nvnis = [5001]\nbudget_us = 50000\n\
         config = {{ protect = [{protect}] }}\n",
        wasm.display().to_string()
    )
}

fn show(daemon: &VtepDaemon) -> Result<serde_json::Value> {
    let out = daemon.cli(&["plugin", "show", "arp-guard", "--json"])?;
    serde_json::from_str(&out).with_context(|| format!("plugin show --json: {out}"))
}

/// The plugin's own counter `spoofed`, and the host's count of its drops with reason 1.
fn spoofed(daemon: &VtepDaemon) -> Result<(u64, u64)> {
    let report = show(daemon)?;
    Ok((
        report["plugin_counters"]["spoofed"].as_u64().unwrap_or(0),
        report["calls"]["drops"]["1"].as_u64().unwrap_or(0),
    ))
}

fn ensure_neighbour(vm: &Vm, ip: Ipv4Addr, mac: MacAddr, what: &str) -> Result<()> {
    let found = vm.neighbour(ip)?;
    ensure!(
        found.as_deref() == Some(mac.to_string().as_str()),
        "{what}: the entry for {ip} is {found:?}, expected {mac}"
    );
    Ok(())
}

/// An ARP reply from `sender_mac`, saying `sender_ip` is at it, unicast to `target`.
fn arp_reply(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: &Vm) -> Vec<u8> {
    let body = wasm_vtep_testkit::eth::arp(
        ArpOperation::Reply,
        sender_mac.0,
        sender_ip,
        target.mac().0,
        target.ipv4(),
    );
    ethernet(target.mac(), sender_mac, ETHERTYPE_ARP, &body)
}

/// An ARP request for `target`'s address, from `sender_mac` claiming `sender_ip`: the target
/// learns (or updates) the sender's entry from it (RFC 826), as from a reply.
fn arp_request_from(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: &Vm) -> Vec<u8> {
    let body = wasm_vtep_testkit::eth::arp(
        ArpOperation::Request,
        sender_mac.0,
        sender_ip,
        [0; 6],
        target.ipv4(),
    );
    ethernet(target.mac(), sender_mac, ETHERTYPE_ARP, &body)
}

#[test]
fn the_module_imports_only_the_host_interface() -> Result<()> {
    let wasm = built()?;
    let found = imports(&std::fs::read(&wasm)?)?;
    eprintln!("imports: {found:?}");
    ensure!(
        !found.is_empty(),
        "it declares counters: it imports the host"
    );
    let foreign: Vec<&String> = found
        .iter()
        .filter(|i| !i.starts_with("wasm-vtep:plugin/host@0.2.0/"))
        .collect();
    ensure!(foreign.is_empty(), "imports beyond the host's: {foreign:?}");
    Ok(())
}

#[test]
fn bad_configurations_are_refused_in_the_plugins_words() -> Result<()> {
    let wasm = built()?;
    let runtime = Runtime::new()?;
    let load = |json: &str| {
        let mut spec = PluginSpec::new("arp-guard", &wasm);
        spec.config = json.to_owned();
        Plugin::load(&runtime, spec)
    };
    let long = format!("{{\"protect\": [\"{}\"]}}", "9".repeat(50));
    let many = format!(
        "{{\"protect\": [{}]}}",
        vec!["\"192.0.2.1\""; 257].join(",")
    );
    let cases: &[(&str, &str)] = &[
        ("[]", "config: expected a JSON object at byte 0"),
        (
            "",
            "config: expected a JSON object before the end of the text",
        ),
        ("{}", "config.protect: missing"),
        (
            "{\"protect\": \"192.0.2.1\"}",
            "config.protect: expected a list of IPv4 addresses",
        ),
        (
            "{\"protect\": [\"192.0.2.256\"]}",
            "config.protect[0]: \"192.0.2.256\" is not an IPv4 address (a.b.c.d)",
        ),
        (
            "{\"protect\": [\"192.0.2.1\", \"192.0.2\"]}",
            "config.protect[1]: \"192.0.2\" is not an IPv4 address",
        ),
        (
            "{\"protect\": [\"192.0.2.01\"]}",
            "\"192.0.2.01\" is not an IPv4 address",
        ),
        (
            "{\"protect\": [\"192.0.2.1 \"]}",
            "\"192.0.2.1 \" is not an IPv4 address",
        ),
        (
            "{\"protect\": [\"192.0.2.1000\"]}",
            "\"192.0.2.1000\" is not an IPv4 address",
        ),
        (
            "{\"protect\": [3221225985]}",
            "config.protect[0]: expected an IPv4 address as a string",
        ),
        (
            "{\"protect\": [\"0.0.0.0\"]}",
            "config.protect[0]: 0.0.0.0 cannot be protected",
        ),
        (
            "{\"protect\": [\"192.0.2.1\"], \"protects\": []}",
            "config: unknown field \"protects\", expected \"protect\"",
        ),
        (
            "{\"protect\": [], \"protect\": []}",
            "config: duplicate field \"protect\"",
        ),
        (
            "{\"protect\": [\"192.0.2.1\"]} {}",
            "config: expected nothing after the object at byte 27",
        ),
        (
            "{\"protect\": [\"192.0.2.1\"]",
            "config: expected ',' or '}' before the end of the text",
        ),
        (
            "{\"protect\": [\"192.0.2.1\" \"192.0.2.3\"]}",
            "config.protect: expected ',' or ']' at byte 25",
        ),
        (
            "{\"protect\": [\"192.0.2.\\u0031\"]}",
            "config.protect: escape sequences are not supported",
        ),
        // Not ASCII: shown as '?', so that the message stays valid UTF-8.
        (
            "{\"protect\": [\"192.0.2.\u{fc}\"]}",
            "\"192.0.2.??\" is not an IPv4 address",
        ),
        (
            &long,
            "\"9999999999999999999999999999999999999999...\" is not",
        ),
        (&many, "config.protect: more than 256 addresses"),
    ];
    let mut failures = Vec::new();
    for (json, needle) in cases {
        match load(json) {
            Ok(_) => failures.push(format!("{json:?}: accepted")),
            Err(e) => {
                let text = e.to_string();
                if !text.starts_with("plugin init failed: ") || !text.contains(needle) {
                    failures.push(format!("{json:?}: {text:?} lacks {needle:?}"));
                }
            }
        }
    }
    for json in [
        "{\"protect\": []}",
        " {\n\t\"protect\" : [ \"192.0.2.1\" ,\"255.255.255.255\",\"10.0.0.0\" ] }\r\n",
    ] {
        if let Err(e) = load(json) {
            failures.push(format!("{json:?}: refused: {e}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn forged_arp_for_protected_addresses_is_dropped() -> Result<()> {
    let wasm = built()?;
    let switch = Switch::new(1600)?;
    let host1 = Host::numbered(&switch, 1)?;
    let host2 = Host::numbered(&switch, 2)?;
    let vm1 = Vm::numbered(&host1, 1)?;
    let vm3 = Vm::numbered(&host1, 3)?;
    let vm2 = Vm::numbered(&host2, 2)?;
    let _kernel = KernelVtep::builder(5001)
        .remote(IpAddr::from(host1.ipv4()))
        .port(&vm2)
        .create(&host2)?;

    // A mistake in the list: the daemon does not start, and says why in the plugin's words.
    let refused = VtepDaemon::start(
        &host1,
        &config_with(&wasm, "\"192.0.2.1\", \"192.0.2.300\""),
    );
    let Err(e) = refused else {
        bail!("a daemon started with protect = [\"192.0.2.300\"]");
    };
    let text = format!("{e:#}");
    ensure!(
        text.contains("config.protect[1]: \"192.0.2.300\" is not an IPv4 address"),
        "the refusal does not give the plugin's reason: {text}"
    );

    let daemon = VtepDaemon::start(&host1, &config(&wasm, &[vm1.ipv4(), vm3.ipv4()]))?;
    let report = show(&daemon)?;
    ensure!(
        report["interface"] == "0.2.0",
        "interface: {}",
        report["interface"]
    );

    // Ordinary traffic passes both ways, with the ARP it needs: VM2's replies for its own
    // address, its requests for VM1's, VM1 and VM3 switched locally.
    for (from, to) in [(&vm1, &vm2), (&vm2, &vm1), (&vm1, &vm3)] {
        let stats = ping(from, to.ipv4(), 3)?;
        ensure!(
            stats.all_received(),
            "{} to {}: {stats:?}",
            from.ipv4(),
            to.ipv4()
        );
    }
    ensure!(spoofed(&daemon)? == (0, 0), "nothing is dropped yet");
    ensure_neighbour(&vm1, vm3.ipv4(), vm3.mac(), "after the pings")?;
    ensure_neighbour(&vm1, vm2.ipv4(), vm2.mac(), "after the pings")?;

    // Forged claims of protected addresses, sent from VM2's namespace (across the underlay):
    // each dropped and counted.
    let from_vm2 = PacketSocket::open(&vm2, Vm::IFACE)?;
    let forged = [
        (
            "a gratuitous ARP for VM1",
            gratuitous_arp(FORGED, vm1.ipv4()),
        ),
        (
            "a gratuitous ARP for VM3",
            gratuitous_arp(FORGED, vm3.ipv4()),
        ),
        (
            "an ARP reply to VM1 for VM3",
            arp_reply(FORGED, vm3.ipv4(), &vm1),
        ),
        (
            "an ARP request to VM1 from VM3's address",
            arp_request_from(FORGED, vm3.ipv4(), &vm1),
        ),
    ];
    for (n, (what, frame)) in (1u64..).zip(&forged) {
        from_vm2.send(frame)?;
        wait_until(what, ARRIVAL, || Ok(spoofed(&daemon)?.0 >= n))?;
        let counts = spoofed(&daemon)?;
        ensure!(
            counts == (n, n),
            "{what}: spoofed and drops by reason 1: {counts:?}"
        );
    }
    ensure_neighbour(&vm1, vm3.ipv4(), vm3.mac(), "after the forged frames")?;
    ensure!(
        ping(&vm1, vm3.ipv4(), 2)?.all_received(),
        "VM1 still reaches VM3"
    );

    // The same frame for VM2's address, which is not protected, passes: it does move VM1's
    // entry, so the frames above would have poisoned VM1 without the guard.
    from_vm2.send(&gratuitous_arp(FORGED, vm2.ipv4()))?;
    wait_until("VM1 to take the unprotected claim", ARRIVAL, || {
        Ok(vm1.neighbour(vm2.ipv4())?.as_deref() == Some(FORGED.to_string().as_str()))
    })?;

    // A local port may announce a protected address, even at a new MAC (its VM moved it): VM2
    // takes VM1's announcement; then VM1 says its own MAC again.
    let from_vm1 = PacketSocket::open(&vm1, Vm::IFACE)?;
    for mac in [FORGED, vm1.mac()] {
        from_vm1.send(&gratuitous_arp(mac, vm1.ipv4()))?;
        wait_until("VM2 to take VM1's announcement", ARRIVAL, || {
            Ok(vm2.neighbour(vm1.ipv4())?.as_deref() == Some(mac.to_string().as_str()))
        })?;
    }
    let n = forged.len() as u64;
    ensure!(
        spoofed(&daemon)? == (n, n),
        "only the forged frames are dropped"
    );
    daemon.stop()
}
