//! Failures a user sees: the message on stderr, the same message as a JSON line in the
//! `--log` file with `--log-format json`, and nothing left behind (state dir, cgroup, mount,
//! process).
//!
//! Each case has two tests: one plain (stderr only), one with `--log F --log-format json`
//! (stderr and the log line), so a broken log writer does not hide the message checks.

mod common;

use std::fs;

use common::*;
use serde_json::{json, Value};

/// A line already in the log file: the runtime must append, not truncate.
const EARLIER_LINE: &str =
    r#"{"level":"info","msg":"an earlier line","time":"2024-01-01T00:00:00Z"}"#;

/// Runs the failing command `args` (after `--root`), checks the exit status, that stderr holds
/// every needle and, with `json_log`, that the log file got an error line holding them too.
#[track_caller]
fn expect_failure(
    ctx: &Ctx,
    args: &[&str],
    marker: Option<&str>,
    needles: &[&str],
    json_log: bool,
) -> Out {
    if !json_log {
        let out = ctx.rt_full(args, marker, None);
        out.failed();
        for n in needles {
            out.stderr_has(n);
        }
        return out;
    }
    let log = ctx.new_dir("log").join("log.json");
    fs::write(&log, format!("{EARLIER_LINE}\n")).unwrap();
    let log_s = log.to_string_lossy().into_owned();
    let mut full = vec!["--log", &log_s, "--log-format", "json"];
    full.extend_from_slice(args);
    let out = ctx.rt_full(&full, marker, None);
    out.failed();
    for n in needles {
        out.stderr_has(n);
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.starts_with(EARLIER_LINE),
        "the log file was truncated instead of appended to:\n{text}"
    );
    let entries: Vec<Value> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}\nwhole log:\n{text}"))
        })
        .collect();
    let found = entries.iter().any(|e| {
        e["level"] == "error"
            && e["msg"]
                .as_str()
                .is_some_and(|m| needles.iter().all(|n| m.contains(n)))
    });
    assert!(
        found,
        "no {{\"level\":\"error\"}} line whose msg contains {needles:?} in {}:\n{text}\n{out}",
        log.display()
    );
    out
}

/// `create` of `b` (config already written) fails with `needles`, leaving nothing behind.
#[track_caller]
fn create_fails(ctx: &Ctx, b: &Bundle, needles: &[&str], json_log: bool) {
    ctx.track(&b.id);
    let dir = b.dir.to_string_lossy().into_owned();
    expect_failure(
        ctx,
        &["create", "--bundle", &dir, &b.id],
        Some(&b.marker),
        needles,
        json_log,
    );
    ctx.assert_nothing_left(b);
    ctx.rt(&["state", &b.id]).failed();
}

// --- unknown id ------------------------------------------------------------------------------

fn unknown_id(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let id = ctx.new_id();
    for verb in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
    ] {
        expect_failure(&ctx, &verb, None, &["does not exist"], json_log);
        assert!(
            !ctx.root.join(&id).exists(),
            "`{}` of an unknown id left a state dir",
            verb[0]
        );
    }
}

#[test]
fn unknown_id_does_not_exist() {
    unknown_id("unknown_id_does_not_exist", false);
}

#[test]
fn unknown_id_is_logged_as_json() {
    unknown_id("unknown_id_is_logged_as_json", true);
}

// --- duplicate id ----------------------------------------------------------------------------

fn duplicate_id(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let first = ctx.private_bundle(&["sleep", "30"]);
    ctx.create(&first).ok();
    let pid = ctx.pid_of(&first.id);

    let second = ctx.private_bundle_with_id(&first.id, &["sleep", "30"]);
    second.write();
    let dir = second.dir.to_string_lossy().into_owned();
    expect_failure(
        &ctx,
        &["create", "--bundle", &dir, &second.id],
        Some(&second.marker),
        &["already exists"],
        json_log,
    );
    let left = ctx.mount_and_process_leftovers(&second);
    assert!(left.is_empty(), "the refused create left: {left:?}");

    // The first container is untouched.
    let st = ctx.state(&first.id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid), "{st}");
    assert_eq!(st["bundle"], json!(first.dir), "{st}");
    let ctrl = match cgroup_mode() {
        CgroupMode::V1 => "pids",
        CgroupMode::V2 => "",
    };
    let procs = fs::read_to_string(cgroup_dir(&first.cgroup_path, ctrl).join("cgroup.procs"))
        .unwrap_or_default();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "the first container lost its cgroup: {procs:?}"
    );

    ctx.delete(&first.id).ok();
    ctx.assert_nothing_left(&first);
}

#[test]
fn duplicate_id_already_exists() {
    duplicate_id("duplicate_id_already_exists", false);
}

