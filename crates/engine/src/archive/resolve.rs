//! Paths inside a container, resolved by berthd on file descriptors.
//!
//! A container path is walked one component at a time from an fd of the container's root:
//! each step opens a single name with openat2 (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! `O_PATH | O_NOFOLLOW`) relative to the fd of the step before, so the object found is the
//! object used — a container swapping a component for a symlink between two steps only
//! changes which object inside the container we reach. Symlinks are read and followed by us,
//! as the container would see them: absolute targets restart at the container's root, `..`
//! never climbs above it. A step onto the destination of one of the container's bind or volume
//! mounts continues in the mount's source on the host, with the same rules, so a symlink in
//! a volume that points at `/etc` reaches the container's /etc, not the host's.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode};

/// The most symlinks one resolution follows, as Linux's MAXSYMLINKS.
const MAX_LINKS: u32 = 40;

/// One bind or volume mount of a container: what is at `destination` inside it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute, clean path inside the container.
    pub destination: String,
    /// The host directory or file mounted there (trusted: the engine or the user chose it).
    pub source: PathBuf,
    pub writable: bool,
}

/// A container's file tree as berthd sees it from the host: the mounted rootfs and the
/// container's mounts.
#[derive(Debug, Clone)]
pub struct ContainerFs {
    pub rootfs: PathBuf,
    pub mounts: Vec<Mount>,
    /// `HostConfig.ReadonlyRootfs`: nothing outside a writable mount may be written.
    pub readonly_rootfs: bool,
}

/// Where a resolved object lives, for the read-only checks of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Rootfs,
    /// In the mount with this index in `ContainerFs::mounts`.
    Mount(usize),
}

/// An object inside the container: an O_PATH fd of it and its canonical container path.
#[derive(Debug)]
pub struct Node {
    pub fd: OwnedFd,
    /// Absolute, without symlinks, `/` for the root.
    pub path: String,
    pub place: Place,
}

impl Node {
    pub fn stat(&self) -> io::Result<FileStat> {
        Ok(fstat(self.fd.as_fd())?)
    }
}

/// What a walk should do besides finding the object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Walk {
    /// Follow a symlink in the last component too.
    pub follow_last: bool,
    /// Create missing directories (0755) on the way, the last component included.
    pub create_dirs: bool,
}

/// A failed walk: the error and the container path it would have reached, taken lexically
/// from where the walk stopped (Docker's `linkTarget` of a dangling symlink).
#[derive(Debug)]
pub struct WalkError {
    pub error: io::Error,
    pub lexical: String,
    /// Where the walk stopped (for EROFS: the read-only place it would have created in).
    pub place: Place,
}

impl From<WalkError> for io::Error {
    fn from(e: WalkError) -> io::Error {
        e.error
    }
}

pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Splits a path into its names, without empty and `.` components (`..` is kept).
pub fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// `parent/name` for container paths.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

/// `path` cleaned lexically against `base`: `..` climbs but never above `/`.
pub fn lexical(base: &str, path: &[u8]) -> String {
    let mut out = if path.starts_with(b"/") {
        "/".to_string()
    } else {
        base.to_string()
    };
    for c in components(path) {
        if c == b".." {
            out = parent_of(&out);
        } else {
            out = join(&out, &String::from_utf8_lossy(c));
        }
    }
    out
}

