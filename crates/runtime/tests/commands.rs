//! The rest of runc's commands as containerd's shim calls them: exec, ps, pause/resume,
//! update, events, delete --force of paused containers, kill --all, and the JSON log.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A container whose `sh` writes an ever-growing counter to /tmp/count (private rootfs).
fn counter_bundle(ctx: &Ctx) -> Bundle {
    let mut b = ctx.private_bundle(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ]);
    b.config["root"]["readonly"] = json!(false);
    b
}

fn read_count(b: &Bundle) -> Option<u64> {
    fs::read_to_string(b.rootfs.join("tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Dead: gone, or a zombie (PID 1 of this machine does not reap orphans).
fn is_dead(pid: i64) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    })
}

fn pids_json(ctx: &Ctx, id: &str) -> Vec<i64> {
    let out = ctx.rt(&["ps", "--format", "json", id]);
    out.ok();
    out.json()
        .as_array()
        .unwrap_or_else(|| panic!("ps json is not an array:\n{out}"))
        .iter()
        .map(|v| v.as_i64().expect("pid"))
        .collect()
}

#[test]
fn exec_prints_output_and_returns_the_exit_code() {
    let ctx = Ctx::new("exec_prints_output_and_returns_the_exit_code");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    let out = ctx.rt(&["exec", &b.id, "sh", "-c", "echo hi; exit 3"]);
    out.code_is(3);
    assert_eq!(out.stdout, "hi\n", "{out}");

    let out = ctx.rt(&[
        "exec",
        "--cwd",
        "/tmp",
        "-e",
        "FOO=bar",
        "--user",
        "1000:1001",
        &b.id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g)",
    ]);
    out.ok();
    assert_eq!(out.stdout, "bar /tmp 1000:1001\n", "{out}");
    // The container's env is kept; a flag after the id belongs to the command.
    let out = ctx.rt(&["exec", &b.id, "sh", "-c", "echo $BERTH_TEST_MARKER", "-x"]);
    out.ok();
    assert_eq!(out.stdout.trim(), b.marker, "{out}");
}

#[test]
fn exec_runs_in_a_created_container() {
    let ctx = Ctx::new("exec_runs_in_a_created_container");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create(&b).ok();
    let out = ctx.rt(&["exec", &b.id, "sh", "-c", "echo $$; cat /proc/1/comm"]);
    out.ok();
    // Inside the container's pid namespace, beside its init (not yet the user program).
    let lines = lines(&out.stdout);
    assert_eq!(lines.len(), 2, "{out}");
    assert_ne!(lines[0], "1", "{out}");
    assert_eq!(ctx.state(&b.id)["status"], "created");
    ctx.start(&b.id).ok();
    assert_eq!(ctx.state(&b.id)["status"], "running");
}

