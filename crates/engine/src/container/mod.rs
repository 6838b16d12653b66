//! Containers as the engine keeps them: one record per container
//! (`<root>/containers/<id>/container.json`, written atomically), held in memory behind a
//! handle that tells waiters when it changes.

pub mod devices;
pub mod initlayer;
pub mod lifecycle;
pub mod mounts;
pub mod names;
pub mod namespaces;
pub mod security;
pub mod spec;
pub mod user;
pub mod view;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use bollard_stubs::models::{ContainerConfig, HostConfig, MountPoint};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};

pub const RECORD_FILE: &str = "container.json";

/// A container's life as `docker inspect` shows it in `State.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// Has a process (running or paused): what `rm` without force refuses.
    pub fn is_alive(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The container's init on the host, 0 when not running.
    pub pid: i32,
    /// The monitor process, 0 when none.
    pub monitor_pid: i32,
    pub exit_code: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub oom_killed: bool,
    pub error: String,
}

/// Everything the engine knows about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without Docker's leading slash.
    pub name: String,
    pub created: String,
    /// The image as the user named it (`Config.Image`).
    pub image: String,
    /// `sha256:<hex>`, the image's config digest.
    pub image_id: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub restart_count: i64,
    /// Binds, volumes and tmpfs mounts as resolved at create (inspect's `Mounts`).
    pub mounts: Vec<MountPoint>,
    /// `docker stop`/`kill` was asked for: `unless-stopped` and `always` then do not restart
    /// this run (Docker's "manually stopped").
    #[serde(default)]
    pub manually_stopped: bool,
    /// Process path and args as started (inspect's `Path`/`Args`).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl Container {
    /// The first 12 hex digits, as `docker ps` shows ids.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Where a container's durable files are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }
    /// The json-file log (`<id>-json.log`, as Docker names it).
    pub fn log(&self) -> PathBuf {
        let id = self.dir.file_name().unwrap_or_default().to_string_lossy();
        self.dir.join(format!("{id}-json.log"))
    }
    /// The snapshot: `rootfs/{merged,upper,work,init}` (see `berth_image::snapshot`).
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.snapshot().join("merged")
    }
    pub fn upper(&self) -> PathBuf {
        self.snapshot().join("upper")
    }
}

/// One container in memory: its record, saved on every change, and a channel that wakes
/// waiters (`wait`, `logs -f`, attach) when it changes. The channel closes when the
/// container is removed.
pub struct Handle {
    pub id: String,
    pub paths: Paths,
    record: Mutex<Container>,
    changed: watch::Sender<State>,
    /// Attaches made before the container started: handed to its monitor at start.
    pub(crate) pending_attaches: Mutex<Vec<PendingAttach>>,
    /// Serializes start/stop/rm of this container (the record lock is held only briefly).
    pub(crate) op: Mutex<()>,
    /// Serializes the record's saves, so that each writes what is newer than the last; the
    /// record lock is not held while one waits on the disk.
    saving: Mutex<()>,
}

/// The monitor's end of an attach that waits for the container to start.
pub(crate) struct PendingAttach {
    pub stream: std::os::unix::net::UnixStream,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Handle {
    fn new(record: Container, dir: PathBuf) -> Arc<Handle> {
        Arc::new(Handle {
            id: record.id.clone(),
            paths: Paths { dir },
            changed: watch::channel(record.state.clone()).0,
            record: Mutex::new(record),
            pending_attaches: Mutex::new(Vec::new()),
            op: Mutex::new(()),
            saving: Mutex::new(()),
        })
    }

    /// A copy of the record now.
    pub fn get(&self) -> Container {
        self.lock().clone()
    }

    pub fn lock(&self) -> MutexGuard<'_, Container> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the record, save it atomically and wake the waiters. The change is kept in
    /// memory even when saving fails (the error says so): memory is what is true now.
    pub fn update<T>(&self, f: impl FnOnce(&mut Container) -> T) -> Result<T> {
        let out = f(&mut self.lock());
        let saved = self.save();
        // After the save: a waiter (a stop, a wait) answers its client once the change is
        // on disk.
        self.changed.send_replace(self.lock().state.clone());
        saved.map(|()| out)
    }

    /// Save the record as it is now (atomically, durably).
    pub fn save(&self) -> Result<()> {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.get();
        save(&self.paths, &record)
    }

    /// Change the record in memory only (a transient state like "removing") and wake the
    /// waiters.
    pub fn update_in_memory<T>(&self, f: impl FnOnce(&mut Container) -> T) -> T {
        let mut record = self.lock();
        let out = f(&mut record);
        self.changed.send_replace(record.state.clone());
        out
    }

    /// Woken on every change; closed (`changed()` errs) once the container is removed.
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.changed.subscribe()
    }
}

fn save(paths: &Paths, record: &Container) -> Result<()> {
    let json = serde_json::to_vec_pretty(record).context("cannot encode the container record")?;
    berth_runtime::state::write_atomic(&paths.record(), &json)
        .with_context(|| format!("cannot save container {}", record.id))?;
    Ok(())
}

/// All containers, by id, with names and id prefixes resolved as Docker does.
pub struct ContainerStore {
    root: PathBuf,
    containers: Mutex<HashMap<String, Arc<Handle>>>,
}

