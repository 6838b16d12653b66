//! containerd acceptance: Debian's containerd, with its own root, state dir, sockets and
//! config (no CRI plugin), runs a busybox image through its runc shim
//! (io.containerd.runc.v2) with `ctr --runc-binary` set to berth-runtime: run --rm, run -d,
//! task exec, pause/resume, kill, delete, and a failure reported through the runtime's JSON
//! log. The same body runs with Debian's runc as the control that shows the test is sound.
//!
//! containerd and runc come from scripts/test.sh (scripts/deps.sh installs them); a machine
//! without them fails here saying so.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const IMAGE: &str = "docker.io/library/busybox:latest";
/// Longest a ctr command may take (an image import included).
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn containerd_runs_berth_runtime() {
    acceptance("ctrd-berth", Path::new(BIN));
}

#[test]
fn containerd_runs_runc_as_the_control() {
    acceptance("ctrd-runc", &find_in_path("runc"));
}

fn acceptance(name: &str, runtime: &Path) {
    let c = Containerd::start(name, runtime);
    c.import_busybox();

    // run --rm: the output, and the exit code of the task.
    let out = c.run(&["--rm"], "hello", &["echo", "hi"]);
    out.ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
    c.run(&["--rm"], "exit3", &["sh", "-c", "exit 3"])
        .code_is(3);

    // run -d: a counter the host can read through the task's rootfs.
    let counter = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";
    c.run(&["-d"], "bg", &["sh", "-c", counter]).ok();
    assert_eq!(c.task_status("bg").as_deref(), Some("RUNNING"));
    let count = || {
        c.read_rootfs("bg", "tmp/count")
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait_until(STATE_TIMEOUT, "the counter to count", || {
        count().filter(|n| *n > 2)
    });

    // task exec: output, exit code, the container's pid namespace.
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo from-exec; cat /proc/1/comm; exit 4",
    ]);
    out.code_is(4);
    assert_eq!(out.stdout, "from-exec\nsh\n", "{out}");

    // pause: PAUSED and the counter stops; resume: RUNNING and it goes on.
    c.ctr(&["task", "pause", "bg"]).ok();
    assert_eq!(c.task_status("bg").as_deref(), Some("PAUSED"));
    let frozen_at = count();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(), frozen_at, "the counter went on while paused");
    c.ctr(&["task", "resume", "bg"]).ok();
    assert_eq!(c.task_status("bg").as_deref(), Some("RUNNING"));
    wait_until(STATE_TIMEOUT, "the counter to go on after resume", || {
        (count() > frozen_at).then_some(())
    });

    // Terminals: the shim's console socket gets the pty master (ctr needs a tty: script's).
    let out = c.ctr_in_pty(&["task", "exec", "--tty", "--exec-id", "t1", "bg", "tty"]);
    out.ok();
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    let runtime = c.runtime.to_string_lossy().into_owned();
    let out = c.ctr_in_pty(&[
        "run",
        "--rm",
        "--tty",
        "--runc-binary",
        &runtime,
        IMAGE,
        "tty1",
        "sh",
        "-c",
        "tty; exit 5",
    ]);
    out.code_is(5);
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");

    // task ps: the shim's `ps --format json`.
    let init = c.task_pid("bg");
    let out = c.ctr(&["task", "ps", "bg"]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(init.as_str())),
        "the init {init} is not in task ps:\n{out}"
    );

    // A failing exec: the shim reports the runtime's error from its JSON log.
    let out = c.ctr(&["task", "exec", "--exec-id", "e2", "bg", "no-such-binary"]);
    out.failed();
    assert!(out.stderr.contains("no-such-binary"), "{out}");

    // kill, then delete.
    c.ctr(&["task", "kill", "--signal", "SIGKILL", "bg"]).ok();
    wait_until(STATE_TIMEOUT, "the task to stop", || {
        (c.task_status("bg").as_deref() == Some("STOPPED")).then_some(())
    });
    c.ctr(&["task", "delete", "bg"]).ok();
    assert_eq!(c.task_status("bg"), None);
    c.ctr(&["containers", "rm", "bg"]).ok();

    // kill --all of a paused task: every process dies (it is thawed for that).
    c.run(
        &["-d"],
        "group",
        &["sh", "-c", "sleep 100 & sleep 101 & wait"],
    )
    .ok();
    c.ctr(&["task", "pause", "group"]).ok();
    assert_eq!(c.task_status("group").as_deref(), Some("PAUSED"));
    c.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", "group"])
        .ok();
    wait_until(STATE_TIMEOUT, "the paused task to stop", || {
        (c.task_status("group").as_deref() == Some("STOPPED")).then_some(())
    });
    c.ctr(&["task", "delete", "group"]).ok();
    c.ctr(&["containers", "rm", "group"]).ok();

    // A create that fails: the error is the runtime's, read from its log by the shim.
    let out = c.run(&["--rm"], "bad", &["no-such-binary"]);
    out.failed();
    assert!(out.stderr.contains("no-such-binary"), "{out}");
}

