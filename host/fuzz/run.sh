#!/usr/bin/env bash
# Runs a fuzz target for N seconds on stable Rust: `run.sh [TARGET] [SECONDS]`, TARGET one of
# underlay (the default), config, control, plugin_returns; SECONDS 300 unless given
# (`run.sh 60` runs underlay for a minute). The same coverage instrumentation cargo-fuzz
# applies (SanitizerCoverage), without its nightly-only sanitizers, plus debug assertions and
# overflow checks. With a nightly toolchain `cargo fuzz run TARGET` works as usual (for
# plugin_returns, build the plugin first as below). New inputs go to a scratch corpus seeded
# from corpus/TARGET; libFuzzer's final statistics are printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
target=underlay
if [[ $# -gt 0 && ! "$1" =~ ^[0-9]+$ ]]; then
    target="$1"
    shift
fi
seconds="${1:-300}"
case "$target" in
underlay) max_len=70000 ;;
config) max_len=16384 ;;
control) max_len=70000 ;; # past the 64 KiB request limit
plugin_returns) max_len=4096 ;;
*)
    echo "run.sh: no fuzz target $target (underlay, config, control, plugin_returns)" >&2
    exit 2
    ;;
esac
if [[ "$target" == plugin_returns ]]; then
    # The plugin whose returns the target scripts: a plain wasm build, without the flags below.
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo build --release \
        --target wasm32-unknown-unknown -p misbehave --target-dir target/plugins
    export WASM_VTEP_FUZZ_MISBEHAVE="$PWD/target/plugins/wasm32-unknown-unknown/release/misbehave.wasm"
fi
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros.
cargo build --release --target "$host" --target-dir target
scratch="$(mktemp -d)"
cp "corpus/$target"/* "$scratch/"
echo "run.sh: fuzzing $target for ${seconds}s, corpus in $scratch" >&2
"target/$host/release/$target" -max_total_time="$seconds" -max_len="$max_len" \
    -print_final_stats=1 "$scratch"
