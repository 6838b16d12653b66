#!/usr/bin/env bash
# bench-engine.sh — berth's engine against Docker: container run time, berthd's idle
# memory, the monitor's memory per running container.
#
# A benchmark, not a test. Run it as root. It installs what it needs from Debian
# (docker.io, crun, busybox-static, jq, python3, iproute2), builds berthd, berth,
# berth-monitor and berth-init in release mode, makes a busybox image
# (scripts/registry-fixture.sh busybox-image: one layer, Debian's static busybox) as a
# tar that both `docker load` and `berth load` read (the OCI layout plus a docker-save
# manifest.json naming it busybox:latest), and then, in one invocation:
#
#   1. times, interleaved (every round runs each tool once, in a shuffled order):
#        berth   berth -H unix://<sock> run --rm busybox true     against a berthd that this
#                script starts (--root, --exec-root, -H on temp dirs, its own --cgroup-parent)
#        docker  docker -H unix://<sock> run --rm busybox true    against a dockerd from
#                Debian's docker.io that this script starts on its own socket, data root,
#                exec root and bridge (berthbench1, 198.18.253.1/24; see scripts/dockerd.sh)
#        crun    crun --root <temp dir> run --bundle <bundle> <id>   (the image's rootfs;
#                config from `crun spec` with terminal false and args ["true"])
#      after checking that each one really runs the process (`sh -c 'exit 3'` exits 3)
#      and warmup runs; prints median / mean / min / stddev and the ratios of the medians;
#   2. berthd's idle VmRSS (/proc/<pid>/status): right after start-up, and after the
#      timed runs once berthd settled (BENCH_SETTLE seconds; its blocking threads live 5 s);
#      and that of its spare monitor if it has one (launched when a container is created,
#      for its start; it waits in /);
#   3. starts BENCH_CONTAINERS containers (`run -d busybox sleep 1000`), sums VmRSS and
#      Pss (/proc/<pid>/smaps_rollup) of every berth-monitor process of this berthd,
#      prints totals and per-container averages (and berthd's VmRSS meanwhile), then
#      removes them with `rm -f`.
#
# Targets, each printed with PASS/FAIL: berth run --rm <= 20 ms (median) and >= 20x
# faster than docker (medians); berthd idle VmRSS <= 15 MB (15,000,000 bytes, both
# readings, its spare monitor's added); monitor <= 1 MiB per running container (VmRSS, and
# Pss).
#
# Environment (all optional):
#   BENCH_RUNS=50             timed runs per tool
#   BENCH_WARMUP=3            untimed runs per tool first
#   BENCH_TOOLS="berth docker crun"   which ones to time (any subset/order); berthd is
#                             always started (for the memory measurements)
#   BENCH_CLIENT=berth        the CLI that drives berthd: berth, or docker (the real
#                             docker CLI with -H unix://<berthd's socket>)
#   BENCH_DOCKER_NETWORK=     docker run's --network (empty: docker's default, the
#                             bridge; berth's default is an empty network namespace, so
#                             `none` is the like-for-like comparison)
#   BENCH_CONTAINERS=50       running containers for the monitor measurement (0: skip)
#   BENCH_SETTLE=6            seconds berthd idles before its RSS is read after activity
#   BENCH_CGROUPS=auto        auto | host | v1 — as in bench-runtime.sh: on a hybrid host
#                             whose cgroup2 holds controllers (crun 1.8 refuses those) the
#                             measurement runs in a private mount namespace without
#                             /sys/fs/cgroup/unified (berthd and dockerd run outside it;
#                             only the clients and crun run inside)
#   BENCH_SEED=1              seed of the shuffled order
#   BENCH_STRICT=0            1: exit 1 when a target is missed
#   BENCH_JSON=FILE           also write the raw times, memory readings and statistics as JSON
#   BENCH_BUILD=1             0: skip `cargo build --release`, use the binaries already in
#                             target/release
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
# shellcheck source=scripts/dockerd.sh
. "$(dirname "${BASH_SOURCE[0]}")/dockerd.sh"

json_out=${BENCH_JSON:-}
[[ -z $json_out ]] || json_out=$(realpath -m -- "$json_out")
root_dir=$(repo_root)
cd "$root_dir"