#[test]
fn exec_process_json_detached_with_pid_file() {
    let ctx = Ctx::new("exec_process_json_detached_with_pid_file");
    let b = ctx.bundle(&["sleep", "30"]);
    let (_, init) = ctx.create_start(&b, "sleep");
    let mut process = b.config["process"].clone();
    process["args"] = json!(["sleep", "31"]);
    process["cwd"] = json!("/tmp");
    let proc_json = ctx.path().join("proc.json");
    fs::write(&proc_json, process.to_string()).unwrap();
    let pid_file = ctx.path().join("exec.pid");
    let out = ctx.rt(&[
        "exec",
        "--process",
        proc_json.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    out.ok();
    let pid: i64 = fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    wait_until(STATE_TIMEOUT, "the exec'd sleep", || {
        (proc_comm(pid).as_deref() == Some("sleep")).then_some(())
    });
    let mut pids = pids_json(&ctx, &b.id);
    pids.sort_unstable();
    let mut want = vec![init, pid];
    want.sort_unstable();
    assert_eq!(
        pids, want,
        "ps --format json lists the init and the exec'd process"
    );
    let table = ctx.rt(&["ps", &b.id]);
    table.ok();
    assert!(table.stdout.starts_with("UID"), "{table}");
    assert!(table.stdout.contains("sleep 31"), "{table}");
    assert_eq!(lines(&table.stdout).len(), 3, "{table}");
}

#[test]
fn exec_is_refused_in_stopped_and_paused_containers() {
    let ctx = Ctx::new("exec_is_refused_in_stopped_and_paused_containers");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    ctx.rt(&["pause", &b.id]).ok();
    ctx.rt(&["exec", &b.id, "true"])
        .failed()
        .stderr_has("paused");
    ctx.rt(&["resume", &b.id]).ok();
    ctx.kill(&b.id, "KILL").ok();
    ctx.wait_status(&b.id, "stopped");
    ctx.rt(&["exec", &b.id, "true"])
        .failed()
        .stderr_has("not running");
    ctx.rt(&["exec", "no-such-container", "true"])
        .failed()
        .stderr_has("does not exist");
}

#[test]
fn pause_freezes_and_resume_continues() {
    let ctx = Ctx::new("pause_freezes_and_resume_continues");
    let b = counter_bundle(&ctx);
    ctx.create_start(&b, "sh");
    wait_until(STATE_TIMEOUT, "the counter to count", || {
        read_count(&b).filter(|n| *n > 2)
    });
    ctx.rt(&["pause", &b.id]).ok();
    assert_eq!(ctx.state(&b.id)["status"], "paused");
    let list = ctx.rt(&["list", "--format", "json"]);
    list.ok();
    assert_eq!(list.json()[0]["status"], "paused", "{list}");
    let frozen_at = read_count(&b);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        read_count(&b),
        frozen_at,
        "the counter went on while paused"
    );
    ctx.rt(&["pause", &b.id]).failed();

    ctx.rt(&["resume", &b.id]).ok();
    assert_eq!(ctx.state(&b.id)["status"], "running");
    wait_until(STATE_TIMEOUT, "the counter to go on after resume", || {
        (read_count(&b) > frozen_at).then_some(())
    });
    ctx.rt(&["resume", &b.id]).failed().stderr_has("not paused");
}

#[test]
fn delete_force_removes_a_paused_container() {
    let ctx = Ctx::new("delete_force_removes_a_paused_container");
    let b = ctx.bundle(&["sh", "-c", "sleep 30 & sleep 31 & wait"]);
    let (_, init) = ctx.create_start(&b, "sh");
    ctx.rt(&["pause", &b.id]).ok();
    ctx.delete(&b.id).failed().stderr_has("paused");
    ctx.rt(&["delete", "--force", &b.id]).ok();
    ctx.rt(&["state", &b.id])
        .failed()
        .stderr_has("does not exist");
    assert!(
        is_dead(init),
        "the paused init {init} survived delete --force"
    );
    ctx.assert_nothing_left(&b);
}

#[test]
fn kill_sigkill_of_a_paused_container_stops_it() {
    let ctx = Ctx::new("kill_sigkill_of_a_paused_container_stops_it");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    ctx.rt(&["pause", &b.id]).ok();
    ctx.kill(&b.id, "KILL").ok();
    ctx.wait_status(&b.id, "stopped");
    ctx.delete(&b.id).ok();
}

#[test]
fn kill_all_signals_every_process() {
    let ctx = Ctx::new("kill_all_signals_every_process");
    // The init ignores TERM (as a pid 1 without a handler does); its children do not.
    let b = ctx.bundle(&["sh", "-c", "sleep 30 & sleep 31 & wait"]);
    ctx.create_start(&b, "sh");
    let pids = wait_until(STATE_TIMEOUT, "three processes", || {
        Some(pids_json(&ctx, &b.id)).filter(|p| p.len() == 3)
    });
    ctx.rt(&["kill", "--all", &b.id, "KILL"]).ok();
    ctx.wait_status(&b.id, "stopped");
    for pid in pids {
        wait_until(STATE_TIMEOUT, &format!("pid {pid} to die"), || {
            is_dead(pid).then_some(())
        });
    }
    assert_eq!(pids_json(&ctx, &b.id), Vec::<i64>::new());
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let ctx = Ctx::new("update_changes_the_limits_of_a_running_container");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    let memory = || {
        read_knob(
            &b.cgroup_path,
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        )
    };
    let pids_max = || read_knob(&b.cgroup_path, "pids", "pids.max", "pids.max");

    ctx.rt(&["update", "--memory", "64m", "--pids-limit", "50", &b.id])
        .ok();
    assert_eq!(memory(), "67108864");
    assert_eq!(pids_max(), "50");

    let resources = ctx.path().join("resources.json");
    fs::write(
        &resources,
        json!({"memory": {"limit": 33554432}, "pids": {"limit": 20}}).to_string(),
    )
    .unwrap();
    ctx.rt_full(
        &["update", "--resources", "-", &b.id],
        None,
        Some(&resources),
    )
    .ok();
    assert_eq!(memory(), "33554432");
    assert_eq!(pids_max(), "20");
    // Still running, and its process still in the cgroup.
    assert_eq!(ctx.state(&b.id)["status"], "running");

    ctx.rt(&["update", "--memory", "12x", &b.id])
        .failed()
        .stderr_has("invalid size");
}

#[test]
fn events_prints_runc_stats_json() {
    let ctx = Ctx::new("events_prints_runc_stats_json");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    let out = ctx.rt(&["events", "--stats", &b.id]);
    out.ok();
    let event: Value = out.json();
    assert_eq!(event["type"], "stats", "{out}");
    assert_eq!(event["id"], json!(b.id), "{out}");
    let data = &event["data"];
    assert!(data["memory"]["usage"]["usage"].as_u64() > Some(0), "{out}");
    assert_eq!(data["pids"]["current"], 1, "{out}");
    assert!(data["cpu"]["usage"]["total"].as_u64() > Some(0), "{out}");

    // The stream: stats every interval until the container is gone.
    let stream = ctx.spawn_rt(&["events", "--interval", "100ms", &b.id], None);
    std::thread::sleep(Duration::from_millis(450));
    ctx.kill(&b.id, "KILL").ok();
    let out = stream.wait(STATE_TIMEOUT);
    out.ok();
    let events = lines(&out.stdout);
    assert!(events.len() >= 3, "expected a stats line per 100ms:\n{out}");
    for line in events {
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["type"], "stats", "{line}");
    }
}