pub fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Opens the single name `name` in `dir` as an O_PATH fd, never following a symlink and
/// never leaving `dir` (the kernel checks it).
pub fn open_child(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    berth_sys::openat2(
        dir,
        name,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Reopens the object an O_PATH fd names for I/O (through its /proc magic link, which names
/// exactly that object, wherever it has moved since).
pub fn reopen(fd: BorrowedFd, flags: OFlag) -> io::Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(open(
        link.as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

pub fn is_type(st: &FileStat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

impl ContainerFs {
    /// The mount whose destination is exactly `path`, the innermost one when several are.
    pub fn mount_at(&self, path: &str) -> Option<usize> {
        self.mounts.iter().rposition(|m| m.destination == path)
    }

    /// May `place` be written?
    pub fn writable(&self, place: Place) -> bool {
        match place {
            Place::Rootfs => !self.readonly_rootfs,
            Place::Mount(i) => self.mounts[i].writable,
        }
    }

    /// Docker's message for a write refused at `place`.
    pub fn read_only_message(&self, place: Place) -> &'static str {
        match place {
            Place::Rootfs => "container rootfs is marked read-only",
            Place::Mount(_) => "mounted volume is marked read-only",
        }
    }

    pub fn root(&self) -> io::Result<Node> {
        let fd = open(
            &self.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "cannot open the container's root filesystem {}: {e}",
                    self.rootfs.display()
                ),
            )
        })?;
        Ok(Node {
            fd,
            path: "/".to_string(),
            place: Place::Rootfs,
        })
    }

    fn open_mount(&self, index: usize, path: String) -> io::Result<Node> {
        let source: &Path = &self.mounts[index].source;
        let fd = open(source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Node {
            fd,
            path,
            place: Place::Mount(index),
        })
    }

    /// Resolves the container path `path` (relative paths are taken from `/`).
    pub fn resolve(&self, path: &[u8], walk: Walk) -> Result<Node, WalkError> {
        let root = self.root().map_err(|error| WalkError {
            error,
            lexical: lexical("/", path),
            place: Place::Rootfs,
        })?;
        let mut stack = vec![root];
        let mut todo: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            let top = stack.last().expect("the root is never popped");
            if name == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let fail = |error: io::Error, todo: &[Vec<u8>]| {
                let mut rest = name.clone();
                for c in todo.iter().rev() {
                    rest.push(b'/');
                    rest.extend_from_slice(c);
                }
                WalkError {
                    error,
                    lexical: lexical(&top.path, &rest),
                    place: top.place,
                }
            };
            let child_path = join(&top.path, &String::from_utf8_lossy(&name));
            if let Some(index) = self.mount_at(&child_path) {
                let node = self
                    .open_mount(index, child_path)
                    .map_err(|e| fail(e, &todo))?;
                stack.push(node);
                continue;
            }
            let last = todo.is_empty();
            let create = match (walk.create_dirs, self.writable(top.place)) {
                (false, _) => Create::No,
                (true, true) => Create::Yes,
                (true, false) => Create::ReadOnly,
            };
            let node = step(top, &name, child_path, last && !walk.follow_last, create)
                .map_err(|e| fail(e, &todo))?;
            match node {
                Step::Node(node) => {
                    if !last && !is_type(&node.stat().map_err(|e| fail(e, &todo))?, libc::S_IFDIR) {
                        return Err(fail(io::Error::from_raw_os_error(libc::ENOTDIR), &todo));
                    }
                    stack.push(node);
                }
                Step::Link(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(fail(io::Error::from_raw_os_error(libc::ELOOP), &todo));
                    }
                    if target.starts_with(b"/") {
                        stack.truncate(1);
                    }
                    todo.extend(components(&target).rev().map(<[u8]>::to_vec));
                }
            }
        }
        Ok(stack.pop().expect("the stack holds the root at least"))
    }

    /// The canonical container path `path` resolves to, symlinks followed; the part that
    /// does not exist is taken lexically (Docker's `linkTarget`).
    pub fn canonical(&self, path: &[u8]) -> String {
        let walk = Walk {
            follow_last: true,
            create_dirs: false,
        };
        match self.resolve(path, walk) {
            Ok(node) => node.path,
            Err(e) => e.lexical,
        }
    }
}

/// Whether a walk creates missing directories where it is.
#[derive(Clone, Copy)]
enum Create {
    No,
    Yes,
    /// Asked to, but the place is read-only: EROFS.
    ReadOnly,
}

enum Step {
    Node(Node),
    /// A symlink to follow, with its target.
    Link(Vec<u8>),
}

/// One component: the object `name` in `dir`, or the target of the symlink it is.
fn step(
    dir: &Node,
    name: &[u8],
    path: String,
    keep_link: bool,
    create: Create,
) -> io::Result<Step> {
    let cname = cstring(name)?;
    let fd = match (open_child(dir.fd.as_fd(), &cname), create) {
        (Err(e), Create::ReadOnly) if errno(&e) == libc::ENOENT => {
            return Err(io::Error::from_raw_os_error(libc::EROFS))
        }
        (Err(e), Create::Yes) if errno(&e) == libc::ENOENT => {
            match mkdirat(
                dir.fd.as_fd(),
                cname.as_c_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            open_child(dir.fd.as_fd(), &cname)?
        }
        (r, _) => r?,
    };
    let st = fstat(fd.as_fd())?;
    if is_type(&st, libc::S_IFLNK) && !keep_link {
        let target: OsString = readlinkat(fd.as_fd(), c"")?;
        return Ok(Step::Link(target.into_vec()));
    }
    Ok(Step::Node(Node {
        fd,
        path,
        place: dir.place,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_never_climb_above_the_root() {
        assert_eq!(lexical("/a/b", b"../../../x"), "/x");
        assert_eq!(lexical("/a", b"/etc/./passwd"), "/etc/passwd");
        assert_eq!(lexical("/", b""), "/");
        assert_eq!(lexical("/a", b"b/"), "/a/b");
    }
}
