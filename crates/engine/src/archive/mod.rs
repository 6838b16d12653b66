//! Files in and out of a container: `docker cp` (`HEAD|GET|PUT /containers/{id}/archive`),
//! `docker export` and `docker diff` (`GET /containers/{id}/changes`).
//!
//! Everything works on the container's mounted rootfs (mounted from create to rm, so a
//! stopped container works too) and its bind and volume mounts, with paths resolved by
//! [`resolve`] on fds inside the container: a container cannot make berthd read or write
//! a host file by swapping path components for symlinks, and no binary of the container is
//! ever run. The `Engine` methods are thin wrappers over free functions that take a
//! [`ContainerFs`], so they can be tested without a daemon.

pub mod extract;
pub mod resolve;
pub mod write;

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use berth_image::config::{chain_ids, ImageConfig};
use berth_image::digest::Digest;
use berth_image::layer::Change;
use bollard_stubs::models::MountPointTypeEnum;
use serde::Serialize;

pub use extract::PutOptions;
pub use resolve::{ContainerFs, Mount, Node, Walk};

use crate::container::{initlayer, Container, Handle};
use crate::error::{Error, Result};
use crate::Engine;

/// Output buffer in front of the response body: one chunk per write otherwise.
const OUT_BUF: usize = 256 << 10;

/// Go's `os.FileMode` bits, as Docker puts them in `X-Docker-Container-Path-Stat`.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// Docker's `ContainerPathStat`: the JSON behind `X-Docker-Container-Path-Stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    /// For a symlink: the container path it resolves to; else empty.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// What `GET /containers/{id}/archive` sends, found before the response starts (so a
/// missing path is a 404, not a broken stream).
pub struct ArchiveSource {
    fs: ContainerFs,
    node: Node,
    /// The name the entries start with.
    name: String,
}

impl ArchiveSource {
    /// Streams the tar of the path.
    pub fn write_to(self, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut writer =
            write::TreeWriter::new(BufWriter::with_capacity(OUT_BUF, out), Some(&self.fs));
        writer
            .write(&self.node, &self.name)
            .with_context(|| format!("cannot archive {}", self.node.path))?;
        writer.finish()?.flush()?;
        Ok(())
    }
}

/// Go's `filepath.Base` of the path as Docker keeps it (a trailing `/.` preserved): the name
/// a stat reports and archive entries start with.
pub fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// Does the path name a directory's contents or what a symlink points at (a trailing `/`
/// or `/.`), rather than the last component itself?
fn follows_last(path: &str) -> bool {
    path.is_empty() || path.ends_with('/') || path.ends_with("/.") || path == "."
}

fn go_file_mode(st: &nix::sys::stat::FileStat) -> u32 {
    let mut mode = st.st_mode & 0o777;
    mode |= match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => go_mode::DIR,
        libc::S_IFLNK => go_mode::SYMLINK,
        libc::S_IFBLK => go_mode::DEVICE,
        libc::S_IFCHR => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        libc::S_IFIFO => go_mode::NAMED_PIPE,
        libc::S_IFSOCK => go_mode::SOCKET,
        _ => 0,
    };
    for (bit, go) in [
        (libc::S_ISUID, go_mode::SETUID),
        (libc::S_ISGID, go_mode::SETGID),
        (libc::S_ISVTX, go_mode::STICKY),
    ] {
        if st.st_mode & bit != 0 {
            mode |= go;
        }
    }
    mode
}

fn mtime(st: &nix::sys::stat::FileStat) -> String {
    let nanos = Duration::new(st.st_mtime.unsigned_abs(), st.st_mtime_nsec as u32);
    let t = if st.st_mtime >= 0 {
        UNIX_EPOCH + nanos
    } else {
        UNIX_EPOCH - nanos
    };
    crate::time::rfc3339_nanos(t)
}

/// Finds `path` in the container as Docker's `StatPath` does: every component but the last
/// followed if a symlink (the last too with a trailing `/` or `/.`).
pub fn open_path(fs: &ContainerFs, path: &str) -> io::Result<(Node, PathStat)> {
    let walk = Walk {
        follow_last: follows_last(path),
        create_dirs: false,
    };
    let node = fs.resolve(path.as_bytes(), walk)?;
    let st = node.stat()?;
    if path.ends_with('/') && !resolve::is_type(&st, libc::S_IFDIR) {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let link_target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        fs.canonical(path.as_bytes())
    } else {
        String::new()
    };
    let stat = PathStat {
        name: base_name(path),
        size: st.st_size,
        mode: go_file_mode(&st),
        mtime: mtime(&st),
        link_target,
    };
    Ok((node, stat))
}

