//! Extracting a client's tar into a directory of a container (`docker cp` into it).
//!
//! `berth_image`'s layer applier cannot be reused: it interprets `.wh.` whiteouts (a file
//! copied in must stay a file of that name), targets an empty layer directory, and knows
//! nothing of the container's mounts. This extractor follows the same discipline: every
//! entry's parent is resolved by `resolve` on fds inside the container (symlinks followed
//! as the container sees them, mounts crossed, missing directories made one `mkdirat` at a
//! time), the last component is created with `O_EXCL`/`O_NOFOLLOW` relative to that parent
//! fd, and an entry name that climbs above the extraction directory is refused, as Docker
//! does. A write that would land in a read-only place (read-only rootfs or mount, also when
//! reached through a symlink) is refused.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{anyhow, Context};
use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::resolve::{
    components, cstring, errno, is_type, join, open_child, reopen, ContainerFs, Node, Walk,
};
use crate::error::{Error, Result};

/// How a PUT extracts.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Refuse to replace a directory with a non-directory or the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of everything extracted (`copyUIDGID`: the container's user); else the tar's.
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Node(SFlag),
}

fn kind_of(header: &tar::Header, raw: &[u8]) -> Result<Option<Kind>> {
    Ok(Some(match header.entry_type() {
        EntryType::Regular if raw.ends_with(b"/") => Kind::Dir,
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::Hardlink,
        EntryType::Char => Kind::Node(SFlag::S_IFCHR),
        EntryType::Block => Kind::Node(SFlag::S_IFBLK),
        EntryType::Fifo => Kind::Node(SFlag::S_IFIFO),
        EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(Error::InvalidParameter(format!(
                "unhandled tar header type {:?} for {:?}",
                other.as_byte() as char,
                String::from_utf8_lossy(raw)
            )))
        }
    }))
}

/// Ownership, mode and mtime of an entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
}

/// Where an entry goes: its parent directory (resolved), its name there, its container
/// path, and the entry's name for messages.
struct Target<'p> {
    parent: &'p Node,
    name: CString,
    path: String,
    show: String,
}

impl Target<'_> {
    fn dir(&self) -> BorrowedFd<'_> {
        self.parent.fd.as_fd()
    }

    fn failed(&self, op: &str) -> String {
        format!("cannot {op} {} (from {:?})", self.path, self.show)
    }
}

pub struct Extractor<'a> {
    fs: &'a ContainerFs,
    /// The extraction directory (canonical container path).
    dest: &'a Node,
    opts: PutOptions,
    /// Directories whose mtime is set at the end (creating children changes it).
    dirs: Vec<(String, TimeSpec)>,
}