runs=${BENCH_RUNS:-50}
warmup=${BENCH_WARMUP:-3}
read -r -a tools <<<"${BENCH_TOOLS:-berth docker crun}"
client=${BENCH_CLIENT:-berth}
docker_network=${BENCH_DOCKER_NETWORK:-}
containers=${BENCH_CONTAINERS:-50}
settle=${BENCH_SETTLE:-6}
cgroups=${BENCH_CGROUPS:-auto}
seed=${BENCH_SEED:-1}
strict=${BENCH_STRICT:-0}
build=${BENCH_BUILD:-1}

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$runs'"
[[ $warmup =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer, not '$warmup'"
[[ $containers =~ ^[0-9]+$ ]] || die "BENCH_CONTAINERS must be a non-negative integer, not '$containers'"
[[ $settle =~ ^[0-9]+$ ]] || die "BENCH_SETTLE must be a non-negative integer, not '$settle'"
[[ $seed =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer, not '$seed'"
[[ $strict == 0 || $strict == 1 ]] || die "BENCH_STRICT must be 0 or 1, not '$strict'"
[[ $build == 0 || $build == 1 ]] || die "BENCH_BUILD must be 0 or 1, not '$build'"
[[ $docker_network =~ ^[A-Za-z0-9_.-]*$ ]] || die "BENCH_DOCKER_NETWORK '$docker_network' is not a network name"
case $client in berth | docker) ;; *) die "BENCH_CLIENT must be berth or docker, not '$client'" ;; esac
case $cgroups in auto | host | v1) ;; *) die "BENCH_CGROUPS must be auto, host or v1, not '$cgroups'" ;; esac
((${#tools[@]} > 0)) || die "BENCH_TOOLS is empty"
declare -A wanted=()
for tool in "${tools[@]}"; do
    case $tool in berth | docker | crun) ;; *) die "unknown tool '$tool' in BENCH_TOOLS (known: berth docker crun)" ;; esac
    [[ -z ${wanted[$tool]:-} ]] || die "BENCH_TOOLS names $tool twice"
    wanted[$tool]=1
done
[[ $(id -u) -eq 0 ]] || die "containers need root: run this as root (e.g. sudo $0)"

IMAGE=busybox:latest
FIXTURE=$root_dir/target/bench-engine/image
BRIDGE=berthbench1
BRIDGE_ADDR=198.18.253.1/24
# cgroup of berthd's containers, below each hierarchy's root; removed at exit.
CGROUP_PARENT=/berth-bench-engine-$$

# --- set-up ----------------------------------------------------------------------------

need_debian_packages docker.io crun busybox-static jq python3 iproute2 util-linux
need_commands dockerd:docker.io docker:docker.io crun:crun ip:iproute2 unshare:util-linux \
    findmnt:util-linux python3:python3 jq:jq
if ((build)); then
    need_cargo
    info "cargo build --release -p berthd -p berth-cli -p berth-monitor -p berth-init"
    cargo build --release -p berthd -p berth-cli -p berth-monitor -p berth-init ||
        die "building berth failed (see cargo's output above)"
fi
BERTHD=$root_dir/target/release/berthd
BERTH=$root_dir/target/release/berth
for bin in "$BERTHD" "$BERTH" "${BERTHD%/*}/berth-monitor" "${BERTHD%/*}/berth-init"; do
    [[ -x $bin ]] || die "no $bin (BENCH_BUILD=0 needs a release build of berth)"
done

# work: durable state (berth's root, dockerd's, crun's, the image tar).
# run: berthd's exec root and socket, in /run like the real one and short, since the
# monitors' sockets (<exec root>/containers/<64 hex>/monitor.sock) must fit sun_path.
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-engine.XXXXXX")
run=$(mktemp -d /run/bbe.XXXXXX)
DOCKER_DIR=$work/docker
BERTH_SOCK=$run/berthd.sock
berthd_pid=

berth_client() {
    case $client in
        berth) "$BERTH" -H "unix://$BERTH_SOCK" "$@" ;;
        docker) docker -H "unix://$BERTH_SOCK" "$@" ;;
    esac
}

