#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, then every test, the network
# tests in namespaces included (they need root). Run from anywhere in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh
cargo fmt --all -- --check
# The daemon the tests run has the fault-injection hook (`vtep panic-worker`) that the worker
# supervision tests use; every build here turns it on, so that one build serves them all. A
# release build of the daemon (`cargo build --release --bin vtep`) never has it.
features="--features wasm-vtep/fault-injection"
cargo clippy --workspace --all-targets --locked $features -- -D warnings
# The network tests start the real daemon: build it first.
cargo build --locked --bin vtep $features
# The fuzz target must keep building (here without instrumentation; host/fuzz/run.sh fuzzes).
cargo build --locked -p wasm-vtep-fuzz $features
cargo test --workspace --locked $features
# The plugin SDK is a crate a vendor can depend on: it packages and builds on its own, outside
# the workspace (--allow-dirty: a developer's uncommitted work is packaged as it is).
cargo package --locked --allow-dirty -p wasm-vtep-plugin-sdk
# The benchmark in its short mode (a few seconds per case, one round), only to prove it works:
# it fails when something is broken, never on slow numbers. CI runs it on the debug build it
# already has (a release build of everything would double CI's compile time); measure with
# `cargo build --release --bin vtep && cargo run --release -p wasm-vtep-tests --bin netbench`.
cargo run --locked -p wasm-vtep-tests $features --bin netbench -- --quick --out target/netbench/ci
# The EVPN benchmark likewise, small (two samples of each convergence, a RIB of 1,000 MACs):
# measure with `cargo run --release -p wasm-vtep-tests --bin evpnbench` on a quiet machine.
cargo run --locked -p wasm-vtep-tests $features --bin evpnbench -- --samples 2 --macs 1000