/// `HEAD /containers/{id}/archive`.
pub fn stat_path(fs: &ContainerFs, path: &str) -> io::Result<PathStat> {
    open_path(fs, path).map(|(_, stat)| stat)
}

/// `GET /containers/{id}/archive`: the stat, and the tar to send after it. A directory's
/// entries are `<name>/...` (its own base name first, as `docker cp` expects), a file is
/// one entry `<name>`; the root's entries carry no prefix.
pub fn get_path(fs: &ContainerFs, path: &str) -> io::Result<(ArchiveSource, PathStat)> {
    let (node, stat) = open_path(fs, path)?;
    let name = if stat.name == "/" {
        String::new()
    } else {
        stat.name.clone()
    };
    let source = ArchiveSource {
        fs: fs.clone(),
        node,
        name,
    };
    Ok((source, stat))
}

/// `PUT /containers/{id}/archive`: extracts `tar` into the directory at `path` (a symlink
/// to a directory is followed). `not_found` makes the error for a missing path.
pub fn put_path(
    fs: &ContainerFs,
    path: &str,
    tar: impl Read,
    opts: PutOptions,
    not_found: impl FnOnce() -> Error,
) -> Result<()> {
    let walk = Walk {
        follow_last: true,
        create_dirs: false,
    };
    let dest = match fs.resolve(path.as_bytes(), walk) {
        Ok(node) => node,
        Err(e) if matches!(resolve::errno(&e.error), libc::ENOENT | libc::ENOTDIR) => {
            return Err(not_found())
        }
        Err(e) => {
            return Err(anyhow::Error::from(e.error)
                .context(format!("cannot resolve {path}"))
                .into())
        }
    };
    if !resolve::is_type(&dest.stat()?, libc::S_IFDIR) {
        return Err(Error::InvalidParameter(
            "extraction point is not a directory".into(),
        ));
    }
    if !fs.writable(dest.place) {
        return Err(Error::InvalidParameter(
            fs.read_only_message(dest.place).into(),
        ));
    }
    let mut tar = tar;
    let result = extract::Extractor::new(fs, &dest, opts).run(&mut tar);
    // The client may still be sending the end-of-archive blocks (or the rest of an archive
    // refused half-way): read them, so it sees our answer rather than a broken pipe.
    let _ = io::copy(&mut tar, &mut io::sink());
    result
}

/// `GET /containers/{id}/export`: the whole root filesystem (the overlay's merged view,
/// without the container's mounts), entries relative to `/`.
pub fn export_rootfs(rootfs: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let fs = ContainerFs {
        rootfs: rootfs.to_path_buf(),
        mounts: Vec::new(),
        readonly_rootfs: true,
    };
    let root = fs.root()?;
    let mut writer = write::TreeWriter::new(BufWriter::with_capacity(OUT_BUF, out), None);
    writer
        .write(&root, "")
        .with_context(|| format!("cannot export {}", rootfs.display()))?;
    writer.finish()?.flush()?;
    Ok(())
}

/// `docker diff`: what the rw layer `upper` changed against the layers below it, topmost
/// first (the init layer, then the image's). The init layer being one of them, its files
/// only show up when the container changed them itself, as in Docker.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> anyhow::Result<Vec<Change>> {
    berth_image::layer::changes(upper, lowers).context("cannot compute the container's changes")
}

/// The config of image `image_id` (its id is the config's digest).
pub fn image_config(engine: &Engine, image_id: &str) -> anyhow::Result<ImageConfig> {
    let digest: Digest = image_id
        .parse()
        .with_context(|| format!("bad image id {image_id:?}"))?;
    let bytes = engine
        .images
        .content
        .read(&digest)
        .with_context(|| format!("the config of image {image_id} is not in the store"))?;
    Ok(ImageConfig::parse(&bytes)?)
}

/// The lower dirs of a container's overlay, topmost first: init layer, then the image's
/// layers from the top.
pub fn container_lowers(engine: &Engine, record: &Container) -> anyhow::Result<Vec<PathBuf>> {
    let config = image_config(engine, &record.image_id)?;
    let mut lowers = vec![engine.images.layers.init_dir()];
    for chain_id in chain_ids(&config.rootfs.diff_ids).iter().rev() {
        lowers.push(engine.images.layers.diff_dir(chain_id));
    }
    Ok(lowers)
}

