//! Volumes with Docker's `local` driver: a directory per volume, `<volumes>/<name>/_data`,
//! beside its metadata `<volumes>/<name>/volume.json` (written atomically). A volume is in
//! use while any container's record mounts it; unused anonymous volumes are what prune takes.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{anyhow, Context};
use bollard_stubs::models::{
    MountPointTypeEnum, Volume, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum,
};
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{
    fchmod, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Engine;

/// The label Docker puts on volumes created without a name; prune without `all=true` only
/// takes these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
const DRIVER: &str = "local";
const META_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";
/// Deepest directory tree `populate_from` copies: each level holds two descriptors open.
const MAX_COPY_DEPTH: usize = 256;

/// What `volume.json` holds; the name and mount point follow from where it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "Labels", default)]
    labels: HashMap<String, String>,
    #[serde(rename = "Options", default)]
    options: HashMap<String, String>,
    #[serde(rename = "Driver", default)]
    driver: String,
    #[serde(rename = "Scope", default)]
    scope: String,
}

/// All volumes of the local driver, under one directory.
pub struct VolumeStore {
    root: PathBuf,
    /// Serialises create and remove so that "exists?" and "make it" are one step.
    lock: Mutex<()>,
}

impl VolumeStore {
    /// The store at `root` (made if missing).
    pub fn open(root: &Path) -> anyhow::Result<VolumeStore> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        sweep_temp_files(root);
        Ok(VolumeStore {
            root: root.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where volume `name`'s data lives (the directory containers mount).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.root.join(name).join(DATA_DIR)
    }

    /// Make a volume; `None` makes an anonymous one (a random 64-hex name and the anonymous
    /// label). A name that exists already gives that volume back, as Docker does.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: HashMap<String, String>,
        options: HashMap<String, String>,
    ) -> Result<Volume> {
        Ok(self.ensure(name, labels, options)?.0)
    }

