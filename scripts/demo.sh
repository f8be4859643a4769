#!/usr/bin/env bash
# The main job: set-up, build, and the demo on an emulated topology.
# Extra arguments go to `mongate demo` (e.g. --json, --seconds 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace
exec ./target/release/mongate demo "$@"
