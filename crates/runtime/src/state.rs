//! A container's state on disk: `<root>/<id>/state.json`, written atomically, plus the
//! `exec.fifo` that holds a created container's init until `start`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::sys;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    /// Running, with its cgroup frozen (`pause`).
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// What the runtime remembers of a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub pid: i32,
    /// The init's start time in ticks: a pid alone may be reused after the init exits.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub annotations: HashMap<String, String>,
    pub owner: String,
    pub cgroup_path: PathBuf,
}

/// The state JSON that `state` prints (the OCI runtime spec's, with runc's extra fields).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'a str,
}

/// A container id becomes a directory name: refuse anything that could leave `--root`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits, '_', '-', '.', '+'");
    }
    Ok(())
}

pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(root.join(id))
}

impl State {
    pub fn load(root: &Path, id: &str) -> Result<State> {
        let dir = container_dir(root, id)?;
        let text = match fs::read(dir.join(STATE_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("container \"{id}\" does not exist")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read state of {id}")),
        };
        serde_json::from_slice(&text).with_context(|| format!("corrupt state file of {id}"))
    }

    /// temp + fsync + rename: a crash leaves the old state or the new one, never half of one.
    /// Atomic but not durable: the state describes processes, which a power loss ends too.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_replace(&dir.join(STATE_FILE), &serde_json::to_vec(self)?)
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.id)
    }

    /// Whether the init still exists (a zombie counts as gone) and is the one we started.
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match sys::proc_start_and_state(self.pid) {
            Ok((start, state)) => start == self.pid_start && !matches!(state, 'Z' | 'X'),
            Err(_) => false,
        }
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.init_alive() {
            Status::Stopped
        } else if self.frozen() {
            // runc's order: a created container can be paused too.
            Status::Paused
        } else if self.dir(root).join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// Whether the container's cgroup is frozen; a host without a freezer never is.
    fn frozen(&self) -> bool {
        crate::cgroups::open(&self.cgroup_path)
            .and_then(|cgroup| cgroup.frozen())
            .unwrap_or(false)
    }

    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: oci_spec::runtime::VERSION,
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: &self.annotations,
            owner: &self.owner,
        }
    }
}

/// Write a file atomically and durably: a temp file beside it (named by our pid, so
/// concurrent writers do not share one), fsync, rename, fsync of the directory so the rename
/// itself is durable. On failure the temp file is removed and the old file is untouched.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, true)
}

/// Write a file atomically (readers see the old or the new content, never a part) but not
/// durably: for run state that does not outlive the machine's uptime anyway (the runtime's
/// state.json, bundles, exit files), where an fsync per write is pure latency.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, false)
}

fn write_file(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let name = path.file_name().context("atomic write needs a file name")?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> Result<()> {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(data)
            .and_then(|_| if durable { file.sync_all() } else { Ok(()) })
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    if !durable {
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}
