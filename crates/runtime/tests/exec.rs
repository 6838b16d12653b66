//! `berth_runtime::exec`: a process started in a running container shares its namespaces and
//! cgroup, runs as the process config says, and reports failures before it runs.
//!
//! A custom main (harness = false): exec forks, so its caller must be single-threaded, and
//! the exec'd process inherits our stdout, which a test redirects to a file around the call.

mod common;

use std::fs;
use std::os::fd::AsRawFd;

use berth_runtime::exec::{exec, ExecOptions};
use common::*;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use serde_json::json;

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "exec_joins_the_containers_namespaces",
            exec_joins_the_containers_namespaces,
        ),
        (
            "exec_joins_the_containers_cgroup",
            exec_joins_the_containers_cgroup,
        ),
        (
            "exec_applies_user_cwd_env_and_exit_code",
            exec_applies_user_cwd_env_and_exit_code,
        ),
        ("exec_errors_before_running", exec_errors_before_running),
        (
            "exec_joins_the_containers_user_namespace",
            exec_joins_the_containers_user_namespace,
        ),
        (
            "exec_with_a_terminal_relays_the_pty",
            exec_with_a_terminal_relays_the_pty,
        ),
        (
            "exec_never_leaks_fds_or_a_host_cwd",
            exec_never_leaks_fds_or_a_host_cwd,
        ),
        (
            "exec_gets_the_containers_seccomp_filter",
            exec_gets_the_containers_seccomp_filter,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = vec![];
    let mut passed = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed.push(*name);
        }
    }
    // libtest's summary line, which scripts/test.sh adds up.
    println!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}

fn process(args: &[&str], extra: serde_json::Value) -> Process {
    let mut p = json!({
        "args": args,
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    serde_json::from_value(p).expect("process json")
}

/// A running `sleep` container and its init pid.
fn running(ctx: &Ctx) -> (Bundle, i64) {
    let b = ctx.bundle(&["sleep", "1000"]);
    let (_, pid) = ctx.create_start(&b, "sleep");
    (b, pid)
}

/// Exec `p` in container `id` with stdout and stderr sent to a file; its exit code and output.
fn exec_output(ctx: &Ctx, id: &str, p: &Process) -> (i32, String) {
    let out_path = ctx.new_dir("exec-out").join("out");
    let file = fs::File::create(&out_path).expect("output file");
    let saved = [1, 2].map(|fd| nix::unistd::dup(unsafe_borrow(fd)).expect("dup"));
    for fd in [1, 2] {
        // SAFETY: dup2 onto our own stdio numbers; restored below.
        unsafe { libc::dup2(file.as_raw_fd(), fd) };
    }
    let result = exec(&ExecOptions {
        root: &ctx.root,
        id,
        process: p,
        console_socket: None,
        relay_terminal: false,
    });
    for (fd, saved) in [1, 2].iter().zip(&saved) {
        // SAFETY: as above.
        unsafe { libc::dup2(saved.as_raw_fd(), *fd) };
    }
    let execd = result.unwrap_or_else(|e| panic!("exec {:?}: {e:#}", p.args()));
    let code = wait_code(execd.pid);
    (code, fs::read_to_string(&out_path).unwrap_or_default())
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: stdio fds stay open for the whole test process.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn wait_code(pid: i32) -> i32 {
    match waitpid(Pid::from_raw(pid), None).expect("waitpid") {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

fn exec_joins_the_containers_namespaces() {
    let ctx = Ctx::new("exec_joins_namespaces");
    let (b, init) = running(&ctx);
    let (code, host) = exec_output(&ctx, &b.id, &process(&["hostname"], json!({})));
    assert_eq!((code, host.trim()), (0, "berth-test"));
    for ns in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let path = format!("/proc/self/ns/{ns}");
        let (code, out) = exec_output(&ctx, &b.id, &process(&["readlink", &path], json!({})));
        assert_eq!(code, 0, "{out}");
        assert_eq!(out.trim(), ns_id(&init.to_string(), ns), "{ns} namespace");
        assert_ne!(
            out.trim(),
            ns_id("self", ns),
            "{ns} namespace is the host's"
        );
    }
    // In the container's pid namespace the init is pid 1 and the exec'd shell sees it.
    let (_, comm) = exec_output(&ctx, &b.id, &process(&["cat", "/proc/1/comm"], json!({})));
    assert_eq!(comm.trim(), "sleep");
}

fn exec_joins_the_containers_cgroup() {
    let ctx = Ctx::new("exec_joins_cgroup");
    let (b, init) = running(&ctx);
    let p = process(
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
        ],
        json!({}),
    );
    let (code, out) = exec_output(&ctx, &b.id, &p);
    assert_eq!(code, 0, "{out}");
    let (own, init_view) = out.split_once("--\n").expect("separator");
    assert_eq!(
        own, init_view,
        "exec'd process and init in different cgroups"
    );
    // From the host: a long-running exec'd process is in the init's cgroup.
    let execd = exec(&ExecOptions {
        root: &ctx.root,
        id: &b.id,
        process: &process(&["sleep", "1000"], json!({})),
        console_socket: None,
        relay_terminal: false,
    })
    .expect("exec sleep");
    let cgroup = |pid: i64| fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cgroup(execd.pid as i64), cgroup(init));
    assert!(cgroup(init).contains(&b.cgroup_path), "{}", cgroup(init));
    berth_runtime::sys::pidfd_send_signal(&execd.pidfd, libc::SIGKILL).unwrap();
    assert_eq!(wait_code(execd.pid), 137);
}

fn exec_applies_user_cwd_env_and_exit_code() {
    let ctx = Ctx::new("exec_applies_process");
    let (b, _) = running(&ctx);
    let p = process(
        &[
            "sh",
            "-c",
            "echo $(id -u):$(id -g):$(id -G) $(pwd) $GREETING; exit 3",
        ],
        json!({
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1001, "additionalGids": [1002]},
            "env": ["PATH=/bin:/usr/bin", "GREETING=hello"],
        }),
    );
    let (code, out) = exec_output(&ctx, &b.id, &p);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out.trim(), "1000:1001:1001 1002 /tmp hello");
}