/// The container's file tree: its rootfs, its own /etc/hostname, /etc/hosts and
/// /etc/resolv.conf (bound over the init layer's empty ones, as Docker's cp sees them), and
/// its bind and volume mounts (tmpfs mounts have nothing on the host to read). A destination
/// with a symlink in it is where the runtime resolved it to inside the rootfs: it is matched
/// by that canonical path.
pub fn container_fs(handle: &Handle, record: &Container) -> ContainerFs {
    let mut fs = ContainerFs {
        rootfs: handle.paths.rootfs(),
        mounts: Vec::new(),
        readonly_rootfs: record.host_config.readonly_rootfs.unwrap_or(false),
    };
    for (destination, source) in initlayer::binds(&handle.paths.dir) {
        if source.exists() {
            let mount = Mount {
                destination: fs.canonical(destination.as_bytes()),
                source,
                writable: true,
            };
            fs.mounts.push(mount);
        }
    }
    for m in &record.mounts {
        if matches!(m.typ, Some(MountPointTypeEnum::TMPFS)) {
            continue;
        }
        let (Some(destination), Some(source)) = (m.destination.as_deref(), m.source.as_deref())
        else {
            continue;
        };
        if source.is_empty() {
            continue;
        }
        let mount = Mount {
            destination: fs.canonical(destination.as_bytes()),
            source: PathBuf::from(source),
            writable: m.rw.unwrap_or(true),
        };
        fs.mounts.push(mount);
    }
    fs
}

/// Docker's 404 for a path missing in a container.
fn file_not_found(path: &str, container: &str) -> Error {
    Error::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

fn path_error(e: io::Error, path: &str, container: &str) -> Error {
    match resolve::errno(&e) {
        libc::ENOENT | libc::ENOTDIR => file_not_found(path, container),
        _ => Error::Internal(anyhow::Error::from(e).context(format!("cannot resolve {path}"))),
    }
}

impl Engine {
    fn archive_target(&self, name_or_id: &str) -> Result<(ContainerFs, Container)> {
        let handle = self.containers.get(name_or_id)?;
        let record = handle.get();
        Ok((container_fs(&handle, &record), record))
    }

    /// A container event with Docker's `name` and `image` attributes.
    fn container_event(&self, record: &Container, action: &str) {
        let attributes = [
            ("name", record.name.as_str()),
            ("image", record.image.as_str()),
        ];
        self.events
            .emit("container", action, &record.id, &attributes);
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub fn archive_stat(&self, name_or_id: &str, path: &str) -> Result<PathStat> {
        let (fs, _) = self.archive_target(name_or_id)?;
        stat_path(&fs, path).map_err(|e| path_error(e, path, name_or_id))
    }

    /// `GET /containers/{id}/archive?path=`: the stat (for the header) and the tar source.
    pub fn archive_get(&self, name_or_id: &str, path: &str) -> Result<(ArchiveSource, PathStat)> {
        let (fs, record) = self.archive_target(name_or_id)?;
        let found = get_path(&fs, path).map_err(|e| path_error(e, path, name_or_id))?;
        self.container_event(&record, "archive-path");
        Ok(found)
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
    pub fn archive_put(
        &self,
        name_or_id: &str,
        path: &str,
        tar: impl Read,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let (fs, record) = self.archive_target(name_or_id)?;
        let owner = if copy_uid_gid {
            let user = record.config.user.clone().unwrap_or_default();
            let resolved = crate::container::user::resolve(&fs.rootfs, &user, &[])?;
            Some((resolved.uid, resolved.gid))
        } else {
            None
        };
        let opts = PutOptions {
            no_overwrite_dir_non_dir,
            owner,
        };
        put_path(&fs, path, tar, opts, || file_not_found(path, name_or_id))?;
        self.container_event(&record, "extract-to-dir");
        Ok(())
    }

    /// `GET /containers/{id}/export`: streams the root filesystem as a tar.
    pub fn export_container(&self, name_or_id: &str, out: &mut dyn Write) -> Result<()> {
        let handle = self.containers.get(name_or_id)?;
        export_rootfs(&handle.paths.rootfs(), out)?;
        self.container_event(&handle.get(), "export");
        Ok(())
    }

    /// `GET /containers/{id}/changes`.
    pub fn container_changes(&self, name_or_id: &str) -> Result<Vec<Change>> {
        let handle = self.containers.get(name_or_id)?;
        let record = handle.get();
        let lowers = container_lowers(self, &record)?;
        Ok(changes(&handle.paths.upper(), &lowers)?)
    }
}
