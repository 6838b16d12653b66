//! CVE-2019-5736: a container process can get hold of the file behind a berth binary's
//! /proc/<pid>/exe (a `#!/proc/self/exe` script the runtime execs, or /proc/<pid>/exe of a
//! runtime process that joined the container) and write to it once the process is gone,
//! replacing the binary the host runs next as root.
//!
//! [`protect_self_exe`] makes berth-runtime and berth-monitor non-dumpable (other processes
//! cannot open their /proc/<pid>/exe) and re-executes them from a read-only view of their
//! binary: a detached read-only clone of the mount holding its directory (no copy: the cost is
//! one more exec, 3-4 ms per `run` on a loaded 2-CPU VM), or, where that is refused (no
//! CAP_SYS_ADMIN), a sealed memfd copy (a copy of the whole binary on every start). Whatever a container reaches through
//! /proc/<pid>/exe is then on a read-only mount (EROFS) or sealed (EPERM).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use libc::c_int;

const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 1;
const MOUNT_ATTR_NOSUID: u64 = 2;
const MOUNT_ATTR_NODEV: u64 = 4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the caller passes a descriptor a syscall just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

/// Make this process non-dumpable and, unless its binary already is read-only to everyone,
/// re-execute it from a read-only view of it. Call first thing in `main` (single-threaded,
/// nothing opened yet): it returns only once the process runs protected, or with an error.
pub fn protect_self_exe() -> io::Result<()> {
    set_non_dumpable()?;
    let exe = std::fs::File::open("/proc/self/exe")?;
    let exe = OwnedFd::from(exe);
    if is_protected(&exe)? {
        return Ok(());
    }
    let err = match read_only_clone(&exe) {
        Ok((dir, name)) => reexec(dir.as_raw_fd(), &name, 0),
        Err(_) => {
            // No CAP_SYS_ADMIN (or no new mount API): pay for a copy instead.
            let memfd = sealed_copy(&exe)?;
            reexec(memfd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
        }
    };
    Err(err)
}

/// PR_SET_DUMPABLE 0: other processes of our uid (a container's root) can no longer open our
/// /proc/<pid>/exe, fds or memory. Children inherit it until they exec.
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } as libc::c_long).map(drop)
}

/// True if nothing can write to the file behind `fd`: it is on a read-only mount, or it is a
/// memfd sealed against writes.
pub fn is_protected(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: fstatvfs fills a statvfs we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } as libc::c_long)?;
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Ok(true);
    }
    // SAFETY: fcntl with integer arguments; EINVAL for files that are not memfds.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(seals >= 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// A detached, read-only clone of the mount of the binary's directory (open_tree +
/// mount_setattr), checked to hold the very file `exe` is; returns it and the file's name.
/// Nothing is copied and no mount appears in any namespace: the clone lives as long as the
/// re-executed process's exe refers to it.
fn read_only_clone(exe: &OwnedFd) -> io::Result<(OwnedFd, CString)> {
    let path = std::fs::read_link("/proc/self/exe")?;
    let (tree, name) = clone_read_only(&path)?;
    // The directory could have changed since readlink: exec only the file we run.
    let in_clone = openat(tree.as_raw_fd(), &name)?;
    if file_id(&in_clone)? != file_id(exe)? || !is_protected(&in_clone)? {
        return Err(io::Error::other("the binary's directory changed"));
    }
    Ok((tree, name))
}

/// A read-only view of the binary at `path` for a parent to start it from (berthd its
/// monitors): a process started from it runs protected at once, and [`protect_self_exe`]
/// does not execute it a second time. Returns the view (keep it open) and the path to exec
/// through it, `/proc/self/fd/<view>/<name>`: a child resolves that in its own, inherited,
/// table before close-on-exec takes the descriptor. The view's descriptor is `min_fd` or
/// above, for a parent that moves other descriptors onto lower numbers in the child.
pub fn read_only_view(path: &Path, min_fd: RawFd) -> io::Result<(OwnedFd, std::path::PathBuf)> {
    let (tree, name) = clone_read_only(path)?;
    // SAFETY: fcntl with integer arguments on a descriptor we own.
    let tree = owned(check(
        unsafe { libc::fcntl(tree.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min_fd) } as libc::c_long,
    )?);
    let exec = Path::new("/proc/self/fd")
        .join(tree.as_raw_fd().to_string())
        .join(OsString::from_vec(name.into_bytes()));
    Ok((tree, exec))
}

