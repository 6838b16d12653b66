//! OCI hooks: each kind runs at its point of the lifecycle, in order, in its namespace, with
//! the state JSON on stdin, its args and env; failures fail create or only warn, as the OCI
//! runtime spec says.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Where the container sees the test's output directory (startContainer runs in there).
const IN_CONTAINER: &str = "/hooks-out";

/// A hook that saves its stdin as `<kind>.json`, its mount namespace as `<kind>.mnt` and
/// appends its kind to `order`, all in `out` (a path as the hook sees it).
fn recording_hook(kind: &str, out: &str) -> Value {
    let script = format!(
        "cat > {out}/{kind}.json && readlink /proc/self/ns/mnt > {out}/{kind}.mnt \
         && echo {kind} >> {out}/order"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

fn shell_hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A private bundle (the bind mount's target is created in its rootfs) whose `out` dir is
/// mounted at IN_CONTAINER.
fn bundle_with_out(ctx: &Ctx, args: &[&str]) -> (Bundle, std::path::PathBuf) {
    let out = ctx.new_dir("out");
    let mut b = ctx.private_bundle(args);
    b.add_mount(
        json!({"destination": IN_CONTAINER, "type": "bind", "source": out,
                       "options": ["rbind", "rw"]}),
    );
    (b, out)
}

/// The order the OCI runtime spec gives the hooks of one container's life.
const ORDER: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[test]
fn every_hook_kind_runs_in_order_with_the_state_on_stdin() {
    let ctx = Ctx::new("hooks_every_kind_in_order");
    let (mut b, out) = bundle_with_out(&ctx, &["sleep", "30"]);
    let host = out.to_string_lossy().into_owned();
    b.config["annotations"] = json!({"org.berth.hook-test": "yes"});
    b.config["hooks"] = json!({
        "prestart": [recording_hook("prestart", &host)],
        "createRuntime": [recording_hook("createRuntime", &host)],
        // Before pivot_root: the path and the output dir are the runtime's.
        "createContainer": [recording_hook("createContainer", &host)],
        // After pivot_root: busybox's sh, and the output dir through the bind mount.
        // Slow on purpose: `start` must wait for it before running poststart.
        "startContainer": [shell_hook("sleep 1"), recording_hook("startContainer", IN_CONTAINER)],
        "poststart": [recording_hook("poststart", &host)],
        "poststop": [recording_hook("poststop", &host)],
    });
    ctx.create(&b).ok();
    let order = || lines(&fs::read_to_string(out.join("order")).unwrap_or_default());
    assert_eq!(order(), ORDER[..3]);
    let pid = ctx.pid_of(&b.id);

    let created = read_json(&out.join("createRuntime.json"));
    assert_eq!(created["status"], "creating", "{created}");
    assert_eq!(created["id"], json!(b.id), "{created}");
    assert_eq!(created["pid"], json!(pid), "{created}");
    assert_eq!(created["bundle"], json!(b.dir), "{created}");
    assert_eq!(
        created["ociVersion"].as_str().map(|v| !v.is_empty()),
        Some(true)
    );
    assert_eq!(
        created["annotations"]["org.berth.hook-test"], "yes",
        "{created}"
    );
    assert_eq!(read_json(&out.join("prestart.json")), created);
    assert_eq!(read_json(&out.join("createContainer.json")), created);

    // Namespaces: createRuntime and prestart in the runtime's, createContainer in the
    // container's mount namespace.
    let host_mnt = fs::read_link("/proc/self/ns/mnt").unwrap();
    let container_mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(host_mnt, container_mnt);
    let mnt_of = |kind: &str| read(&out.join(format!("{kind}.mnt"))).trim().to_string();
    for kind in ["prestart", "createRuntime"] {
        assert_eq!(mnt_of(kind), host_mnt.to_string_lossy(), "{kind}");
    }
    assert_eq!(mnt_of("createContainer"), container_mnt.to_string_lossy());

    ctx.start(&b.id).ok();
    assert_eq!(order(), ORDER[..5]);
    assert_eq!(mnt_of("startContainer"), container_mnt.to_string_lossy());
    assert_eq!(mnt_of("poststart"), host_mnt.to_string_lossy());
    let started = read_json(&out.join("startContainer.json"));
    assert_eq!(started["status"], "created", "{started}");
    assert_eq!(started["pid"], json!(pid), "{started}");
    let poststart = read_json(&out.join("poststart.json"));
    assert_eq!(poststart["status"], "running", "{poststart}");
    assert_eq!(poststart["id"], json!(b.id), "{poststart}");

    ctx.kill(&b.id, "KILL").ok();
    ctx.wait_status(&b.id, "stopped");
    ctx.delete(&b.id).ok();
    assert_eq!(order(), ORDER);
    let stopped = read_json(&out.join("poststop.json"));
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(stopped["id"], json!(b.id), "{stopped}");
    ctx.assert_nothing_left(&b);
}

#[test]
fn hook_args_and_env_are_passed_and_nothing_else() {
    let ctx = Ctx::new("hooks_args_env");
    let out = ctx.new_dir("out");
    let o = out.display();
    let script = format!("tr '\\0' ' ' < /proc/$$/cmdline > {o}/cmdline; env > {o}/env");
    let mut b = ctx.bundle(&["true"]);
    b.config["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["hook-argv0", "-c", script, "first"],
        "env": ["HOOK_VAR=hook value", "OTHER=2"],
    }]});
    ctx.create(&b).ok();
    assert_eq!(
        read(&out.join("cmdline")),
        format!("hook-argv0 -c {script} first ")
    );
    let env = read(&out.join("env"));
    assert!(env.lines().any(|l| l == "HOOK_VAR=hook value"), "{env}");
    assert!(env.lines().any(|l| l == "OTHER=2"), "{env}");
    assert!(
        !env.contains(HOST_ONLY_VAR),
        "the runtime's env leaked: {env}"
    );
    assert!(!env.contains(MARKER_VAR), "the runtime's env leaked: {env}");
    ctx.delete(&b.id).ok();
}