    /// `create`, also saying whether this call made the volume (container create fills only
    /// new volumes from the image; events are only for new ones).
    pub fn ensure(
        &self,
        name: Option<&str>,
        mut labels: HashMap<String, String>,
        options: HashMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(name) => {
                validate_name(name)?;
                name.to_string()
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                crate::random_id()?
            }
        };
        validate_options(&name, &options)?;
        let _guard = self.guard();
        if let Ok(existing) = self.read(&name) {
            return Ok((existing, false));
        }
        let dir = self.root.join(&name);
        fs::create_dir_all(dir.join(DATA_DIR))
            .with_context(|| format!("create {name}: cannot make {}", dir.display()))?;
        let meta = Meta {
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            labels,
            options,
            driver: DRIVER.to_string(),
            scope: "local".to_string(),
        };
        let json = serde_json::to_vec_pretty(&meta).context("cannot encode volume metadata")?;
        berth_runtime::state::write_atomic(&dir.join(META_FILE), &json)
            .with_context(|| format!("create {name}: cannot save its metadata"))?;
        Ok((self.volume(&name, meta), true))
    }

    /// Volume `name`, 404 "get <name>: no such volume" when there is none.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.read(name)
    }

    fn read(&self, name: &str) -> Result<Volume> {
        if validate_name(name).is_err() {
            return Err(no_such_volume(name));
        }
        let dir = self.root.join(name);
        if !dir.join(DATA_DIR).is_dir() {
            return Err(no_such_volume(name));
        }
        // A volume made by a berthd that died before writing its metadata (or by hand) is
        // still a volume, as with Docker's local driver: it gets default metadata.
        let meta = match fs::read(dir.join(META_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("volume {name}: corrupt {META_FILE}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta {
                created_at: modified_time(&dir),
                ..Meta::default()
            },
            Err(e) => return Err(anyhow!(e).context(format!("volume {name}")).into()),
        };
        Ok(self.volume(name, meta))
    }

    fn volume(&self, name: &str, meta: Meta) -> Volume {
        Volume {
            name: name.to_string(),
            driver: DRIVER.to_string(),
            mountpoint: self.mountpoint(name).to_string_lossy().into_owned(),
            created_at: Some(meta.created_at),
            labels: meta.labels,
            scope: Some(VolumeScopeEnum::LOCAL),
            options: meta.options,
            ..Volume::default()
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.read(n).ok()).collect()
    }

    /// Delete volume `name` and its data (the caller has checked it is not in use).
    pub fn remove(&self, name: &str) -> Result<()> {
        let _guard = self.guard();
        self.read(name)?;
        let dir = self.root.join(name);
        // Metadata first: a crash half-way leaves a directory without it, which is still
        // listed (and removable) rather than lost.
        let _ = fs::remove_file(dir.join(META_FILE));
        fs::remove_dir_all(&dir)
            .with_context(|| format!("remove {name}: cannot delete {}", dir.display()))?;
        Ok(())
    }

    /// Docker's copy-up: the first time an empty volume is mounted at `container_path`, what
    /// the image has there is copied into it (files, directories, symlinks, device nodes and
    /// fifos, with owners, modes and times), and the volume's root takes the owner and mode
    /// of that directory. `rootfs` is untrusted: `container_path` is resolved inside it with
    /// openat2, and nothing in it is followed. A volume that is not empty, or a path that is
    /// not a directory in the image, is left alone.
    pub fn populate_from(&self, name: &str, rootfs: &Path, container_path: &str) -> Result<()> {
        self.read(name)?;
        let data = self.mountpoint(name);
        let is_empty = fs::read_dir(&data)
            .with_context(|| format!("cannot read {}", data.display()))?
            .next()
            .is_none();
        if !is_empty {
            return Ok(());
        }
        let root = open_dir(&rootfs.to_path_buf())?;
        let Some(source) = open_in_root(root.as_fd(), container_path)? else {
            return Ok(());
        };
        let mut copy = TreeCopy {
            dest_root: open_dir(&data)?,
            linked: HashMap::new(),
        };
        let dest = copy
            .dest_root
            .try_clone()
            .context("cannot duplicate a descriptor")?;
        copy.dir(source.as_fd(), dest.as_fd(), Path::new(""), 0)
            .with_context(|| {
                format!("cannot copy {container_path} of the image into volume {name}")
            })?;
        let stat = fstat(source.as_fd()).context("cannot stat the image directory")?;
        copy_attributes(dest.as_fd(), &stat)?;
        Ok(())
    }
}

/// Remove the temp files of metadata writes a crash interrupted (`.volume.json.<pid>.tmp`).
fn sweep_temp_files(root: &Path) {
    let Ok(volumes) = fs::read_dir(root) else {
        return;
    };
    for volume in volumes.flatten() {
        let Ok(files) = fs::read_dir(volume.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".volume.json.") && name.ends_with(".tmp") {
                let _ = fs::remove_file(file.path());
            }
        }
    }
}

fn no_such_volume(name: &str) -> Error {
    Error::NotFound(format!("get {name}: no such volume"))
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    if bytes.len() < 2 {
        return Err(Error::InvalidParameter(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    let first_ok = bytes[0].is_ascii_alphanumeric();
    let rest_ok = bytes[1..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(Error::InvalidParameter(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \
         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )))
}

/// The local driver's options mount a device or a tmpfs at the volume; berth does not do
/// that (yet), and saying so beats pretending.
fn validate_options(name: &str, options: &HashMap<String, String>) -> Result<()> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) if matches!(key.as_str(), "type" | "device" | "o" | "size") => {
            Err(Error::InvalidParameter(format!(
                "create {name}: local volume option {key:?} is not supported by berth: only plain directory volumes are"
            )))
        }
        Some(key) => Err(Error::InvalidParameter(format!(
            "create {name}: invalid option key: {key:?}"
        ))),
    }
}

fn modified_time(dir: &Path) -> String {
    let when = fs::metadata(dir)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    humantime::format_rfc3339_seconds(when).to_string()
}

