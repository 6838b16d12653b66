//! The real `berth-monitor` binary on busybox containers: attach, logs, exit codes, stdin,
//! tty and resize, surviving its parent, exec mode.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use berth_monitor::client;
use common::*;

#[test]
fn attach_before_start_gets_multiplexed_output_and_the_log_has_it() {
    let ctx = Ctx::new("attach_output");
    let cfg = ctx.container(
        &["sh", "-c", "echo hi; echo oops >&2; printf tail"],
        false,
        false,
    );
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let mut stream = client::attach(&cfg.socket, false, true, true).expect("attach");
    let mut stdout_only = client::attach(&cfg.socket, false, true, false).expect("attach");
    let pid = client::start(&cfg.socket).expect("start");
    assert!(pid > 0);
    let frames = demux(&read_all(&mut stream));
    // The stream ends only once the exit is recorded (a client inspects right then).
    assert!(client::read_exit(&cfg.exit_file).unwrap().is_some());
    let (out, err): (Vec<_>, Vec<_>) = frames.iter().partition(|(s, _)| *s == 1);
    let joined = |v: Vec<&(u8, String)>| v.iter().map(|(_, t)| t.as_str()).collect::<String>();
    assert_eq!(joined(out), "hi\ntail");
    assert_eq!(joined(err), "oops\n");
    assert_eq!(
        demux(&read_all(&mut stdout_only)),
        vec![(1, "hi\ntail".to_string())]
    );

    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    let exit = wait_exit(&cfg);
    assert_eq!(exit.exit_code, 0);
    assert!(!exit.oom_killed);
    assert!(exit.finished_at.ends_with('Z'), "{}", exit.finished_at);
    let mut lines: Vec<(String, String)> = log_lines(&cfg)
        .iter()
        .map(|l| {
            let time = l["time"].as_str().unwrap();
            assert!(time.ends_with('Z') && time.contains('T'), "{l}");
            (
                l["stream"].as_str().unwrap().into(),
                l["log"].as_str().unwrap().into(),
            )
        })
        .collect();
    lines.sort();
    let want = [("stderr", "oops\n"), ("stdout", "hi\n"), ("stdout", "tail")];
    assert_eq!(lines, want.map(|(a, b)| (a.to_string(), b.to_string())));
    // The runtime's container is gone, and so is the socket.
    assert!(berth_runtime::state::State::load(&cfg.runtime_root, &cfg.id).is_err());
    assert!(!cfg.socket.exists());
}

#[test]
fn large_output_reaches_the_attach_and_the_log_whole_and_in_order() {
    let ctx = Ctx::new("large_output");
    // About 600 KB: more than the monitor queues for a client that does not read.
    let cfg = ctx.container(&["seq", "1", "100000"], false, false);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let mut stream = client::attach(&cfg.socket, false, true, true).expect("attach");
    client::start(&cfg.socket).expect("start");
    // Read late: the monitor must hold the output back meanwhile, not drop it.
    std::thread::sleep(Duration::from_millis(300));
    let want: String = (1..=100000).map(|n| format!("{n}\n")).collect();
    let got = demux(&read_all(&mut stream));
    assert!(got == vec![(1, want.clone())], "attach output differs");
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    let lines = log_lines(&cfg);
    assert_eq!(lines.len(), 100000);
    let logged: String = lines.iter().map(|l| l["log"].as_str().unwrap()).collect();
    assert!(logged == want, "log differs");
}

#[test]
fn exit_file_has_the_exit_code_or_128_plus_the_signal() {
    let ctx = Ctx::new("exit_codes");
    let cfg = ctx.container(&["sh", "-c", "exit 3"], false, false);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    client::start(&cfg.socket).expect("start");
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 3);

    // The init of a pid namespace ignores signals it has no handler for, except from outside.
    let cfg = ctx.container(&["sleep", "1000"], false, false);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    client::start(&cfg.socket).expect("start");
    berth_runtime::container::kill(&cfg.runtime_root, &cfg.id, libc::SIGKILL, false).unwrap();
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    let exit = wait_exit(&cfg);
    assert_eq!((exit.exit_code, exit.oom_killed), (137, false));
}

#[test]
fn a_process_the_oom_killer_kills_is_reported_oom_killed() {
    let ctx = Ctx::new("oom");
    // `tail` keeps a line that never ends in memory: it grows until the limit.
    let cfg = ctx.container_with(&["tail", "/dev/zero"], false, false, |spec| {
        spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 16 << 20});
    });
    let spawned = ctx.spawn(&cfg).expect("spawn");
    client::start(&cfg.socket).expect("start");
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    let exit = wait_exit(&cfg);
    assert_eq!((exit.exit_code, exit.oom_killed), (137, true));
}

