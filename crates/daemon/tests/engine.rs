//! What the engine makes of a container, seen from inside it and from the host: cgroup
//! limits, volumes, the init layer, networks, users, rlimits, capabilities, --init,
//! restart policies, pause, and containers outliving a killed berthd.

mod common;

use std::time::{Duration, Instant};

use common::{stderr, stdout, Daemon, PtySession};

/// The container's cgroup directory in the v1 `controller` hierarchy.
fn cgroup_dir(d: &Daemon, controller: &str, id: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(d.cgroup_parent.trim_start_matches('/'))
        .join(id)
}

fn inspect(d: &Daemon, format: &str, name: &str) -> String {
    d.docker_ok(&["inspect", "-f", format, name])
        .trim()
        .to_string()
}

/// Poll `f` until it holds (the engine records exits asynchronously), at most 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn memory_limit_is_in_the_containers_cgroup() {
    let d = Daemon::start_with_busybox("memory");
    let id = d.docker_ok(&["run", "-d", "--memory", "64m", "busybox", "sleep", "100"]);
    let id = id.trim();
    let host = std::fs::read_to_string(cgroup_dir(&d, "memory", id).join("memory.limit_in_bytes"))
        .expect("the container's memory cgroup");
    assert_eq!(host.trim(), "67108864");
    // The container sees its own cgroup (a cgroup namespace) with the limit.
    let inside = d.docker_ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "busybox",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(inside.trim(), "67108864");
    assert_eq!(inspect(&d, "{{.HostConfig.Memory}}", id), "67108864");
    // `stats` reads the same cgroup: usage against the limit, one process.
    let format = "{{.MemUsage}} {{.PIDs}}";
    let docker = d.docker_ok(&["stats", "--no-stream", "--format", format, id]);
    assert!(docker.trim().ends_with("/ 64MiB 1"), "{docker}");
    let berth = d.berth(&["stats", "--no-stream", "--format", format, id]);
    assert!(stdout(&berth).trim().ends_with("/ 64MiB 1"), "{berth:?}");
    d.docker_ok(&["rm", "-f", id]);
    assert!(!cgroup_dir(&d, "memory", id).exists(), "cgroup left behind");
}

#[test]
fn cpu_and_pids_limits_reach_the_cgroup() {
    let d = Daemon::start_with_busybox("cpu-pids");
    let id = d.docker_ok(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "20",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(cgroup_dir(&d, ctrl, id).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("pids", "pids.max"), "20");
    d.docker_ok(&["rm", "-f", id]);
    // Settings it could not start with are refused at create, as Docker does, and nothing
    // is left of the container.
    for (flags, message) in [
        (
            &["--memory", "1m"][..],
            "Minimum memory limit allowed is 6MB",
        ),
        (
            &["--cpuset-cpus", "4095"][..],
            "Requested CPUs are not available - requested 4095",
        ),
        (
            &["--cpuset-cpus", "x"][..],
            "Invalid value x for cpuset cpus",
        ),
    ] {
        let out = d.docker(&[&["create"][..], flags, &["busybox"]].concat());
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        assert!(
            stderr(&out).contains(message),
            "{flags:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

#[test]
fn named_volume_outlives_its_container() {
    let d = Daemon::start_with_busybox("volume");
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "kept\n");
    let ls = d.docker_ok(&["volume", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == "keep"), "{ls}");
}

#[test]
fn a_new_volume_starts_with_the_images_files() {
    let d = Daemon::start_with_busybox("volume-copy");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "cat",
        "/etc/passwd",
    ]);
    assert!(out.starts_with("root:"), "{out}");
}

#[test]
fn bind_mounts_read_only_and_read_write() {
    let d = Daemon::start_with_busybox("binds");
    let host = d.dir.path().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let rw = format!("{}:/mnt", host.display());
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "busybox",
        "sh",
        "-c",
        "cat /mnt/in > /mnt/out",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from host\n"
    );
    let ro = format!("{}:/mnt:ro", host.display());
    let out = d.docker(&["run", "--rm", "-v", &ro, "busybox", "touch", "/mnt/x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_layer_names_the_container() {
    let d = Daemon::start_with_busybox("init-layer");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--hostname",
        "web",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("web"));
    assert_eq!(lines.next(), Some("web"));
    assert!(out.contains("127.0.0.1\tlocalhost"), "{out}");
    assert!(out.lines().any(|l| l.ends_with("\tweb")), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("nameserver 127.")),
        "loopback nameserver leaked into the container: {out}"
    );
    // Without --hostname: the short id, as Docker does.
    d.docker_ok(&["run", "--name", "short", "busybox", "hostname"]);
    let id = inspect(&d, "{{.Id}}", "short");
    let logs = d.docker_ok(&["logs", "short"]);
    assert_eq!(logs.trim(), &id[..12]);
    // The init files are the container's own: edits do not show in diff.
    d.docker_ok(&[
        "run",
        "--name",
        "edits",
        "busybox",
        "sh",
        "-c",
        "echo x >> /etc/hosts",
    ]);
    let diff = d.docker_ok(&["diff", "edits"]);
    assert!(!diff.contains("/etc/hosts"), "{diff}");
}

