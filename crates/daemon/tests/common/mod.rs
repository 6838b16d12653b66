//! Test harness: a private berthd (own root, exec root, socket and cgroup parent) driven
//! with the real docker CLI, berth, or raw HTTP over its socket; everything it made is
//! cleaned up on drop.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/local/bin/docker";

/// berthd, and its siblings berth-monitor, berth-init and berth.
fn binary(name: &str) -> PathBuf {
    let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
    if name == "berthd" {
        return berthd;
    }
    let path = berthd.parent().expect("bin dir").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before these tests",
        path.display()
    );
    path
}

/// berth-testkit's busybox OCI layout.
pub fn busybox_layout() -> PathBuf {
    berth_testkit::busybox_image().join("oci")
}

/// A response read off the socket.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A running berthd of one test.
pub struct Daemon {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    child: Option<Child>,
}

impl Daemon {
    /// A fresh daemon with no images.
    pub fn start(name: &str) -> Daemon {
        let mut d = Daemon::new(name);
        d.spawn();
        d
    }

    /// A fresh daemon whose store already holds `busybox:latest` (loaded into the image
    /// store before berthd opens it).
    pub fn start_with_busybox(name: &str) -> Daemon {
        let mut d = Daemon::new(name);
        d.load_busybox_offline();
        d.spawn();
        d
    }

    fn new(name: &str) -> Daemon {
        sweep_stale_daemons();
        let dir = tempfile::Builder::new()
            .prefix(&format!("berthd-{name}-"))
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let exec_root = dir.path().join("run");
        let socket = dir.path().join("berth.sock");
        let cgroup_parent = format!("/berth-test-{name}-{}", std::process::id());
        let owner = format!("{}\n{cgroup_parent}\n", std::process::id());
        fs::write(dir.path().join(OWNER_FILE), owner).expect("owner file");
        Daemon {
            name: name.to_string(),
            cgroup_parent,
            root,
            exec_root,
            socket,
            dir,
            child: None,
        }
    }

    fn load_busybox_offline(&self) {
        let layout = busybox_layout();
        let store = berth_image::images::ImageStore::open(&self.root.join("image"))
            .expect("open image store");
        let repo =
            berth_image::reference::Reference::parse_normalized("busybox").expect("reference");
        store
            .load_oci_layout(&layout, Some(&repo))
            .unwrap_or_else(|e| panic!("loading busybox from {}: {e:#}", layout.display()));
    }

