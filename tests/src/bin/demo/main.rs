//! The demo: RFC 7348's flood-and-learn walk-through, live. Builds two hosts and their VMs from
//! network namespaces around an underlay switch (the test harness's [`Switch`], [`Host`] and
//! [`Vm`]), runs the real `vtep` daemon on each host, sends VM1's ARP and a ping, and prints
//! both forwarding tables after each step. Everything it created is removed at the end, on
//! error and on Ctrl-C.
//!
//! With `--evpn` it walks through the same two VMs with BGP EVPN instead ([`evpn`]): a gobgpd
//! beside each VTEP, no multicast group, no remotes.
//!
//! Run as root from the checkout: `cargo build --bin vtep && cargo run -p wasm-vtep-tests --bin
//! demo [-- --evpn]` (the `vtep` it runs is the one built beside it, or `$VTEP_BIN`).

mod evpn;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use clap::Parser;
use wasm_vtep::control::{Request, render};
use wasm_vtep_tests::{Host, Switch, Vm, VtepDaemon};

/// Two VMs on two VTEPs, live on network namespaces: RFC 7348's flood-and-learn walk-through,
/// or BGP EVPN with --evpn.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Args {
    /// BGP EVPN instead of flood-and-learn: a gobgpd beside each VTEP (needs the Debian
    /// package gobgpd), no multicast group, no remotes.
    #[arg(long)]
    evpn: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before anything is created: without gobgpd there is nothing to walk through.
    if args.evpn
        && let Some(missing) = evpn::missing_programs()
    {
        eprintln!("demo: {missing}");
        return ExitCode::FAILURE;
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let result = if args.evpn { evpn::walk() } else { walk() };
    // Every namespace and daemon of the walk is gone by now: their guards dropped inside it.
    if INTERRUPTED.load(Ordering::Relaxed) {
        println!("\ninterrupted: topology removed");
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C was pressed: the walk stops before its next step (and the lab is torn down).
fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

fn walk() -> Result<()> {
    let underlay = Switch::new(1600)?;
    let hosts = [Host::numbered(&underlay, 1)?, Host::numbered(&underlay, 2)?];
    let [vm1, vm2] = [Vm::numbered(&hosts[0], 1)?, Vm::numbered(&hosts[1], 2)?];
    step(&format!(
        "The underlay: a switch (Linux bridge) joining host 1 ({}) and host 2 ({}).\n\
         VM1 ({}, {}) sits on host 1, VM2 ({}, {}) on host 2, both on VNI 5001.",
        hosts[0].ipv4(),
        hosts[1].ipv4(),
        vm1.mac(),
        vm1.ipv4(),
        vm2.mac(),
        vm2.ipv4(),
    ));
    let vteps = [(&hosts[0], &vm1), (&hosts[1], &vm2)]
        .map(|(host, vm)| VtepDaemon::start(host, &config(host, vm)));
    let [vtep1, vtep2] = vteps;
    let vteps = [vtep1?, vtep2?];
    step(
        "Both VTEPs joined the VNI's group 239.1.1.100 because each has a VM on VNI 5001.\n\
         Their forwarding tables start empty:",
    );
    show_tables(&vteps)?;

    interrupted()?;
    // VM2 ignores ARP requests for this first step, so that the request's effect shows alone.
    let eth = Vm::IFACE;
    vm2.netns()
        .sysctl(&format!("net.ipv4.conf.{eth}.arp_ignore"), "8")?;
    step(&format!(
        "1-4. VM1 ARPs for {vm2_ip} (destination ff:ff:ff:ff:ff:ff). VTEP 1 encapsulates it \
         to the group; VTEP 2 receives it, learns MAC1 -> {h1} and delivers it to VM2\n\
         (which, for this step, does not answer). VTEP 1 has learned VM1 on its port; nobody \
         knows VM2 yet:",
        vm2_ip = vm2.ipv4(),
        h1 = hosts[0].ipv4(),
    ));
    let target = vm2.ipv4().to_string();
    // No answer is the point of this step: arping's failure is expected.
    let _ = vm1
        .netns()
        .exec("arping", &["-c", "1", "-w", "1", "-I", eth, &target]);
    show_tables(&vteps)?;

    interrupted()?;
    vm2.netns()
        .sysctl(&format!("net.ipv4.conf.{eth}.arp_ignore"), "0")?;
    step(&format!(
        "5-7. VM1 asks again and VM2 answers unicast to MAC1; VTEP 2 finds MAC1 behind \
         {h1} and sends one unicast packet; VTEP 1 learns MAC2 -> {h2}:",
        h1 = hosts[0].ipv4(),
        h2 = hosts[1].ipv4(),
    ));
    vm1.netns()
        .exec("arping", &["-c", "1", "-w", "3", "-I", eth, &target])?;
    show_tables(&vteps)?;

    interrupted()?;
    step(
        "Now both MACs are known: VM1 pings VM2 and every packet goes unicast between the \
         two VTEPs, no flooding.",
    );
    let out = vm1
        .netns()
        .exec("ping", &["-c", "3", "-i", "0.2", &target])?;
    interrupted()?;
    print!("{out}");
    show_tables(&vteps)?;
    println!("\nVTEP 1 counters:");
    let stats = vteps[0].request(&Request::Stats)?;
    print!("{}", render::stats(&serde_json::from_value(stats)?));
    for vtep in vteps {
        vtep.stop()?;
    }
    step("Done: VTEPs stopped, namespaces removed.");
    Ok(())
}

/// The configuration of the VTEP on `host`, with `vm`'s port on VNI 5001 and its group.
fn config(host: &Host, vm: &Vm) -> String {
    format!(
        "[underlay]\nlocal = \"{}\"\ninterface = \"{}\"\nmtu = {}\n\n\
         [[vni]]\nid = 5001\nports = [\"{}\"]\ngroup = \"239.1.1.100\"\n",
        host.ipv4(),
        Host::UPLINK,
        host.mtu(),
        vm.host_port(),
    )
}

fn step(text: &str) {
    println!("\n== {text}");
}

fn show_tables(vteps: &[VtepDaemon]) -> Result<()> {
    for (h, vtep) in (1..).zip(vteps) {
        println!("  host {h} (vtep fdb show):");
        print_indented(&render::fdb(&vtep.fdb()?));
    }
    Ok(())
}

/// `text` indented under its heading, or `(empty)`.
fn print_indented(text: &str) {
    if text.trim().is_empty() {
        println!("    (empty)");
    }
    for line in text.lines() {
        println!("    {line}");
    }
}