/// The detached read-only clone of the mount of `binary`'s directory, and its file name.
fn clone_read_only(binary: &Path) -> io::Result<(OwnedFd, CString)> {
    let (Some(dir), Some(name)) = (binary.parent(), binary.file_name()) else {
        return Err(io::Error::other(format!(
            "odd binary path {}",
            binary.display()
        )));
    };
    let dir = cstring(dir.as_os_str().as_bytes())?;
    let name = cstring(name.as_bytes())?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    // SAFETY: a NUL-terminated path and integer flags.
    let tree = owned(check(unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, dir.as_ptr(), flags)
    })?);
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` outlives the call; the size passed is the struct's.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok((tree, name))
}

fn openat(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid dir fd and a NUL-terminated name.
    Ok(owned(check(
        unsafe { libc::openat(dir, name.as_ptr(), flags) } as libc::c_long,
    )?))
}

fn file_id(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    // SAFETY: fstat fills a stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } as libc::c_long)?;
    Ok((st.st_dev, st.st_ino))
}

/// A memfd holding a copy of the binary, sealed so that nobody can change it.
fn sealed_copy(exe: &OwnedFd) -> io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: a NUL-terminated name and integer flags.
    let memfd = owned(check(
        unsafe { libc::memfd_create(c"berth".as_ptr(), flags) } as libc::c_long,
    )?);
    let mut from = std::fs::File::from(exe.try_clone()?);
    let mut to = std::fs::File::from(memfd);
    io::copy(&mut from, &mut to)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl with integer arguments on our memfd.
    check(unsafe { libc::fcntl(to.as_raw_fd(), libc::F_ADD_SEALS, seals) } as libc::c_long)?;
    Ok(OwnedFd::from(to))
}

/// execveat(dir, name) with this process's own arguments and environment. Returns only on
/// failure.
fn reexec(dir: RawFd, name: &std::ffi::CStr, flags: c_int) -> io::Error {
    let to_c = |v: Vec<OsString>| -> io::Result<Vec<CString>> {
        v.into_iter().map(|s| cstring(&s.into_vec())).collect()
    };
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    let (args, env) = match (to_c(std::env::args_os().collect()), to_c(env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (ptrs(&args), ptrs(&env));
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            dir,
            name.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            flags,
        )
    };
    io::Error::last_os_error()
}

/// For tests and callers that want to check another process: whether the binary `pid` runs
/// is protected (see [`is_protected`]).
pub fn exe_of_is_protected(pid: libc::pid_t) -> io::Result<bool> {
    let file = std::fs::File::open(Path::new("/proc").join(pid.to_string()).join("exe"))?;
    is_protected(&OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn self_exe() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap())
    }

    /// The fallback where no read-only mount can be made: the copy is sealed, and a write
    /// through a reopened fd (as the exploit does) is refused.
    #[test]
    fn sealed_copy_cannot_be_written() {
        let exe = self_exe();
        let copy = sealed_copy(&exe).unwrap();
        assert!(is_protected(&copy).unwrap());
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"PWNED"))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }

    /// The clone holds the very binary, on a read-only mount (the write refused after the
    /// binary's last user exits is tested end to end by berth-runtime's escape tests).
    #[test]
    fn read_only_clone_holds_the_binary_read_only() {
        let exe = self_exe();
        assert!(!is_protected(&exe).unwrap());
        let (dir, name) = read_only_clone(&exe).unwrap();
        let file = openat(dir.as_raw_fd(), &name).unwrap();
        assert_eq!(file_id(&file).unwrap(), file_id(&exe).unwrap());
        assert!(is_protected(&file).unwrap());
    }
}
