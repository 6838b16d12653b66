//! Container lifecycle through the runc command line: create/start/state/kill/delete, run,
//! list, spec, features.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::{json, Value};

#[test]
fn state_goes_created_running_stopped_then_delete_removes_everything() {
    let ctx = Ctx::new("state_goes_created_running_stopped");
    let mut b = ctx.private_bundle(&["sleep", "30"]);
    b.config["annotations"] = json!({"org.berth.test": "yes"});
    ctx.create(&b).ok();
    assert!(
        ctx.root.join(&b.id).is_dir(),
        "no state dir {}/{}",
        ctx.root.display(),
        b.id
    );

    let st = ctx.state(&b.id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], json!(b.id), "{st}");
    let pid = st["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "created container must have a pid: {st}");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} of the created container does not exist"
    );
    assert_ne!(
        proc_comm(pid).as_deref(),
        Some("sleep"),
        "the user program must not run before start"
    );
    assert_eq!(st["bundle"], json!(b.dir), "{st}");
    assert_eq!(st["rootfs"], json!(b.rootfs), "{st}");
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(st["annotations"]["org.berth.test"], "yes", "{st}");
    let created = st["created"].as_str().unwrap_or("");
    assert!(looks_like_rfc3339(created), "created is not RFC 3339: {st}");

    ctx.start(&b.id).ok();
    let st = ctx.state(&b.id);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid), "pid changed on start: {st}");
    wait_until(STATE_TIMEOUT, "the container to exec sleep", || {
        (proc_comm(pid).as_deref() == Some("sleep")).then_some(())
    });

    // The harness's leftover check can see the container's process (it is not vacuous).
    assert_eq!(marked_pids(|v| v == b.marker), [pid as i32]);

    ctx.kill(&b.id, "KILL").ok();
    let st = ctx.wait_status(&b.id, "stopped");
    assert_eq!(
        st["pid"].as_i64(),
        Some(0),
        "stopped container has pid 0: {st}"
    );

    ctx.delete(&b.id).ok();
    ctx.rt(&["state", &b.id])
        .failed()
        .stderr_has("does not exist");
    ctx.assert_nothing_left(&b);
}

#[test]
fn run_propagates_exit_status() {
    let ctx = Ctx::new("run_propagates_exit_status");
    let b = ctx.private_bundle(&["sh", "-c", "exit 3"]);
    ctx.run(&b).code_is(3);
    ctx.assert_nothing_left(&b);
}

/// A foreground `run` of a config with `terminal: true` and no console socket relays the
/// container's pty to the runtime's own stdio, as `runc run` does.
#[test]
fn run_with_terminal_relays_the_pty() {
    let ctx = Ctx::new("run_with_terminal_relays_the_pty");
    let mut b = ctx.bundle(&["sh", "-c", "tty; echo out-$((6*7)); exit 4"]);
    b.config["process"]["terminal"] = json!(true);
    let out = ctx.run(&b);
    out.code_is(4);
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");
    assert!(out.stdout.contains("out-42"), "{out}");
    ctx.assert_nothing_left(&b);
}

/// Without a PID namespace, so that `sh` is not an init the kernel shields from its own
/// SIGKILL (in a PID namespace, `kill -9 $$` by the namespace's init is ignored).
#[test]
fn run_reports_death_by_signal_as_128_plus_signal() {
    let ctx = Ctx::new("run_reports_death_by_signal");
    let mut b = ctx.bundle(&["sh", "-c", "kill -9 $$; echo survived"]);
    b.remove_namespace("pid");
    let out = ctx.run(&b);
    out.code_is(137);
    assert!(!out.stdout.contains("survived"), "{out}");
    ctx.assert_nothing_left(&b);
}

/// As with runc: the process leads a session of its own (none of the caller's, which lies
/// outside the pid namespace), and has no signal ignored or blocked, even those glibc
/// reserves and a posix_spawn'd runtime (as this test's is) inherits ignored.
#[test]
fn the_process_leads_its_own_session_with_default_signal_dispositions() {
    let ctx = Ctx::new("own_session_default_signals");
    let b = ctx.bundle(&[
        "grep",
        "-E",
        "^(NSpgid|NSsid|SigIgn|SigBlk):",
        "/proc/self/status",
    ]);
    let out = ctx.run(&b);
    out.ok();
    let fields: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        fields,
        [
            "NSpgid:\t1",
            "NSsid:\t1",
            "SigBlk:\t0000000000000000",
            "SigIgn:\t0000000000000000"
        ],
        "{out}"
    );
}

