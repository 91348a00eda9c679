#!/usr/bin/env bash
# Builds the example plugins as wasm modules (wasm32-unknown-unknown, release) and prints the
# absolute path of each, one a line, in the order vni-filter, learn-guard, adaptive-aging, legacy-port-guard.
# Cargo's output goes to stderr. Extra arguments go to `cargo build` (e.g. --locked).
# Tests that load plugins run this first: `mapfile -t wasm < <(plugins/build.sh)`.
set -euo pipefail
cd "$(dirname "$0")/.."

plugins=(vni-filter learn-guard adaptive-aging legacy-port-guard)
args=()
for p in "${plugins[@]}"; do
    args+=(-p "$p")
done
"${CARGO:-cargo}" build --target wasm32-unknown-unknown --release "${args[@]}" "$@" >&2

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
/*) ;;
*) target_dir="$PWD/$target_dir" ;;
esac
for p in "${plugins[@]}"; do
    wasm="$target_dir/wasm32-unknown-unknown/release/${p//-/_}.wasm"
    [[ -f "$wasm" ]] || { echo "plugins/build.sh: $wasm was not built" >&2; exit 1; }
    echo "$wasm"
done
