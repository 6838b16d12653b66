#!/usr/bin/env bash
# bench-runtime.sh — container start-to-exit time of berth-runtime vs crun vs runc.
#
# A benchmark, not a test. It installs runc, crun and hyperfine from Debian
# (when missing), builds berth-runtime in release mode, makes ONE OCI bundle
# (busybox rootfs; config.json = `runc spec` with terminal false and args
# ["true"], the same file for every runtime) and then, in one invocation, times
#
#   <runtime> --root <its own temp dir> run --bundle target/bench/bundle bench-<runtime>
#
# for each runtime: warmup runs, then BENCH_RUNS timed runs each, interleaved
# (every round runs each runtime once, in a shuffled order) so that drift of
# the machine hits all of them alike. It prints median / mean / min / stddev
# per runtime, the ratios of the medians vs crun and vs runc, and whether the
# target "berth-runtime <= 1.0x crun" (medians) is met. Any run that exits
# non-zero aborts the benchmark with that run's error output.
#
# Environment (all optional):
#   BENCH_RUNS=100          timed runs per runtime
#   BENCH_WARMUP=5          untimed runs per runtime first
#   BENCH_RUNTIMES="berth-runtime crun runc"   which ones (any subset/order)
#   BENCH_TOOL=python       python: perf_counter_ns around subprocess.run,
#                           interleaved; hyperfine: `hyperfine -N` (runs each
#                           runtime's batch one after the other)
#   BENCH_CGROUPS=auto      auto | host | v1 — see "cgroups" below
#   BENCH_SEED=1            seed of the shuffled order
#   BENCH_STRICT=0          1: exit 1 when the target is missed
#   BENCH_JSON=FILE         also write the raw times and statistics as JSON
#   BENCH_SECCOMP=default   default: the config gets Docker's default seccomp
#                           profile in linux.seccomp, as berthd gives every
#                           container (moby's default.json filtered for the
#                           config's capabilities by berth's engine code, through
#                           `cargo run -p berth-engine --example seccomp-profile`),
#                           so every runtime compiles and loads the same filter;
#                           none: no linux.seccomp (the bare runc spec)
#
# cgroups: crun (1.8, Debian 12) refuses to run on a hybrid v1+v2 host whose
# cgroup2 hierarchy holds any controller ("cgroups in hybrid mode not
# supported"), as on the project's VMs where hugetlb is bound to cgroup2. With
# BENCH_CGROUPS=auto, on such a host only, the whole measurement runs in a
# private mount namespace where /sys/fs/cgroup/unified is unmounted: all three
# runtimes then see the same pure cgroup v1 host. BENCH_CGROUPS=host never
# does this (crun then fails on such hosts); v1 always does it.
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

json_out=${BENCH_JSON:-}
[[ -z $json_out ]] || json_out=$(realpath -m -- "$json_out")
root_dir=$(repo_root)
cd "$root_dir"

runs=${BENCH_RUNS:-100}
warmup=${BENCH_WARMUP:-5}
read -r -a runtimes <<<"${BENCH_RUNTIMES:-berth-runtime crun runc}"
tool=${BENCH_TOOL:-python}
cgroups=${BENCH_CGROUPS:-auto}
seed=${BENCH_SEED:-1}
strict=${BENCH_STRICT:-0}

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$runs'"
[[ $warmup =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer, not '$warmup'"
[[ $seed =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer, not '$seed'"
[[ $strict == 0 || $strict == 1 ]] || die "BENCH_STRICT must be 0 or 1, not '$strict'"
((${#runtimes[@]} > 0)) || die "BENCH_RUNTIMES is empty"
case $tool in python | hyperfine) ;; *) die "BENCH_TOOL must be python or hyperfine, not '$tool'" ;; esac
case $cgroups in auto | host | v1) ;; *) die "BENCH_CGROUPS must be auto, host or v1, not '$cgroups'" ;; esac
seccomp=${BENCH_SECCOMP:-default}
case $seccomp in default | none) ;; *) die "BENCH_SECCOMP must be default or none, not '$seccomp'" ;; esac
[[ $(id -u) -eq 0 ]] || die "containers need root: run this as root (e.g. sudo $0)"

need_debian_packages runc crun hyperfine busybox-static
need_commands python3:python3 unshare:util-linux

declare -A path_of=()
for rt in "${runtimes[@]}"; do
    [[ -z ${path_of[$rt]:-} ]] || die "BENCH_RUNTIMES names $rt twice"
    case $rt in
        berth-runtime)
            need_cargo
            info "cargo build --release -p berth-runtime"
            cargo build --release -p berth-runtime || die "building berth-runtime failed (see cargo's output above)"
            path_of[$rt]=$root_dir/target/release/berth-runtime
            [[ -x ${path_of[$rt]} ]] || die "cargo built no ${path_of[$rt]}"
            ;;
        crun | runc)
            path_of[$rt]=$(command -v "$rt") || die "$rt not found on PATH although its package is installed"
            ;;
        *) die "unknown runtime '$rt' in BENCH_RUNTIMES (known: berth-runtime crun runc)" ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
