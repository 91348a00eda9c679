//! `componentize` on the real plugins, built by `plugins/build.sh` as the host's tests build
//! them: each becomes a valid component that exports `hooks` at the SDK's interface version
//! and imports nothing but the `host` interface (and the types it uses). And modules that
//! would need more than that are refused.

use std::path::PathBuf;
use std::process::Command;

use wasm_vtep_plugin_sdk::{INTERFACE_VERSION, componentize};

fn build_plugins() -> Vec<PathBuf> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/build.sh");
    let out = Command::new(script).output().expect("run plugins/build.sh");
    assert!(
        out.status.success(),
        "plugins/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths: Vec<PathBuf> = String::from_utf8(out.stdout)
        .expect("paths in UTF-8")
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    paths
}

/// The names of the component's imported and exported interfaces, as `wit-component` decodes
/// its type.
fn world_of(component: &[u8]) -> (Vec<String>, Vec<String>) {
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(component).expect("decode the component's type")
    else {
        panic!("not a component");
    };
    let world = &resolve.worlds[world];
    let names = |items: &mut dyn Iterator<Item = _>| {
        let mut v: Vec<String> = items.map(|k| resolve.name_world_key(k)).collect();
        v.sort();
        v
    };
    (
        names(&mut world.imports.keys()),
        names(&mut world.exports.keys()),
    )
}

#[test]
fn the_plugins_become_components_that_import_only_the_host() {
    for path in build_plugins() {
        // The one example built from the frozen 0.1.0 WIT, without this SDK.
        let legacy = path.ends_with("legacy_port_guard.wasm");
        let version = if legacy { "0.1.0" } else { INTERFACE_VERSION };
        let core = std::fs::read(&path).unwrap();
        let component = componentize(&core).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        wasmparser::Validator::new()
            .validate_all(&component)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (imports, exports) = world_of(&component);
        assert_eq!(
            imports,
            [
                format!("wasm-vtep:plugin/host@{version}"),
                format!("wasm-vtep:plugin/types@{version}"),
            ],
            "{}",
            path.display()
        );
        assert_eq!(
            exports,
            [format!("wasm-vtep:plugin/hooks@{version}")],
            "{}",
            path.display()
        );
        eprintln!(
            "{}: core module {} bytes, component {} bytes",
            path.display(),
            core.len(),
            component.len()
        );
    }
}

/// A core module importing `module`.`name` as a function `() -> ()`.
fn module_importing(module: &str, name: &str) -> Vec<u8> {
    use wasm_encoder::{EntityType, ImportSection, Module, TypeSection};
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut imports = ImportSection::new();
    imports.import(module, name, EntityType::Function(0));
    let mut m = Module::new();
    m.section(&types).section(&imports);
    m.finish()
}

#[test]
fn modules_that_need_wasi_or_native_symbols_are_refused() {
    for (module, name) in [("wasi_snapshot_preview1", "fd_write"), ("env", "malloc")] {
        let err = componentize(&module_importing(module, name)).unwrap_err();
        assert!(err.contains(module), "{module}: {err}");
    }
}

#[test]
fn garbage_is_refused_not_a_panic() {
    for bytes in [
        &b""[..],
        b"\0asm",
        b"\0asm\x01\0\0\0\x01",
        b"not wasm at all",
    ] {
        assert!(componentize(bytes).is_err());
    }
}
