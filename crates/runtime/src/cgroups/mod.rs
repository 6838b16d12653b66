//! Cgroups: one interface, a v1 driver and a v2 driver, chosen at run time.
//!
//! A container's cgroup is named by a path relative to the hierarchy root (for example
//! `/berth/<id>`); the driver maps it onto the mounted hierarchy (v1: one directory per
//! controller, v2: one directory in the unified tree).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub mod bpf;
pub mod devices;
mod freezer;
mod fs;
mod knobs;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod v1;
pub mod v2;

/// Where hosts mount cgroups: a cgroup2 filesystem itself on pure v2 hosts, a tmpfs holding
/// one mount per v1 hierarchy otherwise.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a container's cgroup lives in the host's hierarchy, for the `cgroup` mount inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountSource {
    /// Sub-directory of the mount destination (`Some("memory")` on v1); `None` on v2, where the
    /// container's cgroup directory is mounted at the destination itself.
    pub subdir: Option<String>,
    /// The container's cgroup directory on the host.
    pub host_path: PathBuf,
}

/// What every cgroup driver does for a container.
pub trait CgroupManager: Send {
    /// "v1" or "v2".
    fn version(&self) -> &'static str;
    /// The cgroup path relative to the hierarchy root, e.g. `/berth/abc`.
    fn path(&self) -> &Path;
    /// Create the cgroup directory (and missing parents).
    fn create(&self) -> Result<()>;
    /// Write the resource limits; a knob this host cannot apply is an error naming it.
    ///
    /// `resources.devices` (completed by `devices::complete`) is enforced by the devices
    /// controller on v1 and by an eBPF program attached to the cgroup on v2.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Move a process into the cgroup.
    ///
    /// Moving another process takes the kernel's global cgroup migration lock, whose writer
    /// first waits out an RCU grace period unless another migration ran within the last one
    /// or two: 5–30 ms on an idle 2-CPU host, more than everything else of starting a
    /// container. Where [`CgroupManager::self_join`] is offered, a child moves itself instead.
    fn add_process(&self, pid: Pid) -> Result<()>;
    /// Files with which a single-threaded process moves itself into the cgroup without the
    /// global lock (since Linux 5.5 the kernel skips it for a thread writing `0` to v1's
    /// `tasks`: ~30 µs here, where moving another process waited 5–25 ms);
    /// opened by the caller, written by its child. `None` where there is no such file (v2's
    /// `cgroup.threads` moves threads only within a threaded subtree): use `add_process`.
    fn self_join(&self) -> Result<Option<SelfJoin>>;
    /// Every process currently in the cgroup.
    fn pids(&self) -> Result<Vec<Pid>>;
    /// Remove the cgroup directory; a cgroup that does not exist is not an error.
    fn remove(&self) -> Result<()>;
    /// Directories to bind into the container's cgroup mount.
    fn mount_sources(&self) -> Vec<CgroupMountSource>;
    /// Freeze every process of the cgroup (or thaw them), returning once the kernel has.
    fn set_frozen(&self, frozen: bool) -> Result<()>;
    /// Whether the cgroup is frozen; an error if it (or the freezer) does not exist.
    fn frozen(&self) -> Result<bool>;
    /// Usage numbers (zero for what this host does not count).
    fn stats(&self) -> stats::Stats;
}

/// The `tasks` file of each of a container's v1 cgroups, open for writing: see
/// [`CgroupManager::self_join`]. Opened close-on-exec, so no program a child execs keeps them.
#[derive(Debug)]
pub struct SelfJoin(Vec<(PathBuf, File)>);

impl SelfJoin {
    /// Moves the calling thread into the cgroup: the whole process, as callers are
    /// single-threaded (children of clone3 that have not made threads).
    pub fn join(&self) -> Result<()> {
        for (path, file) in &self.0 {
            let mut tasks: &File = file;
            // `0` is the writing thread.
            tasks
                .write_all(b"0")
                .with_context(|| format!("cannot move into cgroup {}", path.display()))?;
        }
        Ok(())
    }
}

/// Which driver this host needs, detected from what is mounted at `/sys/fs/cgroup`.
///
/// An absolute `cgroup_path` is taken from the hierarchy root, a relative one from the calling
/// process's own cgroup (on v1, its own cgroup in each hierarchy).
pub fn open(cgroup_path: &Path) -> Result<Box<dyn CgroupManager>> {
    let root = Path::new(CGROUP_ROOT);
    if is_cgroup2(root)? {
        Ok(Box::new(v2::V2Manager::open(root, cgroup_path)?))
    } else {
        Ok(Box::new(v1::V1Manager::open(cgroup_path)?))
    }
}

/// Whether this host's cgroups are the unified (v2) hierarchy alone.
pub fn is_unified() -> bool {
    is_cgroup2(Path::new(CGROUP_ROOT)).unwrap_or(false)
}

/// Whether `path` is the root of a cgroup2 filesystem.
fn is_cgroup2(path: &Path) -> Result<bool> {
    let fs = statfs(path).with_context(|| format!("cannot statfs {}", path.display()))?;
    Ok(fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_picks_the_driver_of_this_host() {
        let v2 = is_cgroup2(Path::new(CGROUP_ROOT)).unwrap();
        let manager = open(Path::new("/berth-test-never-created")).unwrap();
        assert_eq!(manager.version(), if v2 { "v2" } else { "v1" });
        assert_eq!(manager.path(), Path::new("/berth-test-never-created"));
        assert!(manager
            .mount_sources()
            .iter()
            .all(|s| !s.host_path.exists()));
    }
}
