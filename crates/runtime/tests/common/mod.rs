//! Harness shared by berth-runtime's integration tests.
//!
//! Every test builds a [`Ctx`]: its own `--root` (a temp dir), its own cgroup parent
//! (`/berth-test-<test>-<pid>`, in every hierarchy), and cleanup on drop (force-delete the
//! containers it made, kill what is left in its cgroups or carries its marker, rmdir the
//! cgroups). Containers are described by a [`Bundle`], whose `config` is a runc-like default
//! (`terminal: false`) that tests edit as JSON before calling `create`/`run`.
//!
//! Leftover detection: every runtime invocation made for a bundle carries the environment
//! variable `BERTH_TEST_MARKER=<marker>`, and so does the container's `process.env`. Any live
//! process whose initial environment holds the marker (the runtime's own forked init before it
//! execs, or the user's program after) belongs to that bundle.
//!
//! The busybox rootfs is berth-testkit's (`scripts/make-busybox-rootfs.sh`, in
//! `target/test-fixtures/busybox-rootfs`). Tests use it read-only; tests that write to the rootfs, or that
//! check for leftover mounts of it, use a private copy (`Ctx::private_bundle`).
#![allow(dead_code)]

use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
/// Longest any single runtime command may take before the test gives up on it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest we wait for a state change (e.g. "stopped" after SIGKILL).
pub const STATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Set in the runtime's environment and the container's `process.env`; see module docs.
pub const MARKER_VAR: &str = "BERTH_TEST_MARKER";
/// Set only in the runtime's environment: must never reach the container.
pub const HOST_ONLY_VAR: &str = "BERTH_TEST_HOST_ONLY";

// ---------------------------------------------------------------------------------------------
// Fixture: the busybox rootfs
// ---------------------------------------------------------------------------------------------

/// The shared busybox rootfs (absolute path). Read-only use only.
pub fn rootfs() -> &'static Path {
    berth_testkit::busybox_rootfs()
}

/// `cp -a` (keeps symlinks, modes, owners).
pub fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("cp -a");
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn mkdir_755(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

/// Calls `f` until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`poll_until`] but panics with `what` on timeout.
#[track_caller]
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    match poll_until(timeout, f) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cgroups
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// v1 controllers under /sys/fs/cgroup/<ctrl> (legacy or hybrid).
    V1,
    /// cgroup2 mounted at /sys/fs/cgroup.
    V2,
}

pub fn cgroup_mode() -> CgroupMode {
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").expect("statfs /sys/fs/cgroup");
    if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    }
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub v2: bool,
    /// Super options of a v1 mount (controller names, `name=systemd`, ...).
    pub options: Vec<String>,
}

/// Every cgroup hierarchy mounted under /sys/fs/cgroup (each once).
pub fn hierarchies() -> Vec<Hierarchy> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(unescape_mountinfo(pre[4]));
        if !mount.starts_with("/sys/fs/cgroup") || out.iter().any(|h| h.mount == mount) {
            continue;
        }
        match post[0] {
            "cgroup2" => out.push(Hierarchy {
                mount,
                v2: true,
                options: vec![],
            }),
            "cgroup" => out.push(Hierarchy {
                mount,
                v2: false,
                options: post[2].split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// Host directory of cgroup `cgpath` (e.g. "/berth-test-x-1/c1") in the hierarchy holding
/// v1 controller `v1_ctrl`, or in the unified tree on a pure v2 host.
pub fn cgroup_dir(cgpath: &str, v1_ctrl: &str) -> PathBuf {
    let rel = cgpath.trim_start_matches('/');
    match cgroup_mode() {
        CgroupMode::V2 => Path::new("/sys/fs/cgroup").join(rel),
        CgroupMode::V1 => {
            let h = hierarchies()
                .into_iter()
                .find(|h| !h.v2 && h.options.iter().any(|o| o == v1_ctrl))
                .unwrap_or_else(|| panic!("no v1 hierarchy with controller {v1_ctrl}"));
            h.mount.join(rel)
        }
    }
}

/// Host path of a cgroup knob: `v1_file` in controller `v1_ctrl` on v1, `v2_file` on v2.
pub fn knob(cgpath: &str, v1_ctrl: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    let file = match cgroup_mode() {
        CgroupMode::V1 => v1_file,
        CgroupMode::V2 => v2_file,
    };
    cgroup_dir(cgpath, v1_ctrl).join(file)
}

/// Trimmed content of a knob, or a panic naming the file.
#[track_caller]
pub fn read_knob(cgpath: &str, v1_ctrl: &str, v1_file: &str, v2_file: &str) -> String {
    let p = knob(cgpath, v1_ctrl, v1_file, v2_file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The v1 controllers a container's process is expected to join (those mounted here).
pub fn v1_controllers() -> Vec<String> {
    let wanted = [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    ];
    let hs = hierarchies();
    wanted
        .iter()
        .filter(|c| {
            hs.iter()
                .any(|h| !h.v2 && h.options.iter().any(|o| o == *c))
        })
        .map(|c| c.to_string())
        .collect()
}

/// Parses /proc/<pid>/cgroup text into (controllers, path) pairs.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((
                ctrls
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                path.to_string(),
            ))
        })
        .collect()
}