#[test]
fn network_none_has_loopback_and_host_sees_the_host() {
    let d = Daemon::start_with_busybox("network");
    let none = d.docker_ok(&["run", "--rm", "--network", "none", "busybox", "sh", "-c",
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ping -c1 -W2 127.0.0.1 >/dev/null && echo lo-up"]);
    assert_eq!(none, "lo\nlo-up\n");
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count();
    let host = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    assert_eq!(host.lines().count(), host_ifaces, "{host}");
    // The host's network brings the host's name, as with Docker.
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let name = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(name.trim(), host_name);
}

#[test]
fn added_hosts_dns_memory_settings_and_sysctls_reach_the_container() {
    let d = Daemon::start_with_busybox("run-flags");
    let hosts = d.docker_ok(&[
        "run",
        "--rm",
        "--add-host",
        "db:10.0.0.5",
        "--hostname",
        "web",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.ends_with("10.0.0.5\tdb\n127.0.1.1\tweb\n"), "{hosts}");
    let resolv = d.docker_ok(&[
        "run",
        "--rm",
        "--dns",
        "9.9.9.9",
        "--dns-search",
        "example.com",
        "--dns-option",
        "ndots:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        resolv,
        "search example.com\nnameserver 9.9.9.9\noptions ndots:2\n"
    );
    let out = d.docker(&["run", "--rm", "--add-host", "db:nowhere", "busybox", "true"]);
    assert!(!out.status.success());
    // The docker CLI checks the address first; the daemon does too.
    let out = d.berth(&["run", "--rm", "--add-host", "db:nowhere", "busybox", "true"]);
    assert!(
        stderr(&out).contains("invalid IP address in add-host: \"nowhere\""),
        "{out:?}"
    );

    let id = d.docker_ok(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--oom-kill-disable",
        "--sysctl",
        "kernel.shmmax=1048576",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let memory = cgroup_dir(&d, "memory", id);
    let read = |file: &str| std::fs::read_to_string(memory.join(file)).unwrap();
    assert_eq!(read("memory.soft_limit_in_bytes").trim(), "33554432");
    assert!(read("memory.oom_control").contains("oom_kill_disable 1"));
    let shmmax = d.docker_ok(&["exec", id, "cat", "/proc/sys/kernel/shmmax"]);
    assert_eq!(shmmax.trim(), "1048576");
    d.docker_ok(&["rm", "-f", id]);
    // A sysctl of the host's (no namespace of the container holds it) is refused (the
    // docker CLI refuses it first; berth leaves it to the daemon).
    let out = d.berth(&[
        "run",
        "--rm",
        "--sysctl",
        "vm.swappiness=10",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("vm.swappiness is not namespaced"),
        "{out:?}"
    );
    let swappiness = d.docker_ok(&[
        "run",
        "--rm",
        "--memory-swappiness",
        "10",
        "busybox",
        "cat",
        "/sys/fs/cgroup/memory/memory.swappiness",
    ]);
    assert_eq!(swappiness.trim(), "10");
    // What berth does not do is refused by name, not ignored.
    let out = d.docker(&["run", "--rm", "--volumes-from", "other", "busybox", "true"]);
    assert!(
        stderr(&out).contains("berth does not support HostConfig.VolumesFrom (--volumes-from) yet"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_working_directory_is_made_inside_the_container() {
    let d = Daemon::start_with_busybox("workdir");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-w",
        "/new/dir",
        "busybox",
        "sh",
        "-c",
        "pwd; stat -c %U:%a .",
    ]);
    assert_eq!(out, "/new/dir\nroot:755\n");
    let out = d.docker(&["run", "--rm", "-w", "/etc/passwd", "busybox", "true"]);
    assert!(
        stderr(&out).contains("Cannot mkdir: /etc/passwd is not a directory"),
        "{}",
        stderr(&out)
    );
    // A container that swaps a directory on the way for a symlink to a host path gets the
    // directory made inside its own root at its next start, never on the host.
    let host_dir = d.dir.path().join("escaped");
    let swap = format!("cd / && rm -rf /w && ln -s {} /w", host_dir.display());
    d.docker_ok(&[
        "create", "--name", "swapper", "-w", "/w/sub", "busybox", "sh", "-c", &swap,
    ]);
    d.docker_ok(&["start", "-a", "swapper"]);
    d.docker_ok(&["start", "-a", "swapper"]);
    assert!(
        !host_dir.exists(),
        "the working directory was made on the host"
    );
}

#[test]
fn pid_ipc_and_uts_modes_share_or_join_like_docker() {
    let d = Daemon::start_with_busybox("ns-modes");
    // --pid host: the host's processes, berthd among them.
    let berthd = d.pid().unwrap();
    let probe = format!("test -d /proc/{berthd} && echo sees-berthd; true");
    let out = d.docker_ok(&[
        "run", "--rm", "--pid", "host", "busybox", "sh", "-c", &probe,
    ]);
    assert_eq!(out, "sees-berthd\n");
    let out = d.docker_ok(&["run", "--rm", "busybox", "sh", "-c", &probe]);
    assert_eq!(out, "");
    // --pid container:<name>: that container's init is PID 1.
    d.docker_ok(&["run", "-d", "--name", "target", "busybox", "sleep", "100"]);
    let ps = d.docker_ok(&[
        "run",
        "--rm",
        "--pid",
        "container:target",
        "busybox",
        "ps",
        "-o",
        "pid,comm",
    ]);
    assert!(
        ps.lines().any(|l| l.split_whitespace().eq(["1", "sleep"])),
        "{ps}"
    );
    d.docker_ok(&["stop", "-t", "0", "target"]);
    let out = d.docker(&[
        "run",
        "--rm",
        "--pid",
        "container:target",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&out).contains("cannot join PID of a non running container"),
        "{}",
        stderr(&out)
    );
    // --uts host: the host's name, which the container may not set.
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let name = d.docker_ok(&["run", "--rm", "--uts", "host", "busybox", "hostname"]);
    assert_eq!(name.trim(), host_name);
    let out = d.docker(&[
        "run",
        "--rm",
        "--uts",
        "host",
        "--hostname",
        "x",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&out).contains("conflicting options: hostname and the UTS mode"),
        "{}",
        stderr(&out)
    );
    // --ipc host: the host's IPC namespace and /dev/shm; --ipc none: no /dev/shm.
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let ipc = d.docker_ok(&[
        "run",
        "--rm",
        "--ipc",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_eq!(ipc.trim(), host_ipc.to_str().unwrap());
    let mounts = d.docker_ok(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox",
        "cat",
        "/proc/self/mountinfo",
    ]);
    assert!(!mounts.contains(" /dev/shm "), "{mounts}");
    // Modes Docker does not know are refused by the daemon too (the docker CLI checks first).
    let out = d.berth(&["run", "--rm", "--pid", "bogus", "busybox", "true"]);
    assert!(stderr(&out).contains("invalid PID mode: bogus"), "{out:?}");
    // What the container got is in its HostConfig, as Docker writes it at create.
    d.docker_ok(&[
        "create", "--name", "c1", "--memory", "64m", "busybox", "true",
    ]);
    let host_config = "{{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}} {{.HostConfig.ShmSize}} \
                       {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.Runtime}} \
                       {{len .HostConfig.MaskedPaths}} {{len .HostConfig.ReadonlyPaths}}";
    assert_eq!(
        inspect(&d, host_config, "c1"),
        "private private 67108864 134217728 <nil> berth 13 5"
    );
}

#[test]
fn users_capabilities_and_rlimits_like_docker() {
    let d = Daemon::start_with_busybox("process");
    let out = d.docker_ok(&["run", "--rm", "-u", "nobody", "busybox", "id"]);
    assert_eq!(
        out.trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    );
    // Each process leads a session of its own and has no signal ignored, as with Docker.
    let status = ["grep", "-E", "^(NSpgid|NSsid|SigIgn):", "/proc/self/status"];
    let out = d.docker_ok(&[&["run", "--rm", "busybox"][..], &status].concat());
    assert_eq!(out, "NSpgid:\t1\nNSsid:\t1\nSigIgn:\t0000000000000000\n");
    let id = d.docker_ok(&["run", "-d", "busybox", "sleep", "100"]);
    let out = d.docker_ok(&[&["exec", id.trim()][..], &status].concat());
    let exec = out
        .lines()
        .map(|l| l.split('\t').nth(1))
        .collect::<Vec<_>>();
    assert!(
        exec[0] == exec[1] && exec[0] != Some("0") && exec[2] == Some("0000000000000000"),
        "{out}"
    );
    d.docker_ok(&["rm", "-f", id.trim()]);
    // The primary group is a supplementary one too, as with Docker (CVE-2022-36109).
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-u",
        "1000:1000",
        "--group-add",
        "50",
        "busybox",
        "id",
    ]);
    assert_eq!(out.trim(), "uid=1000 gid=1000 groups=50,1000");
    // A start that fails after the monitor was launched (the user is looked up meanwhile)
    // leaves no monitor behind, not even a zombie: berthd's one child, if any, is its spare
    // monitor, waiting in / for a container to serve.
    let out = d.docker(&["run", "--rm", "-u", "nosuchuser", "busybox", "id"]);
    assert!(
        stderr(&out).contains("unable to find user nosuchuser"),
        "{}",
        stderr(&out)
    );
    let pid = d.pid().unwrap();
    let children: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let is_spare = |pid: &String| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d == std::path::Path::new("/"))
    };
    assert!(
        children.len() <= 1 && children.iter().all(is_spare),
        "berthd's children: {children:?}"
    );
    let caps = d.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(caps.split_whitespace().nth(1), Some("00000000a80425fb"));
    let dropped = d.docker_ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(dropped.split_whitespace().nth(1), Some("0000000000000000"));
    // Rlimits default to berthd's own (the host's), never above its hard limit.
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, format!("{soft}\n{hard}\n"));
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=100:200",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, "100\n200\n");
    let env = d.docker_ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo $A $PATH; pwd",
    ]);
    assert!(env.starts_with("1 /usr/local/sbin:"), "{env}");
    assert!(env.ends_with("/tmp\n"), "{env}");
    // In Docker's order: its PATH (the image's), HOSTNAME, TERM, then the container's own
    // variables, HOME last.
    let env = d.docker_ok(&[
        "run",
        "--rm",
        "-t",
        "--hostname",
        "h",
        "-e",
        "A=1",
        "busybox",
        "env",
    ]);
    let keys: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert_eq!(keys, ["PATH", "HOSTNAME", "TERM", "A", "HOME"], "{env}");
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let d = Daemon::start_with_busybox("read-only");
    let out = d.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    // /tmp-like scratch space still works through a tmpfs mount.
    d.docker_ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "touch",
        "/scratch/x",
    ]);
}