cleanup() {
    rm -rf -- "$work"
}
trap cleanup EXIT
work_profile=$work/seccomp.json
: >"$work_profile"

# One bundle for all runtimes.
bundle=$root_dir/target/bench/bundle
info "making the bundle in ${bundle#"$root_dir"/}"
mkdir -p "$bundle"
"$root_dir/scripts/make-busybox-rootfs.sh" "$bundle/rootfs"
rm -f "$bundle/config.json" # `spec` refuses to overwrite it
runc spec --bundle "$bundle" || die "'runc spec --bundle $bundle' failed"
if [[ $seccomp == default ]]; then
    need_cargo
    read -r -a bounding < <(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["process"]["capabilities"]["bounding"]))' "$bundle/config.json")
    info "Docker's default seccomp profile for ${bounding[*]} (cargo run -p berth-engine --example seccomp-profile)"
    cargo run -q -p berth-engine --example seccomp-profile -- "${bounding[@]}" >"$work_profile" ||
        die "could not make the seccomp profile (see cargo's output above)"
fi
python3 - "$bundle/config.json" "$work_profile" <<'PY'
import json, os, sys

path, profile = sys.argv[1], sys.argv[2]
with open(path) as f:
    spec = json.load(f)
spec["process"]["terminal"] = False
spec["process"]["args"] = ["true"]
if os.path.getsize(profile) > 0:
    with open(profile) as f:
        spec["linux"]["seccomp"] = json.load(f)
