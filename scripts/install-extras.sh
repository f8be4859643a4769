#!/usr/bin/env bash
# Shell completions (bash, zsh, fish) and man pages for every mongate binary,
# written under PREFIX in the usual layout:
#   PREFIX/share/man/man1/mongate.1, mongate-dataplane-run.1, ...
#   PREFIX/share/bash-completion/completions/mongate, ...
#   PREFIX/share/zsh/site-functions/_mongate, ...
#   PREFIX/share/fish/vendor_completions.d/mongate.fish, ...
# PREFIX defaults to target/extras (to look at, or to copy elsewhere);
# `bash scripts/install-extras.sh /usr/local` as root installs them.
# Everything comes from the binaries' own `--generate` (their clap
# definitions, mongate_hwconfig::cli_generate): build first
# (`cargo build --release`). MONGATE_BIN_DIR picks other binaries
# (default: target/release of this repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-$root/target/extras}"
bin_dir="${MONGATE_BIN_DIR:-$root/target/release}"
bins=(mongate mongate-dataplane mongate-control mongate-bench mongate-hwconfig)

for b in "${bins[@]}"; do
    if [ ! -x "$bin_dir/$b" ]; then
        echo "install-extras: no $bin_dir/$b: build first (cargo build --release)" >&2
        exit 1
    fi
done

man="$prefix/share/man/man1"
bash_dir="$prefix/share/bash-completion/completions"
zsh_dir="$prefix/share/zsh/site-functions"
fish_dir="$prefix/share/fish/vendor_completions.d"
mkdir -p "$man" "$bash_dir" "$zsh_dir" "$fish_dir"

# Each file is written whole or not at all (a failed binary leaves no empty
# page behind).
gen() {
    local out="$1"
    shift
    "$@" >"$out.tmp"
    chmod 0644 "$out.tmp"
    mv "$out.tmp" "$out"
}

for b in "${bins[@]}"; do
    exe="$bin_dir/$b"
    gen "$man/$b.1" "$exe" --generate man
    subs="$("$exe" --generate subcommands)"
    for sub in $subs; do
        gen "$man/$b-$sub.1" "$exe" --generate man "$sub"
    done
    gen "$bash_dir/$b" "$exe" --generate complete-bash
    gen "$zsh_dir/_$b" "$exe" --generate complete-zsh
    gen "$fish_dir/$b.fish" "$exe" --generate complete-fish
done
echo "install-extras: man pages and completions of ${#bins[@]} binaries under $prefix/share" >&2