/// Path of controller `ctrl` (v1) in /proc/<pid>/cgroup text; `""` selects the v2 `0::` line.
pub fn proc_cgroup_path(text: &str, ctrl: &str) -> Option<String> {
    parse_proc_cgroup(text)
        .into_iter()
        .find(|(c, _)| {
            if ctrl.is_empty() {
                c.is_empty()
            } else {
                c.iter().any(|x| x == ctrl)
            }
        })
        .map(|(_, p)| p)
}

fn cgroup_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills everything in the cgroup tree at `dir` and removes it (leaves first).
pub fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    let _ = fs::write(dir.join("cgroup.freeze"), "0");
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = poll_until(Duration::from_secs(3), || {
        let procs = cgroup_procs(dir);
        for p in &procs {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        procs.is_empty().then_some(())
    });
    let _ = fs::remove_dir(dir);
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// ---------------------------------------------------------------------------------------------
// Processes and mounts
// ---------------------------------------------------------------------------------------------

/// Live processes whose initial environment holds `MARKER_VAR=<value>` with `pred(value)`.
pub fn marked_pids(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let prefix = format!("{MARKER_VAR}=");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        let hit = env.split(|b| *b == 0).any(|kv| {
            std::str::from_utf8(kv)
                .ok()
                .and_then(|s| s.strip_prefix(&prefix))
                .is_some_and(&pred)
        });
        if hit {
            out.push(pid);
        }
    }
    out
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Lines of the host's /proc/self/mountinfo whose mount point or root is under `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 4
                && (Path::new(&unescape_mountinfo(f[4])).starts_with(path)
                    || Path::new(&unescape_mountinfo(f[3])).starts_with(path))
        })
        .map(str::to_string)
        .collect()
}