/// Bytes held by the files under `dir` (hard links counted once), as prune reports.
fn tree_size(dir: &Path) -> i64 {
    let mut seen = HashSet::new();
    let mut total = 0i64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len() as i64;
            }
        }
    }
    total
}

// ---- copying out of an untrusted root, descriptor by descriptor ----

fn open_dir(path: &PathBuf) -> Result<OwnedFd> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(OwnedFd::from(file))
}

/// `path` inside `root` as a directory, every link resolved as if `root` were `/`; `None`
/// when it does not exist or is not a directory.
fn open_in_root(root: BorrowedFd, path: &str) -> Result<Option<OwnedFd>> {
    let c_path = CString::new(path)
        .map_err(|_| Error::InvalidParameter(format!("invalid path {path:?}")))?;
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    match berth_sys::openat2(
        root,
        &c_path,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        resolve,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(anyhow!(e)
            .context(format!("cannot open {path} in the image"))
            .into()),
    }
}

/// The names in directory `dir` (without `.` and `..`), read through a duplicate so that
/// `dir` stays usable for the *at calls.
fn dir_names(dir: BorrowedFd) -> anyhow::Result<Vec<OsString>> {
    let dup = dir
        .try_clone_to_owned()
        .context("cannot duplicate a directory descriptor")?;
    let mut handle = nix::dir::Dir::from_fd(dup).context("cannot read a directory")?;
    let mut names = Vec::new();
    for entry in handle.iter() {
        let name = entry
            .context("cannot read a directory entry")?
            .file_name()
            .to_bytes()
            .to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from(std::ffi::OsStr::from_bytes(&name)));
        }
    }
    Ok(names)
}

/// A copy of a directory tree from an untrusted root into an empty directory of ours,
/// descriptor by descriptor, never following a link on either side.
struct TreeCopy {
    dest_root: OwnedFd,
    /// Files with several links, by (device, inode), and where their first copy is (relative
    /// to `dest_root`): later names become links to it, as in the image.
    linked: HashMap<(u64, u64), PathBuf>,
}

impl TreeCopy {
    /// Copy the contents of `src` into `dst`, which is `rel` below the destination root.
    fn dir(
        &mut self,
        src: BorrowedFd,
        dst: BorrowedFd,
        rel: &Path,
        depth: usize,
    ) -> anyhow::Result<()> {
        if depth > MAX_COPY_DEPTH {
            anyhow::bail!("directories nested deeper than {MAX_COPY_DEPTH} levels");
        }
        for name in dir_names(src)? {
            let rel = rel.join(&name);
            self.entry(src, dst, &name, &rel, depth)
                .with_context(|| format!("cannot copy {}", rel.display()))?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: BorrowedFd,
        dst: BorrowedFd,
        name: &OsStr,
        rel: &Path,
        depth: usize,
    ) -> anyhow::Result<()> {
        let stat = fstatat(src, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT);
        match kind {
            SFlag::S_IFDIR => {
                let from = openat(src, name, dir_flags(), Mode::empty())?;
                mkdirat(dst, name, Mode::from_bits_truncate(0o700))?;
                let to = openat(dst, name, dir_flags(), Mode::empty())?;
                self.dir(from.as_fd(), to.as_fd(), rel, depth + 1)?;
                copy_attributes(to.as_fd(), &stat)
            }
            SFlag::S_IFREG => self.file(src, dst, name, rel, &stat),
            SFlag::S_IFLNK => {
                let target = readlinkat(src, name)?;
                symlinkat(target.as_os_str(), dst, name)?;
                let (uid, gid) = (Uid::from_raw(stat.st_uid), Gid::from_raw(stat.st_gid));
                let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
                fchownat(dst, name, Some(uid), Some(gid), nofollow)?;
                set_times_nofollow(dst, name, &stat)
            }
            SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
                let mode = Mode::from_bits_truncate(0o600);
                mknodat(dst, name, kind, mode, stat.st_rdev)?;
                let to = openat(dst, name, OFlag::O_PATH | nofollow(), Mode::empty())?;
                // fchown/fchmod do not take O_PATH descriptors; the /proc path of one names
                // exactly this inode, so no link in the tree can redirect it.
                let proc_path = format!("/proc/self/fd/{}", to.as_raw_fd());
                std::os::unix::fs::chown(&proc_path, Some(stat.st_uid), Some(stat.st_gid))?;
                let mode = fs::Permissions::from_mode(stat.st_mode & 0o7777);
                fs::set_permissions(&proc_path, mode)?;
                set_times_nofollow(dst, name, &stat)
            }
            // Sockets belong to the process that made them; Docker skips them too.
            _ => Ok(()),
        }
    }

