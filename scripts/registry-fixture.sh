#!/usr/bin/env bash
# registry-fixture.sh — a real registry and real images for berth's registry
# tests, made without any of berth's code.
#
#   registry-fixture.sh install
#       install Debian's docker-registry and skopeo, and busybox-static
#       (idempotent: installed packages are left alone)
#   registry-fixture.sh start DIR PORT
#       run `docker-registry serve DIR/config.yml` in the background: storage in
#       DIR/storage, HTTP on 127.0.0.1:PORT, no auth; pid in DIR/registry.pid,
#       log in DIR/registry.log. A file DIR/auth.yml becomes the config's
#       `auth:` section (its lines indented as under that key). Returns once
#       GET /v2/ answers, 200 or 401 (or fails after START_TIMEOUT seconds). A
#       registry left in DIR by an earlier run is stopped first; a PORT somebody
#       else answers on is refused.
#   registry-fixture.sh stop DIR
#       stop the registry started in DIR (nothing to do if none is running)
#   registry-fixture.sh busybox-image DIR
#       build OCI image layouts from scripts/make-busybox-rootfs.sh's rootfs
#       (in DIR/rootfs), with tar, gzip, sha256sum and jq only:
#         DIR/oci             one layer: the rootfs; config Cmd ["sh"], Env PATH
#         DIR/oci-two-layers  the same layer, then a second one that adds /hello
#                             and deletes /etc/berth-busybox-rootfs with a
#                             `.wh.` entry (for whiteout tests)
#       Each layout's index.json names its manifest "latest". Idempotent: an
#       up-to-date DIR is left alone; a rebuild is swapped in by rename under a
#       lock, so nobody sees a half-written layout.
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
# shellcheck source=scripts/oci-layout.sh
. "$(dirname "${BASH_SOURCE[0]}")/oci-layout.sh"

START_TIMEOUT=${START_TIMEOUT:-20}
STOP_TIMEOUT=10
# Bump when the layouts below change, so existing ones get rebuilt.
IMAGE_LAYOUT_VERSION=1
IMAGE_STAMP=.busybox-image-stamp
DELETED_FILE=etc/berth-busybox-rootfs

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- install -----------------------------------------------------------------

cmd_install() {
    need_debian_packages docker-registry skopeo busybox-static curl jq python3
    need_commands docker-registry:docker-registry skopeo:skopeo curl:curl jq:jq
}

# --- start / stop --------------------------------------------------------------

# abs_dir DIR — DIR made absolute (it must exist).
abs_dir() {
    (cd -- "$1" && pwd -P) || die "cannot enter directory $1"
}

# write_registry_config DIR PORT — DIR/config.yml for a local registry, with
# DIR/auth.yml as its auth section if there is one.
write_registry_config() {
    cat >"$1/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: berth-registry-fixture
EOF
    if [[ -f $1/auth.yml ]]; then
        echo "auth:" >>"$1/config.yml"
        cat -- "$1/auth.yml" >>"$1/config.yml"
    fi
}

# registry_pid DIR — the pid of the registry started in DIR, if it still runs.
# A pid that now belongs to another process (its command line does not name
# DIR/config.yml) is not ours and is never returned.
registry_pid() {
    local pid cmdline
    [[ -f $1/registry.pid ]] || return 1
    pid=$(<"$1/registry.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmdline == *"$1/config.yml"* ]] || return 1
    echo "$pid"
}

# process_alive PID — PID runs (a zombie counts as gone: init may be slow to
# reap the registry, which is not our child once this script has exited).
process_alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# registry_answers PORT — GET /v2/ on 127.0.0.1:PORT answers as a registry does:
# 200, or 401 where it wants credentials.
registry_answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/v2/") || return 1
    [[ $code == 200 || $code == 401 ]]
}

# port_taken PORT — something accepts connections on 127.0.0.1:PORT. (curl's
# exit status 7 is "connection refused": the port is free; an answer, an empty
# reply or a timeout all mean somebody is there.)
port_taken() {
    local rc=0
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" || rc=$?
    [[ $rc -ne 7 ]]
}

# wait_for_registry DIR PORT PID — until GET /v2/ answers; fail if the process
# exits or START_TIMEOUT passes.
wait_for_registry() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until registry_answers "$2"; do
        if ! process_alive "$3"; then
            die "docker-registry exited during start-up; $1/registry.log says:
$(tail -n 20 "$1/registry.log")"
        fi
        ((SECONDS < deadline)) ||
            die "docker-registry did not answer on 127.0.0.1:$2 within ${START_TIMEOUT}s; see $1/registry.log"
        sleep 0.05
    done
}

cmd_start() {
    [[ $# -eq 2 ]] || usage
    local dir port=$2 pid
    if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
        die "invalid port '$port': want 1-65535"
    fi
    need_commands docker-registry:docker-registry curl:curl
    mkdir -p -- "$1"
    dir=$(abs_dir "$1")
    cmd_stop "$dir"
    port_taken "$port" && die "port $port on 127.0.0.1 is already in use"
    mkdir -p -- "$dir/storage"
    write_registry_config "$dir" "$port"
    # setsid: its own session, so it outlives this script and no terminal
    # signal meant for the caller reaches it; stdio away from the caller's
    # pipes, so whoever runs us sees EOF when we exit.
    setsid docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/registry.pid"
    wait_for_registry "$dir" "$port" "$pid"
    info "docker-registry (pid $pid) serving on 127.0.0.1:$port, storage in $dir/storage"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    [[ -d $1 ]] || return 0
    local dir pid deadline
    dir=$(abs_dir "$1")
    if pid=$(registry_pid "$dir"); then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT))
        while process_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.05
        done
        # Still ours (not a reused pid)? Then it ignored TERM.
        if registry_pid "$dir" >/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f -- "$dir/registry.pid"
}

# --- busybox-image -------------------------------------------------------------

# oci_arch — "ARCH[ VARIANT]" of this machine in OCI's terms (busybox-static is
# the host's build).
oci_arch() {
    local deb
    deb=$(dpkg --print-architecture)
    case $deb in
        amd64 | arm64 | s390x | riscv64 | mips64el) echo "${deb/mips64el/mips64le}" ;;
        i386) echo 386 ;;
        ppc64el) echo ppc64le ;;
        armhf) echo "arm v7" ;;
        armel) echo "arm v5" ;;
        *) die "no OCI architecture known for Debian architecture '$deb'" ;;
    esac
}


# make_layer_tar SRC OUT — the tar of directory SRC, as a registry layer holds it.
make_layer_tar() {
    tar --numeric-owner --owner=0 --group=0 --sort=name -C "$1" -cf "$2" .
}

# second_layer_tree DIR — adds /hello, deletes /$DELETED_FILE.
second_layer_tree() {
    install -d -m 0755 "$1/etc"
    printf 'hello from the second layer\n' >"$1/hello"
    chmod 0644 "$1/hello"
    : >"$1/${DELETED_FILE%/*}/.wh.${DELETED_FILE##*/}"
    touch -r "$2/$DELETED_FILE" "$1/etc" "$1/hello" "$1/${DELETED_FILE%/*}/.wh.${DELETED_FILE##*/}" "$1"
}

# add_layer LAYOUT TAR — gzip TAR into LAYOUT's blobs; appends "DIFFID DIGEST SIZE"
# to LAYOUT/.layers.
add_layer() {
    local diff_id blob
    diff_id=$(sha256_of "$2")
    gzip -n -c -- "$2" >"$1/layer.tar.gz"
    blob=$(put_blob "$1" "$1/layer.tar.gz")
    echo "$diff_id $blob" >>"$1/.layers"
}

# write_config LAYOUT CREATED COMMENT... — the image config for LAYOUT/.layers
# (one history COMMENT per layer); prints "HEX SIZE" of its blob.
write_config() {
    local layout=$1 created=$2 arch variant
    shift 2
    read -r arch variant <<<"$(oci_arch)"
    jq -cn --arg arch "$arch" --arg variant "${variant:-}" --arg created "$created" \
        --rawfile layers "$layout/.layers" --args '
        {
          architecture: $arch,
          os: "linux",
          created: $created,
          config: {
            Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            Cmd: ["sh"]
          },
          rootfs: {
            type: "layers",
            diff_ids: [$layers | splits("\n") | select(. != "") | "sha256:" + split(" ")[0]]
          },
          history: [$ARGS.positional[] | {created: $created, created_by: .}]
        } + (if $variant == "" then {} else {variant: $variant} end)' "$@" >"$layout/config.json"
    put_blob "$layout" "$layout/config.json"
}

