#!/usr/bin/env bash
# bench-pull.sh — cold pull time of berth vs skopeo vs docker, from a local registry.
#
# A benchmark, not a test. Run it as root. It installs what it needs from Debian
# (mmdebstrap, docker-registry, skopeo, docker.io, jq, python3), then:
#
#   1. builds a Debian bookworm rootfs with python3 and pip (mmdebstrap, variant
#      minbase) and splits it into 7 gzip tar layers (the rest of /, usr/lib/python3*,
#      the rest of usr/lib, usr/share, the rest of usr, etc, var) in an OCI layout
#      written with tar, gzip, sha256sum and jq; both cached in target/bench-pull/
#   2. builds berth's example `pull` (cargo build --release --example pull)
#   3. starts a docker-registry on a free 127.0.0.1 port (registry-fixture.sh) and
#      pushes the image there with skopeo as pybase:latest
#   4. times BENCH_RUNS cold pulls of each tool, interleaved (each round runs every
#      tool once, in a rotated order), after `sync; echo 3 > drop_caches`:
#        berth    target/release/examples/pull <fresh root> 127.0.0.1:PORT/pybase:latest
#        skopeo   skopeo copy --src-tls-verify=false docker://… oci:<fresh dir>
#        docker   docker pull … against a dockerd from Debian's docker.io that this
#                 script starts on its own socket, data root and exec root, with a
#                 fresh data root for every run (restarted outside the timing)
#   5. prints the compressed size, the layer count, the median seconds of each tool,
#      the ratios berth/docker and berth/skopeo, and the target berth <= 0.3x docker.
#
# The dockerd gets its own bridge (berthbench0, 198.18.254.1/24, created here and
# removed at exit) and --iptables=false --ip6tables=false --ip-masq=false: it never
# touches the host's docker0 (`--bridge none` would delete it) nor its firewall.
#
# Environment (all optional):
#   BENCH_RUNS=5              timed runs per tool
#   BENCH_TOOLS="berth skopeo docker"   which ones (any subset, berth first for ratios)
#   BENCH_MIRROR=http://deb.debian.org/debian   mirror for mmdebstrap
#   BENCH_DROP_CACHES=1       0: leave the page cache alone between runs
#   BENCH_STRICT=0            1: exit 1 when the target is missed
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
# shellcheck source=scripts/oci-layout.sh
. "$(dirname "${BASH_SOURCE[0]}")/oci-layout.sh"
# shellcheck source=scripts/dockerd.sh
. "$(dirname "${BASH_SOURCE[0]}")/dockerd.sh"

root_dir=$(repo_root)
cd "$root_dir"

runs=${BENCH_RUNS:-5}
read -r -a tools <<<"${BENCH_TOOLS:-berth skopeo docker}"
mirror=${BENCH_MIRROR:-http://deb.debian.org/debian}
drop_caches=${BENCH_DROP_CACHES:-1}
strict=${BENCH_STRICT:-0}

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$runs'"
[[ $drop_caches == 0 || $drop_caches == 1 ]] || die "BENCH_DROP_CACHES must be 0 or 1"
[[ $strict == 0 || $strict == 1 ]] || die "BENCH_STRICT must be 0 or 1, not '$strict'"
for tool in "${tools[@]}"; do
    case $tool in berth | skopeo | docker) ;; *) die "unknown tool '$tool' in BENCH_TOOLS" ;; esac
done
[[ $(id -u) -eq 0 ]] || die "mmdebstrap and dockerd need root: run this as root"

WORK=$root_dir/target/bench-pull
IMAGE=pybase:latest
# Bump when the layout below changes, so a cached one gets rebuilt.
LAYOUT_VERSION=1
BRIDGE=berthbench0
BRIDGE_ADDR=198.18.254.1/24

# --- the rootfs and its layers -------------------------------------------------

build_rootfs() {
    [[ -f $WORK/rootfs.done ]] && return 0
    info "mmdebstrap bookworm (minbase + python3 python3-pip) into $WORK/rootfs"
    rm -rf -- "$WORK/rootfs" "$WORK/rootfs.tmp"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip \
        bookworm "$WORK/rootfs.tmp" "$mirror" || die "mmdebstrap failed"
    mv -T -- "$WORK/rootfs.tmp" "$WORK/rootfs"
    touch -- "$WORK/rootfs.done"
}

