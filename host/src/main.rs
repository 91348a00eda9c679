//! `vtep`: the wasm-vtep daemon and its command-line client. Parses the command line and wires
//! the library's pieces together; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wasm_vtep::config::{Config, DEFAULT_SOCKET};
use wasm_vtep::control::{self, FdbRow, Request, Response, StatsReport};

/// A programmable VXLAN tunnel endpoint (RFC 7348).
#[derive(Debug, Parser)]
#[command(name = "vtep", version, about)]
struct Cli {
    /// The daemon's control socket (for the subcommands that talk to it).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the VTEP with this configuration until SIGINT or SIGTERM.
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration (and that its interfaces exist here) without running it.
    Check {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Build the two-host seed topology in network namespaces and walk through flood-and-learn.
    Demo,
    /// The forwarding table.
    Fdb {
        #[command(subcommand)]
        command: FdbCommand,
    },
    /// Frame, byte, learning and drop counters.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FdbCommand {
    /// Show entries, like `bridge fdb show`.
    Show {
        /// Only this VNI.
        #[arg(long)]
        vni: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a static entry.
    Add {
        /// The VNI.
        #[arg(long)]
        vni: u32,
        /// The MAC address.
        #[arg(long)]
        mac: String,
        /// Behind this remote VTEP.
        #[arg(long, conflicts_with = "port", required_unless_present = "port")]
        remote: Option<String>,
        /// Behind this local port.
        #[arg(long)]
        port: Option<String>,
    },
    /// Remove an entry.
    Del {
        /// The VNI.
        #[arg(long)]
        vni: u32,
        /// The MAC address.
        #[arg(long)]
        mac: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtep: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = load(&config)?;
            wasm_vtep::daemon::run(config)?;
            Ok(())
        }
        Command::Check { config } => {
            let config = load(&config)?;
            println!(
                "{}: ok ({} VNIs, {} ports)",
                config_name(&config),
                config.settings.vnis.len(),
                config.ports.len()
            );
            Ok(())
        }
        Command::Demo => wasm_vtep::demo::run(),
        Command::Fdb { command } => fdb(&cli.socket, command),
        Command::Stats { json } => {
            let data = call(&cli.socket, &Request::Stats)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                let report: StatsReport = serde_json::from_value(data)?;
                print!("{}", control::render::stats(&report));
            }
            Ok(())
        }
    }
}

fn config_name(config: &Config) -> String {
    format!("vtep {}", config.settings.local)
}

/// Loads, validates and checks interfaces; the error is the one line that names the field.
fn load(path: &std::path::Path) -> Result<Config> {
    let config = Config::load(path)?;
    config.check_interfaces()?;
    Ok(config)
}

fn fdb(socket: &std::path::Path, command: FdbCommand) -> Result<()> {
    match command {
        FdbCommand::Show { vni, json } => {
            let data = call(socket, &Request::FdbShow { vni })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                let rows: Vec<FdbRow> = serde_json::from_value(data)?;
                print!("{}", control::render::fdb(&rows));
            }
        }
        FdbCommand::Add {
            vni,
            mac,
            remote,
            port,
        } => {
            call(
                socket,
                &Request::FdbAdd {
                    vni,
                    mac,
                    remote,
                    port,
                },
            )?;
        }
        FdbCommand::Del { vni, mac } => {
            call(socket, &Request::FdbDel { vni, mac })?;
        }
    }
    Ok(())
}

fn call(socket: &std::path::Path, request: &Request) -> Result<serde_json::Value> {
    let response = control::client::call(socket, request)
        .with_context(|| "is the daemon running? (vtep run --config FILE)")?;
    match response {
        Response::Ok(data) => Ok(data),
        Response::Error(e) => bail!("{e}"),
    }
}
