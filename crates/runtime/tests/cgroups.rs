//! Cgroups: placement, cgroup namespace, limits enforced (memory, pids, cpu) and written to the
//! host's cgroup files. Works on v1 (legacy/hybrid: controllers under /sys/fs/cgroup/<ctrl>) and
//! on pure v2 (/sys/fs/cgroup is cgroup2).

mod common;

use std::fs;

use common::*;
use serde_json::json;

/// The controllers (v1) whose /proc/<pid>/cgroup lines must show the container's cgroup;
/// `""` is the `0::` line of a pure v2 host.
fn checked_controllers() -> Vec<String> {
    match cgroup_mode() {
        CgroupMode::V1 => v1_controllers(),
        CgroupMode::V2 => vec![String::new()],
    }
}

#[track_caller]
fn assert_cgroup_lines(text: &str, want: &str) {
    for ctrl in checked_controllers() {
        let got = proc_cgroup_path(text, &ctrl);
        assert_eq!(
            got.as_deref(),
            Some(want),
            "controller {ctrl:?} should be at {want}:\n{text}"
        );
    }
}

#[test]
fn container_joins_its_cgroup_and_delete_removes_it() {
    let ctx = Ctx::new("container_joins_its_cgroup");
    let b = ctx.private_bundle(&["sleep", "30"]);
    ctx.create(&b).ok();
    let pid = ctx.pid_of(&b.id);
    let ctrls = match cgroup_mode() {
        CgroupMode::V1 => v1_controllers(),
        CgroupMode::V2 => vec!["(unified)".to_string()],
    };
    for ctrl in &ctrls {
        let dir = cgroup_dir(&b.cgroup_path, ctrl);
        let procs = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "pid {pid} not in {}/cgroup.procs: {procs:?}",
            dir.display()
        );
    }
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

/// Without `linux.cgroupsPath` the container goes to "/berth/<id>".
#[test]
fn default_cgroup_path_is_berth_slash_id() {
    let ctx = Ctx::new("default_cgroup_path");
    let mut b = ctx.bundle(&["sleep", "30"]);
    b.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    b.cgroup_path = format!("/berth/{}", b.id);
    ctx.track_cgroup(&b.cgroup_path);
    ctx.create(&b).ok();
    let pid = ctx.pid_of(&b.id);
    let host = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_cgroup_lines(&host, &b.cgroup_path);
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

/// Without a cgroup namespace the container sees its full cgroup path.
#[test]
fn proc_self_cgroup_shows_container_path_without_cgroupns() {
    let ctx = Ctx::new("proc_self_cgroup_full_path");
    let mut b = ctx.bundle(&["cat", "/proc/self/cgroup"]);
    b.remove_namespace("cgroup");
    let out = ctx.run(&b);
    out.ok();
    assert_cgroup_lines(&out.stdout, &b.cgroup_path);
}

/// With a cgroup namespace, the container's own cgroup is its root ("/"), while the host
/// sees the full path for the same process.
#[test]
fn cgroup_namespace_is_rooted_at_the_container_cgroup() {
    let ctx = Ctx::new("cgroupns_rooted_at_container");
    let b = ctx.bundle(&["sh", "-c", "cat /proc/self/cgroup; echo END; exec sleep 30"]);
    let (created, pid) = ctx.create_start(&b, "sleep");
    let inside = wait_until(STATE_TIMEOUT, "the container's /proc/self/cgroup", || {
        let s = created.stdout_now();
        s.contains("END").then_some(s)
    });
    assert_cgroup_lines(&inside, "/");
    let host = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_cgroup_lines(&host, &b.cgroup_path);
    ctx.kill_and_delete(&b.id);
}

#[test]
fn memory_limit_gets_an_allocating_process_oom_killed() {
    let ctx = Ctx::new("memory_limit_oom_kills");
    let args = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    // Control: without the limit the same command succeeds.
    let free = ctx.bundle(&args);
    ctx.run(&free).ok();

    let mut b = ctx.bundle(&args);
    b.resources()["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    ctx.run(&b).code_is(137);
    ctx.assert_nothing_left(&b);
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let ctx = Ctx::new("pids_limit_stops_fork_loop");
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "for i in $(seq 20); do sleep 30 & echo started $i; done; echo loop-finished",
    ]);
    b.resources()["pids"] = json!({"limit": 10});
    let created = ctx.create(&b);
    created.ok();
    assert_eq!(
        read_knob(&b.cgroup_path, "pids", "pids.max", "pids.max"),
        "10"
    );
    ctx.start(&b.id).ok();
    ctx.wait_status(&b.id, "stopped");
    let (stdout, stderr) = (created.stdout_now(), created.stderr_now());
    let started = stdout.lines().filter(|l| l.starts_with("started")).count();
    assert!(
        (1..10).contains(&started),
        "with pids.max 10 between 1 and 9 background processes can start, got {started}:\n{stdout}"
    );
    assert!(!stdout.contains("loop-finished"), "{stdout}");
    assert!(stderr.contains("can't fork"), "stderr: {stderr}");
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    let ctx = Ctx::new("cpu_quota_throttles_busy_loop");
    let mut b = ctx.bundle(&["sh", "-c", "while :; do :; done"]);
    b.resources()["cpu"] = json!({"quota": 10000, "period": 100000});
    ctx.create_start(&b, "sh");
    match cgroup_mode() {
        CgroupMode::V1 => {
            assert_eq!(
                read_knob(&b.cgroup_path, "cpu", "cpu.cfs_quota_us", ""),
                "10000"
            );
            assert_eq!(
                read_knob(&b.cgroup_path, "cpu", "cpu.cfs_period_us", ""),
                "100000"
            );
        }
        CgroupMode::V2 => {
            assert_eq!(read_knob(&b.cgroup_path, "", "", "cpu.max"), "10000 100000")
        }
    }
    let mut last = String::new();
    let throttled = poll_until(STATE_TIMEOUT, || {
        last = read_knob(&b.cgroup_path, "cpu", "cpu.stat", "cpu.stat");
        let n: u64 = last
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        (n > 0).then_some(n)
    });
    assert!(
        throttled.is_some(),
        "a busy loop under a 10% quota was never throttled; cpu.stat:\n{last}"
    );
    ctx.kill_and_delete(&b.id);
    ctx.assert_nothing_left(&b);
}