    /// Load busybox into the running daemon through the API (`POST /images/load` of the
    /// OCI layout as a tar, then tag it `busybox:latest`: a layout's bare "latest" names no
    /// repository).
    pub fn load_busybox(&self) {
        let tar = Command::new("tar")
            .arg("-C")
            .arg(busybox_layout())
            .args(["-cf", "-", "."])
            .output()
            .expect("run tar");
        assert!(
            tar.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        let resp = self.request("POST", "/images/load", Some(&tar.stdout));
        assert_eq!(resp.status, 200, "load: {}", resp.text());
        let text = resp.text();
        let id = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|m| {
                let stream = m["stream"].as_str()?;
                Some(stream.strip_prefix("Loaded image ID: ")?.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no image id in load output: {text}"));
        let resp = self.request(
            "POST",
            &format!("/images/{id}/tag?repo=busybox&tag=latest"),
            None,
        );
        assert_eq!(resp.status, 201, "tag: {}", resp.text());
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berthd.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("berthd log");
        let mut cmd = Command::new(binary("berthd"));
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
        // the parent; it makes berthd die with the test (thread) that started it, even when
        // the test process is killed and no Drop runs.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .arg("--root")
            .arg(&self.root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--monitor-path")
            .arg(binary("berth-monitor"))
            .arg("--init-path")
            .arg(binary("berth-init"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = self.try_request("GET", "/_ping", None) {
                if resp.status == 200 {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("berthd exited ({status}) before answering:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not answer _ping in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL berthd (its containers' monitors live on).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM berthd and return its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("berthd is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        child.wait().expect("wait berthd")
    }

    /// Start berthd again on the same roots (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).output().expect("run docker")
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            // No user config (contexts, credential helpers) leaks in.
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null());
        cmd
    }

    /// docker CLI that must succeed; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// berth CLI against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(binary("berth"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// One HTTP request with `Connection: close`; panics if the socket does not answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nberthd log:\n{}", self.log()))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        read_response(&mut BufReader::new(stream), method == "HEAD")
    }
}

/// Parse one HTTP/1.1 response (Content-Length, chunked, or until EOF).
pub fn read_response(rd: &mut impl BufRead, head_only: bool) -> std::io::Result<HttpResponse> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    rd.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        rd.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {h:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || status == 101 {
        return Ok(resp);
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            rd.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            let mut chunk = vec![0; n + 2];
            rd.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = resp.header("content-length") {
        let n: usize = len.parse().map_err(|_| bad(format!("bad length {len}")))?;
        resp.body.resize(n, 0);
        rd.read_exact(&mut resp.body)?;
    } else {
        rd.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Containers first, through the daemon, while it still runs.
        if self.child.is_some() {
            let _ = self.try_remove_all_containers();
        }
        self.kill9();
        clean_up_after(self.dir.path(), &self.cgroup_parent);
    }
}

/// Names the test process and cgroup parent that own a daemon's temp dir.
const OWNER_FILE: &str = "harness-owner";

/// What a daemon left behind outside its temp dir: processes in its cgroups, and mounts.
fn clean_up_after(dir: &Path, cgroup_parent: &str) {
    kill_cgroups(cgroup_parent);
    unmount_under(dir);
}

/// Clean up after daemons of test processes that were killed before their Drop ran (a
/// timeout, ^C): their temp dirs name a process that no longer exists. Once per process.
fn sweep_stale_daemons() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let dir = e.path();
            let is_ours = e.file_name().to_string_lossy().starts_with("berthd-");
            let Some(owner) = is_ours
                .then(|| fs::read_to_string(dir.join(OWNER_FILE)).ok())
                .flatten()
            else {
                continue;
            };
            let mut lines = owner.lines();
            let (Some(pid), Some(parent)) = (lines.next(), lines.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<i32>() else {
                continue;
            };
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive {
                clean_up_after(&dir, parent);
                let _ = fs::remove_dir_all(&dir);
            }
        }
    });
}

impl Daemon {
    fn try_remove_all_containers(&self) -> std::io::Result<()> {
        let resp = self.try_request("GET", "/containers/json?all=1", None)?;
        let list: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        for c in list.as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                let _ = self.try_request("DELETE", &format!("/containers/{id}?force=1&v=1"), None);
            }
        }
        Ok(())
    }
}

/// Kill every process left in the test's cgroups (each hierarchy) and remove them.
fn kill_cgroups(parent: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(parent.trim_start_matches('/'));
        if dir.is_dir() {
            remove_cgroup_tree(&dir);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A frozen cgroup cannot die: thaw it (v1 freezer).
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lazily unmount whatever is mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// Stdout as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command under a pseudo-terminal (util-linux `script`): type lines once the output shows
/// what the last line should have produced, instead of guessing with sleeps.
pub struct PtySession {
    pub child: std::process::Child,
    stdin: std::process::ChildStdin,
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl PtySession {
    pub fn spawn(command_line: &str) -> PtySession {
        use std::io::Read;
        let mut child = std::process::Command::new("script")
            .args(["-qefc", command_line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run script");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        PtySession {
            child,
            stdin,
            output,
        }
    }

    /// Wait until the output (after `from` bytes) contains `text`; the output so far.
    pub fn expect(&self, from: usize, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.output.lock().unwrap().clone();
            if out.get(from..).is_some_and(|o| o.contains(text)) {
                return out;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in {out:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(line.as_bytes());
        self.send_raw(b"\n");
    }

    /// Bytes as typed, without a newline.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }
}
