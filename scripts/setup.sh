#!/usr/bin/env bash
# Installs everything mongate needs on a fresh Debian machine (as root):
# network tools for the emulated sites, tshark for wire checks, cmake and
# libclang for the HiGHS MILP solver, systemd-analyze and setpriv for the
# deployment test (tests/deploy.rs), gdb for the network tests' watchdog
# (the stacks of a hung test, tests/common/mod.rs), and the Rust components
# used by the checks. Idempotent.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages; the demo and network tests need root too)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
pkgs=(iproute2 ethtool iputils-ping tshark iperf3 netsniff-ng bpftool cmake g++ clang libclang-dev pkg-config procps util-linux systemd gdb)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup.sh: no Rust toolchain (cargo) found: install rustup's stable toolchain" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "setup.sh: ready ($(cargo --version))" >&2
