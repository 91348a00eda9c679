//! `vtep`: the wasm-vtep daemon and its command-line client. Parses the command line and wires
//! the library's pieces together; nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use serde::de::DeserializeOwned;
use tracing_subscriber::EnvFilter;
use wasm_vtep::config::{Config, DEFAULT_SOCKET, OnError, PluginSpec};
use wasm_vtep::control::{self, PluginReport, Request, Response, render};
use wasm_vtep::plugin::Plugin;
use wasm_vtep::plugin::offline::{CaptureFile, Replay, ReplayOptions, text};
use wasm_vtep::vtep::Direction;
use wasm_vtep::wire::Vni;

/// A programmable VXLAN tunnel endpoint (RFC 7348).
#[derive(Debug, Parser)]
#[command(name = "vtep", version, about)]
struct Cli {
    /// The daemon's control socket (for the subcommands that talk to it).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// How log lines are written to stderr: `auto` (coloured on a terminal, plain otherwise),
    /// `plain`, or `json` (one object a line, for log shippers). Under systemd (JOURNAL_STREAM
    /// set) plain lines carry no timestamp: the journal adds its own. RUST_LOG sets the level
    /// (default info).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the VTEP with this configuration until SIGINT or SIGTERM; SIGHUP reloads every
    /// plugin from the configuration file. Under systemd (NOTIFY_SOCKET) it says when it is
    /// ready, reloading and stopping.
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration (that its interfaces exist here, and that its plugins load and
    /// accept their configuration) without running it.
    Check {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The forwarding table.
    Fdb {
        #[command(subcommand)]
        command: FdbCommand,
    },
    /// Frame, byte, learning, drop and plugin counters.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The wasm plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// BGP EVPN (through gobgpd).
    Evpn {
        #[command(subcommand)]
        command: EvpnCommand,
    },
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell), e.g.
    /// `vtep completions bash > /etc/bash_completion.d/vtep`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, vtep(8), as roff (`vtep man | man -l -`), or write it and a page
    /// for every subcommand (vtep-plugin-test(8), ...) into a directory.
    Man {
        /// Write every page, as `NAME.8`, into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Make worker N panic at its next turn, to test supervision (builds with the
    /// `fault-injection` feature only).
    #[cfg(feature = "fault-injection")]
    #[command(hide = true)]
    PanicWorker {
        /// The worker's index.
        worker: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
enum EvpnCommand {
    /// The session to gobgpd, and per VNI: RD and route targets, routes announced, remote
    /// VTEPs, MAC/IP bindings, ARP/ND answered; routes refused by reason.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// One line per plugin: state, hooks, VNIs, calls, drops, failures.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One plugin in detail: hooks, calls, drops by reason, traps, timeouts, time per call,
    /// its counters, attached or detached.
    Show {
        /// The plugin's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a plugin anew and swap it in without stopping traffic, its `[[plugin]]` section
    /// read again from the daemon's configuration file; if the section or the new module is
    /// refused, the running one stays and the error says why. Also re-attaches a detached
    /// plugin. Its counters go on from the running one's.
    Reload {
        /// The plugin's name.
        name: String,
        /// Load this module instead of the one its section names.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Use this `config` (a JSON object) instead of the section's.
        #[arg(long)]
        config_json: Option<String>,
        /// Start its counters and drop reasons from zero.
        #[arg(long)]
        reset_counters: bool,
    },
    /// Run a plugin's filter (and learning) over every frame of a capture, in this process,
    /// with the daemon's sandbox: per frame its verdict and reason, then totals and the
    /// plugin's counters. VXLAN packets are decapsulated (VNI from their header, direction
    /// from-underlay); other Ethernet frames go on --vni in --direction. Exits non-zero when
    /// --expect-drop or --expect-pass is not met.
    Test(PluginTest),
}

/// `vtep plugin test`'s arguments.
#[derive(Debug, clap::Args)]
struct PluginTest {
    /// The plugin's module (.wasm).
    wasm: PathBuf,
    /// The capture: pcap or pcapng (tcpdump -w, Wireshark), Ethernet.
    #[arg(long)]
    pcap: PathBuf,
    /// The plugin's `config`, as a JSON object.
    #[arg(long, conflicts_with = "config_file")]
    config: Option<String>,
    /// A file with the plugin's `config`: a JSON object, or a TOML table (`.toml`).
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// The VNI of frames without a VXLAN header.
    #[arg(long)]
    vni: Option<u32>,
    /// The direction of frames without a VXLAN header.
    #[arg(long, value_enum, default_value = "from-port")]
    direction: TestDirection,
    /// The VTEP frames without a VXLAN header come from, with --direction from-underlay.
    #[arg(long)]
    remote: Option<std::net::IpAddr>,
    /// The verdict of a frame whose call failed (trap, time budget, memory, bad answer).
    #[arg(long, value_enum, default_value = "pass")]
    on_error: TestOnError,
    /// Exit zero even if calls failed or the capture could not be read to its end.
    #[arg(long)]
    allow_failures: bool,
    /// The UDP port of VXLAN packets.
    #[arg(long, default_value_t = 4789)]
    vxlan_port: u16,
    /// The time budget of a call, in microseconds (the daemon's default if not given).
    #[arg(long)]
    budget_us: Option<u64>,
    /// Print JSON: frames, totals and the plugin's report.
    #[arg(long)]
    json: bool,
    /// Fail unless exactly this many frames are dropped.
    #[arg(long)]
    expect_drop: Option<u64>,
    /// Fail unless exactly this many frames pass.
    #[arg(long)]
    expect_pass: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TestDirection {
    FromPort,
    FromUnderlay,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TestOnError {
    Pass,
    Drop,
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
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command's output piped into `head` or a pager that quits: end quietly, as
        // iproute2 does, rather than fail on EPIPE at the next print. The daemon keeps Rust's
        // SIGPIPE-ignored default: a control client that goes away must not kill it.
        // SAFETY: restores the default disposition of one signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logs(cli.log_format);
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtep: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr in `format`, at RUST_LOG's level (info by default).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Under systemd, stderr goes to the journal, which stamps each line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Plain | LogFormat::Auto if journal => {
            logs.with_ansi(false).without_time().init()
        }
        LogFormat::Plain => logs.with_ansi(false).init(),
        LogFormat::Auto => logs.with_ansi(std::io::stderr().is_terminal()).init(),
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
            // Loaded and initialised as `vtep run` would, then dropped.
            wasm_vtep::daemon::load_plugins(&config.plugins)?;
            println!(
                "{}: ok ({} VNIs, {} ports, {} plugins)",
                config_name(&config),
                config.settings.vnis.len(),
                config.ports.len(),
                config.plugins.len(),
            );
            Ok(())
        }
        Command::Fdb { command } => fdb(&cli.socket, command),
        Command::Stats { json } => show(&cli.socket, &Request::Stats, json, render::stats),
        Command::Plugin { command } => plugin(&cli.socket, command),
        Command::Evpn {
            command: EvpnCommand::Show { json },
        } => show(&cli.socket, &Request::EvpnShow, json, render::evpn),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "vtep", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir: None } => {
            let page = clap_mangen::Man::new(without_help(Cli::command())).section("8");
            page.render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let mut command = without_help(Cli::command());
            command.build();
            man_pages(&command, &dir)
        }
        #[cfg(feature = "fault-injection")]
        Command::PanicWorker { worker } => {
            call(&cli.socket, &Request::PanicWorker { worker }).map(drop)
        }
    }
}

fn plugin(socket: &Path, command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::List { json } => {
            show(socket, &Request::PluginList, json, |r: &Vec<_>| {
                render::plugin_list(r)
            })?;
        }
        PluginCommand::Show { name, json } => {
            show(
                socket,
                &Request::PluginShow { name },
                json,
                render::plugin_show,
            )?;
        }
        PluginCommand::Reload {
            name,
            path,
            config_json,
            reset_counters,
        } => {
            // The daemon resolves nothing against the CLI's directory: send an absolute path.
            let path = path
                .map(|p| std::path::absolute(&p).with_context(|| p.display().to_string()))
                .transpose()?
                .map(|p| p.display().to_string());
            let request = Request::PluginReload {
                name,
                path,
                config_json,
                reset_counters,
            };
            let data = call(socket, &request)?;
            let report: PluginReport = serde_json::from_value(data)?;
            println!(
                "plugin {} reloaded from {} (interface {}, hooks {})",
                report.name,
                report.path,
                report.interface,
                report.hooks.join(",")
            );
        }
        PluginCommand::Test(args) => plugin_test(&args)?,
    }
    Ok(())
}

/// `vtep plugin test`: loads the plugin as `vtep run` would, replays the capture through it,
/// prints what happened and checks the expectations.
fn plugin_test(args: &PluginTest) -> Result<()> {
    let name = args
        .wasm
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut spec = PluginSpec::new(name, &args.wasm);
    spec.config = match (&args.config, &args.config_file) {
        (Some(json), _) => {
            let value: serde_json::Value = serde_json::from_str(json).context("--config")?;
            if !value.is_object() {
                bail!("--config: the plugin's config must be a JSON object");
            }
            json.clone()
        }
        (None, Some(file)) => config_file_json(file)?,
        (None, None) => "{}".to_owned(),
    };
    spec.on_error = match args.on_error {
        TestOnError::Pass => OnError::Pass,
        TestOnError::Drop => OnError::Drop,
    };
    if args.direction == TestDirection::FromUnderlay && args.remote.is_none() {
        bail!("--direction from-underlay: say which VTEP the frames come from with --remote");
    }
    if let Some(us) = args.budget_us {
        spec.sandbox = spec
            .sandbox
            .with_time_budget(std::time::Duration::from_micros(us));
    }
    let runtime = wasm_vtep::plugin::Runtime::new()?;
    let plugin =
        Plugin::load(&runtime, spec).with_context(|| format!("loading {}", args.wasm.display()))?;
    let options = ReplayOptions {
        vni: args
            .vni
            .map(|v| Vni::new(v).with_context(|| format!("--vni {v}")))
            .transpose()?,
        direction: match args.direction {
            TestDirection::FromPort => Direction::FromPort,
            TestDirection::FromUnderlay => Direction::FromUnderlay,
        },
        remote: args.remote,
        vxlan_port: args.vxlan_port,
    };
    let capture =
        CaptureFile::open(&args.pcap).with_context(|| format!("{}", args.pcap.display()))?;
    let mut replay = Replay::new(plugin, options);
    let mut frames = Vec::new();
    for packet in capture {
        match packet {
            Ok(packet) => {
                let result = replay.frame(&packet);
                if args.json {
                    frames.push(result);
                } else {
                    println!("{}", text::frame_line(&result));
                }
            }
            Err(e) => replay.unreadable(e.to_string()),
        }
    }
    let totals = replay.totals();
    let report = replay.report();
    if args.json {
        let out = serde_json::json!({ "frames": frames, "totals": totals, "plugin": report });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", text::totals(totals, report.as_ref()));
    }
    for (what, expected, got) in [
        ("dropped", args.expect_drop, totals.dropped),
        ("passed", args.expect_pass, totals.passed),
    ] {
        if let Some(expected) = expected
            && expected != got
        {
            bail!("expected {expected} frames {what}, {got} were");
        }
    }
    if !args.allow_failures {
        // A CI gate must not pass on verdicts a failing plugin never gave.
        let failed: u64 = ["traps", "timeouts", "out_of_memory", "invalid"]
            .iter()
            .filter_map(|k| report.as_ref()?.calls.counters.get(*k))
            .sum();
        if failed > 0 {
            bail!(
                "{failed} calls failed (their frames got the on_error verdict; --allow-failures to accept)"
            );
        }
        if let Some(why) = &totals.unreadable {
            bail!("the capture could not be read to its end: {why} (--allow-failures to accept)");
        }
    }
    Ok(())
}

/// The plugin `config` in `file`, as the JSON text `init` takes: a JSON object as it is, a
/// TOML table (a `.toml` file) converted.
fn config_file_json(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let value: serde_json::Value = if file.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: TOML", file.display()))?;
        serde_json::to_value(table)?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: JSON", file.display()))?
    };
    if !value.is_object() {
        bail!("{}: the plugin's config must be an object", file.display());
    }
    Ok(value.to_string())
}

/// `command` and its subcommands without clap's `help` subcommand: on a man page it would be a
/// page per subcommand saying what `--help` says (`vtep-help-fdb-add(8)` and so on).
fn without_help(command: clap::Command) -> clap::Command {
    command
        .disable_help_subcommand(true)
        .mut_subcommands(without_help)
}

/// Writes the page of `command` and, recursively, of its subcommands (named as the pages
/// that list them refer to them: `vtep-plugin-test`) into `dir`.
fn man_pages(command: &clap::Command, dir: &Path) -> Result<()> {
    let name = command.get_name().to_owned();
    let path = dir.join(format!("{name}.8"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .render(&mut page)?;
    std::fs::write(&path, page).with_context(|| path.display().to_string())?;
    for sub in command.get_subcommands() {
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        man_pages(&sub, dir)?;
    }
    Ok(())
}

fn config_name(config: &Config) -> String {
    format!("vtep {}", config.settings.local)
}

/// Loads, validates and checks interfaces; the error is the one line that names the field.
fn load(path: &Path) -> Result<Config> {
    let config = Config::load(path)?;
    config.check_interfaces(|name| wasm_vtep::io::if_index(name).is_ok())?;
    Ok(config)
}

fn fdb(socket: &Path, command: FdbCommand) -> Result<()> {
    match command {
        FdbCommand::Show { vni, json } => {
            show(socket, &Request::FdbShow { vni }, json, |r: &Vec<_>| {
                render::fdb(r)
            })?;
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

/// Asks the daemon and prints its reply: as JSON (`--json`), or read as a `T` and rendered for
/// people.
fn show<T: DeserializeOwned>(
    socket: &Path,
    request: &Request,
    json: bool,
    render: impl Fn(&T) -> String,
) -> Result<()> {
    let data = call(socket, request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
    } else {
        print!("{}", render(&serde_json::from_value(data)?));
    }
    Ok(())
}

fn call(socket: &Path, request: &Request) -> Result<serde_json::Value> {
    let response = control::client::call(socket, request)
        .with_context(|| "is the daemon running? (vtep run --config FILE)")?;
    match response {
        Response::Ok(data) => Ok(data),
        Response::Error(e) => bail!("{e}"),
    }
}