#[test]
fn resources_land_in_host_cgroup_files() {
    let ctx = Ctx::new("resources_land_in_host_files");
    let mut b = ctx.bundle(&["sleep", "30"]);
    *b.resources() = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 32 << 20, "reservation": 16 << 20, "swap": 64 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}
    });
    ctx.create(&b).ok();
    let p = &b.cgroup_path;
    let check = |ctrl: &str, v1: &str, v2: &str, want: &str| {
        let got = read_knob(p, ctrl, v1, v2);
        let file = knob(p, ctrl, v1, v2);
        assert_eq!(got, want, "{}", file.display());
    };
    match cgroup_mode() {
        CgroupMode::V1 => {
            check("memory", "memory.limit_in_bytes", "", "33554432");
            check("memory", "memory.soft_limit_in_bytes", "", "16777216");
            if knob(p, "memory", "memory.memsw.limit_in_bytes", "").exists() {
                check("memory", "memory.memsw.limit_in_bytes", "", "67108864");
            }
            check("cpu", "cpu.shares", "", "512");
            check("cpu", "cpu.cfs_quota_us", "", "50000");
            check("cpu", "cpu.cfs_period_us", "", "100000");
            check("cpuset", "cpuset.cpus", "", "0");
            check("cpuset", "cpuset.mems", "", "0");
            check("pids", "pids.max", "", "42");
        }
        CgroupMode::V2 => {
            check("", "", "memory.max", "33554432");
            check("", "", "memory.low", "16777216");
            // OCI swap is memory+swap; v2's memory.swap.max is swap alone.
            check("", "", "memory.swap.max", "33554432");
            // runc's conversion: 1 + ((shares - 2) * 9999) / 262142.
            check("", "", "cpu.weight", "20");
            check("", "", "cpu.max", "50000 100000");
            check("", "", "cpuset.cpus", "0");
            check("", "", "cpuset.mems", "0");
            check("", "", "pids.max", "42");
        }
    }
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

/// The `cgroup` mount shows the container its own cgroup (read-only).
#[test]
fn cgroup_mount_shows_the_container_its_own_limits() {
    let ctx = Ctx::new("cgroup_mount_own_limits");
    let pids_max = match cgroup_mode() {
        CgroupMode::V1 => "/sys/fs/cgroup/pids/pids.max",
        CgroupMode::V2 => "/sys/fs/cgroup/pids.max",
    };
    let script =
        format!("cat {pids_max}; mkdir $(dirname {pids_max})/sub && echo mkdir-worked; true");
    let mut b = ctx.bundle(&["sh", "-c", &script]);
    b.add_mount(cgroup_mount());
    b.resources()["pids"] = json!({"limit": 10});
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["10"], "{out}");
    out.stderr_has("Read-only file system");
}