#[test]
fn run_killed_from_host_exits_137() {
    let ctx = Ctx::new("run_killed_from_host_exits_137");
    let b = ctx.bundle(&["sleep", "30"]);
    let running = ctx.spawn_run(&b);
    let st = ctx.wait_status(&b.id, "running");
    let pid = st["pid"].as_i64().unwrap();
    wait_until(STATE_TIMEOUT, "the container to exec sleep", || {
        (proc_comm(pid).as_deref() == Some("sleep")).then_some(())
    });
    ctx.kill(&b.id, "KILL").ok();
    running.wait(STATE_TIMEOUT).code_is(137);
    ctx.assert_nothing_left(&b);
}

#[test]
fn run_passes_stdio_through() {
    let ctx = Ctx::new("run_passes_stdio_through");
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "read line; echo \"got:$line\"; echo to-stderr >&2",
    ]);
    let input = ctx.path().join("stdin.txt");
    fs::write(&input, "hello\n").unwrap();
    let out = ctx.run_stdin(&b, &input);
    out.ok();
    assert_eq!(lines(&out.stdout), ["got:hello"], "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
}

#[test]
fn run_detach_leaves_container_running() {
    let ctx = Ctx::new("run_detach_leaves_container_running");
    let b = ctx.private_bundle(&["sleep", "30"]);
    ctx.run_with(&b, &["--detach"]).ok();
    let st = ctx.state(&b.id);
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap_or(0);
    assert!(
        pid > 0 && Path::new(&format!("/proc/{pid}")).exists(),
        "{st}"
    );
    ctx.kill_and_delete(&b.id);
    ctx.assert_nothing_left(&b);
}

#[test]
fn list_shows_the_container() {
    let ctx = Ctx::new("list_shows_the_container");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create(&b).ok();
    let pid = ctx.pid_of(&b.id);

    let out = ctx.rt(&["list"]);
    out.ok();
    let row = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(b.id.as_str()))
        .unwrap_or_else(|| panic!("no row for {} in list:\n{out}", b.id));
    assert!(row.contains("created"), "row: {row}");
    assert!(
        row.split_whitespace().any(|w| w == pid.to_string()),
        "row should show pid {pid}: {row}"
    );
    assert!(
        out.stdout.lines().next().unwrap_or("").contains("ID"),
        "list should have a header line:\n{out}"
    );

    let out = ctx.rt(&["list", "--format", "json"]);
    out.ok();
    let v = out.json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"));
    let entry = arr
        .iter()
        .find(|e| e["id"] == json!(b.id))
        .unwrap_or_else(|| panic!("{} missing from list json:\n{out}", b.id));
    assert_eq!(entry["status"], "created", "{entry}");
    assert_eq!(entry["pid"].as_i64(), Some(pid), "{entry}");
    assert_eq!(entry["bundle"], json!(b.dir), "{entry}");

    ctx.delete(&b.id).ok();
    let out = ctx.rt(&["list", "--format", "json"]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let still = v
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["id"] == json!(b.id)));
    assert!(!still, "deleted container still listed:\n{out}");
}

#[test]
fn kill_accepts_signal_names_and_numbers() {
    let ctx = Ctx::new("kill_accepts_signal_names_and_numbers");
    for sig in ["KILL", "SIGKILL", "9"] {
        let b = ctx.bundle(&["sleep", "30"]);
        ctx.create_start(&b, "sleep");
        ctx.kill(&b.id, sig).ok();
        ctx.wait_status(&b.id, "stopped");
        ctx.delete(&b.id).ok();
        ctx.assert_nothing_left(&b);
    }
}