/// `readlink /proc/<pid>/ns/<ns>`.
pub fn ns_id(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

pub fn proc_comm(pid: i64) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether this process has CAP_SYS_RESOURCE in its effective set.
pub fn have_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// The outcome of one runtime invocation.
pub struct Out {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Files the command's stdout/stderr went to; a container started by `create` keeps
    /// writing its own output there.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n-> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.status.success(), "expected success:\n{self}");
        self
    }

    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert!(
            !self.status.success() && self.status.signal().is_none(),
            "expected a non-zero exit (not a crash):\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}:\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit status:\n{self}");
        self
    }

    /// Current content of the stdout file (grows while a created container runs).
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr_now(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

/// A runtime command running in the background.
pub struct Running {
    child: Option<Child>,
    cmd: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Out {
        let mut child = self.child.take().expect("child");
        let status = wait_child(&mut child, timeout);
        let out = finish(
            self.cmd.clone(),
            status,
            self.stdout_path.clone(),
            self.stderr_path.clone(),
        );
        match status {
            Some(_) => out,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command did not finish within {timeout:?}:\n{out}")
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(e) => panic!("wait: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finish(
    cmd: String,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
) -> Out {
    Out {
        cmd,
        status: status.unwrap_or_else(|| ExitStatus::from_raw(0x7f00)),
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        stdout_path,
        stderr_path,
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------

/// A bundle directory plus the config that `create`/`run` will write into it.
pub struct Bundle {
    pub id: String,
    pub dir: PathBuf,
    /// Absolute rootfs path (the shared fixture, or `dir/rootfs` for a private copy).
    pub rootfs: PathBuf,
    pub private: bool,
    pub config: Value,
    pub marker: String,
    /// The container's cgroup path ("/berth-test-<test>-<pid>/<id>").
    pub cgroup_path: String,
}

impl Bundle {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn write(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .expect("write config.json");
    }

    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        self.config["process"]["env"]
            .as_array_mut()
            .expect("process.env")
            .push(json!(kv));
        self
    }

    pub fn namespaces(&mut self) -> &mut Vec<Value> {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces")
    }

    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        self.namespaces().retain(|n| n["type"] != ty);
        self
    }

    /// Adds (or replaces) namespace `ty`, joining `path` when given.
    pub fn set_namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(ty);
        let ns = match path {
            Some(p) => json!({"type": ty, "path": p}),
            None => json!({"type": ty}),
        };
        self.namespaces().push(ns);
        self
    }

    pub fn add_mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(m);
        self
    }

    /// `linux.resources` (created when missing).
    pub fn resources(&mut self) -> &mut Value {
        &mut self.config["linux"]["resources"]
    }
}

/// The runc `spec` defaults, with `terminal: false`, no cgroup mount (tests that want it add
/// it), an absolute root path and our cgroup path and marker.
pub fn default_config(args: &[&str], root: &Path, cgroup_path: &str, marker: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                format!("{MARKER_VAR}={marker}"),
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": true},
        "hostname": "berth-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroup_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// The `cgroup` mount of runc's default spec.
pub fn cgroup_mount() -> Value {
    json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
}

// ---------------------------------------------------------------------------------------------
// Test context
// ---------------------------------------------------------------------------------------------

pub struct Ctx {
    pub name: String,
    /// Everything of this test lives in here (state root, bundles, outputs).
    pub tmp: tempfile::TempDir,
    /// The `--root` passed to every command.
    pub root: PathBuf,
    /// Directory name of this test's cgroup parent (without the leading '/').
    pub cgroup_parent: String,
    ids: Mutex<Vec<String>>,
    helpers: Mutex<Vec<Child>>,
    /// Cgroups outside our parent to remove at the end (e.g. the default "/berth/<id>").
    extra_cgroups: Mutex<Vec<String>>,
    counter: AtomicUsize,
}

impl Ctx {
    /// `name` must be unique among the tests of the crate (use the test's function name).
    pub fn new(name: &str) -> Ctx {
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let pid = std::process::id();
        let cgroup_parent = format!("berth-test-{name}-{pid}");
        sweep_stale_cgroups(&cgroup_parent);
        sweep_stale_temp_dirs();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-itest-{name}-{pid}-"))
            .tempdir()
            .expect("tempdir");
        // A container with a user namespace must be able to traverse the bundle.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("state");
        mkdir_755(&root);
        mkdir_755(&tmp.path().join("out"));
        Ctx {
            name,
            tmp,
            root,
            cgroup_parent,
            ids: Mutex::new(Vec::new()),
            helpers: Mutex::new(Vec::new()),
            extra_cgroups: Mutex::new(Vec::new()),
            counter: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// A fresh 0755 directory inside the test's temp dir.
    pub fn new_dir(&self, what: &str) -> PathBuf {
        let d = self.path().join(format!("{what}-{}", self.next()));
        mkdir_755(&d);
        d
    }

    /// A new unique container id.
    pub fn new_id(&self) -> String {
        format!("{}-{}-{}", self.name, self.next(), std::process::id())
    }

    /// A bundle whose rootfs is the shared, read-only fixture.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let id = self.new_id();
        self.bundle_with_id(&id, args)
    }

    pub fn bundle_with_id(&self, id: &str, args: &[&str]) -> Bundle {
        let n = self.next();
        let dir = self.path().join(format!("bundle-{n}"));
        mkdir_755(&dir);
        let cgroup_path = format!("/{}/{}", self.cgroup_parent, id);
        let marker = format!("{}/{}#{}", self.cgroup_parent, id, n);
        let root = rootfs().to_path_buf();
        Bundle {
            id: id.to_string(),
            config: default_config(args, &root, &cgroup_path, &marker),
            dir,
            rootfs: root,
            private: false,
            marker,
            cgroup_path,
        }
    }

    /// A bundle with a private copy of the rootfs at `<bundle>/rootfs` (absolute root.path).
    pub fn private_bundle(&self, args: &[&str]) -> Bundle {
        let id = self.new_id();
        self.private_bundle_with_id(&id, args)
    }

    pub fn private_bundle_with_id(&self, id: &str, args: &[&str]) -> Bundle {
        let mut b = self.bundle_with_id(id, args);
        let copy = b.dir.join("rootfs");
        copy_tree(rootfs(), &copy);
        b.config["root"]["path"] = json!(copy);
        b.rootfs = copy;
        b.private = true;
        b
    }

    fn command(&self, args: &[&str], marker: Option<&str>) -> (Command, String, PathBuf, PathBuf) {
        let n = self.next();
        let stdout_path = self.path().join(format!("out/{n}.stdout"));
        let stderr_path = self.path().join(format!("out/{n}.stderr"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(&self.root).args(args);
        let marker = marker
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/-", self.cgroup_parent));
        cmd.env(MARKER_VAR, marker)
            .env(HOST_ONLY_VAR, "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap());
        let text = format!(
            "berth-runtime --root {} {}",
            self.root.display(),
            args.join(" ")
        );
        (cmd, text, stdout_path, stderr_path)
    }

    /// Runs the runtime (with `--root`) to completion.
    #[track_caller]
    pub fn rt(&self, args: &[&str]) -> Out {
        self.rt_full(args, None, None)
    }

    /// Like [`Ctx::rt`], with the invocation marked as belonging to `marker` and an optional
    /// file as stdin.
    #[track_caller]
    pub fn rt_full(&self, args: &[&str], marker: Option<&str>, stdin: Option<&Path>) -> Out {
        let (mut cmd, text, so, se) = self.command(args, marker);
        if let Some(p) = stdin {
            cmd.stdin(File::open(p).expect("stdin file"));
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let status = wait_child(&mut child, CMD_TIMEOUT);
        let out = finish(text, status, so, se);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {CMD_TIMEOUT:?}:\n{out}");
        }
        out
    }

    /// Starts the runtime in the background.
    pub fn spawn_rt(&self, args: &[&str], marker: Option<&str>) -> Running {
        let (mut cmd, text, so, se) = self.command(args, marker);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Running {
            child: Some(child),
            cmd: text,
            stdout_path: so,
            stderr_path: se,
        }
    }

    /// Registers `id` for `delete --force` when the test ends.
    pub fn track(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// Writes the config and runs `create --bundle <dir> [extra...] <id>`.
    #[track_caller]
    pub fn create(&self, b: &Bundle) -> Out {
        self.create_with(b, &[])
    }

    #[track_caller]
    pub fn create_with(&self, b: &Bundle, extra: &[&str]) -> Out {
        self.on_bundle("create", b, extra, None)
    }

    /// Writes the config and runs `run --bundle <dir> [extra...] <id>` in the foreground.
    #[track_caller]
    pub fn run(&self, b: &Bundle) -> Out {
        self.run_with(b, &[])
    }

    #[track_caller]
    pub fn run_with(&self, b: &Bundle, extra: &[&str]) -> Out {
        self.on_bundle("run", b, extra, None)
    }

    /// `run` with a file as the container's stdin.
    #[track_caller]
    pub fn run_stdin(&self, b: &Bundle, stdin: &Path) -> Out {
        self.on_bundle("run", b, &[], Some(stdin))
    }

    /// Writes the config and runs `<verb> --bundle <dir> [extra...] <id>`.
    #[track_caller]
    fn on_bundle(&self, verb: &str, b: &Bundle, extra: &[&str], stdin: Option<&Path>) -> Out {
        b.write();
        self.track(&b.id);
        let dir = b.dir.to_string_lossy().into_owned();
        let mut args = vec![verb, "--bundle", &dir];
        args.extend_from_slice(extra);
        args.push(&b.id);
        self.rt_full(&args, Some(&b.marker), stdin)
    }

    /// `run` in the background.
    pub fn spawn_run(&self, b: &Bundle) -> Running {
        b.write();
        self.track(&b.id);
        let dir = b.dir.to_string_lossy().into_owned();
        self.spawn_rt(&["run", "--bundle", &dir, &b.id], Some(&b.marker))
    }

    /// `run` that must succeed; returns the container's stdout.
    #[track_caller]
    pub fn run_ok(&self, b: &Bundle) -> String {
        let out = self.run(b);
        out.ok();
        out.stdout
    }

    /// create + start, then waits until the user program (comm `comm`) runs. Returns
    /// (create's output, init pid).
    #[track_caller]
    pub fn create_start(&self, b: &Bundle, comm: &str) -> (Out, i64) {
        let created = self.create(b);
        created.ok();
        self.start(&b.id).ok();
        let pid = self.pid_of(&b.id);
        wait_until(STATE_TIMEOUT, &format!("pid {pid} to exec {comm}"), || {
            (proc_comm(pid).as_deref() == Some(comm)).then_some(())
        });
        (created, pid)
    }

    #[track_caller]
    pub fn start(&self, id: &str) -> Out {
        self.rt(&["start", id])
    }

    #[track_caller]
    pub fn kill(&self, id: &str, sig: &str) -> Out {
        self.rt(&["kill", id, sig])
    }

    #[track_caller]
    pub fn delete(&self, id: &str) -> Out {
        self.rt(&["delete", id])
    }

    /// `state <id>`, which must succeed and print JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        out.ok();
        out.json()
    }

    #[track_caller]
    pub fn pid_of(&self, id: &str) -> i64 {
        let st = self.state(id);
        let pid = st["pid"].as_i64().unwrap_or(0);
        assert!(pid > 0, "state has no pid: {st}");
        pid
    }

    /// Polls `state` until `status` is `want`; returns that state.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) -> Value {
        let mut last = Value::Null;
        let got = poll_until(STATE_TIMEOUT, || {
            let out = self.rt(&["state", id]);
            if !out.success() {
                last = json!(out.to_string());
                return None;
            }
            let st = out.json();
            let ok = st["status"] == want;
            last = st.clone();
            ok.then_some(st)
        });
        got.unwrap_or_else(|| {
            panic!("container {id} did not reach status {want:?} within {STATE_TIMEOUT:?}; last state: {last}")
        })
    }

    /// kill KILL, wait for "stopped", delete.
    #[track_caller]
    pub fn kill_and_delete(&self, id: &str) {
        self.kill(id, "KILL").ok();
        self.wait_status(id, "stopped");
        self.delete(id).ok();
    }

    /// Registers a cgroup path outside this test's parent for removal when the test ends.
    pub fn track_cgroup(&self, cgpath: &str) {
        self.extra_cgroups.lock().unwrap().push(cgpath.to_string());
    }

    /// A host helper process, killed when the test ends.
    pub fn spawn_helper(&self, cmd: &mut Command) -> u32 {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helper");
        let pid = child.id();
        self.helpers.lock().unwrap().push(child);
        pid
    }

    /// What a container left behind: its state dir, its cgroup in any hierarchy, host mounts of
    /// its bundle (and private rootfs), live processes carrying its marker.
    pub fn leftovers(&self, b: &Bundle) -> Vec<String> {
        let mut left = Vec::new();
        let state_dir = self.root.join(&b.id);
        if state_dir.exists() {
            left.push(format!("state dir {}", state_dir.display()));
        }
        left.extend(self.cgroup_leftovers(b));
        left.extend(self.mount_and_process_leftovers(b));
        left
    }

    pub fn cgroup_leftovers(&self, b: &Bundle) -> Vec<String> {
        hierarchies()
            .iter()
            .map(|h| h.mount.join(b.cgroup_path.trim_start_matches('/')))
            .filter(|d| d.exists())
            .map(|d| format!("cgroup dir {}", d.display()))
            .collect()
    }

    pub fn mount_and_process_leftovers(&self, b: &Bundle) -> Vec<String> {
        let mut left = Vec::new();
        for m in mounts_under(&b.dir) {
            left.push(format!("mount {m}"));
        }
        if b.private {
            for m in mounts_under(&b.rootfs) {
                if !left.iter().any(|l| l.ends_with(&m)) {
                    left.push(format!("mount {m}"));
                }
            }
        }
        for pid in marked_pids(|v| v == b.marker) {
            let comm = proc_comm(pid as i64).unwrap_or_default();
            left.push(format!("process {pid} ({comm})"));
        }
        left
    }

    /// Asserts (polling briefly for processes that are still dying) that nothing of `b`
    /// remains.
    #[track_caller]
    pub fn assert_nothing_left(&self, b: &Bundle) {
        let mut last = Vec::new();
        let clean = poll_until(Duration::from_secs(3), || {
            last = self.leftovers(b);
            last.is_empty().then_some(())
        });
        assert!(
            clean.is_some(),
            "container {} left things behind:\n  {}",
            b.id,
            last.join("\n  ")
        );
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            // Best effort: the runtime may be broken; never hang or panic here.
            let (mut cmd, _, _, _) = self.command(&["delete", "--force", &id], None);
            if let Ok(mut c) = cmd.spawn() {
                if wait_child(&mut c, Duration::from_secs(10)).is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        for mut c in std::mem::take(&mut *self.helpers.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let prefix = format!("{}/", self.cgroup_parent);
        for pid in marked_pids(|v| v.starts_with(&prefix)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let extra =
            std::mem::take(&mut *self.extra_cgroups.lock().unwrap_or_else(|e| e.into_inner()));
        for h in hierarchies() {
            remove_cgroup_tree(&h.mount.join(&self.cgroup_parent));
            for cg in &extra {
                remove_cgroup_tree(&h.mount.join(cg.trim_start_matches('/')));
            }
        }
        // Leaked host mounts would make the temp dir impossible to remove.
        let mut leaked = mounts_under(self.tmp.path());
        leaked.reverse();
        for m in leaked {
            if let Some(mp) = m.split(' ').nth(4) {
                let _ = nix::mount::umount2(
                    Path::new(&unescape_mountinfo(mp)),
                    nix::mount::MntFlags::MNT_DETACH,
                );
            }
        }
    }
}

/// Removes cgroup parents named like ours: our own (left by an earlier run whose pid we
/// reuse) and those of test processes that no longer exist.
fn sweep_stale_cgroups(own: &str) {
    for h in hierarchies() {
        let Ok(rd) = fs::read_dir(&h.mount) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("berth-test-") {
                continue;
            }
            let owner_dead = name
                .rsplit('-')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| !pid_alive(p));
            if name == own || owner_dead {
                remove_cgroup_tree(&e.path());
            }
        }
    }
}

/// Removes `$TMPDIR/berth-itest-<name>-<pid>-<random>` dirs of test processes that are gone
/// (unmounting anything a broken runtime leaked into them first).
fn sweep_stale_temp_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(rd) = fs::read_dir(&tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("berth-itest-") {
            continue;
        }
        let dead = name
            .rsplit('-')
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| !pid_alive(p));
        if dead {
            let mut leaked = mounts_under(&e.path());
            leaked.reverse();
            for m in leaked {
                if let Some(mp) = m.split(' ').nth(4) {
                    let _ = nix::mount::umount2(
                        Path::new(&unescape_mountinfo(mp)),
                        nix::mount::MntFlags::MNT_DETACH,
                    );
                }
            }
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Checks RFC 3339 shape: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let tz = rest == "Z"
        || rest == "z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':');
    head && tz
}

/// Lines of a text, trimmed, empty ones dropped.
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Collapses runs of whitespace (for /proc/self/uid_map and the like).
pub fn squash_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
