//! Harness for the monitor's tests: the shared busybox rootfs, bundles made from the
//! runtime's default spec, and a context that cleans up (runtime containers, monitors,
//! cgroups) when a test ends.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_monitor::client;
use berth_monitor::protocol::{ExecProcess, ExitStatus, MonitorConfig};
use serde_json::{json, Value};

pub const MONITOR: &str = env!("CARGO_BIN_EXE_berth-monitor");

/// The monitor binary under test: `BERTH_TEST_MONITOR` (e.g. a release build) or this build's.
pub fn monitor_bin() -> PathBuf {
    std::env::var_os("BERTH_TEST_MONITOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(MONITOR))
}
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The busybox rootfs shared with the runtime's tests (berth-testkit's).
pub fn rootfs() -> &'static Path {
    berth_testkit::busybox_rootfs()
}

/// One test's world: temp dir, runtime root, cgroup parent; cleaned up on drop.
pub struct Ctx {
    pub tmp: tempfile::TempDir,
    pub runtime_root: PathBuf,
    pub cgroup_parent: String,
    name: String,
    counter: AtomicUsize,
    ids: Mutex<Vec<String>>,
    monitors: Mutex<Vec<i32>>,
}

impl Ctx {
    pub fn new(name: &str) -> Ctx {
        let pid = std::process::id();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-mtest-{name}-{pid}-"))
            .tempdir()
            .unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let runtime_root = tmp.path().join("runtime");
        Ctx {
            runtime_root,
            cgroup_parent: format!("berth-mtest-{name}-{pid}"),
            name: name.to_string(),
            counter: AtomicUsize::new(0),
            ids: Mutex::new(vec![]),
            monitors: Mutex::new(vec![]),
            tmp,
        }
    }

    pub fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        format!("{}-{n}-{}", self.name, std::process::id())
    }

    /// A bundle for `args` (busybox rootfs, read-only) and the monitor config of a container
    /// created from it; the monitor's directory is `<tmp>/<id>`.
    pub fn container(&self, args: &[&str], tty: bool, open_stdin: bool) -> MonitorConfig {
        self.container_with(args, tty, open_stdin, |_| {})
    }

    /// `container`, with `edit` changing the spec (as JSON) before it is written.
    pub fn container_with(
        &self,
        args: &[&str],
        tty: bool,
        open_stdin: bool,
        edit: impl FnOnce(&mut Value),
    ) -> MonitorConfig {
        let id = self.new_id();
        let dir = self.tmp.path().join(&id);
        fs::create_dir_all(&dir).unwrap();
        let mut spec = serde_json::to_value(berth_runtime::spec::default_spec().unwrap()).unwrap();
        spec["root"] = json!({"path": rootfs(), "readonly": true});
        spec["hostname"] = json!("monitor-test");
        spec["process"]["terminal"] = json!(tty);
        spec["process"]["args"] = json!(args);
        spec["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", self.cgroup_parent));
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            mounts.retain(|m| m["type"] != "cgroup");
        }
        edit(&mut spec);
        fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        self.ids.lock().unwrap().push(id.clone());
        MonitorConfig {
            runtime_root: self.runtime_root.clone(),
            id,
            bundle: dir.clone(),
            log_path: Some(dir.join("log.json")),
            tty,
            open_stdin,
            stdin_once: open_stdin,
            exit_file: dir.join("exit.json"),
            socket: dir.join("monitor.sock"),
            exec: None,
        }
    }

    /// The config of an exec of `args` in the container of `of`.
    pub fn exec(
        &self,
        of: &MonitorConfig,
        args: &[&str],
        tty: bool,
        open_stdin: bool,
    ) -> MonitorConfig {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let dir = self.tmp.path().join(format!("exec-{n}"));
        fs::create_dir_all(&dir).unwrap();
        let process = json!({
            "args": args,
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
            "terminal": tty,
        });
        MonitorConfig {
            log_path: None,
            tty,
            open_stdin,
            stdin_once: open_stdin,
            exit_file: dir.join("exit.json"),
            socket: dir.join("monitor.sock"),
            exec: Some(ExecProcess {
                process: serde_json::from_value(process).unwrap(),
            }),
            bundle: dir,
            ..of.clone()
        }
    }

    /// Start a monitor for `cfg` (its directory is the bundle's).
    pub fn spawn(&self, cfg: &MonitorConfig) -> anyhow::Result<client::Spawned> {
        let spawned = client::Monitors::new(monitor_bin()).spawn(&cfg.bundle, cfg)?;
        self.monitors.lock().unwrap().push(spawned.monitor_pid);
        Ok(spawned)
    }

    pub fn track_monitor(&self, pid: i32) {
        self.monitors.lock().unwrap().push(pid);
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = berth_runtime::container::delete(&self.runtime_root, id, true);
        }
        for pid in self
            .monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let pid = nix::unistd::Pid::from_raw(*pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // Dies at once after SIGKILL; ECHILD when already reaped.
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = hierarchy.path().join(&self.cgroup_parent);
            if let Ok(children) = fs::read_dir(&parent) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
            let _ = fs::remove_dir(&parent);
        }
        // A v2 hierarchy at the root itself.
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup_parent));
    }
}

/// Wait for monitor `pid` (our child) to exit; its exit status code.
pub fn wait_monitor(pid: i32) -> i32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        )
        .expect("waitpid monitor");
        match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => return code,
            nix::sys::wait::WaitStatus::StillAlive => {}
            other => panic!("monitor: {other:?}"),
        }
        assert!(Instant::now() < deadline, "monitor {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit file once the monitor wrote it.
pub fn wait_exit(cfg: &MonitorConfig) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = client::read_exit(&cfg.exit_file).unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit file {}",
            cfg.exit_file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything from `stream` until EOF.
pub fn read_all(stream: &mut UnixStream) -> Vec<u8> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut out = vec![];
    stream.read_to_end(&mut out).expect("read attach stream");
    out
}

/// Docker's multiplexed frames as (stream, text) with consecutive frames of a stream joined.
pub fn demux(mut data: &[u8]) -> Vec<(u8, String)> {
    let mut out: Vec<(u8, String)> = vec![];
    while data.len() >= 8 {
        let len = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        assert_eq!(&data[1..4], &[0, 0, 0], "frame header {:?}", &data[..8]);
        let text = String::from_utf8_lossy(&data[8..8 + len]).into_owned();
        match out.last_mut() {
            Some((s, t)) if *s == data[0] => t.push_str(&text),
            _ => out.push((data[0], text)),
        }
        data = &data[8 + len..];
    }
    assert!(data.is_empty(), "trailing bytes {data:?}");
    out
}

/// The log file's lines as JSON.
pub fn log_lines(cfg: &MonitorConfig) -> Vec<Value> {
    fs::read_to_string(cfg.log_path.as_ref().unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