#[test]
fn init_is_pid_1_and_reaps() {
    let d = Daemon::start_with_busybox("init");
    let out = d.docker_ok(&["run", "--rm", "--init", "busybox", "sh", "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; sh -c 'sleep 0 & exec true'; sleep 0.2; ps -o stat,comm | grep -c Z || true"]);
    assert!(out.starts_with("/sbin/berth-init -- sh -c"), "{out}");
    assert!(out.ends_with("0\n"), "a zombie was left unreaped: {out}");
    let code = d.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(code.status.code(), Some(4));
}

#[test]
fn restart_policy_on_failure_gives_up_after_its_count() {
    let d = Daemon::start_with_busybox("restart-policy");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    eventually("two restarts and a final exit", || {
        inspect(&d, "{{.RestartCount}} {{.State.Status}}", "flaky") == "2 exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        inspect(
            &d,
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
            "flaky"
        ),
        "2 exited 1"
    );
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "true",
    ]);
    eventually("an always container restarting", || {
        inspect(&d, "{{.RestartCount}}", "always")
            .parse::<u32>()
            .unwrap_or(0)
            >= 2
    });
    d.docker_ok(&["stop", "always"]);
    let count = inspect(&d, "{{.RestartCount}}", "always");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        inspect(&d, "{{.RestartCount}} {{.State.Running}}", "always"),
        format!("{count} false")
    );
}