# write_index LAYOUT MANIFEST_HEX MANIFEST_SIZE — index.json and oci-layout.
write_index() {
    local arch variant
    read -r arch variant <<<"$(oci_arch)"
    jq -cn --arg m "sha256:$2" --argjson size "$3" --arg arch "$arch" --arg variant "${variant:-}" \
        --arg mt "$OCI_MANIFEST" --arg imt "$OCI_INDEX" '
        {
          schemaVersion: 2,
          mediaType: $imt,
          manifests: [{
            mediaType: $mt, digest: $m, size: $size,
            platform: ({architecture: $arch, os: "linux"}
                       + (if $variant == "" then {} else {variant: $variant} end)),
            annotations: {"org.opencontainers.image.ref.name": "latest"}
          }]
        }' >"$1/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# build_layout LAYOUT CREATED TAR:COMMENT... — a complete OCI layout of the layers.
build_layout() {
    local layout=$1 created=$2 spec cfg manifest comments=()
    shift 2
    mkdir -p -- "$layout"
    : >"$layout/.layers"
    for spec in "$@"; do
        add_layer "$layout" "${spec%%:*}"
        comments+=("${spec#*:}")
    done
    cfg=$(write_config "$layout" "$created" "${comments[@]}")
    # shellcheck disable=SC2086 # "HEX SIZE" splits into two arguments
    manifest=$(write_manifest "$layout" $cfg)
    # shellcheck disable=SC2086
    write_index "$layout" $manifest
    rm -f -- "$layout/.layers"
}

# image_stamp ROOTFS — what the layouts are built from.
image_stamp() {
    echo "layout=$IMAGE_LAYOUT_VERSION rootfs=$(sha256_of "$1/$DELETED_FILE") arch=$(oci_arch)"
}

images_up_to_date() {
    [[ -f $1/$IMAGE_STAMP && $(<"$1/$IMAGE_STAMP") == "$(image_stamp "$1/rootfs")" ]] &&
        [[ -f $1/oci/index.json && -f $1/oci-two-layers/index.json ]]
}

# build_images DIR TMP — both layouts in TMP, from DIR/rootfs.
build_images() {
    local rootfs=$1/rootfs tmp=$2 created
    created=$(date -u -r "$rootfs/$DELETED_FILE" +%Y-%m-%dT%H:%M:%SZ)
    make_layer_tar "$rootfs" "$tmp/base.tar"
    mkdir -- "$tmp/second"
    second_layer_tree "$tmp/second" "$rootfs"
    make_layer_tar "$tmp/second" "$tmp/second.tar"
    build_layout "$tmp/oci" "$created" "$tmp/base.tar:busybox-static rootfs (registry-fixture.sh)"
    build_layout "$tmp/oci-two-layers" "$created" \
        "$tmp/base.tar:busybox-static rootfs (registry-fixture.sh)" \
        "$tmp/second.tar:add /hello, delete /$DELETED_FILE (registry-fixture.sh)"
}

# swap_in DIR TMP NAME — replace DIR/NAME by TMP/NAME.
swap_in() {
    rm -rf -- "${1:?}/$3"
    mv -T -- "$2/$3" "$1/$3"
}

cmd_busybox_image() {
    [[ $# -eq 1 && -n $1 ]] || usage
    local dir tmp
    need_commands jq:jq sha256sum:coreutils gzip:gzip tar:tar flock:util-linux
    mkdir -p -- "$1"
    dir=$(abs_dir "$1")
    bash "$(dirname "${BASH_SOURCE[0]}")/make-busybox-rootfs.sh" "$dir/rootfs"
    images_up_to_date "$dir" && return 0
    exec 8<"$dir"
    flock 8
    images_up_to_date "$dir" && return 0 # somebody else built them while we waited
    tmp=$(mktemp -d -- "$dir/.build.XXXXXX")
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf -- '$tmp'" EXIT
    build_images "$dir" "$tmp"
    rm -f -- "$dir/$IMAGE_STAMP"
    swap_in "$dir" "$tmp" oci
    swap_in "$dir" "$tmp" oci-two-layers
    image_stamp "$dir/rootfs" >"$dir/$IMAGE_STAMP"
}

# --- main ----------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
sub=$1
shift
case $sub in
    install) [[ $# -eq 0 ]] || usage && cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    busybox-image) cmd_busybox_image "$@" ;;
    -h | --help | help) usage ;;
    *) echo "${0##*/}: unknown subcommand '$sub'" >&2 && usage ;;
esac