#[test]
fn errors_go_to_the_json_log_as_the_shim_reads_them() {
    let ctx = Ctx::new("errors_go_to_the_json_log_as_the_shim_reads_them");
    let log = ctx.path().join("log.json");
    let log_arg = log.to_str().unwrap();
    ctx.rt(&[
        "--log",
        log_arg,
        "--log-format",
        "json",
        "exec",
        "nope",
        "true",
    ])
    .failed();
    let text = fs::read_to_string(&log).expect("log file");
    let last: Value = serde_json::from_str(text.lines().last().expect("a line")).unwrap();
    assert_eq!(last["level"], "error", "{text}");
    assert!(
        last["msg"].as_str().unwrap().contains("does not exist"),
        "{text}"
    );
    let b = ctx.bundle(&["true"]);
    ctx.create_with(&b, &["--systemd-cgroup"])
        .failed()
        .stderr_has("--systemd-cgroup is not supported");
}

#[test]
fn exec_preserve_fds_passes_fds_on() {
    let ctx = Ctx::new("exec_preserve_fds_passes_fds_on");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    let file = ctx.path().join("fd3.txt");
    // The runtime started with fd 3 open on `file`, as a shim's ExtraFiles.
    let exec_with_fd3 = |preserve: &str| {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3>>\"$FD3\"")
            .arg(BIN)
            .args(["--root", ctx.root.to_str().unwrap(), "exec"])
            .args([
                "--preserve-fds",
                preserve,
                &b.id,
                "sh",
                "-c",
                "echo kept >&3",
            ])
            .env("FD3", &file)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the runtime");
        status.code()
    };
    assert_eq!(exec_with_fd3("1"), Some(0));
    assert_eq!(fs::read_to_string(&file).unwrap(), "kept\n");
    // Without it, fd 3 is closed before the process runs.
    assert_ne!(exec_with_fd3("0"), Some(0));
    assert_eq!(fs::read_to_string(&file).unwrap(), "kept\n");
}

#[test]
fn exec_tty_sends_the_pty_master_to_the_console_socket() {
    let ctx = Ctx::new("exec_tty_sends_the_pty_master_to_the_console_socket");
    let b = ctx.bundle(&["sleep", "30"]);
    ctx.create_start(&b, "sleep");
    let socket_path = ctx.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let socket_arg = socket_path.to_str().unwrap();
    let out = ctx.rt(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        socket_arg,
        &b.id,
        "sh",
        "-c",
        "tty; echo done",
    ]);
    out.ok();
    let (conn, _) = listener.accept().unwrap();
    let master = berth_runtime::console::receive_master(&conn).unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    loop {
        match nix::unistd::read(&master, &mut buf) {
            Ok(0) | Err(nix::Error::EIO) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::Error::EINTR) => {}
            Err(e) => panic!("read pty: {e}"),
        }
    }
    let lines = lines(&text);
    assert!(lines.iter().any(|l| l.starts_with("/dev/pts/")), "{text:?}");
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{text:?}");
}

#[test]
fn events_streams_an_oom_kill() {
    let ctx = Ctx::new("events_streams_an_oom_kill");
    let mut b = ctx.bundle(&["sleep", "30"]);
    // Memory and memory+swap both 32 MiB: a 64 MiB buffer cannot fit, not even swapped out.
    let limit = 32 << 20;
    b.resources()["memory"] = json!({"limit": limit, "swap": limit});
    ctx.create_start(&b, "sleep");
    let events_out = ctx.path().join("events.out");
    let mut stream = std::process::Command::new(BIN)
        .args([
            "--root",
            ctx.root.to_str().unwrap(),
            "events",
            "--interval",
            "10s",
            &b.id,
        ])
        .stdout(fs::File::create(&events_out).unwrap())
        .spawn()
        .expect("spawn events");
    ctx.rt(&[
        "exec",
        &b.id,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ])
    .code_is(128 + 9);
    let seen = poll_until(STATE_TIMEOUT, || {
        let text = fs::read_to_string(&events_out).unwrap_or_default();
        text.contains("\"oom\"").then_some(())
    });
    ctx.kill(&b.id, "KILL").ok();
    // The stream ends by itself once the container has stopped.
    let ended = poll_until(STATE_TIMEOUT, || stream.try_wait().ok().flatten());
    let _ = stream.kill();
    let _ = stream.wait();
    let out = fs::read_to_string(&events_out).unwrap();
    assert!(seen.is_some(), "no oom event:\n{out}");
    assert!(
        ended.is_some_and(|s| s.success()),
        "events did not end with the container: {ended:?}"
    );
    let oom: Vec<Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|e: &Value| e["type"] == "oom")
        .collect();
    assert_eq!(oom, [json!({"type": "oom", "id": b.id})], "{out}");
}
