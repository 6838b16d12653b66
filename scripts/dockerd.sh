# shellcheck shell=bash
# dockerd.sh — sourced helpers that run a private dockerd (Debian's docker.io) for the
# benchmarks that compare berth with Docker (bench-pull.sh, bench-engine.sh):
#
#   . "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
#   . "$(dirname "${BASH_SOURCE[0]}")/dockerd.sh"
#   DOCKER_DIR=/some/dir BRIDGE=berthbench0 BRIDGE_ADDR=198.18.254.1/24
#   make_bridge; start_dockerd [EXTRA DOCKERD ARGS...]; docker_cli ...; stop_dockerd; remove_bridge
#
# The dockerd gets its own socket (DOCKER_DIR/docker.sock), data root, exec root (so its
# own containerd too) and its own bridge BRIDGE (created by make_bridge, deleted by
# remove_bridge only if make_bridge created it), with --iptables=false --ip6tables=false
# --ip-masq=false: it never touches the host's docker0 (`--bridge none` would delete it)
# nor its firewall. Callers install docker.io and iproute2 first.

dockerd_pid=
created_bridge=0

# make_bridge — create BRIDGE with address BRIDGE_ADDR unless it exists.
make_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
    ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
    created_bridge=1
    ip addr add "$BRIDGE_ADDR" dev "$BRIDGE" || die "cannot address bridge $BRIDGE"
}

# remove_bridge — delete BRIDGE if make_bridge created it.
remove_bridge() {
    ((created_bridge)) || return 0
    ip link del "$BRIDGE" 2>/dev/null || true
    created_bridge=0
}

# docker_cli ARGS... — the docker CLI talking to this dockerd.
docker_cli() {
    docker -H "unix://$DOCKER_DIR/docker.sock" "$@"
}

# start_dockerd [ARGS...] — a dockerd with an empty data root (ARGS are added to its
# command line); waits until it answers.
start_dockerd() {
    local deadline=$((SECONDS + 60))
    rm -rf -- "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
    mkdir -p -- "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
    echo '{}' >"$DOCKER_DIR/daemon.json"
    dockerd --config-file "$DOCKER_DIR/daemon.json" --host "unix://$DOCKER_DIR/docker.sock" \
        --data-root "$DOCKER_DIR/data" \
        --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_DIR/dockerd.pid" \
        --bridge "$BRIDGE" --iptables=false --ip6tables=false --ip-masq=false \
        --ip-forward=false --storage-driver overlay2 "$@" \
        </dev/null >>"$DOCKER_DIR/dockerd.log" 2>&1 &
    dockerd_pid=$!
    until docker_cli version >/dev/null 2>&1; do
        kill -0 "$dockerd_pid" 2>/dev/null ||
            die "dockerd exited during start-up; $DOCKER_DIR/dockerd.log says:
$(tail -n 20 "$DOCKER_DIR/dockerd.log")"
        ((SECONDS < deadline)) || die "dockerd did not answer within 60 s; see $DOCKER_DIR/dockerd.log"
        sleep 0.1
    done
}

# stop_dockerd — stop the dockerd start_dockerd started (and wait for it).
stop_dockerd() {
    [[ -n $dockerd_pid ]] || return 0
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=
}
