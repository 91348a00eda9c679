#!/usr/bin/env bash
# Builds the C plugin c-arp-guard: generates its bindings from plugin-sdk/wit with wit-bindgen's
# C generator into OUT_DIR, compiles and links them with arp_guard.c for wasm32 against
# Debian's wasi-libc, and prints the absolute path of the module, OUT_DIR/c_arp_guard.wasm.
# Everything else goes to stderr. README.md explains each step and flag.
#
#   plugins/c-arp-guard/build.sh target/plugins/c-arp-guard
#
# Tools: clang, wasm-ld (lld), wasi-libc and compiler-rt's wasm32 builtins from Debian, and
# wit-bindgen-cli 0.61 from crates.io (tests/setup.sh installs them all). WASM_CC and
# WIT_BINDGEN name other binaries (WASM_CC=clang-19); not CC, which usually means the host's
# compiler.
set -euo pipefail

die() {
  echo "plugins/c-arp-guard/build.sh: $*" >&2
  exit 1
}

[[ $# -eq 1 && -n "$1" ]] || die "usage: build.sh OUT_DIR"
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../plugin-sdk/wit"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

cc="${WASM_CC:-clang}"
wit_bindgen="${WIT_BINDGEN:-wit-bindgen}"
# wasm32-wasi is clang 14's name for what newer clangs call wasm32-wasip1; both find Debian's
# wasi-libc (/usr/lib/wasm32-wasi, /usr/include/wasm32-wasi) without a --sysroot.
target=--target=wasm32-wasi

# The tools, each checked with the package that brings it.
command -v "$wit_bindgen" >/dev/null 2>&1 ||
  die "$wit_bindgen not found: cargo install --locked wit-bindgen-cli --version 0.61.1"
version="$("$wit_bindgen" --version)"
# The generator of the Rust SDK's wit-bindgen (0.61): the same canonical ABI code and a
# component-type section the host's wit-component (0.254) reads.
[[ "$version" == "wit-bindgen-cli 0.61."* ]] ||
  die "$wit_bindgen is \"$version\"; 0.61 is needed: cargo install --locked wit-bindgen-cli --version 0.61.1"
command -v "$cc" >/dev/null 2>&1 || die "$cc not found: apt-get install clang"
[[ "$("$cc" --version 2>/dev/null)" == *clang* ]] || die "$cc is not clang (no other C compiler targets wasm32 here)"
[[ "$("$cc" "$target" -print-prog-name=wasm-ld)" == /* ]] ||
  die "wasm-ld (the linker $cc uses for wasm32) not found: apt-get install lld"
[[ "$("$cc" "$target" -print-file-name=libc.a)" == /* ]] ||
  die "wasi-libc's libc.a not found for $cc $target: apt-get install wasi-libc"
[[ -f "$("$cc" "$target" -print-libgcc-file-name)" ]] ||
  die "compiler-rt's wasm32 builtins not found for $cc: apt-get install libclang-rt-dev-wasm32"

# 1. Bindings: plugin.h, plugin.c and plugin_component_type.o, from the WIT file.
gen="$out/bindings"
rm -rf "$gen"
"$wit_bindgen" c "$wit" --out-dir "$gen" >&2

# 2. Compile. The generated file is held to the same warnings as ours.
cflags=("$target" -O2 -std=c11 -Wall -Wextra -Werror -I "$gen")
"$cc" "${cflags[@]}" -c "$here/arp_guard.c" -o "$out/arp_guard.o"
"$cc" "${cflags[@]}" -c "$gen/plugin.c" -o "$out/plugin.o"

# 3. Link a reactor (no main: exports called by the host) with wasi-libc for malloc and friends.
wasm="$out/c_arp_guard.wasm"
"$cc" "$target" -mexec-model=reactor -Wl,--strip-debug -o "$wasm" \
  "$out/arp_guard.o" "$out/plugin.o" "$gen/plugin_component_type.o"

echo "$wasm"