with open(path + ".tmp", "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)

# The check bundle: same config, same rootfs, but `sh -c 'exit 7'`, to see
# that each runtime really runs the process and passes its status on.
check = os.path.join(os.path.dirname(os.path.dirname(path)), "check-bundle")
os.makedirs(check, exist_ok=True)
spec["root"]["path"] = os.path.join(os.path.dirname(path), spec["root"]["path"])
spec["process"]["args"] = ["sh", "-c", "exit 7"]
with open(os.path.join(check, "config.json"), "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY

# Does crun need a cgroup v1-only view of this host?
cgroup_note="host view ($(stat -fc %T /sys/fs/cgroup))"
wrap=()
if [[ $cgroups == v1 ]] ||
    [[ $cgroups == auto &&
        $(stat -fc %T /sys/fs/cgroup) == tmpfs &&
        $(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null || true) == cgroup2fs &&
        -n $(tr -d '[:space:]' </sys/fs/cgroup/unified/cgroup.controllers) ]]; then
    if [[ $(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null || true) == cgroup2fs ]]; then
        cgroup_note="hybrid host seen as cgroup v1 only: private mount namespace without /sys/fs/cgroup/unified (crun 1.8 refuses hybrid hosts whose cgroup2 has controllers: $(xargs </sys/fs/cgroup/unified/cgroup.controllers))"
        wrap=(unshare --mount --propagation private -- sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh)
    else
        cgroup_note="host view ($(stat -fc %T /sys/fs/cgroup); no /sys/fs/cgroup/unified to hide)"
    fi
fi


# The plan for the driver: one entry per runtime, each with its own state root.
plan_args=()
for rt in "${runtimes[@]}"; do
    mkdir -p "$work/root-$rt"
    plan_args+=("$rt" "${path_of[$rt]}" "$work/root-$rt")
done
PLAN_BUNDLE=$bundle PLAN_RUNS=$runs PLAN_WARMUP=$warmup PLAN_TOOL=$tool PLAN_SEED=$seed \
    PLAN_STRICT=$strict PLAN_JSON_OUT=$json_out PLAN_CGROUPS=$cgroup_note PLAN_SECCOMP=$seccomp \
    python3 - "$work/plan.json" "${plan_args[@]}" <<'PY'
import json, os, sys

out, rest = sys.argv[1], sys.argv[2:]
env = os.environ
plan = {
    "bundle": env["PLAN_BUNDLE"],
    "runs": int(env["PLAN_RUNS"]),
    "warmup": int(env["PLAN_WARMUP"]),
    "tool": env["PLAN_TOOL"],
    "seed": int(env["PLAN_SEED"]),
    "strict": env["PLAN_STRICT"] == "1",
    "json_out": env["PLAN_JSON_OUT"],
    "cgroups": env["PLAN_CGROUPS"],
    "seccomp": env["PLAN_SECCOMP"],
    "runtimes": [
        {"name": rest[i], "path": rest[i + 1], "root": rest[i + 2], "id": "bench-" + rest[i]}
        for i in range(0, len(rest), 3)
    ],
}
with open(out, "w") as f:
    json.dump(plan, f, indent=2)
PY

cat >"$work/bench.py" <<'PY'
"""Times `<runtime> --root R run --bundle B ID` for each runtime; see bench-runtime.sh."""
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
rts = plan["runtimes"]


def command(rt):
    return [rt["path"], "--root", rt["root"], "run", "--bundle", plan["bundle"], rt["id"]]


def force_delete(rt):
    subprocess.run([rt["path"], "--root", rt["root"], "delete", "--force", rt["id"]],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def abort(msg):
    print(f"bench-runtime.sh: error: {msg}", file=sys.stderr)
    for rt in rts:
        force_delete(rt)
    sys.exit(1)


def version(rt):
    try:
        out = subprocess.run([rt["path"], "--version"], capture_output=True, text=True, timeout=10)
        line = (out.stdout or out.stderr).strip().splitlines()
        return line[0] if out.returncode == 0 and line else "(no --version)"
    except Exception as e:  # noqa: BLE001 - informative only
        return f"(--version failed: {e})"


def run_once(rt, what):
    """One run; returns its wall time in ns. Aborts on a non-zero exit."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter_ns()
        p = subprocess.run(command(rt), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        t1 = time.perf_counter_ns()
        if p.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip()[-2000:]
            abort(f"{rt['name']} failed on {what} with exit code {p.returncode}\n"
                  f"  command: {shlex.join(command(rt))}\n"
                  f"  its stderr:\n    " + ("\n    ".join(tail.splitlines()) or "(empty)"))
    return t1 - t0


def check(rt):
    """The runtime must really run the process and exit with its status."""
    bundle = os.path.join(os.path.dirname(plan["bundle"]), "check-bundle")
    cmd = [rt["path"], "--root", rt["root"], "run", "--bundle", bundle, "check-" + rt["id"]]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode != 7:
        abort(f"{rt['name']} did not run the container's process: `{shlex.join(cmd)}` "
              f"(process: sh -c 'exit 7') exited with {p.returncode}, not 7\n"
              f"  its stderr:\n    " + ("\n    ".join(p.stderr.strip().splitlines()[-20:]) or "(empty)"))


def measure_python():
    rng = random.Random(plan["seed"])
    for i in range(plan["warmup"]):
        for rt in rts:
            run_once(rt, f"warmup run {i + 1}")
    times = {rt["name"]: [] for rt in rts}
    order = list(rts)
    for i in range(plan["runs"]):
        rng.shuffle(order)
        for rt in order:
            times[rt["name"]].append(run_once(rt, f"timed run {i + 1}") / 1e6)
    return times


def measure_hyperfine():
    # One plain run each first, for a readable error (hyperfine hides stderr).
    for rt in rts:
        run_once(rt, "the run before hyperfine")
    out = os.path.join(os.path.dirname(sys.argv[1]), "hyperfine.json")
    cmd = ["hyperfine", "-N", "--style", "basic", "--warmup", str(plan["warmup"]),
           "--runs", str(plan["runs"]), "--export-json", out]
    for rt in rts:
        cmd += ["-n", rt["name"], shlex.join(command(rt))]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    if p.returncode != 0:
        abort(f"hyperfine failed (exit code {p.returncode}): a run exited non-zero? see its output above")
    data = json.load(open(out))
    return {r["command"]: [t * 1e3 for t in r["times"]] for r in data["results"]}


for rt in rts:
    check(rt)
times = measure_hyperfine() if plan["tool"] == "hyperfine" else measure_python()

stats = {}
for name, ts in times.items():
    stats[name] = {
        "runs": len(ts),
        "median_ms": statistics.median(ts),
        "mean_ms": statistics.fmean(ts),
        "min_ms": min(ts),
        "max_ms": max(ts),
        "stddev_ms": statistics.stdev(ts) if len(ts) > 1 else 0.0,
    }


def ratio(a, b):
    if a not in stats or b not in stats:
        return None
    return stats[a]["median_ms"] / stats[b]["median_ms"]


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


how = ("python3 perf_counter_ns around subprocess.run, interleaved in shuffled order"
       if plan["tool"] == "python" else "hyperfine -N, one runtime after the other")
print()
print("berth-runtime benchmark: <runtime> --root <own temp dir> run --bundle "
      f"{os.path.relpath(plan['bundle'])} bench-<runtime>   (process: true)")
print(f"  {plan['runs']} timed runs per runtime after {plan['warmup']} warmup runs; {how}")
print(f"  host: {platform.node()} linux {platform.release()}, {os.cpu_count()} CPUs; cgroups: {plan['cgroups']}")
print("  seccomp: " + ("Docker's default profile in every config" if plan["seccomp"] == "default" else "none"))
for rt in rts:
    print(f"  {rt['name']}: {rt['path']}: {version(rt)}")
print()
hdr = f"{'runtime':<14} {'median ms':>10} {'mean ms':>10} {'min ms':>9} {'stddev ms':>10} {'vs crun':>8} {'vs runc':>8}"
print(hdr)
print("-" * len(hdr))
for rt in rts:
    s = stats[rt["name"]]
    print(f"{rt['name']:<14} {s['median_ms']:>10.2f} {s['mean_ms']:>10.2f} {s['min_ms']:>9.2f} "
          f"{s['stddev_ms']:>10.2f} {fmt_ratio(ratio(rt['name'], 'crun')):>8} "
          f"{fmt_ratio(ratio(rt['name'], 'runc')):>8}")
print()
r = ratio("berth-runtime", "crun")
if r is None:
    verdict = "n/a (needs both berth-runtime and crun in BENCH_RUNTIMES)"
else:
    verdict = f"{'PASS' if r <= 1.0 else 'FAIL'} ({r:.2f}x crun, medians)"
print(f"target berth-runtime <= 1.0x crun: {verdict}")

if plan["json_out"]:
    with open(plan["json_out"], "w") as f:
        json.dump({"plan": plan, "stats": stats, "times_ms": times}, f, indent=2)
    print(f"raw times written to {plan['json_out']}")

if plan["strict"] and r is not None and r > 1.0:
    sys.exit(1)
PY

info "measuring ${runtimes[*]}: $warmup warmup + $runs timed runs each ($tool)"
"${wrap[@]}" python3 "$work/bench.py" "$work/plan.json"