#[test]
fn duplicate_id_is_logged_as_json() {
    duplicate_id("duplicate_id_is_logged_as_json", true);
}

// --- process.args of the wrong type ----------------------------------------------------------

fn args_not_an_array(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let mut b = ctx.private_bundle(&["true"]);
    b.config["process"]["args"] = json!("sh -c true");
    b.write();
    create_fails(&ctx, &b, &["process.args"], json_log);
}

#[test]
fn malformed_config_names_the_json_path() {
    args_not_an_array("malformed_config_names_json_path", false);
}

#[test]
fn malformed_config_is_logged_as_json() {
    args_not_an_array("malformed_config_is_logged_as_json", true);
}

// --- invalid JSON syntax ---------------------------------------------------------------------

fn invalid_json(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let b = ctx.private_bundle(&["true"]);
    fs::write(
        b.config_path(),
        "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"true\"",
    )
    .unwrap();
    create_fails(&ctx, &b, &["config.json"], json_log);
}

#[test]
fn invalid_json_names_config_json() {
    invalid_json("invalid_json_names_config_json", false);
}

#[test]
fn invalid_json_is_logged_as_json() {
    invalid_json("invalid_json_is_logged_as_json", true);
}

// --- missing rootfs --------------------------------------------------------------------------

fn missing_rootfs(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let mut b = ctx.bundle(&["true"]);
    // The name does not contain "rootfs": the message must say it on its own.
    let absent = ctx.path().join("absent-root-dir");
    b.config["root"]["path"] = json!(absent);
    b.write();
    let absent = absent.to_string_lossy().into_owned();
    create_fails(&ctx, &b, &["rootfs", &absent], json_log);
}

#[test]
fn missing_rootfs_names_the_path() {
    missing_rootfs("missing_root_names_the_path", false);
}

#[test]
fn missing_rootfs_is_logged_as_json() {
    missing_rootfs("missing_root_is_logged_as_json", true);
}

// --- program that does not exist -------------------------------------------------------------

fn missing_program(name: &str, json_log: bool) {
    let ctx = Ctx::new(name);
    let b = ctx.private_bundle(&["/nonexistent"]);
    b.write();
    create_fails(&ctx, &b, &["/nonexistent"], json_log);
}

#[test]
fn missing_program_fails_create_naming_it() {
    missing_program("missing_program_fails_create", false);
}

#[test]
fn missing_program_is_logged_as_json() {
    missing_program("missing_program_is_logged_as_json", true);
}

// --- what the runtime does not do, or must not do ------------------------------------------

/// A config asking for seccomp notification, which this runtime lacks, is refused rather than
/// run unconfined; so is a sysctl that would change the host, and a hook with a relative path.
#[test]
fn unsupported_or_host_wide_settings_are_refused() {
    let ctx = Ctx::new("unsupported_settings_are_refused");
    let cases: [(&str, Value, &str); 3] = [
        (
            "seccomp",
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}),
            "not supported",
        ),
        (
            "hooks",
            json!({"createRuntime": [{"path": "bin/true"}]}),
            "absolute",
        ),
        (
            "sysctl",
            json!({"kernel.core_pattern": "|/tmp/x"}),
            "kernel.core_pattern",
        ),
    ];
    for (what, value, needle) in cases {
        let mut b = ctx.bundle(&["true"]);
        match what {
            "hooks" => b.config["hooks"] = value,
            _ => b.config["linux"][what] = value,
        }
        b.write();
        create_fails(&ctx, &b, &[needle], false);
    }
}

/// Signalling a container whose process has exited fails with runc's words, which containerd
/// looks for when a stop races the exit.
#[test]
fn kill_of_a_stopped_container_says_container_not_running() {
    let ctx = Ctx::new("kill_of_stopped_container");
    let b = ctx.bundle(&["true"]);
    ctx.create(&b).ok();
    ctx.start(&b.id).ok();
    ctx.wait_status(&b.id, "stopped");
    ctx.rt(&["kill", &b.id, "KILL"])
        .failed()
        .stderr_has("container not running");
    ctx.delete(&b.id).ok();
    ctx.assert_nothing_left(&b);
}

/// A `create` killed before it wrote the state leaves a bare directory: `delete --force`
/// clears it, so the id can be used again.
#[test]
fn delete_force_clears_the_remains_of_an_interrupted_create() {
    let ctx = Ctx::new("delete_force_clears_remains");
    let b = ctx.bundle(&["true"]);
    let dir = ctx.root.join(&b.id);
    fs::create_dir_all(&dir).unwrap();
    ctx.create(&b).failed().stderr_has("already exists");
    ctx.rt(&["delete", "--force", &b.id]).ok();
    assert!(!dir.exists());
    ctx.run(&b).ok();
    ctx.assert_nothing_left(&b);
}
