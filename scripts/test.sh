#!/usr/bin/env bash
# test.sh — every check the project has, as CI runs it (.ci/run execs this).
#
#   1. installs what the tests need (busybox-static: tests build busybox
#      rootfs trees with scripts/make-busybox-rootfs.sh)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo build --workspace --bins (the end-to-end tests run berthd, berth,
#      berth-monitor and berth-init)
#   5. cargo test --workspace: doc-tests first, then every other target; the
#      output ends with one summary line of all of them.
#
# Extra arguments go to both `cargo test` runs, e.g.
#   ./scripts/test.sh cgroups            # only tests whose name has "cgroups"
#   ./scripts/test.sh -- --nocapture
# The tests create namespaces, cgroups and mounts: run as root.
# Exits non-zero on the first failing step.
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

root_dir=$(repo_root)
cd "$root_dir"

[[ $(id -u) -eq 0 ]] || die "the tests create namespaces, cgroups and mounts: run this as root (e.g. sudo $0)"

# containerd and runc: the runtime's containerd acceptance test (runc is its control run).
need_debian_packages busybox-static containerd runc
need_commands python3:python3 flock:util-linux unshare:util-linux
# The CVE-2019-5736 exploit test (runtime tests/escape.rs) compiles its payload with cc.
need_debian_packages gcc
need_cargo
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"

info "cargo fmt --all -- --check"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all' (the diff is above)"

info "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings || die "clippy found problems (see above)"

# The end-to-end tests run the binaries themselves (berthd starts berth-monitor and
# berth-init; tests drive berth): cargo test builds only those of packages with tests.
info "cargo build --workspace --bins"
cargo build --workspace --bins || die "building the binaries failed (see above)"

info "cargo test --workspace --doc"
cargo test --workspace --doc "$@" || die "doc-tests failed (see above)"

info "cargo test --workspace --all-targets"
log=$(mktemp)
trap 'rm -f -- "$log"' EXIT
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints a "test result:" line per test binary,
# and the last binary is not always one with tests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
