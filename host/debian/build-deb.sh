#!/usr/bin/env bash
# Builds the Debian package of wasm-vtep, target/debian/wasm-vtep_<version>-1_amd64.deb, and
# prints its path (everything else goes to stderr):
#
#   host/debian/build-deb.sh [--profile PROFILE]
#
# After tests/setup.sh (cargo-deb, the wasm target, clang and wit-bindgen for the C plugin).
# It builds the daemon (release, or PROFILE), the example plugins (wasm, always release), then
# asks the daemon it built for its man pages and shell completions, so that they describe that
# very CLI, and has `cargo deb` package it all as [package.metadata.deb] in host/Cargo.toml
# says. The tests package the debug build they already have (`--profile dev`, which cargo-deb
# warns is not for releases); a release is built with no option.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

profile=release
case "${1:-}" in
"") ;;
--profile)
  [[ -n "${2:-}" ]] || { echo "build-deb.sh: --profile needs a name" >&2; exit 2; }
  profile="$2"
  ;;
*)
  echo "usage: host/debian/build-deb.sh [--profile PROFILE]" >&2
  exit 2
  ;;
esac
case "$profile" in
dev) profile_dir=debug ;;
*) profile_dir="$profile" ;;
esac
target_dir="${CARGO_TARGET_DIR:-$root/target}"

cargo build --locked --profile "$profile" -p wasm-vtep --bin vtep >&2
vtep="$target_dir/$profile_dir/vtep"

# What the package ships besides the binary and the files in git, made afresh where
# host/Cargo.toml's assets name them (git ignores the directory).
assets="$root/host/debian/generated"
rm -rf "$assets"
mkdir -p "$assets/plugins" "$assets/completions"
# Into the tests' plugin build directory (tests/kit), so that the two builds are one.
mapfile -t wasm < <(CARGO_TARGET_DIR="$target_dir/plugins" plugins/build.sh --locked)
cp "${wasm[@]}" "$assets/plugins/"
cp "$(plugins/c-arp-guard/build.sh "$target_dir/plugins/c-arp-guard")" "$assets/plugins/"
"$vtep" man --dir "$assets/man"
"$vtep" completions bash >"$assets/completions/vtep.bash"
"$vtep" completions zsh >"$assets/completions/_vtep"
"$vtep" completions fish >"$assets/completions/vtep.fish"

# cargo-deb's own progress goes to stderr; its last line on stdout is the package's path.
cargo deb --no-build --profile "$profile" -p wasm-vtep
