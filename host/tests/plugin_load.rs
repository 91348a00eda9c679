//! Loading plugins: modules and components, the interface version check, bad bytes, imports
//! the host does not provide, and `init` that refuses its configuration (in the library and
//! through `vtep run` / `vtep check`).

use std::path::Path;
use std::process::Command;

use wasm_vtep::config::PluginSpec;
use wasm_vtep::plugin::{LoadError, Plugin, Runtime, SUPPORTED_VERSIONS, load};
use wasm_vtep_testkit::plugins::wasm;
use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve};

/// The interface as the host's bindings see it, read from the one definition.
fn wit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/wit/plugin.wit");
    std::fs::read_to_string(path).expect("plugin-sdk/wit/plugin.wit")
}

/// The frozen interface 0.1.0, which the host still loads.
fn wit_0_1_0_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/wit-0.1.0/plugin.wit");
    std::fs::read_to_string(path).expect("plugin-sdk/wit-0.1.0/plugin.wit")
}

/// A component of the `plugin` world of `wit` whose functions all trap: the shape of a plugin
/// built against that WIT, made without a compiler.
fn component_of(wit: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let pkg = resolve.push_str("plugin.wit", wit).expect("the WIT parses");
    let world = resolve
        .select_world(&[pkg], Some("plugin"))
        .expect("a plugin world");
    let mut module = dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .expect("metadata embeds");
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .expect("the dummy module encodes")
}

fn load_bytes(bytes: &[u8]) -> Result<Plugin, LoadError> {
    let runtime = Runtime::new().expect("the runtime starts");
    Plugin::from_bytes(&runtime, PluginSpec::new("t", "t.wasm"), bytes)
}

fn misbehave(config: &str) -> PluginSpec {
    let mut spec = PluginSpec::new("m", wasm("misbehave"));
    spec.config = config.to_owned();
    spec
}

#[test]
fn the_interface_versions_of_the_wits_are_supported() {
    for (wit, version) in [
        (wit_text(), SUPPORTED_VERSIONS.last()),
        (wit_0_1_0_text(), SUPPORTED_VERSIONS.first()),
    ] {
        let version = version.expect("a supported version");
        assert!(
            wit.contains(&format!("package wasm-vtep:plugin@{version};")),
            "the host's SUPPORTED_VERSIONS name the version each WIT declares ({version})"
        );
    }
}

#[test]
fn a_plugin_for_another_version_is_refused_naming_both() {
    let wit = wit_text().replace("wasm-vtep:plugin@0.2.0", "wasm-vtep:plugin@0.3.0");
    let e = load_bytes(&component_of(&wit)).unwrap_err();
    assert!(matches!(e, LoadError::Version { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "plugin is built for wasm-vtep:plugin@0.3.0; this host supports 0.1.0, 0.2.0"
    );
    // The same shape at a supported version gets past the check: it links and instantiates,
    // and then fails in `init` (every function of a dummy traps), not at the version; so does
    // a plugin of the frozen 0.1.0 interface.
    for wit in [wit_text(), wit_0_1_0_text()] {
        let e = load_bytes(&component_of(&wit)).unwrap_err();
        assert!(matches!(e, LoadError::InitCall(_)), "{e}");
    }
}

#[test]
fn bad_bytes_are_refused_with_a_reason() {
    let not_wasm = load_bytes(b"#!/bin/sh\necho plugin\n").unwrap_err();
    assert_eq!(
        not_wasm.to_string(),
        "not a WebAssembly module or component (bad magic or version)"
    );
    assert!(matches!(load_bytes(b""), Err(LoadError::NotWasm)));
    // A valid, empty core module: no component type (not made with the SDK), so it becomes a
    // component that exports nothing.
    let empty = load_bytes(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(empty, LoadError::NotAPlugin), "{empty}");
    // A real plugin cut short.
    let bytes = std::fs::read(wasm("misbehave")).unwrap();
    let cut = load_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(cut, LoadError::Componentize(_)), "{cut}");
    // A component cut short.
    let component = load::componentize(&bytes).unwrap().into_owned();
    let cut = load_bytes(&component[..component.len() / 3]).unwrap_err();
    assert!(matches!(cut, LoadError::Compile(_)), "{cut}");
    // Flipped bytes in the code never crash the host: refused, or loaded and sandboxed.
    for at in [bytes.len() / 3, bytes.len() / 2, bytes.len() * 2 / 3] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0xff;
        let _ = load_bytes(&flipped);
    }
    let runtime = Runtime::new().unwrap();
    let missing = Plugin::load(&runtime, PluginSpec::new("t", "/nonexistent/p.wasm")).unwrap_err();
    assert!(
        missing.to_string().starts_with("/nonexistent/p.wasm: "),
        "{missing}"
    );
}