    fn file(
        &mut self,
        src: BorrowedFd,
        dst: BorrowedFd,
        name: &OsStr,
        rel: &Path,
        stat: &FileStat,
    ) -> anyhow::Result<()> {
        let key = (stat.st_dev, stat.st_ino);
        if stat.st_nlink > 1 {
            if let Some(first) = self.linked.get(&key) {
                return self.link(first, dst, name);
            }
        }
        let from = openat(src, name, OFlag::O_RDONLY | nofollow(), Mode::empty())?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow();
        let to = openat(dst, name, flags, Mode::from_bits_truncate(0o600))?;
        let (mut from, mut to) = (fs::File::from(from), fs::File::from(to));
        std::io::copy(&mut from, &mut to)?;
        copy_attributes(to.as_fd(), stat)?;
        if stat.st_nlink > 1 {
            self.linked.insert(key, rel.to_path_buf());
        }
        Ok(())
    }

    /// A new name `name` in `dst` for the copy at `first`, found without following links.
    fn link(&self, first: &Path, dst: BorrowedFd, name: &OsStr) -> anyhow::Result<()> {
        let c_first = CString::new(first.as_os_str().as_bytes())?;
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        let fd = berth_sys::openat2(self.dest_root.as_fd(), &c_first, libc::O_PATH, 0, resolve)?;
        nix::unistd::linkat(
            fd.as_fd(),
            "",
            dst,
            name,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )?;
        Ok(())
    }
}

fn nofollow() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow()
}

/// Owner, then mode (chown clears set-id bits), then times, of an open file or directory.
fn copy_attributes(fd: BorrowedFd, stat: &FileStat) -> anyhow::Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(stat.st_uid)),
        Some(Gid::from_raw(stat.st_gid)),
    )?;
    fchmod(fd, Mode::from_bits_truncate(stat.st_mode & 0o7777))?;
    let (atime, mtime) = times(stat);
    futimens(fd, &atime, &mtime)?;
    Ok(())
}

fn set_times_nofollow(dir: BorrowedFd, name: &OsStr, stat: &FileStat) -> anyhow::Result<()> {
    let (atime, mtime) = times(stat);
    utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

fn times(stat: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(stat.st_atime, stat.st_atime_nsec),
        TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
    )
}

// ---- the engine's volume API ----

/// Filters `docker volume ls` accepts.
const LIST_FILTERS: &[&str] = &["name", "label", "dangling", "driver"];
/// Filters `docker volume prune` accepts.
const PRUNE_FILTERS: &[&str] = &["label", "label!", "all"];

type Filters = HashMap<String, Vec<String>>;

fn check_filters(filters: &Filters, allowed: &[&str]) -> Result<()> {
    match filters.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(Error::InvalidParameter(format!("invalid filter '{key}'"))),
        None => Ok(()),
    }
}

/// Docker's boolean filter values.
fn filter_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(Error::InvalidParameter(format!(
            "invalid filter '{key}={value}'"
        ))),
    }
}

/// `label=key` or `label=key=value` against a volume's labels.
fn label_matches(labels: &HashMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(filter),
    }
}