/// A failing createRuntime or createContainer hook fails create, naming the hook; the
/// container is destroyed and then its poststop hooks run (the OCI lifecycle's steps 12-13).
#[test]
fn failing_create_hooks_fail_create_and_leave_nothing() {
    let ctx = Ctx::new("hooks_failing_create");
    for kind in ["createRuntime", "createContainer", "prestart"] {
        let out = ctx.new_dir("out");
        let mut b = ctx.bundle(&["true"]);
        b.config["hooks"] = json!({
            kind: [shell_hook("echo hook says no >&2; exit 3")],
            "poststop": [shell_hook(&format!("cat > {}/poststop.json", out.display()))],
        });
        let created = ctx.create(&b);
        created.failed().stderr_has(kind).stderr_has("hook says no");
        ctx.assert_nothing_left(&b);
        let stopped = read_json(&out.join("poststop.json"));
        assert_eq!(stopped["id"], json!(b.id), "{kind}: {stopped}");
        assert_eq!(stopped["status"], "stopped", "{kind}: {stopped}");
    }
}

#[test]
fn hook_past_its_timeout_is_killed_and_create_fails() {
    let ctx = Ctx::new("hooks_timeout");
    let out = ctx.new_dir("out");
    let mut b = ctx.bundle(&["true"]);
    let hook_pid = out.join("pid");
    // Not exec'd: the sleep is the hook's child, which the timeout must kill too.
    let mut hook = shell_hook(&format!("echo $$ > {}; sleep 60; true", hook_pid.display()));
    hook["timeout"] = json!(1);
    b.config["hooks"] = json!({"createRuntime": [hook]});
    let began = Instant::now();
    ctx.create(&b)
        .failed()
        .stderr_has("createRuntime")
        .stderr_has("timed out");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "create took {:?}",
        began.elapsed()
    );
    let pid: i32 = read(&hook_pid).trim().parse().unwrap();
    let left = process_group(pid);
    assert!(
        left.is_empty(),
        "the timed-out hook's processes {left:?} still run"
    );
    ctx.assert_nothing_left(&b);
}

/// Live processes whose process group is `pgid`.
fn process_group(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesised comm: state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z")
        })
        .collect()
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    let ctx = Ctx::new("hooks_poststart_warns");
    let out = ctx.new_dir("out");
    let mut b = ctx.bundle(&["sleep", "30"]);
    b.config["hooks"] = json!({
        "poststart": [shell_hook("exit 1"),
                      shell_hook(&format!("touch {}/second-poststart", out.display()))],
        "poststop": [shell_hook("exit 1")],
    });
    ctx.create(&b).ok();
    ctx.start(&b.id).ok().stderr_has("poststart");
    assert_eq!(ctx.state(&b.id)["status"], "running");
    assert!(
        out.join("second-poststart").exists(),
        "the hook after the failed one did not run"
    );
    ctx.kill(&b.id, "KILL").ok();
    ctx.wait_status(&b.id, "stopped");
    ctx.delete(&b.id).ok().stderr_has("poststop");
    ctx.assert_nothing_left(&b);
}

/// startContainer runs in the container after `start`: a failing one keeps the program from
/// running.
#[test]
fn failing_start_container_hook_keeps_the_program_from_running() {
    let ctx = Ctx::new("hooks_failing_start_container");
    let (mut b, out) = bundle_with_out(&ctx, &["sh", "-c", &format!("touch {IN_CONTAINER}/ran")]);
    b.config["hooks"] = json!({"startContainer": [shell_hook("exit 1")]});
    ctx.create(&b).ok();
    ctx.start(&b.id);
    ctx.wait_status(&b.id, "stopped");
    assert!(!out.join("ran").exists(), "the program ran");
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}