fn exec_joins_the_containers_user_namespace() {
    let ctx = Ctx::new("exec_userns");
    let mut b = ctx.bundle(&["sleep", "1000"]);
    b.set_namespace("user", None);
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    let (_, init) = ctx.create_start(&b, "sleep");
    let p = process(
        &["sh", "-c", "id -u; readlink /proc/self/ns/user"],
        json!({"user": {"uid": 7, "gid": 7}}),
    );
    let execd = exec(&ExecOptions {
        root: &ctx.root,
        id: &b.id,
        process: &process(&["sleep", "1000"], json!({"user": {"uid": 7, "gid": 7}})),
        console_socket: None,
        relay_terminal: false,
    })
    .expect("exec sleep");
    // On the host the process is container uid 7 mapped: 100007.
    let status = fs::read_to_string(format!("/proc/{}/status", execd.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(squash_ws(uid_line), "Uid: 100007 100007 100007 100007");
    berth_runtime::sys::pidfd_send_signal(&execd.pidfd, libc::SIGKILL).unwrap();
    wait_code(execd.pid);
    let (code, out) = exec_output(&ctx, &b.id, &p);
    assert_eq!(code, 0, "{out}");
    let lines = lines(&out);
    assert_eq!(lines[0], "7");
    assert_eq!(lines[1], ns_id(&init.to_string(), "user"));
}

fn exec_errors_before_running() {
    let ctx = Ctx::new("exec_errors");
    let (b, _) = running(&ctx);
    let try_exec = |id: &str, p: &Process| {
        exec(&ExecOptions {
            root: &ctx.root,
            id,
            process: p,
            console_socket: None,
            relay_terminal: false,
        })
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default()
    };
    let err = try_exec(&b.id, &process(&["no-such-binary"], json!({})));
    assert!(err.contains("executable file not found"), "{err}");
    let err = try_exec(&b.id, &process(&["true"], json!({"cwd": "/no/such/dir"})));
    assert!(err.contains("cannot chdir to cwd /no/such/dir"), "{err}");
    let err = try_exec("no-such-container", &process(&["true"], json!({})));
    assert!(err.contains("does not exist"), "{err}");
    ctx.kill(&b.id, "KILL").ok();
    ctx.wait_status(&b.id, "stopped");
    let err = try_exec(&b.id, &process(&["true"], json!({})));
    assert_eq!(err, format!("container {} is not running", b.id));
    // A created container takes an exec (as runc's: containerd may exec before start).
    let created = ctx.bundle(&["sleep", "1000"]);
    ctx.create(&created).ok();
    let execd = exec(&ExecOptions {
        root: &ctx.root,
        id: &created.id,
        process: &process(&["sh", "-c", "exit 5"], json!({})),
        console_socket: None,
        relay_terminal: false,
    })
    .expect("exec in a created container");
    assert_eq!(wait_code(execd.pid), 5);
}

fn exec_with_a_terminal_relays_the_pty() {
    let ctx = Ctx::new("exec_terminal");
    let (b, _) = running(&ctx);
    let p = process(
        &["sh", "-c", "tty; read line; stty size"],
        json!({"terminal": true}),
    );
    let execd = exec(&ExecOptions {
        root: &ctx.root,
        id: &b.id,
        process: &p,
        console_socket: None,
        relay_terminal: true,
    })
    .expect("exec with terminal");
    let socket = execd.console.expect("pty master socket");
    let master = berth_runtime::console::receive_master(&socket).unwrap();
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 81,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
        0
    );
    nix::unistd::write(&master, b"go\n").expect("write to the pty");
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(&master, &mut buf) {
            Ok(0) | Err(nix::Error::EIO) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::Error::EINTR) => {}
            Err(e) => panic!("read pty: {e}"),
        }
    }
    assert_eq!(wait_code(execd.pid), 0, "{text}");
    let lines = lines(&text);
    assert!(lines.iter().any(|l| l.starts_with("/dev/pts/")), "{text:?}");
    assert_eq!(lines.last().map(String::as_str), Some("24 81"), "{text:?}");
}

