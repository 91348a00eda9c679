#!/usr/bin/env bash
# Installs what wasm-vtep's demo, tests and benchmarks need on a Debian machine (run as root):
# the network tools the tests drive, the BGP speakers the EVPN tests run (GoBGP, and FRR as the
# reference Linux EVPN VTEP), the protobuf compiler and GoBGP's .proto files the daemon's gRPC
# client is generated from, and the wasm targets the plugins are built for.
set -euo pipefail

# The network tools the tests drive, a C++ compiler for the fuzz target's libFuzzer, and
# Wireshark's editcap (wireshark-common), which turns a tcpdump capture into pcapng for the
# test of `vtep plugin test`, groff, which renders `vtep man` in its test, and systemd's
# systemd-analyze, which checks the service unit (nothing is started with it), curl, which
# scrapes the metrics endpoint, lintian, which checks the Debian package, and dpkg-dev, whose
# dpkg-shlibdeps finds the package's dependencies.
need_apt=0
for tool in ip bridge tcpdump iperf3 arping ethtool ping nstat c++ editcap groff systemd-analyze \
  curl lintian dpkg-shlibdeps; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq iproute2 iputils-ping tcpdump iperf3 arping ethtool g++ \
    wireshark-common groff-base systemd curl lintian dpkg-dev >/dev/null
fi

# EVPN: gobgpd and its CLI, GoBGP's API definitions (package golang-github-osrg-gobgp-dev,
# checked by a file it ships), protoc, and FRR; and Prometheus, whose promtool checks the
# metrics endpoint's text. The tests start gobgpd and FRR's zebra and bgpd themselves, inside
# their namespaces (FRR with a path space of its own per test, `-N`), and run no Prometheus
# server, so nothing here may leave them running as system services: during the install policy-rc.d
# answers 101 ("action forbidden") so the packages start nothing (unless the machine has a
# policy-rc.d of its own, which is left alone), and the services the packages enable for the
# next boot are disabled again, for the packages this script installed only.
evpn_packages=()
command -v gobgpd >/dev/null 2>&1 || evpn_packages+=(gobgpd)
[ -f /usr/share/gocode/src/github.com/osrg/gobgp/api/gobgp.proto ] ||
  evpn_packages+=(golang-github-osrg-gobgp-dev)
command -v protoc >/dev/null 2>&1 || evpn_packages+=(protobuf-compiler)
[ -x /usr/lib/frr/bgpd ] || evpn_packages+=(frr)
# Prometheus without its recommends (its node exporter, one more service).
prometheus_packages=()
command -v promtool >/dev/null 2>&1 || prometheus_packages+=(prometheus)
if [ "${#evpn_packages[@]}" -gt 0 ] || [ "${#prometheus_packages[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  if [ "${#evpn_packages[@]}" -gt 0 ]; then
    apt-get install -y -qq "${evpn_packages[@]}" >/dev/null
  fi
  if [ "${#prometheus_packages[@]}" -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${prometheus_packages[@]}" >/dev/null
  fi
  if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  for service in gobgpd frr prometheus; do
    if [[ " ${evpn_packages[*]} ${prometheus_packages[*]} " == *" $service "* ]]; then
      deb-systemd-helper disable "$service.service" >/dev/null 2>&1 || true
      update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  done
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target add wasm32-wasip2 wasm32-unknown-unknown >/dev/null
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The C plugin (plugins/c-arp-guard, built by tests/tests/c_plugin.rs): clang, its wasm linker
# (lld), wasi-libc for malloc and memcpy, and compiler-rt's wasm32 builtins, which clang links
# into every wasm32 program (packages of Debian's default clang, whichever version that is).
c_packages=()
command -v clang >/dev/null 2>&1 || c_packages+=(clang)
command -v wasm-ld >/dev/null 2>&1 || c_packages+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || c_packages+=(wasi-libc)
if ! command -v clang >/dev/null 2>&1 ||
  [ ! -f "$(clang --target=wasm32-wasi -print-libgcc-file-name)" ]; then
  c_packages+=(libclang-rt-dev-wasm32)
fi
if [ "${#c_packages[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${c_packages[@]}" >/dev/null
fi
# Its bindings generator: the wit-bindgen release of the Rust SDK's bindings (0.61).
if [ "$(wit-bindgen --version 2>/dev/null)" != "wit-bindgen-cli 0.61.1" ]; then
  cargo install --locked --quiet wit-bindgen-cli --version 0.61.1
fi
# The Debian package's builder (host/debian/build-deb.sh).
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb 3.8.0" ]; then
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi
