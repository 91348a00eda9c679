//! The Debian package, as `host/debian/build-deb.sh` makes it (built here, once per run, from
//! the debug build, to stay in CI's time: a release is the same command without `--profile`):
//! its metadata (`dpkg-deb -f`), its contents (`dpkg-deb -c`: the daemon, the unit, the example
//! configuration as a conffile, the example plugins, man pages, completions, READMEs), its
//! maintainer scripts (the service neither enabled nor started by an install), lintian's
//! verdict (no error, no warning nobody accepted), and the packaged files at work, extracted
//! with `dpkg-deb -x` into a temporary directory and never installed: `vtep --version`, `vtep
//! check` on the packaged configuration (in a namespace with the interfaces it names), and
//! every packaged plugin loaded by the packaged binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use wasm_vtep_tests::{Netns, built_once, vtep_bin};

/// The package, built by `host/debian/build-deb.sh --profile dev` once for this test binary.
///
/// That build is the daemon without the test feature, and cargo puts it where the daemon the
/// other network tests run is (target/debug/vtep): that one is put back afterwards. (Test
/// binaries run one after another, so no other test runs that daemon meanwhile; `cargo test`
/// holds no lock on the target directory while its tests run.)
fn package() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built_once(&BUILT, build)
}

fn build() -> Result<PathBuf> {
    let daemon = vtep_bin().ok();
    let saved = match &daemon {
        Some(path) => Some(std::fs::read(path).context("saving the tests' daemon")?),
        None => None,
    };
    let out = Command::new(wasm_vtep_testkit::workspace().join("host/debian/build-deb.sh"))
        .args(["--profile", "dev"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running host/debian/build-deb.sh")?;
    if let (Some(path), Some(bytes)) = (&daemon, &saved) {
        // A new file renamed over the packaged build's: the old inode is cargo's own.
        let fresh = path.with_extension("restoring");
        std::fs::write(&fresh, bytes)?;
        std::fs::set_permissions(&fresh, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::rename(&fresh, path).context("putting the tests' daemon back")?;
    }
    ensure!(
        out.status.success(),
        "host/debian/build-deb.sh failed: {}",
        out.status
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        path.file_name().and_then(|n| n.to_str())
            == Some(&format!(
                "wasm-vtep_{}-1_amd64.deb",
                env!("CARGO_PKG_VERSION")
            )),
        "build-deb.sh printed {}",
        path.display()
    );
    ensure!(path.is_file(), "{} is not a file", path.display());
    Ok(path)
}

/// `program args`, which must succeed: its stdout.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_package_has_its_metadata_and_files() -> Result<()> {
    let deb = package()?;
    let deb = deb.to_str().context("a UTF-8 path")?;
    let field = |name: &str| -> Result<String> {
        Ok(output("dpkg-deb", &["-f", deb, name])?.trim().to_owned())
    };
    ensure!(field("Package")? == "wasm-vtep");
    ensure!(field("Version")? == format!("{}-1", env!("CARGO_PKG_VERSION")));
    ensure!(field("Architecture")? == "amd64");
    ensure!(field("Section")? == "net");
    let depends = field("Depends")?;
    ensure!(depends.contains("libc6"), "Depends: {depends}");
    ensure!(field("Description")?.contains("VXLAN tunnel endpoint"));

    // Every file, with its mode.
    let listing = output("dpkg-deb", &["-c", deb])?;
    let mode_of = |path: &str| -> Option<String> {
        listing.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let mode = words.next()?;
            (words.last()? == path).then(|| mode.to_owned())
        })
    };
    let expected = [
        ("./usr/bin/vtep", "-rwxr-xr-x"),
        ("./etc/wasm-vtep/vtep.toml", "-rw-r--r--"),
        ("./usr/lib/systemd/system/wasm-vtep.service", "-rw-r--r--"),
        ("./usr/share/man/man8/vtep.8.gz", "-rw-r--r--"),
        ("./usr/share/man/man8/vtep-run.8.gz", "-rw-r--r--"),
        ("./usr/share/man/man8/vtep-plugin-reload.8.gz", "-rw-r--r--"),
        ("./usr/share/bash-completion/completions/vtep", "-rw-r--r--"),
        ("./usr/share/zsh/vendor-completions/_vtep", "-rw-r--r--"),
        (
            "./usr/share/fish/vendor_completions.d/vtep.fish",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/wasm-vtep/copyright", "-rw-r--r--"),
        (
            "./usr/share/doc/wasm-vtep/changelog.Debian.gz",
            "-rw-r--r--",
        ),
    ];
    let mut wrong = Vec::new();
    for (path, mode) in expected {
        match mode_of(path) {
            Some(m) if m == mode => {}
            found => wrong.push(format!("{path}: {found:?}, expected {mode}")),
        }
    }
    // The paths the unit's Documentation= and the example configuration name.
    for readme in ["README.md", "plugin-sdk/README.md"] {
        let path = format!("./usr/share/doc/wasm-vtep/{readme}");
        if mode_of(&path).as_deref() != Some("-rw-r--r--") {
            wrong.push(format!("{path}: missing"));
        }
    }
    for plugin in [
        "vni_filter",
        "learn_guard",
        "adaptive_aging",
        "legacy_port_guard",
        "c_arp_guard",
    ] {
        let path = format!("./usr/lib/wasm-vtep/plugins/{plugin}.wasm");
        if mode_of(&path).as_deref() != Some("-rw-r--r--") {
            wrong.push(format!("{path}: missing"));
        }
    }
    ensure!(
        !listing.contains("misbehave"),
        "the test fixture plugin is packaged"
    );
    ensure!(wrong.is_empty(), "package contents: {wrong:#?}\n{listing}");

    // The configuration is a conffile (an edited one survives an upgrade); the unit is
    // neither enabled nor started by the install (the example names interfaces the machine
    // may not have).
    let control = tempfile::tempdir()?;
    output(
        "dpkg-deb",
        &["-e", deb, control.path().to_str().context("UTF-8")?],
    )?;
    let conffiles = std::fs::read_to_string(control.path().join("conffiles"))?;
    ensure!(
        conffiles.lines().any(|l| l == "/etc/wasm-vtep/vtep.toml"),
        "conffiles: {conffiles}"
    );
    // cargo-deb's scripts for a unit installed disabled and not started: enabled again on an
    // upgrade only if the admin had enabled it, restarted on an upgrade only if running.
    let postinst = std::fs::read_to_string(control.path().join("postinst"))?;
    ensure!(
        postinst.contains("deb-systemd-helper debian-installed wasm-vtep.service")
            && postinst.contains("deb-systemd-invoke try-restart wasm-vtep.service")
            && !postinst.contains("deb-systemd-invoke start")
            && !postinst.contains("_dh_action"),
        "the package enables or starts the service on install:\n{postinst}"
    );
    Ok(())
}

/// The warnings lintian may give, and why each stays.
const ACCEPTED_WARNINGS: [(&str, &str); 1] = [(
    "initial-upload-closes-no-bugs",
    "the package is not uploaded to Debian, so its first changelog entry closes no ITP bug",
)];

#[test]
fn lintian_finds_no_error_and_no_other_warning() -> Result<()> {
    let deb = package()?;
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .context("running lintian (tests/setup.sh installs it)")?;
    // Its exit status says whether it ran and found errors; its tags say what.
    let tags = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = tags.lines().filter(|l| l.starts_with("E:")).collect();
    ensure!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    let unexpected: Vec<&str> = tags
        .lines()
        .filter(|l| l.starts_with("W:"))
        .filter(|l| !ACCEPTED_WARNINGS.iter().any(|(tag, _)| l.contains(tag)))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "lintian warnings nobody has accepted:\n{}",
        unexpected.join("\n")
    );
    ensure!(
        out.status.success(),
        "lintian failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_packaged_binary_runs_its_packaged_configuration_and_plugins() -> Result<()> {
    let deb = package()?;
    let root = tempfile::tempdir()?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .status()?;
    ensure!(status.success(), "dpkg-deb -x: {status}");
    let vtep = root.path().join("usr/bin/vtep");
    let version = output(vtep.to_str().context("UTF-8")?, &["--version"])?;
    ensure!(
        version.trim() == format!("vtep {}", env!("CARGO_PKG_VERSION")),
        "vtep --version: {version}"
    );

    // `vtep check` resolves the interfaces the configuration names: a namespace has them.
    let ns = Netns::new("pkg")?;
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "vm1"])?;
    let config = root.path().join("etc/wasm-vtep/vtep.toml");
    let check = |config: &Path| -> Result<String> {
        let out = ns
            .command(vtep.to_str().context("UTF-8")?)
            .args(["check", "--config"])
            .arg(config)
            .output()?;
        if !out.status.success() {
            bail!(
                "vtep check {}: {}",
                config.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let said = check(&config)?;
    ensure!(said.contains("ok (1 VNIs, 1 ports, 0 plugins)"), "{said}");

    // Every packaged plugin, loaded and initialised by the packaged binary.
    let plugins = root.path().join("usr/lib/wasm-vtep/plugins");
    let mut with_plugins = std::fs::read_to_string(&config)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&plugins)? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a plugin's name")?
            .replace('_', "-");
        // Those that need a configuration get one.
        let config = match name.as_str() {
            "legacy-port-guard" => "config = { drop_udp_ports = [9] }\n",
            "c-arp-guard" => "config = { protect = [\"192.0.2.1\"] }\n",
            _ => "",
        };
        with_plugins.push_str(&format!(
            "\n[[plugin]]\nname = \"{name}\"\npath = {:?}\n{config}",
            path.display().to_string()
        ));
        names.push(name);
    }
    ensure!(names.len() == 5, "plugins: {names:?}");
    let edited = root.path().join("with-plugins.toml");
    std::fs::write(&edited, with_plugins)?;
    let said = check(&edited)?;
    ensure!(said.contains("5 plugins"), "{said}");
    Ok(())
}
