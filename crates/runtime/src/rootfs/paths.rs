//! Paths inside the rootfs, resolved with openat2(RESOLVE_IN_ROOT): `..` and symlinks (even
//! absolute ones planted by the image) are clamped to the rootfs, so nothing done through the
//! returned fds can touch the host (CVE-2021-30465).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::stat::Mode;

use crate::sys::open_in_root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

const O_PATH_DIR: i32 = libc::O_PATH | libc::O_DIRECTORY;

/// Open an existing path inside the root as an O_PATH fd.
pub fn reopen_in_root(root: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    open_in_root(root, path, libc::O_PATH, 0)
        .with_context(|| format!("cannot open {} in the rootfs", path.display()))
}

/// The paths a container's kernel interfaces live at: the image may not make them symlinks,
/// even ones that stay inside the rootfs (runc refuses them too): whatever points there would
/// see procfs, sysfs or device nodes it does not expect, and checks made on the path (procfs
/// magic, /dev/null's numbers) would be made on something else.
pub const NO_SYMLINKS_AT: [&str; 3] = ["proc", "sys", "dev"];

/// Refuse `path` (relative to the root) if any component of it is a symlink. A path that does
/// not exist yet is fine: it is created as directories.
pub fn refuse_symlinks(root: &OwnedFd, path: &Path) -> Result<()> {
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    match berth_sys::openat2(root.as_fd(), &c_path, libc::O_PATH, 0, resolve) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "/{} in the rootfs is (or goes through) a symlink: refusing to use it",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot open {} in the rootfs", path.display())),
    }
}

/// Whether `dest` (relative to the root) is, or is under, one of [`NO_SYMLINKS_AT`].
pub fn is_kernel_interface(dest: &Path) -> bool {
    NO_SYMLINKS_AT.iter().any(|top| dest.starts_with(top))
}

/// Open `path` inside the root, creating missing directories on the way and the last
/// component as a `kind`. Returns an O_PATH fd of it, to be used as a mount target.
///
/// A dangling symlink on the way is followed inside the root and its target created there,
/// as runc does: the mount lands where the link points, clamped to the rootfs.
pub fn create_in_root(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd> {
    // Most destinations (/proc, /dev, /sys) exist: one lookup instead of one per component.
    let flags = if kind == Kind::Dir {
        O_PATH_DIR
    } else {
        libc::O_PATH
    };
    match open_in_root(root, path, flags, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            create_following_links(root, path, kind, 0)
        }
        r => r.with_context(|| format!("cannot open {} in the rootfs", path.display())),
    }
}

/// How many dangling links one path may go through, as the kernel's ELOOP limit.
const MAX_LINK_HOPS: usize = 40;

fn create_following_links(root: &OwnedFd, path: &Path, kind: Kind, hops: usize) -> Result<OwnedFd> {
    let mut done = PathBuf::new();
    let mut parent = open_in_root(root, Path::new("."), O_PATH_DIR, 0)?;
    let components: Vec<Component> = path.components().collect();
    for (i, component) in components.iter().enumerate() {
        done.push(component);
        let last = i + 1 == components.len();
        let want = if last { kind } else { Kind::Dir };
        let flags = if want == Kind::Dir {
            O_PATH_DIR
        } else {
            libc::O_PATH
        };
        let fd = match open_in_root(root, &done, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let Component::Normal(name) = component else {
                    bail!("cannot create {} in the rootfs", done.display());
                };
                if let Ok(target) = nix::fcntl::readlinkat(&parent, *name) {
                    if hops >= MAX_LINK_HOPS {
                        bail!("too many levels of symbolic links at {}", done.display());
                    }
                    let base = match Path::new(&target).is_absolute() {
                        true => PathBuf::new(),
                        false => done.parent().map(Path::to_path_buf).unwrap_or_default(),
                    };
                    let rest: PathBuf = components[i + 1..].iter().collect();
                    let next = base
                        .join(super::mounts::relative(Path::new(&target)))
                        .join(rest);
                    return create_following_links(root, &next, kind, hops + 1);
                }
                create_at(&parent, name.as_ref(), want)
                    .with_context(|| format!("cannot create {} in the rootfs", done.display()))?;
                open_in_root(root, &done, flags, 0)
                    .with_context(|| format!("cannot open {} in the rootfs", done.display()))?
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open {} in the rootfs", done.display()))
            }
        };
        parent = fd;
    }
    Ok(parent)
}

fn create_at(parent: &OwnedFd, name: &Path, kind: Kind) -> nix::Result<()> {
    let result = match kind {
        Kind::Dir => nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755)),
        // O_NOFOLLOW|O_EXCL: never create through a link the image planted.
        Kind::File => nix::fcntl::openat(
            parent,
            name,
            nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_WRONLY,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
    };
    match result {
        Err(nix::Error::EEXIST) => Ok(()),
        r => r,
    }
}