/// A containerd of our own; everything it made is removed on drop.
struct Containerd {
    /// Holds the temp dir (root, state, sockets, config) and, as the namespace and thus the
    /// tasks' cgroup parent, the name its cleanup sweeps.
    ctx: Ctx,
    namespace: String,
    runtime: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    fn start(name: &str, runtime: &Path) -> Containerd {
        let containerd = find_in_path("containerd");
        find_in_path("ctr");
        find_in_path("containerd-shim-runc-v2");
        let ctx = Ctx::new(name);
        // Tasks get the cgroup /<namespace>/<id>: Ctx's cleanup removes that parent.
        let namespace = ctx.cgroup_parent.clone();
        let dir = ctx.path().to_path_buf();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir, &socket)).expect("write config.toml");
        let log = File::create(dir.join("containerd.log")).expect("containerd.log");
        let child = Command::new(containerd)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let c = Containerd {
            ctx,
            namespace,
            runtime: runtime.to_path_buf(),
            socket,
            child: Some(child),
        };
        let up = poll_until(Duration::from_secs(20), || {
            c.ctr_quiet(&["version"]).success().then_some(())
        });
        assert!(up.is_some(), "containerd did not come up:\n{}", c.log());
        c
    }

    fn log(&self) -> String {
        fs::read_to_string(self.ctx.path().join("containerd.log")).unwrap_or_default()
    }

    /// The busybox OCI layout as a tar, imported under docker.io/library/busybox.
    fn import_busybox(&self) {
        let tar = self.ctx.path().join("busybox-oci.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(berth_testkit::busybox_image().join("oci"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success(), "tar of the busybox layout failed");
        let tar = tar.to_string_lossy().into_owned();
        self.ctr(&[
            "images",
            "import",
            "--base-name",
            "docker.io/library/busybox",
            &tar,
        ])
        .ok();
    }

    /// `ctr run [flags] --runc-binary RUNTIME IMAGE ID ARGS...`
    fn run(&self, flags: &[&str], id: &str, args: &[&str]) -> CtrOut {
        let runtime = self.runtime.to_string_lossy().into_owned();
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        all.extend(["--runc-binary", &runtime, IMAGE, id]);
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// The task's STATUS column in `ctr task ls`, if it is listed.
    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&id)).then(|| fields.last().unwrap_or(&"").to_string())
        })
    }

    /// The task's PID column in `ctr task ls`.
    #[track_caller]
    fn task_pid(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.first() == Some(&id)).then(|| fields.get(1).unwrap_or(&"").to_string())
            })
            .unwrap_or_else(|| panic!("task {id} is not listed:\n{out}"))
    }

    /// A file of the task's rootfs as the host sees it (the shim mounts it in the bundle).
    fn read_rootfs(&self, id: &str, path: &str) -> Option<String> {
        let bundle = self
            .ctx
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id);
        fs::read_to_string(bundle.join("rootfs").join(path)).ok()
    }

    #[track_caller]
    fn ctr(&self, args: &[&str]) -> CtrOut {
        let out = self.ctr_quiet(args);
        if out.status.code().is_none() {
            panic!(
                "ctr did not finish within {CTR_TIMEOUT:?}:\n{out}\n{}",
                self.log()
            );
        }
        out
    }

    /// `ctr` with a pty as its stdio (`script`), for --tty; its exit status is ctr's.
    #[track_caller]
    fn ctr_in_pty(&self, args: &[&str]) -> CtrOut {
        let quote = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
        let mut line = format!(
            "ctr --address {} --namespace {}",
            quote(&self.socket.to_string_lossy()),
            quote(&self.namespace)
        );
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        self.command_out(
            Command::new("script").args(["--quiet", "--return", "--command", &line, "/dev/null"]),
            &line,
        )
    }

    fn ctr_quiet(&self, args: &[&str]) -> CtrOut {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        self.command_out(&mut cmd, &format!("ctr {}", args.join(" ")))
    }

    /// Runs `cmd` to completion (or CTR_TIMEOUT), its output in files of the test's dir.
    fn command_out(&self, cmd: &mut Command, text: &str) -> CtrOut {
        let dir = self.ctx.new_dir("ctr");
        let (so, se) = (dir.join("stdout"), dir.join("stderr"));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&so).unwrap())
            .stderr(File::create(&se).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {text}: {e}"));
        let status = wait_with_timeout(&mut child, CTR_TIMEOUT);
        CtrOut {
            cmd: text.to_string(),
            status,
            stdout: fs::read_to_string(so).unwrap_or_default(),
            stderr: fs::read_to_string(se).unwrap_or_default(),
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Through containerd first: that stops the shims, which unmount and clean up.
        let tasks = self.ctr_quiet(&["task", "ls", "--quiet"]).stdout;
        for id in tasks.lines() {
            let _ = self.ctr_quiet(&["task", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr_quiet(&["task", "delete", "--force", id]);
        }
        for id in self
            .ctr_quiet(&["containers", "ls", "--quiet"])
            .stdout
            .lines()
        {
            let _ = self.ctr_quiet(&["containers", "rm", id]);
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if wait_with_timeout(&mut child, Duration::from_secs(5))
                .code()
                .is_none()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Shims containerd could not stop (they outlive it by design).
        for pid in shims_of(&self.namespace) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The runc shim's default --root for the runtime.
        let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        // Then `ctx` drops: the tasks' cgroups, leftover mounts, the temp dir.
    }
}

/// Pids of containerd-shim-runc-v2 processes serving `namespace`.
fn shims_of(namespace: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-namespace" && w[1] == namespace.as_bytes())
        })
        .collect()
}

/// containerd 1.6's config: every path in `dir`, no CRI, no snapshotters this test does not
/// use, no metrics listener.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[debug]
  address = "{d}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

/// `name` on PATH or in the sbin directories (runc is in /usr/sbin).
fn find_in_path(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
            panic!("{name} is not installed: scripts/test.sh installs containerd and runc (scripts/deps.sh), or apt-get install containerd runc")
        })
}

/// The child's status, or a fake "still running" (no code) after `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return ExitStatus::from_raw(0x7f00 | libc::SIGSTOP);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct CtrOut {
    cmd: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for CtrOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n-> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}

impl CtrOut {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert!(self.status.success(), "expected success:\n{self}");
        self
    }

    #[track_caller]
    fn failed(&self) -> &Self {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit:\n{self}"
        );
        self
    }

    #[track_caller]
    fn code_is(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status:\n{self}"
        );
        self
    }

    fn success(&self) -> bool {
        self.status.success()
    }
}
