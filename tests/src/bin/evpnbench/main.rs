//! `evpnbench`: how fast wasm-vtep's EVPN control plane converges, with the real daemons in
//! namespaces (gobgpd beside wasm-vtep, FRR + the kernel's vxlan as the peer), and FRR on both
//! sides as the reference in the same run:
//!
//! - install: from a VM's first frame on h1 to its MAC in h2's kernel FDB (`extern_learn`,
//!   installed by FRR's zebra), h1 being wasm-vtep + gobgpd, then FRR + the kernel;
//! - migration: from a GARP on the VM's new host to every VTEP pointing at it, a VM moving
//!   back and forth between a wasm-vtep host and an FRR host, a second wasm-vtep watching;
//! - scale: routes per second wasm-vtep installs from a gobgpd RIB of N MACs (loaded over the
//!   API), and the daemon's RSS with them, against its RSS with an empty RIB.
//!
//! A benchmark, not a test: it fails only when something does not converge at all.
//!
//! ```sh
//! cargo build --release --bin vtep
//! cargo run --release -p wasm-vtep-tests --bin evpnbench -- [--samples 20] [--macs 100000]
//! ```

mod converge;
mod scale;

use std::time::Duration;

use anyhow::Result;
use clap::Parser;

/// wasm-vtep's EVPN convergence and scale, FRR beside it as the reference.
#[derive(Debug, Parser)]
#[command(name = "evpnbench")]
struct Args {
    /// Samples of each convergence time (0: only the scale run).
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// MACs in the RIB for the scale run.
    #[arg(long, default_value_t = 100_000)]
    macs: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("load average before: {}", load_average());
    println!("| measure | median | max | samples |\n|---|---|---|---|");
    // `--samples 0`: the scale run alone.
    if args.samples > 0 {
        let ours = converge::install_latency(converge::Origin::WasmVtep, args.samples)?;
        row(
            "first frame -> FRR's kernel FDB, h1 wasm-vtep + gobgpd",
            &ours,
        );
        let frr = converge::install_latency(converge::Origin::Frr, args.samples)?;
        row(
            "first frame -> FRR's kernel FDB, h1 FRR + kernel (reference)",
            &frr,
        );
        for (name, samples) in &converge::migration(args.samples)? {
            row(name, samples);
        }
    }
    let scale = scale::run(args.macs)?;
    println!(
        "\nscale: {} MACs installed in {:.2?} ({:.0} routes/s); RSS {} KiB with them, {} KiB \
         with an empty RIB",
        scale.macs,
        scale.install,
        f64::from(scale.macs) / scale.install.as_secs_f64(),
        scale.rss_kib,
        scale.rss_empty_kib
    );
    println!("load average after: {}", load_average());
    Ok(())
}

fn row(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    println!(
        "| {name} | {:.0} ms | {:.0} ms | {} |",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        samples.len()
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
