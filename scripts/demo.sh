#!/usr/bin/env bash
# demo.sh — build berth-runtime and run a busybox container with it.
#
# On a fresh Debian 12 machine (as root) this installs what it needs
# (busybox-static, python3), builds `berth-runtime` in release mode, makes an
# OCI bundle under target/demo/bundle (a busybox rootfs and a config.json made
# by `berth-runtime spec`, then patched) and runs it with
#
#   berth-runtime --root <temp dir> run --bundle target/demo/bundle demo-<pid>
#
# printing the container's output and exit code (which is also this script's
# exit code). Safe to run again and again.
#
# Environment:
#   BERTH_RUNTIME=/path/to/runtime  run the same bundle with another runtime
#                                   with runc's CLI (e.g. /usr/sbin/runc);
#                                   skips the cargo build.
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

root_dir=$(repo_root)
cd "$root_dir"

[[ $(id -u) -eq 0 ]] || die "containers need root: run this as root (e.g. sudo $0)"

need_debian_packages busybox-static
need_commands python3:python3

if [[ -n ${BERTH_RUNTIME:-} ]]; then
    runtime=$BERTH_RUNTIME
    [[ -x $runtime ]] || runtime=$(command -v "$runtime") || die "BERTH_RUNTIME=$BERTH_RUNTIME is not an executable"
else
    need_cargo
    info "cargo build --release -p berth-runtime"
    cargo build --release -p berth-runtime || die "building berth-runtime failed (see cargo's output above)"
    runtime=$root_dir/target/release/berth-runtime
    [[ -x $runtime ]] || die "cargo built no $runtime"
fi

bundle=$root_dir/target/demo/bundle
info "making the bundle in ${bundle#"$root_dir"/}"
mkdir -p "$bundle"
"$root_dir/scripts/make-busybox-rootfs.sh" "$bundle/rootfs"

# `spec` refuses to overwrite an existing config.json.
rm -f "$bundle/config.json"
"$runtime" spec --bundle "$bundle" || die "'$runtime spec --bundle $bundle' failed"
[[ -f $bundle/config.json ]] || die "'$runtime spec' wrote no $bundle/config.json"

python3 - "$bundle/config.json" <<'PY'
import json, sys

path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
script = (
    'echo "hello from $(hostname)"; '
    'echo "PID 1 is: $(cat /proc/1/comm)"; '
    'ps; '
    'cat /proc/self/cgroup | head -3'
)
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", script]
spec["hostname"] = "berth-demo"
spec.setdefault("root", {})["path"] = "rootfs"
with open(path + ".tmp", "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
import os
os.replace(path + ".tmp", path)
PY

state_root=$(mktemp -d "${TMPDIR:-/tmp}/berth-demo-root.XXXXXX")
id=demo-$$
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    "$runtime" --root "$state_root" delete --force "$id" >/dev/null 2>&1 || true
    rm -rf -- "$state_root"
}
trap cleanup EXIT

info "${runtime##*/} --root $state_root run --bundle ${bundle#"$root_dir"/} $id"
echo "----- container output -----"
status=0
"$runtime" --root "$state_root" run --bundle "$bundle" "$id" </dev/null || status=$?
echo "----------------------------"
echo "exit code: $status"
exit "$status"