# pids_of_cgroup_tree — every pid in berthd's containers' cgroups (any hierarchy: cgroup2
# at /sys/fs/cgroup, v1 ones below it).
pids_of_cgroup_tree() {
    local dir
    for dir in /sys/fs/cgroup"$CGROUP_PARENT" /sys/fs/cgroup/*"$CGROUP_PARENT"; do
        [[ -d $dir ]] || continue
        find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done | sort -un
}

# monitors_in DIR — berth-monitor processes working in DIR: a container's monitor works in
# its run dir.
monitors_in() {
    local pid
    for pid in $(pgrep -x berth-monitor || true); do
        if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$1"/* ]]; then
            echo "$pid"
        fi
    done
}

# remove_leftovers — whatever berthd's containers left when `rm -f` did not work: their
# processes, monitors, mounts and cgroups.
remove_leftovers() {
    local pid dir mnt
    for pid in $(pids_of_cgroup_tree) $(monitors_in "$run"); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.2
    # $run itself too: berthd mounts a tmpfs there (/run is not one here).
    findmnt -rn -o TARGET |
        awk -v a="$work/" -v r="$run" 'index($0, a) == 1 || $0 == r || index($0, r "/") == 1' |
        sort -r | while read -r mnt; do
        umount -l -- "$mnt" 2>/dev/null || true
    done
    for dir in /sys/fs/cgroup"$CGROUP_PARENT" /sys/fs/cgroup/*"$CGROUP_PARENT"; do
        if [[ -d $dir ]]; then
            find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
        fi
    done
}

stop_berthd() {
    [[ -n $berthd_pid ]] || return 0
    kill -TERM "$berthd_pid" 2>/dev/null || true
    wait "$berthd_pid" 2>/dev/null || true
    berthd_pid=
}

cleanup() {
    set +e # best effort: one failed step must not skip the others
    if [[ -n $berthd_pid ]]; then
        local ids
        read -r -d '' -a ids < <(timeout 20 "$BERTH" -H "unix://$BERTH_SOCK" ps -a -q 2>/dev/null) || true
        ((${#ids[@]} == 0)) || timeout 60 "$BERTH" -H "unix://$BERTH_SOCK" rm -f "${ids[@]}" >/dev/null 2>&1 || true
    fi
    stop_berthd
    stop_dockerd
    remove_bridge
    remove_leftovers
    rm -rf --one-file-system -- "$work" "$run"
}
trap cleanup EXIT

# start_berthd — berthd on the temp dirs; waits until it answers /_ping.
start_berthd() {
    local deadline=$((SECONDS + 60))
    mkdir -p -- "$work/berth"
    "$BERTHD" --root "$work/berth" --exec-root "$run" -H "unix://$BERTH_SOCK" \
        --cgroup-parent "$CGROUP_PARENT" </dev/null >>"$work/berthd.log" 2>&1 &
    berthd_pid=$!
    until python3 - "$BERTH_SOCK" <<'PY' 2>/dev/null; do
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: berthd\r\n\r\n")
sys.exit(0 if s.recv(64).startswith(b"HTTP/1.") else 1)
PY
        kill -0 "$berthd_pid" 2>/dev/null ||
            die "berthd exited during start-up; $work/berthd.log says:
$(tail -n 20 "$work/berthd.log")"
        ((SECONDS < deadline)) || die "berthd did not answer within 60 s; see $work/berthd.log"
        sleep 0.05
    done
}

# make_image_tar — $work/busybox.tar: the fixture's OCI layout plus a docker-save
# manifest.json (Docker 25's format). Docker 20.10 only reads docker-save archives, and
# the layout's ref name "latest" alone names no repository, so the manifest.json tags it.
make_image_tar() {
    local manifest
    bash scripts/registry-fixture.sh busybox-image "$FIXTURE" >/dev/null
    cp -a -- "$FIXTURE/oci" "$work/image"
    manifest=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$work/image/index.json")
    jq --arg tag "$IMAGE" '[{
        Config: ("blobs/sha256/" + (.config.digest | sub("sha256:"; ""))),
        RepoTags: [$tag],
        Layers: [.layers[].digest | "blobs/sha256/" + sub("sha256:"; "")]
    }]' "$work/image/blobs/sha256/$manifest" >"$work/image/manifest.json"
    config_digest=$(jq -r '.config.digest' "$work/image/blobs/sha256/$manifest")
    tar -C "$work/image" -cf "$work/busybox.tar" .
}

# check_loaded NAME ID — the image busybox:latest has the fixture's config digest.
check_loaded() {
    [[ ${2#sha256:} == "${config_digest#sha256:}" ]] ||
        die "$1 loaded $IMAGE as image '$2', not $config_digest"
}

# make_bundles — crun's bundle (args ["true"]) and check bundle (sh -c 'exit 3'), both
# on the fixture's rootfs (the image's one layer), read-only.
make_bundles() {
    mkdir -p -- "$work/bundle" "$work/check-bundle" "$work/crun"
    crun spec --bundle "$work/bundle" || die "'crun spec' failed"
    python3 - "$work/bundle/config.json" "$work/check-bundle/config.json" "$FIXTURE/rootfs" <<'PY'
import json, sys

path, check, rootfs = sys.argv[1:]
spec = json.load(open(path))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["terminal"] = False
for out, args in ((path, ["true"]), (check, ["sh", "-c", "exit 3"])):
    spec["process"]["args"] = args
    with open(out, "w") as f:
        json.dump(spec, f, indent=2)
PY
}

# cgroup_wrap — sets wrap, the command prefix that shows this host to crun as cgroup v1
# only, if needed (see BENCH_CGROUPS), and cgroup_note.
wrap=()
cgroup_wrap() {
    local unified
    unified=$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null || true)
    if [[ $cgroups == v1 ]] ||
        [[ $cgroups == auto && $(stat -fc %T /sys/fs/cgroup) == tmpfs && $unified == cgroup2fs &&
            -n $(tr -d '[:space:]' </sys/fs/cgroup/unified/cgroup.controllers) ]]; then
        if [[ $unified == cgroup2fs ]]; then
            cgroup_note="crun sees the hybrid host as cgroup v1 only: private mount namespace without /sys/fs/cgroup/unified (crun 1.8 refuses hybrid hosts whose cgroup2 has controllers: $(xargs </sys/fs/cgroup/unified/cgroup.controllers))"
            wrap=(unshare --mount --propagation private -- sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh)
        fi
    fi
}

# vmrss_kib PID — VmRSS of PID in KiB.
vmrss_kib() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

info "busybox image and its tar"
make_image_tar
info "starting berthd (root $work/berth, exec root $run)"
start_berthd
berthd_start_rss=$(vmrss_kib "$berthd_pid")
info "berth: load -i busybox.tar"
berth_client load -i "$work/busybox.tar" >/dev/null || die "berth could not load $work/busybox.tar"
check_loaded berth "$(berth_client image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -n ${wanted[docker]:-} ]]; then
    info "starting dockerd (data root $DOCKER_DIR/data, bridge $BRIDGE)"
    make_bridge
    # shellcheck disable=SC2119 # no extra dockerd arguments
    start_dockerd
    docker_cli load -i "$work/busybox.tar" >/dev/null || die "docker could not load $work/busybox.tar"
    check_loaded docker "$(docker_cli image inspect --format '{{.Id}}' "$IMAGE")"
fi
cgroup_note="host view ($(stat -fc %T /sys/fs/cgroup))"
if [[ -n ${wanted[crun]:-} ]]; then
    make_bundles
    cgroup_wrap
fi

# --- the measurement --------------------------------------------------------------------

PLAN_RUNS=$runs PLAN_WARMUP=$warmup PLAN_SEED=$seed PLAN_STRICT=$strict PLAN_JSON_OUT=$json_out \
    PLAN_CGROUPS=$cgroup_note PLAN_TOOLS="${tools[*]}" PLAN_CLIENT=$client PLAN_IMAGE=$IMAGE \
    PLAN_BERTH=$BERTH PLAN_BERTH_SOCK=$BERTH_SOCK PLAN_BERTHD_PID=$berthd_pid PLAN_EXEC_ROOT=$run \
    PLAN_BERTHD_START_RSS=$berthd_start_rss \
    PLAN_DOCKER_SOCK=$DOCKER_DIR/docker.sock PLAN_DOCKERD_PID=$dockerd_pid \
    PLAN_DOCKER_NETWORK=$docker_network PLAN_CRUN_ROOT=$work/crun PLAN_BUNDLE=$work/bundle \
    PLAN_CHECK_BUNDLE=$work/check-bundle PLAN_CONTAINERS=$containers PLAN_SETTLE=$settle \
    python3 - "$work/plan.json" <<'PY'
import json, os, sys

env = {k[5:].lower(): v for k, v in os.environ.items() if k.startswith("PLAN_")}
for k in ("runs", "warmup", "seed", "containers", "settle", "berthd_pid", "berthd_start_rss"):
    env[k] = int(env[k])
env["dockerd_pid"] = int(env["dockerd_pid"]) if env["dockerd_pid"] else None
env["strict"] = env["strict"] == "1"
env["tools"] = env["tools"].split()
with open(sys.argv[1], "w") as f:
    json.dump(env, f, indent=2)
PY

cat >"$work/bench.py" <<'PY'
"""The measurements of bench-engine.sh; see its header."""
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

plan = json.load(open(sys.argv[1]))
MIB = 1024 * 1024


def berth_cli():
    if plan["client"] == "docker":
        return ["docker", "-H", "unix://" + plan["berth_sock"]]
    return [plan["berth"], "-H", "unix://" + plan["berth_sock"]]


def docker_cli():
    return ["docker", "-H", "unix://" + plan["docker_sock"]]


def docker_run():
    net = ["--network", plan["docker_network"]] if plan["docker_network"] else []
    return docker_cli() + ["run", "--rm"] + net


def command(tool, args):
    """The command that runs `args` in a busybox container with `tool`."""
    if tool == "berth":
        return berth_cli() + ["run", "--rm", plan["image"]] + args
    if tool == "docker":
        return docker_run() + [plan["image"]] + args
    bundle = plan["bundle"] if args == ["true"] else plan["check_bundle"]
    return ["crun", "--root", plan["crun_root"], "run", "--bundle", bundle, "bench-crun"]


def abort(msg):
    print(f"bench-engine.sh: error: {msg}", file=sys.stderr)
    sys.exit(1)


def stderr_tail(text):
    lines = text.strip().splitlines()[-20:]
    return "\n    ".join(lines) or "(empty)"


def run_once(tool, what):
    """One `true` run; returns its wall time in ns. Aborts on a non-zero exit."""
    cmd = command(tool, ["true"])
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter_ns()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        t1 = time.perf_counter_ns()
        if p.returncode != 0:
            err.seek(0)
            abort(f"{tool} failed on {what} with exit code {p.returncode}\n"
                  f"  command: {shlex.join(cmd)}\n"
                  f"  its stderr:\n    {stderr_tail(err.read().decode(errors='replace'))}")
    return t1 - t0


def check(tool):
    """The tool must really run the process and pass its exit status on."""
    cmd = command(tool, ["sh", "-c", "exit 3"])
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode != 3:
        abort(f"{tool} did not run the container's process: `{shlex.join(cmd)}` "
              f"(process: sh -c 'exit 3') exited with {p.returncode}, not 3\n"
              f"  its stderr:\n    {stderr_tail(p.stderr)}")


def containers_left(cli):
    p = subprocess.run(cli + ["ps", "-a", "-q"], capture_output=True, text=True)
    if p.returncode != 0:
        abort(f"`{shlex.join(cli + ['ps', '-a', '-q'])}` failed: {stderr_tail(p.stderr)}")
    return p.stdout.split()


def check_removed():
    """`run --rm` must leave no container behind (else the runs skipped the removal)."""
    clis = {"berth": berth_cli(), "docker": docker_cli()}
    for tool in plan["tools"]:
        left = containers_left(clis[tool]) if tool in clis else []
        if left:
            abort(f"{tool}: {len(left)} containers are left after the `run --rm` runs: {' '.join(left)}")


def measure_runs():
    tools = plan["tools"]
    for i in range(plan["warmup"]):
        for tool in tools:
            run_once(tool, f"warmup run {i + 1}")
    rng = random.Random(plan["seed"])
    times = {tool: [] for tool in tools}
    order = list(tools)
    for i in range(plan["runs"]):
        rng.shuffle(order)
        for tool in order:
            times[tool].append(run_once(tool, f"timed run {i + 1}") / 1e6)
    return times


def summary(ts):
    return {
        "runs": len(ts),
        "median_ms": statistics.median(ts),
        "mean_ms": statistics.fmean(ts),
        "min_ms": min(ts),
        "max_ms": max(ts),
        "stddev_ms": statistics.stdev(ts) if len(ts) > 1 else 0.0,
    }


# --- memory -----------------------------------------------------------------------------

def status_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def rollup_kib(pid):
    """Pss and Private_Clean + Private_Dirty (USS) of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return {"pss": out["Pss"], "uss": out["Private_Clean"] + out["Private_Dirty"]}


def monitor_pids():
    """The monitors of this berthd's containers: berth-monitors working in our exec root."""
    prefix = plan["exec_root"].rstrip("/") + "/"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if comm == "berth-monitor" and cwd.startswith(prefix):
            pids.append(int(entry))
    return pids


def spare_monitor_kib():
    """VmRSS of berthd's spare monitor: its berth-monitor child waiting, in /, for a start."""
    def waiting(pid):
        try:
            return os.readlink(f"/proc/{pid}/cwd") == "/"
        except OSError:
            return False
    return sum(status_kib(p) for p in children(plan["berthd_pid"], "berth-monitor") if waiting(p))


def children(pid, comm):
    """Child pids of pid whose comm is comm (dockerd's own containerd)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and name == comm:
            out.append(int(entry))
    return out


def cli_ok(cmd, what):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode != 0:
        abort(f"{what} failed with exit code {p.returncode}: `{shlex.join(cmd)}`\n"
              f"  its stderr:\n    {stderr_tail(p.stderr)}")
    return p.stdout


def measure_monitors():
    n = plan["containers"]
    cli = berth_cli()
    ids, run_ms = [], []
    try:
        for i in range(n):
            cmd = cli + ["run", "-d", plan["image"], "sleep", "1000"]
            t0 = time.perf_counter_ns()
            out = cli_ok(cmd, f"starting container {i + 1} of {n}")
            run_ms.append((time.perf_counter_ns() - t0) / 1e6)
            ids.append(out.strip())
        running = cli_ok(cli + ["ps", "-q", "--no-trunc"], "ps").split()
        if sorted(running) != sorted(ids):
            abort(f"{len(ids)} containers started but ps lists {len(running)} running")
        pids = monitor_pids()
        if len(pids) != n:
            abort(f"{n} containers run but {len(pids)} berth-monitor processes exist: {pids}")
        per = [{"pid": pid, "vmrss_kib": status_kib(pid), "rssanon_kib": status_kib(pid, "RssAnon"),
                "rssfile_kib": status_kib(pid, "RssFile"),
                **{k + "_kib": v for k, v in rollup_kib(pid).items()}}
               for pid in pids]
        berthd_busy = status_kib(plan["berthd_pid"])
    finally:
        if ids:
            cli_ok(cli + ["rm", "-f"] + ids, f"removing the {len(ids)} containers")
    deadline = time.monotonic() + 20
    while monitor_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    if monitor_pids():
        abort(f"berth-monitor processes are left 20 s after `rm -f`: {monitor_pids()}")
    total = {k: sum(p[k] for p in per) for k in ("vmrss_kib", "rssanon_kib", "rssfile_kib", "pss_kib", "uss_kib")}
    return {"containers": n, "monitors": per, "total_kib": total,
            "per_container_kib": {k: v / n for k, v in total.items()},
            "berthd_vmrss_kib_with_containers": berthd_busy, "run_d_ms": summary(run_ms)}


# --- report -----------------------------------------------------------------------------

def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        lines = (p.stdout or p.stderr).strip().splitlines()
        return lines[0] if p.returncode == 0 and lines else "(no version)"
    except Exception as e:  # noqa: BLE001 - informative only
        return f"(version failed: {e})"


def mib(kib):
    return f"{kib / 1024:.2f} MiB"


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main():
    tools = plan["tools"]
    for tool in tools:
        check(tool)
    times = measure_runs()
    check_removed()
    stats = {tool: summary(ts) for tool, ts in times.items()}
    time.sleep(plan["settle"])
    berthd_idle = {"after_start_kib": plan["berthd_start_rss"],
                   "after_runs_kib": status_kib(plan["berthd_pid"]),
                   "after_runs_pss_kib": rollup_kib(plan["berthd_pid"])["pss"],
                   "spare_monitor_kib": spare_monitor_kib()}
    docker_idle = None
    if plan["dockerd_pid"]:
        docker_idle = {"dockerd_kib": status_kib(plan["dockerd_pid"]),
                       "containerd_kib": sum(status_kib(p) for p in children(plan["dockerd_pid"], "containerd"))}
    monitors = measure_monitors() if plan["containers"] else None

    targets = []
    med = {tool: s["median_ms"] for tool, s in stats.items()}
    print()
    print(f"berth engine benchmark: `<cli> run --rm {plan['image']} true` / crun run   "
          f"({plan['runs']} timed runs each after {plan['warmup']} warmup runs; python3 perf_counter_ns "
          "around subprocess.run, interleaved in shuffled order)")
    print(f"  host: {platform.node()} linux {platform.release()}, {os.cpu_count()} CPUs; cgroups: {plan['cgroups']}")
    print(f"  berth: {shlex.join(berth_cli())} ({version(berth_cli()[:1] + ['--version'])})")
    if "docker" in tools:
        net = plan["docker_network"] or "default (bridge)"
        print(f"  docker: {version(docker_cli() + ['version', '--format', 'client {{.Client.Version}}, dockerd {{.Server.Version}}'])}; network {net}")
    if "crun" in tools:
        print(f"  crun: {version(['crun', '--version'])}")
    print()
    hdr = f"{'tool':<8} {'median ms':>10} {'mean ms':>10} {'min ms':>9} {'stddev ms':>10} {'vs crun':>8} {'docker/x':>9}"
    print(hdr)
    print("-" * len(hdr))
    for tool in tools:
        s = stats[tool]
        vs_crun = f"{s['median_ms'] / med['crun']:.2f}x" if "crun" in med else "-"
        speedup = f"{med['docker'] / s['median_ms']:.1f}x" if "docker" in med else "-"
        print(f"{tool:<8} {s['median_ms']:>10.2f} {s['mean_ms']:>10.2f} {s['min_ms']:>9.2f} "
              f"{s['stddev_ms']:>10.2f} {vs_crun:>8} {speedup:>9}")
    print()
    if "berth" in med:
        targets.append(("berth run --rm <= 20 ms (median)", med["berth"] <= 20.0, f"{med['berth']:.2f} ms"))
        if "docker" in med:
            x = med["docker"] / med["berth"]
            targets.append(("berth run --rm >= 20x faster than docker (medians)", x >= 20.0, f"{x:.1f}x"))

    print(f"berthd VmRSS: {mib(berthd_idle['after_start_kib'])} after start-up, "
          f"{mib(berthd_idle['after_runs_kib'])} idle after the runs (Pss {mib(berthd_idle['after_runs_pss_kib'])})")
    spare = berthd_idle["spare_monitor_kib"]
    print(f"  + its spare monitor's VmRSS: {mib(spare) if spare else 'none (the last start took it)'}")
    idle = max(berthd_idle["after_start_kib"], berthd_idle["after_runs_kib"]) + berthd_idle["spare_monitor_kib"]
    targets.append(("berthd idle VmRSS (with its spare monitor) <= 15 MB (15,000,000 bytes)",
                    idle * 1024 <= 15_000_000, f"{idle * 1024 / 1e6:.1f} MB"))
    if docker_idle:
        print(f"dockerd VmRSS: {mib(docker_idle['dockerd_kib'])} idle after the runs "
              f"(+ its containerd {mib(docker_idle['containerd_kib'])})")
    if monitors:
        n, per, tot = monitors["containers"], monitors["per_container_kib"], monitors["total_kib"]
        print(f"{n} running containers (`run -d {plan['image']} sleep 1000`, median "
              f"{monitors['run_d_ms']['median_ms']:.1f} ms each): {n} berth-monitor processes")
        print(f"  monitors' VmRSS: {mib(tot['vmrss_kib'])} total, {mib(per['vmrss_kib'])} per container "
              f"(anon {mib(per['rssanon_kib'])}, file {mib(per['rssfile_kib'])})")
        print(f"  monitors' Pss:   {mib(tot['pss_kib'])} total, {mib(per['pss_kib'])} per container "
              f"(private {mib(per['uss_kib'])})")
        print(f"  berthd VmRSS meanwhile: {mib(monitors['berthd_vmrss_kib_with_containers'])}")
        targets.append(("monitor VmRSS <= 1 MiB per running container", per["vmrss_kib"] <= 1024,
                        mib(per["vmrss_kib"])))
        targets.append(("monitor Pss <= 1 MiB per running container", per["pss_kib"] <= 1024,
                        mib(per["pss_kib"])))
    print()
    for name, ok, value in targets:
        print(f"target {name}: {verdict(ok)} ({value})")

    if plan["json_out"]:
        with open(plan["json_out"], "w") as f:
            json.dump({"plan": plan, "stats": stats, "times_ms": times, "berthd_idle": berthd_idle,
                       "docker_idle": docker_idle, "monitors": monitors,
                       "targets": [{"name": t[0], "pass": t[1], "value": t[2]} for t in targets]}, f, indent=2)
        print(f"raw data written to {plan['json_out']}")
    if plan["strict"] and not all(ok for _, ok, _ in targets):
        sys.exit(1)


main()
PY

info "measuring ${tools[*]}: $warmup warmup + $runs timed runs each; then memory with $containers containers"
"${wrap[@]}" python3 "$work/bench.py" "$work/plan.json"