#[test]
fn stdin_through_attach_reaches_the_process_and_its_eof_closes_stdin() {
    let ctx = Ctx::new("stdin");
    let cfg = ctx.container(&["cat"], false, true);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let mut stream = client::attach(&cfg.socket, true, true, true).expect("attach");
    client::start(&cfg.socket).expect("start");
    stream.write_all(b"hello\nworld\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        demux(&read_all(&mut stream)),
        vec![(1, "hello\nworld\n".to_string())]
    );
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 0);
}

#[test]
fn without_open_stdin_the_process_reads_dev_null() {
    let ctx = Ctx::new("no_stdin");
    let cfg = ctx.container(&["sh", "-c", "cat; echo done"], false, false);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let mut stream = client::attach(&cfg.socket, true, true, true).expect("attach");
    client::start(&cfg.socket).expect("start");
    assert_eq!(
        demux(&read_all(&mut stream)),
        vec![(1, "done\n".to_string())]
    );
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
}

#[test]
fn tty_output_is_raw_and_resize_sets_the_terminal_size() {
    let ctx = Ctx::new("tty_resize");
    let cfg = ctx.container(
        &["sh", "-c", "read line; stty size; echo got $line"],
        true,
        true,
    );
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let mut stream = client::attach(&cfg.socket, true, true, true).expect("attach");
    client::start(&cfg.socket).expect("start");
    client::resize(&cfg.socket, 33, 101).expect("resize");
    stream.write_all(b"go\n").unwrap();
    let text = String::from_utf8(read_all(&mut stream)).unwrap();
    // Raw pty output: the echoed input, then the program's lines with CRLF.
    assert!(text.contains("33 101\r\n"), "{text:?}");
    assert!(text.contains("got go\r\n"), "{text:?}");
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 0);
    let logged: String = log_lines(&cfg)
        .iter()
        .inspect(|l| assert_eq!(l["stream"], "stdout"))
        .map(|l| l["log"].as_str().unwrap().to_string())
        .collect();
    assert!(logged.contains("33 101"), "{logged:?}");
}

/// Re-run by `monitor_survives_its_parent` in a child process: spawn a monitor, write its
/// pid to a file, then wait to be killed. A no-op as a test of its own.
#[test]
fn helper_parent_of_a_monitor() {
    let Ok(cfg) = std::env::var("BERTH_MONITOR_TEST_CONFIG") else {
        return;
    };
    let cfg: berth_monitor::protocol::MonitorConfig = serde_json::from_str(&cfg).unwrap();
    let spawned = client::Monitors::new(monitor_bin())
        .spawn(&cfg.bundle, &cfg)
        .unwrap();
    let pid_file = cfg.bundle.join("monitor.pid");
    berth_runtime::state::write_atomic(&pid_file, spawned.monitor_pid.to_string().as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn monitor_survives_its_parent() {
    let ctx = Ctx::new("survives_parent");
    // The orphaned monitor comes to us rather than to PID 1 (which reaps nobody here).
    // SAFETY: prctl with integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let cfg = ctx.container(&["sh", "-c", "echo alive"], false, false);
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_parent_of_a_monitor", "--nocapture"])
        .env(
            "BERTH_MONITOR_TEST_CONFIG",
            serde_json::to_string(&cfg).unwrap(),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = cfg.bundle.join("monitor.pid");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let monitor: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the helper wrote no monitor pid"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    ctx.track_monitor(monitor);
    parent.kill().unwrap();
    parent.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), None).is_ok(),
        "the monitor died with its parent"
    );
    let mut stream = client::attach(&cfg.socket, false, true, true).expect("attach");
    client::start(&cfg.socket).expect("start");
    assert_eq!(
        demux(&read_all(&mut stream)),
        vec![(1, "alive\n".to_string())]
    );
    assert_eq!(wait_monitor(monitor), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 0);
}

