//! The command line as a shell user meets it: completion scripts and the man page come from
//! the parser's own definitions (every subcommand in them, bash loads its script); output into
//! a pipe whose reader is gone (`| head`) ends quietly, as iproute2's does, instead of a
//! "Broken pipe" error or panic; log lines
//! carry no colour codes when stderr is not a terminal, and are JSON objects with
//! `--log-format json` (the logs here are the host's reports of a plugin that traps, from
//! `vtep plugin test` over a one-frame capture).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use wasm_vtep_testkit::plugins::wasm;
use wasm_vtep_tests::vtep_bin;

fn vtep(args: &[&str]) -> Result<Output> {
    Command::new(vtep_bin()?)
        .args(args)
        .output()
        .with_context(|| format!("running vtep {}", args.join(" ")))
}

fn stdout_of(args: &[&str]) -> Result<String> {
    let out = vtep(args)?;
    ensure!(
        out.status.success(),
        "vtep {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A path of this test's own under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wv-cli-{}-{name}", std::process::id()))
}

#[test]
fn completions_and_the_man_page_come_from_the_parser() -> Result<()> {
    let subcommands = [
        "run",
        "check",
        "fdb",
        "stats",
        "plugin",
        "evpn",
        "completions",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell])?;
        for sub in subcommands.iter().chain(&["reload", "test"]) {
            ensure!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
    // bash loads its script and registers the completion.
    let bin = vtep_bin()?;
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{}' completions bash) && complete -p vtep",
            bin.display()
        ))
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.contains("complete") && said.ends_with("vtep\n"),
        "bash: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = stdout_of(&["man"])?;
    ensure!(page.contains(".TH vtep 8"), "roff: {page:.200}");
    // Every page: the top one's and each subcommand's, each rendered by groff (man-db's
    // renderer) without a warning, and no page referring to one that is not there.
    let dir = scratch("man");
    let _ = std::fs::remove_dir_all(&dir);
    stdout_of(&["man", "--dir", &dir.display().to_string()])?;
    let mut pages: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    pages.sort();
    for wanted in [
        "vtep.8",
        "vtep-run.8",
        "vtep-plugin-test.8",
        "vtep-fdb-show.8",
        "vtep-man.8",
    ] {
        ensure!(
            pages.iter().any(|p| p == wanted),
            "{wanted} not among {pages:?}"
        );
    }
    for name in &pages {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)?;
        for reference in text.split("vtep\\-").skip(1) {
            // A reference is a page name then `(8)`, no space between.
            let Some((rest, _)) = reference
                .split_once("(8)")
                .filter(|(name, _)| !name.contains(char::is_whitespace))
            else {
                continue;
            };
            let target = format!("vtep-{}.8", rest.replace("\\-", "-"));
            ensure!(
                pages.contains(&target),
                "{name} refers to {target}, which is missing"
            );
        }
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .context("running groff (groff-base)")?;
        ensure!(
            out.status.success() && out.stderr.is_empty(),
            "groff on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["man"],
    ] {
        // A reader that is gone before the first write (as `head` is after its lines): the
        // write fails with EPIPE every time, not only when the output outgrows the pipe.
        let (reader, writer) = std::io::pipe()?;
        drop(reader);
        let out = Command::new(vtep_bin()?)
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(stderr.is_empty(), "vtep {}: {stderr}", args.join(" "));
        // Ended by SIGPIPE, as iproute2's commands are (a shell's pipeline ignores it).
        ensure!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "vtep {}: {}",
            args.join(" "),
            out.status
        );
    }
    Ok(())
}

/// A pcap file of one Ethernet frame (UDP from VM 1 to VM 2).
fn one_frame_capture(path: &Path) -> Result<()> {
    let frame = wasm_vtep_testkit::vm::udp(1, 2, 40000, 53, 18);
    let mut bytes = Vec::new();
    // The file header: magic, version 2.4, zone, accuracy, snapshot length, Ethernet.
    bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    for field in [0u32, 0, 65535, 1] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    let len = u32::try_from(frame.len())?;
    for field in [1u32, 0, len, len] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(&frame);
    std::fs::write(path, bytes)?;
    Ok(())
}

#[test]
fn logs_are_plain_off_a_terminal_and_json_on_request() -> Result<()> {
    let pcap = scratch("one-frame.pcap");
    one_frame_capture(&pcap)?;
    let misbehave = wasm("misbehave");
    let run = |format: &[&str]| -> Result<String> {
        let mut args = vec!["plugin", "test"];
        let (wasm, capture) = (misbehave.to_string_lossy(), pcap.to_string_lossy());
        args.extend([&*wasm, "--pcap", &*capture, "--vni", "5001"]);
        args.extend(["--config", r#"{"mode":"trap"}"#, "--allow-failures"]);
        args.extend(format);
        let out = vtep(&args)?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stderr)?)
    };
    let plain = run(&[])?;
    let json = run(&["--log-format", "json"])?;
    std::fs::remove_file(&pcap)?;
    ensure!(
        plain.contains("trap") && !plain.contains('\u{1b}'),
        "plain logs off a terminal: {plain:?}"
    );
    let lines: Vec<&str> = json.lines().filter(|l| !l.is_empty()).collect();
    ensure!(!lines.is_empty(), "JSON logs: none");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("a JSON log line: {line}"))?;
        ensure!(
            v["level"].is_string() && v["fields"].is_object(),
            "a log object: {line}"
        );
    }
    Ok(())
}
