#!/usr/bin/env bash
# demo.sh — build berth and run containers from an image, as with docker.
#
# On a fresh Debian 12 machine (as root) this installs what it needs
# (busybox-static and the image tools), builds berth in release mode (berthd, the berth CLI,
# berth-monitor, berth-init, berth-runtime), starts a berthd of its own on a
# temporary root and socket, loads a busybox image made from Debian's
# busybox-static (no registry needed), and then drives it with the berth CLI:
#
#   berth run --rm busybox sh -c '...'         hostname, PID 1, cgroup, network
#   berth run -d --name demo-web ... busybox   a detached container
#   berth ps / logs / exec / stop / rm
#
# The real docker CLI works against the same socket (printed below while the
# demo runs; DEMO_KEEP=1 leaves berthd running for that). Exits with the first
# container's exit code. Safe to run again and again.
#
# Environment:
#   DEMO_KEEP=1   leave berthd and its containers running at the end
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

root_dir=$(repo_root)
cd "$root_dir"

[[ $(id -u) -eq 0 ]] || die "containers need root: run this as root (e.g. sudo $0)"

need_debian_packages busybox-static
need_cargo
info "cargo build --release --workspace --bins"
cargo build --release --workspace --bins || die "building berth failed (see cargo's output above)"
bin=$root_dir/target/release
for b in berthd berth berth-monitor berth-init; do
    [[ -x $bin/$b ]] || die "cargo built no $bin/$b"
done

image_dir=$root_dir/target/demo/busybox-image
info "making a busybox image in ${image_dir#"$root_dir"/}"
"$root_dir/scripts/registry-fixture.sh" busybox-image "$image_dir" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-demo.XXXXXX")
sock=$work/berth.sock
cgroup_parent=berth-demo-$$
berthd_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    [[ ${DEMO_KEEP:-0} == 1 ]] && return 0
    if [[ -n $berthd_pid ]]; then
        "$bin/berth" -H "unix://$sock" rm -f demo-web >/dev/null 2>&1 || true
        kill -TERM "$berthd_pid" 2>/dev/null || true
        wait "$berthd_pid" 2>/dev/null || true
    fi
    # Containers' overlays stay mounted until `rm`; a leftover one would pin the dir.
    grep -o " $work/[^ ]*" /proc/self/mounts | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf -- "$work"
    # The demo's cgroup parent, in every hierarchy (empty once its containers are gone).
    rmdir /sys/fs/cgroup/*/"$cgroup_parent" /sys/fs/cgroup/"$cgroup_parent" 2>/dev/null || true
}
trap cleanup EXIT

berth() {
    "$bin/berth" -H "unix://$sock" "$@"
}

info "berthd --root $work/root --exec-root $work/run -H unix://$sock"
"$bin/berthd" --root "$work/root" --exec-root "$work/run" -H "unix://$sock" \
    --cgroup-parent "/$cgroup_parent" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 100); do
    berth version >/dev/null 2>&1 && break
    kill -0 "$berthd_pid" 2>/dev/null || die "berthd exited: $(cat "$work/berthd.log")"
    sleep 0.05
done
berth version >/dev/null || die "berthd does not answer on $sock"
echo "berthd is up; try it with: docker -H unix://$sock ps"

step() {
    echo
    echo "\$ berth ${*@Q}"
    berth "$@"
}

tar -C "$image_dir/oci" -cf "$work/busybox.tar" .
loaded=$(berth load -q -i "$work/busybox.tar")
image_id=$(grep -o 'sha256:[0-9a-f]*' <<<"$loaded" | head -n1)
[[ -n $image_id ]] || die "berth load printed no image id: $loaded"
berth tag "$image_id" busybox:latest
step images

# shellcheck disable=SC2016 # expanded by the container's shell, not this one
script='echo "hello from $(hostname)"; echo "PID 1 is: $(cat /proc/1/comm)"; ps; head -n3 /proc/self/cgroup; cat /proc/net/dev | tail -n +3 | cut -d: -f1'
echo
echo "\$ berth run --rm --memory 64m busybox sh -c '...'"
status=0
berth run --rm --memory 64m busybox sh -c "$script" || status=$?
echo "exit code: $status"

# shellcheck disable=SC2016 # as above
step run -d --name demo-web busybox sh -c 'i=0; while :; do echo "tick $i"; i=$((i + 1)); sleep 0.2; done'
sleep 1
step ps
step logs --tail 3 demo-web
# shellcheck disable=SC2016 # as above
step exec demo-web sh -c 'echo "exec sees PID 1: $(cat /proc/1/comm)"'
step stop -t 1 demo-web
step ps -a
step rm demo-web
exit "$status"
