//! Helpers for the cgroup tests: fake cgroupfs trees, real child processes, cleanup.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder};

/// A cgroup name no other test of this run uses. It follows the crate's test convention,
/// `berth-test-<what>-<pid>`: the integration tests' sweep of stale cgroups reads the owner's pid
/// from the last field, so it leaves ours alone while we run and removes what a killed run left.
pub fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("berth-test-cgroups{n}-{}", std::process::id())
}

/// Makes `dir` (and its parents) with the given files, empty, as the kernel would show them.
pub fn fake_cgroup(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for file in files {
        fs::write(dir.join(file), "").unwrap();
    }
}

/// Resources with only a memory limit and a memory+swap limit.
pub fn memory(limit: i64, swap: i64) -> LinuxResources {
    let memory = LinuxMemoryBuilder::default()
        .limit(limit)
        .swap(swap)
        .build()
        .unwrap();
    LinuxResourcesBuilder::default()
        .memory(memory)
        .build()
        .unwrap()
}

/// A file's content, as a test expects it.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `sleep` child process, killed and reaped on drop.
pub struct Sleeper(Child);

impl Sleeper {
    pub fn spawn() -> Self {
        Self(
            Command::new("sleep")
                .arg("100")
                .spawn()
                .expect("cannot spawn sleep"),
        )
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.0.id()).unwrap())
    }

    /// SIGKILL without reaping: the process is on its way out when this returns.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Directories to rmdir on drop, in order (deepest first), errors ignored: what a failed test
/// leaves is cleaned up, and what a passing one already removed is fine.
pub struct Cleanup(pub Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}