impl<'a> Extractor<'a> {
    pub fn new(fs: &'a ContainerFs, dest: &'a Node, opts: PutOptions) -> Extractor<'a> {
        Extractor {
            fs,
            dest,
            opts,
            dirs: Vec::new(),
        }
    }

    pub fn run(mut self, tar: impl Read) -> Result<()> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().context("cannot read the tar stream")?;
        for entry in entries {
            let mut entry = entry.context("cannot read the tar stream")?;
            self.entry(&mut entry)?;
        }
        self.finish()
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let Some(kind) = kind_of(entry.header(), &raw)? else {
            return Ok(());
        };
        let show = String::from_utf8_lossy(&raw).into_owned();
        let comps = self.clean(&raw)?;
        let meta = self.meta(entry.header(), &show)?;
        let Some((name, parents)) = comps.split_last() else {
            // The extraction directory itself (`./`): left as it is, as Docker does.
            return match kind {
                Kind::Dir => Ok(()),
                _ => Err(anyhow!(
                    "cannot extract {show:?} over the directory {}",
                    self.dest.path
                )
                .into()),
            };
        };
        let parent = self.parent(parents, &show)?;
        let path = join(&parent.path, name);
        if self.fs.mount_at(&path).is_some() {
            // A mount point: the mount stays; a directory entry has nothing more to do.
            return match kind {
                Kind::Dir => Ok(()),
                _ => Err(anyhow!("cannot overwrite the mount point {path} with {show:?}").into()),
            };
        }
        let cname = cstring(name.as_bytes())?;
        self.make_room(&parent, &cname, &path, kind == Kind::Dir)?;
        let at = Target {
            parent: &parent,
            name: cname,
            path,
            show,
        };
        match kind {
            Kind::File => self.file(&at, entry, &meta),
            Kind::Dir => self.dir(&at, &meta),
            Kind::Symlink => {
                // Stored verbatim: berthd only ever resolves it inside the container.
                let target = cstring(&entry.link_name_bytes().unwrap_or_default())?;
                symlinkat(target.as_c_str(), at.dir(), at.name.as_c_str())
                    .with_context(|| at.failed("create"))?;
                self.set_link_meta(&at, &meta)
            }
            Kind::Hardlink => self.hardlink(&at, &entry.link_name_bytes().unwrap_or_default()),
            Kind::Node(kind) => self.node(&at, kind, entry.header(), &meta),
        }
    }

    fn file<R: Read>(&self, at: &Target, entry: &mut tar::Entry<R>, meta: &Meta) -> Result<()> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            at.dir(),
            at.name.as_c_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .with_context(|| at.failed("create"))?;
        let xattrs = xattrs(entry)?;
        let mut file = File::from(fd);
        io::copy(entry, &mut file).with_context(|| at.failed("write"))?;
        self.set_meta(file.as_fd(), meta, &at.show)?;
        // After the chown, which clears file capabilities.
        for (name, value) in &xattrs {
            set_xattr(file.as_fd(), name, value).with_context(|| at.failed("set xattrs of"))?;
        }
        futimens(file.as_fd(), &meta.mtime, &meta.mtime)
            .with_context(|| at.failed("set times of"))?;
        Ok(())
    }

    /// A directory entry: made if missing, an existing one kept; times set at the end.
    fn dir(&mut self, at: &Target, meta: &Meta) -> Result<()> {
        match mkdirat(
            at.dir(),
            at.name.as_c_str(),
            Mode::from_bits_truncate(0o700),
        ) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(anyhow!(e).context(at.failed("create")).into()),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(at.dir(), at.name.as_c_str(), flags, Mode::empty())
            .with_context(|| at.failed("open"))?;
        self.set_meta(fd.as_fd(), meta, &at.show)?;
        self.dirs.push((at.path.clone(), meta.mtime));
        Ok(())
    }

    fn hardlink(&self, at: &Target, target: &[u8]) -> Result<()> {
        let (tdir, tname) = self.link_target(target, &at.show)?;
        // Mounts are separate filesystems inside the container: a link between two would
        // give a read-only mount's file a writable name.
        if tdir.place != at.parent.place {
            let e = io::Error::from_raw_os_error(libc::EXDEV);
            return Err(anyhow!(e).context(at.failed("link")).into());
        }
        let (old, new) = (tname.as_c_str(), at.name.as_c_str());
        linkat(tdir.fd.as_fd(), old, at.dir(), new, AtFlags::empty())
            .with_context(|| at.failed("link"))?;
        Ok(())
    }

    /// A device or fifo.
    fn node(&self, at: &Target, kind: SFlag, header: &tar::Header, meta: &Meta) -> Result<()> {
        let (major, minor) = match kind {
            SFlag::S_IFIFO => (0, 0),
            _ => (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            ),
        };
        let mode = Mode::from_bits_truncate(0o600);
        mknodat(
            at.dir(),
            at.name.as_c_str(),
            kind,
            mode,
            libc::makedev(major, minor),
        )
        .with_context(|| at.failed("create"))?;
        // The node just made, by an O_PATH fd (never a symlink swapped in), chmod'ed through
        // its magic link: fchmod needs a real open, which a device refuses.
        let fd = open_child(at.dir(), &at.name).with_context(|| at.failed("open"))?;
        let st = fstat(fd.as_fd()).map_err(io::Error::from)?;
        if st.st_mode & libc::S_IFMT != kind.bits() {
            return Err(anyhow!("{} changed type while being created", at.path).into());
        }
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            link.as_str(),
            Mode::from_bits_truncate(meta.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .with_context(|| at.failed("chmod"))?;
        self.set_link_meta(at, meta)
    }

    /// The entry name's components below the extraction directory; `..` may not climb above
    /// it (Docker's breakout check), a leading `/` is ignored.
    fn clean(&self, raw: &[u8]) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for c in components(raw) {
            if c.contains(&0) {
                return Err(Error::InvalidParameter(
                    "tar entry name contains a NUL byte".into(),
                ));
            }
            if c == b".." {
                if out.pop().is_none() {
                    return Err(Error::InvalidParameter(format!(
                        "{:?} is outside of {:?}",
                        String::from_utf8_lossy(raw),
                        self.dest.path
                    )));
                }
                continue;
            }
            out.push(String::from_utf8_lossy(c).into_owned());
        }
        Ok(out)
    }

    fn meta(&self, header: &tar::Header, show: &str) -> Result<Meta> {
        let bad = |e: io::Error| Error::InvalidParameter(format!("tar entry {show:?}: {e}"));
        let (uid, gid) = match self.opts.owner {
            Some(owner) => owner,
            None => (
                u32::try_from(header.uid().map_err(bad)?).unwrap_or(0),
                u32::try_from(header.gid().map_err(bad)?).unwrap_or(0),
            ),
        };
        let mtime = i64::try_from(header.mtime().map_err(bad)?).unwrap_or(i64::MAX);
        Ok(Meta {
            uid,
            gid,
            mode: header.mode().map_err(bad)? & 0o7777,
            mtime: TimeSpec::new(mtime, 0),
        })
    }

    /// The directory an entry goes in, made if missing; refused if read-only.
    fn parent(&self, parents: &[String], show: &str) -> Result<Node> {
        let mut path = self.dest.path.clone();
        for p in parents {
            path = join(&path, p);
        }
        let walk = Walk {
            follow_last: true,
            create_dirs: true,
        };
        let node = self.fs.resolve(path.as_bytes(), walk).map_err(|e| {
            if errno(&e.error) == libc::EROFS {
                return Error::InvalidParameter(self.fs.read_only_message(e.place).into());
            }
            anyhow!(e.error)
                .context(format!("cannot make the directory {path} for {show:?}"))
                .into()
        })?;
        if !is_type(&node.stat()?, libc::S_IFDIR) {
            return Err(anyhow!("cannot extract {show:?}: {path} is not a directory").into());
        }
        if !self.fs.writable(node.place) {
            return Err(Error::InvalidParameter(
                self.fs.read_only_message(node.place).into(),
            ));
        }
        Ok(node)
    }

    /// The directory and name a hardlink entry points at (an earlier entry, named relative
    /// to the extraction directory as its own name is).
    fn link_target(&self, target: &[u8], show: &str) -> Result<(Node, std::ffi::CString)> {
        let comps = self.clean(target)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(Error::InvalidParameter(format!(
                "hardlink {show:?} has no target"
            )));
        };
        let mut path = self.dest.path.clone();
        for p in parents {
            path = join(&path, p);
        }
        let walk = Walk {
            follow_last: true,
            create_dirs: false,
        };
        let dir = self.fs.resolve(path.as_bytes(), walk).map_err(|e| {
            anyhow!(e.error).context(format!("hardlink {show:?}: cannot find its target"))
        })?;
        Ok((dir, cstring(name.as_bytes())?))
    }

    /// Clears the way for a new `name` in `parent`: nothing there is fine, an existing
    /// directory stays for a directory entry, anything else is removed (unless Docker's
    /// noOverwriteDirNonDir forbids swapping a directory and a non-directory).
    fn make_room(&self, parent: &Node, name: &CStr, path: &str, want_dir: bool) -> Result<()> {
        let existing = match open_child(parent.fd.as_fd(), name) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
            Err(e) => return Err(anyhow!(e).context(format!("cannot look at {path}")).into()),
        };
        let is_dir = is_type(
            &fstat(existing.as_fd()).map_err(io::Error::from)?,
            libc::S_IFDIR,
        );
        if is_dir && want_dir {
            return Ok(());
        }
        if self.opts.no_overwrite_dir_non_dir && is_dir != want_dir {
            let base = path.rsplit('/').next().unwrap_or(path);
            return Err(anyhow!(if is_dir {
                format!("cannot overwrite directory {path:?} with non-directory {base:?}")
            } else {
                format!("cannot overwrite non-directory {path:?} with directory {base:?}")
            })
            .into());
        }
        remove_all(parent.fd.as_fd(), name).with_context(|| format!("cannot replace {path}"))?;
        Ok(())
    }

    /// Owner then mode (chown clears set-id bits) of an object opened for real.
    fn set_meta(&self, fd: BorrowedFd, meta: &Meta, show: &str) -> Result<()> {
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .with_context(|| format!("cannot chown {show:?}"))?;
        fchmod(fd, Mode::from_bits_truncate(meta.mode))
            .with_context(|| format!("cannot chmod {show:?}"))?;
        Ok(())
    }

    /// Owner and times of a symlink or device, by name, never following it.
    fn set_link_meta(&self, at: &Target, meta: &Meta) -> Result<()> {
        let (dir, name) = (at.dir(), at.name.as_c_str());
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        fchownat(
            dir,
            name,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| at.failed("chown"))?;
        utimensat(
            dir,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .with_context(|| at.failed("set the times of"))?;
        Ok(())
    }

    /// Directory times, last made first; a directory replaced since is skipped.
    fn finish(self) -> Result<()> {
        let walk = Walk::default();
        for (path, mtime) in self.dirs.iter().rev() {
            let Ok(node) = self.fs.resolve(path.as_bytes(), walk) else {
                continue;
            };
            if !is_type(&node.stat()?, libc::S_IFDIR) {
                continue;
            }
            let fd = reopen(node.fd.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
            futimens(fd.as_fd(), mtime, mtime)
                .with_context(|| format!("cannot set the times of {path}"))?;
        }
        Ok(())
    }
}

/// The xattrs a file entry carries (PAX `SCHILY.xattr.*`), without `trusted.*` ones: those
/// steer overlayfs and are no client's to set.
fn xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions().context("cannot read PAX records")? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.context("cannot read PAX records")?;
        if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            if !name.starts_with(b"trusted.") {
                out.push((cstring(name)?, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// fsetxattr; a filesystem without xattrs (or refusing this one) is skipped, as Docker does.
fn set_xattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: name is NUL-terminated, value is valid for its length, fd is open.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) | Some(libc::EPERM) => Ok(()),
            _ => Err(e),
        };
    }
    Ok(())
}

/// Removes `name` in `dir` whatever it is, a directory with everything in it, never
/// following a symlink.
fn remove_all(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EISDIR) => {
            let fd: OwnedFd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut d = Dir::from_fd(fd)?;
            let mut children = Vec::new();
            for e in d.iter() {
                let n = e?.file_name().to_owned();
                if n.as_bytes() != b"." && n.as_bytes() != b".." {
                    children.push(n);
                }
            }
            for child in &children {
                remove_all(d.as_fd(), child)?;
            }
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