# layer_roots N — the paths (relative to the rootfs, the cwd) whose subtrees make layer N.
layer_roots() {
    local p
    case $1 in
        1) for p in *; do [[ $p == usr || $p == etc || $p == var ]] || echo "$p"; done ;;
        2) printf '%s\n' usr/lib/python3* ;;
        3) for p in usr/lib/*; do [[ $p == usr/lib/python3* ]] || echo "$p"; done ;;
        4) echo usr/share ;;
        5) for p in usr/*; do [[ $p == usr/lib || $p == usr/share ]] || echo "$p"; done ;;
        6) echo etc ;;
        7) echo var ;;
    esac
}
LAYERS=7

# layer_entries N — NUL-separated, sorted: layer N's subtrees (without the contents of
# dev, proc and sys) and the directories above them.
layer_entries() {
    local root dir
    layer_roots "$1" | while read -r root; do
        dir=$root
        while [[ $dir == */* ]]; do
            dir=${dir%/*}
            printf '%s\0' "$dir"
        done
        case $root in
            dev | proc | sys) printf '%s\0' "$root" ;;
            *) find "$root" -print0 ;;
        esac
    done | LC_ALL=C sort -z -u
}


# add_layer LAYOUT N — layer N as a gzip tar blob; appends "DIFFID HEX SIZE" to .layers.
add_layer() {
    local layout=$1 tar=$1/layer.tar diff_id
    (cd "$WORK/rootfs" && layer_entries "$2" |
        tar --numeric-owner --no-recursion --null -T - -cf "$tar")
    diff_id=$(sha256_of "$tar")
    gzip -n -6 -- "$tar"
    echo "$diff_id $(put_blob "$layout" "$tar.gz")" >>"$layout/.layers"
}

oci_arch() {
    case $(dpkg --print-architecture) in
        amd64) echo amd64 ;;
        arm64) echo arm64 ;;
        *) die "this benchmark knows only amd64 and arm64 hosts" ;;
    esac
}

# write_config LAYOUT — prints "HEX SIZE" of the config blob.
write_config() {
    jq -cn --arg arch "$(oci_arch)" --rawfile layers "$1/.layers" '{
        architecture: $arch, os: "linux",
        config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                 Cmd: ["python3"]},
        rootfs: {type: "layers",
                 diff_ids: [$layers | splits("\n") | select(. != "") | "sha256:" + split(" ")[0]]}
    }' >"$1/config.json"
    put_blob "$1" "$1/config.json"
}

# write_index LAYOUT MANIFEST_HEX MANIFEST_SIZE
write_index() {
    jq -cn --arg m "sha256:$2" --argjson size "$3" --arg mt "$OCI_MANIFEST" '{
        schemaVersion: 2,
        manifests: [{mediaType: $mt, digest: $m, size: $size,
                     annotations: {"org.opencontainers.image.ref.name": "latest"}}]
    }' >"$1/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

build_layout() {
    local layout=$WORK/oci tmp=$WORK/oci.tmp n cfg manifest
    [[ -f $WORK/oci.done && $(<"$WORK/oci.done") == "$LAYOUT_VERSION" ]] && return 0
    info "splitting the rootfs into $LAYERS gzip layers (OCI layout in $layout)"
    rm -rf -- "$layout" "$tmp" "$WORK/oci.done"
    mkdir -p -- "$tmp/blobs/sha256"
    : >"$tmp/.layers"
    for ((n = 1; n <= LAYERS; n++)); do
        add_layer "$tmp" "$n"
    done
    cfg=$(write_config "$tmp")
    # shellcheck disable=SC2086 # "HEX SIZE" splits into two arguments
    manifest=$(write_manifest "$tmp" $cfg)
    # shellcheck disable=SC2086
    write_index "$tmp" $manifest
    rm -f -- "$tmp/.layers"
    mv -T -- "$tmp" "$layout"
    echo "$LAYOUT_VERSION" >"$WORK/oci.done"
}

# layout_manifest — the manifest JSON of the layout.
layout_manifest() {
    local digest
    digest=$(jq -r '.manifests[0].digest' "$WORK/oci/index.json")
    cat -- "$WORK/oci/blobs/sha256/${digest#sha256:}"
}

# --- the registry ----------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_registry() {
    local try
    for try in 1 2 3; do
        port=$(free_port)
        bash scripts/registry-fixture.sh start "$WORK/registry" "$port" && return 0
        info "registry start on port $port failed (try $try)"
    done
    die "could not start docker-registry"
}

# --- dockerd -------------------------------------------------------------------------

DOCKER_DIR=$WORK/docker

cleanup() {
    stop_dockerd
    bash scripts/registry-fixture.sh stop "$WORK/registry" || true
    remove_bridge
}

# --- timing ----------------------------------------------------------------------------

# prepare TOOL — the fresh state a cold pull starts from (not timed).
prepare() {
    case $1 in
        berth) rm -rf -- "$WORK/runs/berth" ;;
        skopeo) rm -rf -- "$WORK/runs/skopeo" ;;
        docker) stop_dockerd && start_dockerd --insecure-registry "127.0.0.1:$port" ;;
    esac
    if ((drop_caches)); then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# pull TOOL — one cold pull.
pull() {
    local ref=127.0.0.1:$port/$IMAGE
    case $1 in
        berth) target/release/examples/pull "$WORK/runs/berth" "$ref" >"$WORK/runs/berth.out" ;;
        skopeo) skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$WORK/runs/skopeo" ;;
        docker) docker_cli pull --quiet "$ref" >/dev/null ;;
    esac
}

# check TOOL — the pull got the image.
check() {
    local got
    case $1 in
        berth) got=$(<"$WORK/runs/berth.out") ;;
        skopeo) [[ -f $WORK/runs/skopeo/blobs/sha256/${config_digest#sha256:} ]] && got=$config_digest ;;
        docker) got=$(docker_cli image inspect --format '{{.Id}}' "127.0.0.1:$port/$IMAGE") ;;
    esac
    [[ ${got#sha256:} == "${config_digest#sha256:}" ]] ||
        die "$1 pulled image '$got', not $config_digest"
}

# time_one TOOL — appends the seconds of one cold pull to $WORK/runs/TOOL.times.
time_one() {
    local t0 t1
    prepare "$1"
    t0=$EPOCHREALTIME
    pull "$1" || die "$1 pull failed"
    t1=$EPOCHREALTIME
    check "$1"
    python3 -c "print(f'{$t1 - $t0:.3f}')" >>"$WORK/runs/$1.times"
    info "$1: $(tail -n 1 "$WORK/runs/$1.times") s"
}

report() {
    local manifest size count
    manifest=$(layout_manifest)
    size=$(jq '[.layers[].size] | add' <<<"$manifest")
    count=$(jq '.layers | length' <<<"$manifest")
    python3 - "$WORK/runs" "$size" "$count" "$strict" "${tools[@]}" <<'EOF'
import statistics, sys
runs, size, count, strict, tools = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
times = {t: [float(x) for x in open(f"{runs}/{t}.times")] for t in tools}
med = {t: statistics.median(v) for t, v in times.items()}
print(f"image: {size / 1e6:.1f} MB compressed ({size} bytes), {count} layers")
for t in tools:
    print(f"{t:7} median {med[t]:.3f} s   runs: {' '.join(f'{x:.3f}' for x in times[t])}")
for other in ("docker", "skopeo"):
    if "berth" in med and other in med:
        print(f"berth/{other}: {med['berth'] / med[other]:.2f}x")
if "berth" in med and "docker" in med:
    met = med["berth"] <= 0.3 * med["docker"]
    print(f"target berth <= 0.3x docker: {'met' if met else 'MISSED'}")
    sys.exit(1 if strict == "1" and not met else 0)
EOF
}

# --- main ----------------------------------------------------------------------------

need_debian_packages mmdebstrap docker-registry skopeo docker.io python3 jq curl iproute2
need_commands dockerd:docker.io docker:docker.io ip:iproute2
need_cargo
mkdir -p -- "$WORK"
build_rootfs
build_layout
info "cargo build --release -p berth-image --example pull"
cargo build --release -p berth-image --example pull || die "building the pull example failed"

port=
trap cleanup EXIT
start_registry
info "pushing $IMAGE to 127.0.0.1:$port with skopeo"
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci" "docker://127.0.0.1:$port/$IMAGE" ||
    die "skopeo could not push the image"
config_digest=$(layout_manifest | jq -r .config.digest)
if [[ " ${tools[*]} " == *" docker "* ]]; then
    make_bridge
fi

rm -rf -- "$WORK/runs"
mkdir -p -- "$WORK/runs"
for ((round = 0; round < runs; round++)); do
    for ((i = 0; i < ${#tools[@]}; i++)); do
        time_one "${tools[(i + round) % ${#tools[@]}]}"
    done
done
stop_dockerd
report