#[test]
fn kill_defaults_to_sigterm() {
    let ctx = Ctx::new("kill_defaults_to_sigterm");
    // PID 1 only gets signals it handles: trap TERM, and say when the trap is in place.
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo ready; sleep 30 & wait",
    ]);
    let (created, _) = ctx.create_start(&b, "sh");
    wait_until(STATE_TIMEOUT, "the container to print ready", || {
        created.stdout_now().contains("ready").then_some(())
    });
    ctx.rt(&["kill", &b.id]).ok();
    ctx.wait_status(&b.id, "stopped");
    assert!(
        created.stdout_now().contains("got-term"),
        "container did not see SIGTERM; stdout:\n{}",
        created.stdout_now()
    );
    ctx.delete(&b.id).ok();
}

/// Without a PID namespace the init's children outlive it unless `--all` signals them too.
fn sleepers_without_pid_namespace(ctx: &Ctx) -> (Bundle, std::path::PathBuf) {
    let mut b = ctx.bundle(&["sh", "-c", "sleep 31 & sleep 32 & echo ready; wait"]);
    b.remove_namespace("pid");
    let (created, _) = ctx.create_start(&b, "sh");
    wait_until(STATE_TIMEOUT, "the container to print ready", || {
        created.stdout_now().contains("ready").then_some(())
    });
    let ctrl = match cgroup_mode() {
        CgroupMode::V1 => "pids",
        CgroupMode::V2 => "",
    };
    let procs = cgroup_dir(&b.cgroup_path, ctrl).join("cgroup.procs");
    let n = fs::read_to_string(&procs)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(n, 3, "sh and two sleeps expected in {}", procs.display());
    (b, procs)
}

#[test]
fn kill_all_signals_every_process_of_the_container() {
    let ctx = Ctx::new("kill_all_signals_every_process");
    let (b, procs) = sleepers_without_pid_namespace(&ctx);
    ctx.rt(&["kill", "--all", &b.id, "KILL"]).ok();
    wait_until(
        STATE_TIMEOUT,
        "every process of the container to die",
        || {
            fs::read_to_string(&procs)
                .unwrap_or_default()
                .trim()
                .is_empty()
                .then_some(())
        },
    );
    ctx.wait_status(&b.id, "stopped");
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

#[test]
fn delete_force_kills_every_process_of_the_container() {
    let ctx = Ctx::new("delete_force_kills_every_process");
    let (b, _) = sleepers_without_pid_namespace(&ctx);
    ctx.rt(&["delete", "--force", &b.id]).ok();
    ctx.assert_nothing_left(&b);
}

#[test]
fn kill_rejects_unknown_signal() {
    let ctx = Ctx::new("kill_rejects_unknown_signal");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    ctx.kill(&b.id, "NOTASIGNAL").failed();
    let st = ctx.state(&b.id);
    assert_eq!(st["status"], "running", "{st}");
    ctx.kill_and_delete(&b.id);
}

#[test]
fn delete_running_container_needs_force() {
    let ctx = Ctx::new("delete_running_container_needs_force");
    let b = ctx.private_bundle(&["sleep", "30"]);
    let (_, pid) = ctx.create_start(&b, "sleep");

    ctx.delete(&b.id).failed();
    let st = ctx.state(&b.id);
    assert_eq!(st["status"], "running", "after a refused delete: {st}");
    assert_eq!(proc_comm(pid).as_deref(), Some("sleep"));

    ctx.rt(&["delete", "--force", &b.id]).ok();
    ctx.rt(&["state", &b.id])
        .failed()
        .stderr_has("does not exist");
    ctx.assert_nothing_left(&b);
}

#[test]
fn delete_created_container_never_runs_it() {
    let ctx = Ctx::new("delete_created_container_never_runs_it");
    let b = ctx.private_bundle(&["sh", "-c", "echo user-program-ran"]);
    let created = ctx.create(&b);
    created.ok();
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
    assert!(
        !created.stdout_now().contains("user-program-ran"),
        "deleting a created container ran its program"
    );
}

/// `start` must report success even when the program is over before `start` looks again.
#[test]
fn start_succeeds_when_the_program_exits_at_once() {
    let ctx = Ctx::new("start_succeeds_program_exits_at_once");
    for _ in 0..20 {
        let b = ctx.bundle(&["true"]);
        ctx.create(&b).ok();
        ctx.start(&b.id).ok();
        let st = ctx.wait_status(&b.id, "stopped");
        assert_eq!(st["pid"].as_i64(), Some(0), "{st}");
        ctx.delete(&b.id).ok();
    }
}

#[test]
fn start_twice_fails() {
    let ctx = Ctx::new("start_twice_fails");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    ctx.start(&b.id).failed();
    ctx.kill_and_delete(&b.id);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let ctx = Ctx::new("pid_file_holds_the_init_pid");
    let b = ctx.bundle(&["sleep", "30"]);
    let pid_file = ctx.path().join("container.pid");
    ctx.create_with(&b, &["--pid-file", pid_file.to_str().unwrap()])
        .ok();
    let text = fs::read_to_string(&pid_file).expect("pid file written by create");
    let from_file: i64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {text:?}: {e}"));
    assert_eq!(from_file, ctx.pid_of(&b.id));
    ctx.delete(&b.id).ok();
}

#[test]
fn spec_writes_default_config_and_refuses_to_overwrite() {
    let ctx = Ctx::new("spec_writes_default_config");
    let dir = ctx.new_dir("spec");
    let d = dir.to_string_lossy().into_owned();
    ctx.rt(&["spec", "--bundle", &d]).ok();
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).expect("spec wrote config.json");
    let v: Value = serde_json::from_str(&text).expect("config.json parses");
    assert!(v["ociVersion"]
        .as_str()
        .is_some_and(|s| s.starts_with("1.")));
    assert_eq!(v["process"]["terminal"], true);
    assert_eq!(v["process"]["args"], json!(["sh"]));
    assert_eq!(v["process"]["cwd"], "/");
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert!(v["process"]["env"].as_array().is_some_and(|e| e
        .iter()
        .any(|x| x.as_str().is_some_and(|s| s.starts_with("PATH=")))));
    assert!(v["process"]["rlimits"].as_array().is_some_and(|r| r
        .iter()
        .any(|l| l["type"] == "RLIMIT_NOFILE" && l["hard"] == 1024 && l["soft"] == 1024)));
    assert_eq!(v["root"]["path"], "rootfs");
    assert_eq!(v["root"]["readonly"], true);
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
        assert!(ns.contains(&want), "namespace {want} missing: {ns:?}");
    }
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    for want in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
        assert!(dests.contains(&want), "mount {want} missing: {dests:?}");
    }
    assert!(v["linux"]["maskedPaths"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(v["linux"]["readonlyPaths"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));

    fs::write(&path, "{\"mine\": true}").unwrap();
    ctx.rt(&["spec", "--bundle", &d]).failed();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"mine\": true}",
        "spec overwrote an existing config.json"
    );
}