#[test]
fn exec_mode_runs_a_process_in_the_running_containers_namespaces() {
    let ctx = Ctx::new("exec_mode");
    let cfg = ctx.container(&["sleep", "1000"], false, false);
    let container = ctx.spawn(&cfg).expect("spawn container");
    let init = client::start(&cfg.socket).expect("start");

    let exec = ctx.exec(
        &cfg,
        &["sh", "-c", "hostname; readlink /proc/self/ns/pid; exit 5"],
        false,
        false,
    );
    let spawned = ctx.spawn(&exec).expect("spawn exec");
    let mut stream = client::attach(&exec.socket, false, true, true).expect("attach");
    let pid = client::start(&exec.socket).expect("start exec");
    assert!(pid > 0 && pid != init);
    let frames = demux(&read_all(&mut stream));
    let init_ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    let want = format!("monitor-test\n{}\n", init_ns.display());
    assert_eq!(frames, vec![(1, want)]);
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    assert_eq!(wait_exit(&exec).exit_code, 5);
    assert!(!exec.socket.exists());

    // Input and a tty work in exec mode too.
    let exec = ctx.exec(
        &cfg,
        &["sh", "-c", "read x; stty size; echo $x"],
        true,
        true,
    );
    let spawned = ctx.spawn(&exec).expect("spawn exec");
    let mut stream = client::attach(&exec.socket, true, true, true).expect("attach");
    client::start(&exec.socket).expect("start exec");
    client::resize(&exec.socket, 12, 34).expect("resize");
    stream.write_all(b"typed\n").unwrap();
    let text = String::from_utf8(read_all(&mut stream)).unwrap();
    assert!(
        text.contains("12 34\r\n") && text.contains("typed\r\n"),
        "{text:?}"
    );
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);

    // The container itself was not disturbed.
    let status = berth_runtime::state::State::load(&cfg.runtime_root, &cfg.id).unwrap();
    assert_eq!(status.pid, init);
    berth_runtime::container::kill(&cfg.runtime_root, &cfg.id, libc::SIGKILL, false).unwrap();
    assert_eq!(wait_monitor(container.monitor_pid), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 137);

    // An exec into a container that is gone fails at spawn, with the reason.
    let exec = ctx.exec(&cfg, &["true"], false, false);
    let err = format!("{:#}", ctx.spawn(&exec).unwrap_err());
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn spawn_reports_the_monitors_error() {
    let ctx = Ctx::new("spawn_error");
    let cfg = ctx.container(&["no-such-program"], false, false);
    let err = format!("{:#}", ctx.spawn(&cfg).unwrap_err());
    assert!(err.contains("executable file not found"), "{err}");
    // Nothing left of the container in the runtime, nor of the monitor's socket.
    assert!(berth_runtime::container::list(&cfg.runtime_root)
        .unwrap()
        .is_empty());
    assert!(!cfg.socket.exists());
}

#[test]
fn second_start_is_refused() {
    let ctx = Ctx::new("second_start");
    let cfg = ctx.container(&["sleep", "1000"], false, false);
    ctx.spawn(&cfg).expect("spawn");
    client::start(&cfg.socket).expect("start");
    let err = format!("{:#}", client::start(&cfg.socket).unwrap_err());
    assert!(err.contains("already started"), "{err}");
    // The memory a monitor adds is small: its anonymous pages (heap, stack, written data);
    // the code it maps is shared by every monitor. The target is under a megabyte; a debug
    // build's relocated data alone is most of that, so it gets twice as much.
    let limit = if std::env::var_os("BERTH_TEST_MONITOR").is_some() || !cfg!(debug_assertions) {
        1024
    } else {
        2048
    };
    let anon_kib = monitor_anon_kib(&cfg);
    assert!(anon_kib < limit, "monitor anonymous memory {anon_kib} KiB");
}

/// Anonymous memory of the monitor serving `cfg` (the container's init's parent).
fn monitor_anon_kib(cfg: &berth_monitor::protocol::MonitorConfig) -> u64 {
    let state = berth_runtime::state::State::load(&cfg.runtime_root, &cfg.id).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", state.pid)).unwrap();
    let ppid = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let rollup = std::fs::read_to_string(format!("/proc/{ppid}/smaps_rollup")).unwrap();
    eprintln!("monitor memory:\n{rollup}");
    let field = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .unwrap();
    field.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// CVE-2019-5736: the monitor forks the container's init from itself, so like the runtime it
/// runs from a read-only view of its binary (and keeps its name).
#[test]
fn monitor_runs_from_a_read_only_view_of_its_binary() {
    let ctx = Ctx::new("monitor_read_only_exe");
    let cfg = ctx.container(&["sleep", "1000"], false, false);
    let spawned = ctx.spawn(&cfg).expect("spawn");
    let pid = spawned.monitor_pid;
    let exe = format!("/proc/{pid}/exe");
    let st = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "berth-monitor (pid {pid}) runs from a writable binary"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "berth-monitor");
}
