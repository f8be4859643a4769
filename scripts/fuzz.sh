#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a budget of seconds each, from
# the seed corpus in fuzz/corpus/<target>/ (read only: what the fuzzer adds
# goes to a temporary directory). The test command (scripts/test.sh) runs it
# with the default budget; fails on a crash, a timeout or a leak of memory,
# leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                          # every target, 5 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh         # a longer run
#   FUZZ_SECONDS=60 scripts/fuzz.sh oam ring_msg   # some targets
#
# Builds optimized with debug assertions (overflow checks) and without a
# sanitizer: the parsers are safe Rust, and ASan made the build several
# times slower for nothing it could find there. Installs what it needs: the
# nightly toolchain (rustup) and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-5}"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
if ! command -v rustup >/dev/null 2>&1; then
  echo "fuzz.sh: no rustup: cargo-fuzz needs a nightly toolchain; install rustup (https://rustup.rs), or run without fuzzing: the fuzz bodies also run as property tests on stable (cargo test)" >&2
  exit 1
fi
if ! rustup toolchain list | grep '^nightly' >/dev/null; then
  echo "fuzz.sh: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal >&2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >&2
fi
flags=(-O --debug-assertions --sanitizer none)
cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
if ! cargo +nightly fuzz build "${flags[@]}" >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  echo "fuzz.sh: build failed" >&2
  exit 1
fi
built=$(date +%s)
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  log="$work/$t.log"
  if cargo +nightly fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "fuzz.sh: $t: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || echo done)" >&2
  else
    echo "fuzz.sh: $t FAILED:" >&2
    tail -40 "$log" >&2
    failed+=("$t")
  fi
done
echo "fuzz.sh: build $((built - start)) s, runs $(($(date +%s) - built)) s (${#targets[@]} targets, ${secs} s each)" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