impl Engine {
    /// The volumes some container (in any state) mounts, with those containers' ids.
    fn volume_users(&self) -> HashMap<String, Vec<String>> {
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for handle in self.containers.list() {
            let record = handle.lock();
            for mount in &record.mounts {
                if mount.typ == Some(MountPointTypeEnum::VOLUME) {
                    if let Some(name) = &mount.name {
                        users
                            .entry(name.clone())
                            .or_default()
                            .push(record.id.clone());
                    }
                }
            }
        }
        users
    }

    /// `POST /volumes/create`: only the `local` driver exists.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: HashMap<String, String>,
        options: HashMap<String, String>,
    ) -> Result<Volume> {
        if let Some(driver) = driver.filter(|d| !d.is_empty() && *d != DRIVER) {
            return Err(Error::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let (volume, created) = self.volumes.ensure(name, labels, options)?;
        if created {
            self.events
                .emit("volume", "create", &volume.name, &[("driver", DRIVER)]);
        }
        Ok(volume)
    }

    /// `GET /volumes` with Docker's filters (name substring, label, dangling, driver).
    pub fn list_volumes(&self, filters: &Filters) -> Result<VolumeListResponse> {
        check_filters(filters, LIST_FILTERS)?;
        let dangling = match filters.get("dangling").and_then(|v| v.first()) {
            Some(v) => Some(filter_bool("dangling", v)?),
            None => None,
        };
        let users = self.volume_users();
        let volumes = self
            .volumes
            .list()
            .into_iter()
            .filter(|v| {
                let wanted = |key: &str, test: &dyn Fn(&str) -> bool| {
                    filters
                        .get(key)
                        .is_none_or(|values| values.iter().any(|f| test(f)))
                };
                wanted("name", &|f| v.name.contains(f))
                    && wanted("driver", &|f| f == v.driver)
                    && filters
                        .get("label")
                        .is_none_or(|ls| ls.iter().all(|f| label_matches(&v.labels, f)))
                    && dangling.is_none_or(|d| d != users.contains_key(&v.name))
            })
            .collect();
        Ok(VolumeListResponse {
            volumes: Some(volumes),
            warnings: Some(Vec::new()),
        })
    }

    /// `GET /volumes/{name}`.
    pub fn inspect_volume(&self, name: &str) -> Result<Volume> {
        self.volumes.get(name)
    }

    /// `DELETE /volumes/{name}`: 409 while a container mounts it; `force` only turns "no
    /// such volume" into success, as with Docker.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if let Some(ids) = self.volume_users().get(name) {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(", ")
            )));
        }
        match self.volumes.remove(name) {
            Err(Error::NotFound(_)) if force => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                self.events
                    .emit("volume", "destroy", name, &[("driver", DRIVER)]);
                Ok(())
            }
        }
    }

    /// `POST /volumes/prune`: unused volumes — only anonymous ones unless `all=true`, as
    /// Docker 23 and later — filtered by `label` / `label!`.
    pub fn prune_volumes(&self, filters: &Filters) -> Result<VolumePruneResponse> {
        check_filters(filters, PRUNE_FILTERS)?;
        let all = match filters.get("all").and_then(|v| v.first()) {
            Some(v) => filter_bool("all", v)?,
            None => false,
        };
        let users = self.volume_users();
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for volume in self.volumes.list() {
            let prunable = !users.contains_key(&volume.name)
                && (all || volume.labels.contains_key(ANONYMOUS_LABEL))
                && filters
                    .get("label")
                    .is_none_or(|ls| ls.iter().all(|f| label_matches(&volume.labels, f)))
                && filters
                    .get("label!")
                    .is_none_or(|ls| !ls.iter().any(|f| label_matches(&volume.labels, f)));
            if !prunable {
                continue;
            }
            let size = tree_size(&self.volumes.mountpoint(&volume.name));
            // A container may have started using it since `users` was read: skip, not fail.
            if self.remove_volume(&volume.name, false).is_ok() {
                reclaimed += size;
                deleted.push(volume.name);
            }
        }
        self.events.emit(
            "volume",
            "prune",
            "",
            &[("reclaimed", &reclaimed.to_string())],
        );
        Ok(VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }
}
