//! Generates GoBGP's API (messages and the `GobgpApi` client) from the .proto files that Debian's
//! `golang-github-osrg-gobgp-dev` installs, so that the repository never holds a copy of them.
//! `GOBGP_PROTO_DIR` points elsewhere (a GoBGP checkout's `api/`); `PROTOC` picks the compiler,
//! and `PROTOC_INCLUDE` the directory of `google/protobuf/*.proto` (protobuf-compiler's
//! `/usr/include` otherwise).

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DEBIAN_PROTO_DIR: &str = "/usr/share/gocode/src/github.com/osrg/gobgp/api";
const DEBIAN_PROTOC_INCLUDE: &str = "/usr/include";
const PROTOS: [&str; 3] = ["gobgp.proto", "attribute.proto", "capability.proto"];

fn main() -> ExitCode {
    println!("cargo:rerun-if-env-changed=GOBGP_PROTO_DIR");
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-env-changed=PROTOC_INCLUDE");
    match generate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // A build script's stderr is shown when it fails: say what to install.
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn generate() -> Result<(), String> {
    let proto_dir = proto_dir()?;
    let include = protoc_include()?;
    let protos: Vec<PathBuf> = PROTOS.iter().map(|name| proto_dir.join(name)).collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let mut config = tonic_prost_build::Config::new();
    // `prost::Name` impls: the full names that GoBGP's Any-packed messages are matched by.
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_with_config(config, &protos, &[proto_dir.clone(), include])
        .map_err(|e| {
            format!(
                "generating GoBGP's API from {}: {e} (protoc comes from the Debian package \
                 `protobuf-compiler`; set PROTOC to use another)",
                proto_dir.display()
            )
        })
}

/// `GOBGP_PROTO_DIR`, else the Debian package's directory; it must hold all of `PROTOS`.
fn proto_dir() -> Result<PathBuf, String> {
    let (dir, origin) = match env::var_os("GOBGP_PROTO_DIR") {
        Some(dir) => (PathBuf::from(dir), "GOBGP_PROTO_DIR"),
        None => (PathBuf::from(DEBIAN_PROTO_DIR), "the Debian package's path"),
    };
    match PROTOS.iter().find(|name| !dir.join(name).is_file()) {
        None => Ok(dir),
        Some(missing) => Err(format!(
            "GoBGP's API file {missing} is not in {} ({origin}): install the Debian package \
             `golang-github-osrg-gobgp-dev` (apt-get install golang-github-osrg-gobgp-dev), or set \
             GOBGP_PROTO_DIR to a directory holding {}",
            dir.display(),
            PROTOS.join(", ")
        )),
    }
}

/// Where `google/protobuf/any.proto` and the other well-known types are.
fn protoc_include() -> Result<PathBuf, String> {
    let dir = env::var_os("PROTOC_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_PROTOC_INCLUDE));
    if Path::new(&dir).join("google/protobuf/any.proto").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "google/protobuf/any.proto is not under {}: install the Debian package \
             `protobuf-compiler`, or set PROTOC_INCLUDE",
            dir.display()
        ))
    }
}
