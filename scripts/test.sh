#!/usr/bin/env bash
# The test command: set-up, format and lint checks, then every test of the
# workspace in release mode (network tests need root: without it they print
# SKIP lines and do not pass silently), then every fuzz target for a few
# seconds (scripts/fuzz.sh; FUZZ_SECONDS sets the budget per target).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
bash scripts/fuzz.sh