impl ContainerStore {
    /// Load every record under `root`; a directory without a readable record (a create that
    /// crashed half-way) is reported and skipped, and removed.
    pub fn open(root: &Path) -> anyhow::Result<ContainerStore> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let mut containers = HashMap::new();
        for entry in
            fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))?
        {
            let dir = entry?.path();
            if is_trash(&dir) {
                delete_trash(&dir);
                continue;
            }
            let record = fs::read(dir.join(RECORD_FILE))
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice::<Container>(&bytes)?));
            match record {
                Ok(record) => {
                    containers.insert(record.id.clone(), Handle::new(record, dir));
                }
                Err(e) => {
                    eprintln!(
                        "berthd: dropping {}: no readable container record ({e:#})",
                        dir.display()
                    );
                    let _ = berth_image::snapshot::Snapshot::remove(&dir.join("rootfs"));
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(ContainerStore {
            root: root.to_path_buf(),
            containers: Mutex::new(containers),
        })
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Find a container by full id, name (with or without the leading `/`) or a unique id
    /// prefix, in Docker's order of precedence.
    pub fn get(&self, name_or_id: &str) -> Result<Arc<Handle>> {
        let map = self.map();
        if let Some(handle) = map.get(name_or_id) {
            return Ok(handle.clone());
        }
        let name = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if let Some(handle) = map.values().find(|h| h.lock().name == name) {
            return Ok(handle.clone());
        }
        let mut matches = map
            .values()
            .filter(|h| !name_or_id.is_empty() && h.id.starts_with(name_or_id));
        match (matches.next(), matches.next()) {
            (Some(handle), None) => Ok(handle.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidParameter(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
            _ => Err(Error::no_such_container(name_or_id)),
        }
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Vec<Arc<Handle>> {
        let mut all: Vec<Arc<Handle>> = self.map().values().cloned().collect();
        all.sort_by_cached_key(|h| h.lock().created.clone());
        all
    }

    /// The container that has `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<Arc<Handle>> {
        self.map().values().find(|h| h.lock().name == name).cloned()
    }

    /// Add a new container: its directory is made and its record saved before it is
    /// visible. Fails with Docker's 409 when the name is taken.
    pub fn insert(&self, record: Container) -> Result<Arc<Handle>> {
        self.insert_with(record, |_| Ok(()), |_| {})
    }

    /// [`ContainerStore::insert`], running `prepare` on the directory while the record is
    /// saved (the fsyncs wait on the disk; `prepare` mounts): the container becomes visible
    /// once both succeeded. A failure leaves nothing: `undo` (which must take whatever part of
    /// `prepare` was done) runs, then the directory goes.
    pub fn insert_with(
        &self,
        record: Container,
        prepare: impl FnOnce(&Paths) -> Result<()> + Send,
        undo: impl FnOnce(&Paths),
    ) -> Result<Arc<Handle>> {
        let mut map = self.map();
        if let Some(other) = map.values().find(|h| h.lock().name == record.name) {
            return Err(name_conflict(&record.name, &other.id));
        }
        let dir = self.root.join(&record.id);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let handle = Handle::new(record, dir);
        // The save waits on the disk: it starts first, here, while a thread prepares (a new
        // thread can wait a while for a CPU).
        let (saved, prepared) = std::thread::scope(|scope| {
            let preparer = scope.spawn(|| prepare(&handle.paths));
            let saved = save(&handle.paths, &handle.lock());
            let prepared = preparer.join().unwrap_or_else(|_| {
                Err(anyhow::anyhow!("preparing the container panicked").into())
            });
            (saved, prepared)
        });
        if let Err(e) = prepared.and(saved) {
            undo(&handle.paths);
            let _ = fs::remove_dir_all(&handle.paths.dir);
            return Err(e);
        }
        map.insert(handle.id.clone(), handle.clone());
        Ok(handle)
    }

    /// Give `handle` a new name (409 when taken).
    pub fn rename(&self, handle: &Handle, new_name: &str) -> Result<()> {
        let map = self.map();
        if let Some(other) = map.values().find(|h| h.lock().name == new_name) {
            return Err(name_conflict(new_name, &other.id));
        }
        handle.update(|c| c.name = new_name.to_string())
    }

    /// Forget a container and delete its directory (record, log, snapshot dirs: the
    /// snapshot must be unmounted first). Waiters see the channel close.
    pub fn remove(&self, id: &str) -> Result<()> {
        let mut map = self.map();
        let Some(handle) = map.get(id) else {
            return Ok(());
        };
        // Out of the way at once, record and all, its rootfs still mounted, and unmounted and
        // deleted on a thread of its own: unmounting waits out an RCU grace period and
        // deleting a container's files (its rw layer may be large) takes milliseconds to
        // minutes; nobody waits for that. `open` finishes what a crash left.
        let trash = self.root.join(format!("{TRASH_PREFIX}{id}"));
        fs::rename(&handle.paths.dir, &trash)
            .with_context(|| format!("cannot remove {}", handle.paths.dir.display()))?;
        map.remove(id);
        std::thread::spawn(move || delete_trash(&trash));
        Ok(())
    }
}

/// What a removed container's directory is renamed to until it is deleted.
const TRASH_PREFIX: &str = ".removed-";

/// Unmount a removed container's rootfs, then delete its directory; never through the
/// mount (that would delete into the image's layers' view).
fn delete_trash(dir: &Path) {
    let paths = Paths {
        dir: dir.to_path_buf(),
    };
    if berth_image::snapshot::Snapshot::unmount(&paths.snapshot()).is_ok() {
        let _ = fs::remove_dir_all(dir);
    }
}

fn is_trash(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TRASH_PREFIX))
}

pub fn name_conflict(name: &str, id: &str) -> Error {
    Error::Conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    ))
}
