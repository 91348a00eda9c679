#!/usr/bin/env bash
# Installs what wasm-vtep's demo, tests and benchmarks need on a Debian machine (run as root):
# the network tools the tests drive and the wasm targets the plugins are built for.
set -euo pipefail

# The network tools the tests drive, and a C++ compiler for the fuzz target's libFuzzer.
need_apt=0
for tool in ip bridge tcpdump iperf3 arping ethtool ping nstat c++; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq iproute2 iputils-ping tcpdump iperf3 arping ethtool g++ >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target add wasm32-wasip2 wasm32-unknown-unknown >/dev/null
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
