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
# says (a plain `cargo deb` lacks those generated files and stops). The tests package the
# debug build they already have (`--profile dev`, which cargo-deb warns is not for releases).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

die() {
  echo "host/debian/build-deb.sh: $*" >&2
  exit 2
}

profile=release
case "$#:${1:-}" in
0:) ;;
2:--profile) profile="$2" ;;
*) die "usage: host/debian/build-deb.sh [--profile PROFILE]" ;;
esac
[[ -n "$profile" ]] || die "--profile needs a name"
case "$profile" in
dev) profile_dir=debug ;;
*) profile_dir="$profile" ;;
esac
# Wherever cargo builds (CARGO_TARGET_DIR, build.target-dir in a cargo config, ...).
metadata="$(cargo metadata --format-version 1 --no-deps --locked)"
target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
[[ -d "$target_dir" ]] || mkdir -p "$target_dir"

cargo build --locked --profile "$profile" -p wasm-vtep --bin vtep >&2
vtep="$target_dir/$profile_dir/vtep"
[[ -x "$vtep" ]] || die "$vtep was not built"

# What the package ships besides the binary and the files in git, made afresh where
# host/Cargo.toml's assets name them (git ignores the directory).
assets="$root/host/debian/generated"
rm -rf "$assets"
mkdir -p "$assets/plugins" "$assets/completions"
# Into the tests' plugin build directory (tests/kit), so that the two builds are one. Each
# builder's output is taken whole first, so that its failure stops this script (set -e).
rust_plugins="$(CARGO_TARGET_DIR="$target_dir/plugins" plugins/build.sh --locked)"
c_plugin="$(plugins/c-arp-guard/build.sh "$target_dir/plugins/c-arp-guard")"
mapfile -t wasm <<<"$rust_plugins"
[[ "${#wasm[@]}" -eq 4 ]] || die "plugins/build.sh gave ${#wasm[@]} plugins, not 4"
cp "${wasm[@]}" "$c_plugin" "$assets/plugins/"
"$vtep" man --dir "$assets/man"
"$vtep" completions bash >"$assets/completions/vtep.bash"
"$vtep" completions zsh >"$assets/completions/_vtep"
"$vtep" completions fish >"$assets/completions/vtep.fish"

# cargo-deb's progress goes to stderr; it prints the package's path on stdout. The binary is
# stripped: the release profile's line tables (for symbolic backtraces) stay in the build, as
# cargo-deb's -dbgsym package of them lacks what lintian requires of a package.
cargo deb --no-build --strip --profile "$profile" -p wasm-vtep