#[test]
fn a_component_that_is_no_plugin_is_refused() {
    let wit =
        "package test:other@0.1.0;\ninterface api { f: func(); }\nworld plugin { export api; }\n";
    let e = load_bytes(&component_of(wit)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a wasm-vtep plugin: it exports no wasm-vtep:plugin/hooks interface"
    );
}

#[test]
fn imports_the_host_does_not_provide_are_refused() {
    // A plugin that wants one more interface (as a WASI build wants wasi:cli and friends).
    let wit = wit_text().replace(
        "world plugin {",
        "interface sockets { connect: func(addr: string) -> bool; }\nworld plugin {\n    import sockets;",
    );
    let e = load_bytes(&component_of(&wit)).unwrap_err();
    assert!(matches!(e, LoadError::Link(_)), "{e}");
    assert!(
        e.to_string().contains("wasm-vtep:plugin/sockets@0.2.0"),
        "{e}"
    );
}

#[test]
fn core_modules_and_components_both_load() {
    let runtime = Runtime::new().unwrap();
    let module = Plugin::load(&runtime, misbehave(r#"{"mode":"pass"}"#)).unwrap();
    assert_eq!(module.report().hooks, ["filter", "learn", "age"]);
    assert_eq!(module.report().interface, "0.2.0");
    let bytes = std::fs::read(wasm("misbehave")).unwrap();
    let component = load::componentize(&bytes).unwrap();
    let p = Plugin::from_bytes(&runtime, misbehave(r#"{"mode":"pass"}"#), &component).unwrap();
    assert_eq!(p.report().state, "attached");
}

#[test]
fn the_example_plugins_load_with_their_hooks() {
    let runtime = Runtime::new().unwrap();
    for (name, hooks) in [
        ("vni-filter", "filter"),
        ("learn-guard", "learn"),
        ("adaptive-aging", "age"),
    ] {
        let p = Plugin::load(&runtime, PluginSpec::new(name, wasm(name)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.report().hooks, [hooks], "{name}");
    }
}

#[test]
fn a_plugin_that_fails_init_is_not_attached_and_says_why() {
    let runtime = Runtime::new().unwrap();
    let e = Plugin::load(&runtime, misbehave(r#"{"mode":"fail-init"}"#)).unwrap_err();
    assert!(matches!(e, LoadError::Init(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "plugin init failed: misbehave: refusing to start, as configured"
    );
    // A configuration the plugin cannot read is its own init error, naming the field.
    let e = Plugin::load(&runtime, misbehave(r#"{"mode":"pass","colour":1}"#)).unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
}

/// A configuration with one port that exists everywhere (`lo`) and this plugin table.
fn config_file(dir: &Path, plugin: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("a temporary directory");
    let file = dir.join("vtep.toml");
    let text = format!(
        "[underlay]\nlocal = \"198.18.0.1\"\n[control]\nsocket = \"{}\"\n\
         [[vni]]\nid = 5001\nports = [\"lo\"]\n{plugin}",
        dir.join("vtep.sock").display()
    );
    std::fs::write(&file, text).expect("the configuration is written");
    file
}

#[test]
fn vtep_run_and_check_say_why_a_plugin_is_not_attached() {
    let dir = std::env::temp_dir().join(format!("wv-plugin-load-{}", std::process::id()));
    let plugin = format!(
        "[[plugin]]\nname = \"grumpy\"\npath = \"{}\"\nconfig = {{ mode = \"fail-init\" }}\n",
        wasm("misbehave").display()
    );
    let file = config_file(&dir, &plugin);
    for cmd in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vtep"))
            .args([cmd, "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "vtep {cmd} must fail");
        assert!(
            stderr.contains(
                "plugin \"grumpy\": plugin init failed: misbehave: refusing to start, as configured"
            ),
            "vtep {cmd}: {stderr}"
        );
    }
    let good = format!(
        "[[plugin]]\nname = \"fine\"\npath = \"{}\"\nconfig = {{ mode = \"pass\" }}\n",
        wasm("misbehave").display()
    );
    let file = config_file(&dir, &good);
    let out = Command::new(env!("CARGO_BIN_EXE_vtep"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 plugins"));
}
