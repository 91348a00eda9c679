#!/usr/bin/env bash
# Runs the underlay fuzz target for N seconds (default 300) on stable Rust: the same coverage
# instrumentation cargo-fuzz applies (SanitizerCoverage), without its nightly-only sanitizers,
# plus debug assertions and overflow checks. With a nightly toolchain `cargo fuzz run underlay`
# works as usual. New inputs go to a scratch corpus seeded from corpus/underlay.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-300}"
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros.
cargo build --release --target "$host" --target-dir target
scratch="$(mktemp -d)"
cp corpus/underlay/* "$scratch/"
"target/$host/release/underlay" -max_total_time="$seconds" -max_len=70000 "$scratch"