/// The config `spec` writes (relative root "rootfs", cgroup mount, masked paths, ...) runs.
#[test]
fn spec_config_runs() {
    let ctx = Ctx::new("spec_config_runs");
    let mut b = ctx.private_bundle(&[]);
    let gen = ctx.new_dir("spec");
    let g = gen.to_string_lossy().into_owned();
    ctx.rt(&["spec", "--bundle", &g]).ok();
    let mut cfg: Value =
        serde_json::from_str(&fs::read_to_string(gen.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["root"]["path"], "rootfs");
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", "echo spec-ok"]);
    cfg["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!(format!("{MARKER_VAR}={}", b.marker)));
    cfg["linux"]["cgroupsPath"] = json!(b.cgroup_path);
    b.config = cfg;
    let out = ctx.run(&b);
    out.ok();
    assert_eq!(lines(&out.stdout), ["spec-ok"], "{out}");
    ctx.assert_nothing_left(&b);
}

#[test]
fn features_prints_json() {
    let ctx = Ctx::new("features_prints_json");
    let out = ctx.rt(&["features"]);
    out.ok();
    let v = out.json();
    let min = v["ociVersionMin"].as_str().unwrap_or("");
    let max = v["ociVersionMax"].as_str().unwrap_or("");
    assert!(min.starts_with("1."), "ociVersionMin: {v}");
    assert!(max.starts_with("1."), "ociVersionMax: {v}");
    let ver = |s: &str| -> Vec<u64> {
        s.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    assert!(ver(min) <= ver(max), "min > max: {v}");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("linux.namespaces missing: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(
            ns.contains(&want),
            "features lacks namespace {want}: {ns:?}"
        );
    }
}