#[test]
fn pause_freezes_and_unpause_thaws() {
    let d = Daemon::start_with_busybox("pause");
    let id = d.docker_ok(&["run", "-d", "busybox", "sleep", "100"]);
    let id = id.trim();
    d.docker_ok(&["pause", id]);
    assert_eq!(
        inspect(&d, "{{.State.Status}} {{.State.Paused}}", id),
        "paused true"
    );
    let freezer = cgroup_dir(&d, "freezer", id).join("freezer.state");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    let ps = d.docker_ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(Paused)"), "{ps}");
    d.docker_ok(&["unpause", id]);
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    assert_eq!(inspect(&d, "{{.State.Status}}", id), "running");
    // A paused container still stops.
    d.docker_ok(&["pause", id]);
    d.docker_ok(&["stop", "-t", "1", id]);
    assert_eq!(inspect(&d, "{{.State.Status}}", id), "exited");
}

#[test]
fn inspect_shows_the_overlay_and_errors_read_like_docker() {
    let d = Daemon::start_with_busybox("inspect");
    d.docker_ok(&["create", "--name", "c1", "busybox", "true"]);
    for dir in ["LowerDir", "UpperDir", "MergedDir", "WorkDir"] {
        let path = inspect(&d, &format!("{{{{.GraphDriver.Data.{dir}}}}}"), "c1");
        for p in path.split(':') {
            assert!(std::path::Path::new(p).is_dir(), "{dir} {p} missing");
        }
    }
    assert_eq!(
        inspect(&d, "{{.GraphDriver.Name}} {{.State.Status}}", "c1"),
        "overlay2 created"
    );
    for verb in ["start", "stop", "kill", "rm", "pause", "logs"] {
        let out = d.docker(&[verb, "nosuch"]);
        assert!(!out.status.success(), "{verb}");
        assert!(
            stderr(&out).contains("No such container: nosuch"),
            "{verb}: {}",
            stderr(&out)
        );
    }
    let out = d.docker(&["ps", "--filter", "status=bogus"]);
    assert!(
        stderr(&out).contains("invalid filter 'status=bogus'"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["kill", "c1"]);
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "nosuchimage"]);
    assert!(!out.status.success());
    let out = d.docker(&["run", "--rm", "busybox", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn three_containers_survive_a_daemon_kill() {
    let mut d = Daemon::start_with_busybox("survive3");
    for (name, code) in [("ca", 5), ("cb", 6), ("cc", 7)] {
        let script = format!("trap 'exit {code}' TERM; while :; do echo tick; sleep 0.1; done");
        d.docker_ok(&["run", "-d", "--name", name, "busybox", "sh", "-c", &script]);
    }
    eventually("ticks in the log", || {
        d.docker_ok(&["logs", "ca"]).lines().count() >= 2
    });
    d.kill9();
    let during = std::fs::metadata(d.root.join("containers")).is_ok();
    assert!(during);
    d.restart();
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    let mut running: Vec<&str> = ps.lines().collect();
    running.sort();
    assert_eq!(running, ["ca running", "cb running", "cc running"]);
    let before = d.docker_ok(&["logs", "ca"]).lines().count();
    eventually("the log growing after the restart", || {
        d.docker_ok(&["logs", "ca"]).lines().count() > before + 2
    });
    let waiter = d
        .docker_cmd(&["wait", "ca", "cb", "cc"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.docker_ok(&["kill", "-s", "TERM", "ca", "cb", "cc"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "5\n6\n7\n");
}

#[test]
fn run_it_gives_a_shell_whose_pid_1_is_sh() {
    let d = Daemon::start_with_busybox("run-it");
    let line = format!(
        "{} -H unix://{} run -it --rm busybox sh",
        "/usr/local/bin/docker",
        d.socket.display()
    );
    let mut pty = PtySession::spawn(&line);
    pty.expect(0, "# ");
    let mark = pty.len();
    pty.send("ps -o pid,comm | grep '^ *1 '");
    let out = pty.expect(mark, "1 sh");
    assert!(out.contains("1 sh"), "{out}");
    let mark = pty.len();
    pty.send("stty size; echo $TERM");
    pty.expect(mark, "xterm");
    pty.send("exit 3");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{}", pty.output.lock().unwrap());
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

#[test]
fn a_very_deep_tree_does_not_bring_berthd_down() {
    let d = Daemon::start_with_busybox("deep-tree");
    d.docker_ok(&[
        "run",
        "--name",
        "deep",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 600); do mkdir d && cd d || exit 1; done",
    ]);
    // The walks refuse the depth (the stream ends early); berthd must survive both.
    let _ = d.docker(&["export", "deep"]);
    let _ = d.docker(&["cp", "deep:/d", "-"]);
    let _ = d.docker(&["inspect", "-s", "deep"]);
    assert_eq!(
        d.docker_ok(&["ps", "-aq"]).lines().count(),
        1,
        "{}",
        d.log()
    );
}

#[test]
fn restart_of_an_auto_removed_container_keeps_it() {
    let d = Daemon::start_with_busybox("restart-rm");
    d.docker_ok(&[
        "run", "-d", "--rm", "--name", "keepme", "busybox", "sleep", "1000",
    ]);
    d.docker_ok(&["restart", "-t", "0", "keepme"]);
    // The auto-removal of the stop's exit must not take the restarted container.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(&d, "{{.State.Status}}", "keepme"), "running");
    d.docker_ok(&["rm", "-f", "keepme"]);
}

#[test]
fn rm_f_of_a_restarting_container_leaves_nothing() {
    let d = Daemon::start_with_busybox("rm-loop");
    for i in 0..8u64 {
        let name = format!("loop{i}");
        d.docker_ok(&[
            "run",
            "-d",
            "--restart",
            "always",
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "sleep 0.05",
        ]);
        // Hit different moments of the start / exit / backoff cycle.
        std::thread::sleep(Duration::from_millis(i * 37 % 200));
        d.docker_ok(&["rm", "-f", &name]);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
    // A removed container's directory is deleted in the background: soon, not at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = std::fs::read_dir(d.root.join("containers"))
            .unwrap()
            .flatten()
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn device_cgroup_denies_host_devices_but_not_the_usual_ones() {
    let d = Daemon::start_with_busybox("devices");
    // mknod is allowed (CAP_MKNOD, `b *:* m`); opening what it made is not (7:0 is the
    // host's /dev/loop0, which root could otherwise read and write).
    let probe = "mknod /tmp/disk b 7 0 && head -c1 /tmp/disk && echo opened";
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", probe]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    d.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo x > /dev/null && head -c1 /dev/zero >/dev/null && head -c1 /dev/urandom >/dev/null",
    ]);
    let id = d.docker_ok(&["run", "-d", "busybox", "sleep", "100"]);
    let list =
        std::fs::read_to_string(cgroup_dir(&d, "devices", id.trim()).join("devices.list")).unwrap();
    assert!(!list.contains("a *:* rwm"), "{list}");
    assert!(list.contains("c 1:3 rwm"), "{list}");
    d.docker_ok(&["rm", "-f", id.trim()]);
    // --device: the node, and only the access asked for (7:7 is the host's /dev/loop7).
    let out = d.docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/loop7:/dev/xloop:r",
        "busybox",
        "sh",
        "-c",
        "ls -l /dev/xloop && head -c0 /dev/xloop && echo read-ok && echo x > /dev/xloop",
    ]);
    assert!(
        stdout(&out).starts_with("brw")
            && stdout(&out).contains(" 7,   7 ")
            && stdout(&out).ends_with("read-ok\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "--device", "/dev/nosuch", "busybox", "true"]);
    assert!(
        stderr(&out).contains("error gathering device information while adding custom device \"/dev/nosuch\": no such file or directory"),
        "{}",
        stderr(&out)
    );
    // --privileged: every device.
    let out = d.docker_ok(&["run", "--rm", "--privileged", "busybox", "sh", "-c", probe]);
    assert!(out.ends_with("opened\n"), "{out}");
}

#[test]
fn kill_goes_ahead_while_a_stop_waits() {
    let d = Daemon::start_with_busybox("kill-during-stop");
    // PID 1 ignores SIGTERM: the stop waits for its grace period.
    d.docker_ok(&[
        "run", "-d", "--name", "stubborn", "busybox", "sleep", "1000",
    ]);
    let mut stop = d
        .docker_cmd(&["stop", "-t", "30", "stubborn"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    d.docker_ok(&["kill", "stubborn"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "kill waited for the stop"
    );
    assert!(stop.wait().unwrap().success());
    assert_eq!(inspect(&d, "{{.State.Status}}", "stubborn"), "exited");
}