/// CVE-2024-21626 through exec: with a host directory open in the caller (not close-on-exec,
/// on fds 100-103, and whatever it has on 3-19), the exec'd process has no fd but its stdio,
/// and `cwd` = /proc/self/fd/N fails or stays inside the container.
fn exec_never_leaks_fds_or_a_host_cwd() {
    let ctx = Ctx::new("exec_never_leaks_fds");
    let (b, _) = running(&ctx);
    let host = ctx.new_dir("host-dir");
    fs::write(host.join("host-secret"), "secret").unwrap();
    let dir = fs::File::open(&host).unwrap();
    let leaked: Vec<i32> = (100..104)
        // SAFETY: F_DUPFD_CLOEXEC-less dup of our own fd onto a free number >= n.
        .map(|n| unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD, n) })
        .collect();
    assert!(leaked.iter().all(|&fd| fd >= 100), "{leaked:?}");

    let (code, out) = exec_output(&ctx, &b.id, &process(&["ls", "/proc/self/fd"], json!({})));
    assert_eq!(code, 0, "{out}");
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert!(
        fds.len() <= 4,
        "fds leaked into the exec'd process: {fds:?}"
    );

    for n in (3..20).chain(leaked.iter().copied()) {
        let cwd = json!({"cwd": format!("/proc/self/fd/{n}")});
        // `true` first: an error (the expected outcome) comes back from exec itself.
        let result = exec(&ExecOptions {
            root: &ctx.root,
            id: &b.id,
            process: &process(&["true"], cwd.clone()),
            console_socket: None,
            relay_terminal: false,
        });
        match result {
            Err(e) => assert!(format!("{e:#}").contains("cwd"), "fd {n}: {e:#}"),
            Ok(execd) => {
                wait_code(execd.pid);
                let p = process(&["sh", "-c", "pwd; ls"], cwd);
                let (_, out) = exec_output(&ctx, &b.id, &p);
                assert!(
                    !out.contains("host-secret") && !out.contains("unreachable"),
                    "fd {n}: the exec'd process's cwd is outside the container:\n{out}"
                );
            }
        }
    }
    for fd in leaked {
        // SAFETY: closing the duplicates made above.
        unsafe { libc::close(fd) };
    }
    ctx.kill(&b.id, "KILL").ok();
}

/// The container's linux.seccomp applies to exec'd processes too, loaded with and without
/// no_new_privileges (before the capabilities drop).
fn exec_gets_the_containers_seccomp_filter() {
    let ctx = Ctx::new("exec_gets_the_containers_seccomp_filter");
    let mut b = ctx.bundle(&["sleep", "1000"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    ctx.create_start(&b, "sleep");
    for nnp in [true, false] {
        let p = process(
            &[
                "sh",
                "-c",
                "mkdir /dev/shm/e 2>&1; echo mkdir=$?; grep ^Seccomp: /proc/self/status",
            ],
            json!({"noNewPrivileges": nnp}),
        );
        let (code, out) = exec_output(&ctx, &b.id, &p);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.contains("mkdir=1"), "{out}");
        assert!(squash_ws(&out).contains("Seccomp: 2"), "{out}");
    }
}
