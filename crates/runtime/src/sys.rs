//! Thin wrappers over the Linux system calls the runtime needs and libc does not wrap.
//!
//! Every wrapper returns `std::io::Result` so callers add context with `anyhow`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Non-dumpable, and running from a read-only view of our own binary (CVE-2019-5736): the
/// first call of berth-runtime's and berth-monitor's `main`.
pub use berth_sys::exe::{protect_self_exe, read_only_view, set_non_dumpable};

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What clone3 returned: in the parent the child's pid and a pidfd for it.
pub enum Forked {
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
    Child,
}

/// Fork-like clone3 (no new stack) into new namespaces given by `flags`, with a pidfd.
///
/// Only sound in a single-threaded process, which the runtime is.
pub fn clone3_fork(flags: u64) -> io::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        // With CLONE_PARENT the child inherits the caller's exit signal; clone3 wants 0 here.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; with stack 0 the child continues
    // on a copy of this stack like fork(2); the process is single-threaded.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as libc::pid_t,
            // SAFETY: the kernel stored a new pidfd that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// pidfd_open(2): a pidfd for any process, to wait on its exit without polling.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signal exactly the process the pidfd refers to (no pid reuse race).
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait until the process behind `pidfd` has exited, up to `timeout_ms` (-1: forever).
/// Returns false on timeout.
pub fn pidfd_wait_exit(pidfd: &OwnedFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match ret {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Open `path` as if `root` were `/`: `..` and symlinks (absolute ones too) never leave `root`,
/// and magic links (/proc/self/fd/…) are refused. Mount points are crossed: the rootfs has
/// the container's own mounts (/proc, /dev…) under it.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    berth_sys::openat2(root.as_fd(), &cstring(path)?, flags, mode, resolve)
}

/// The `/proc/self/fd/N` path of an fd, for syscalls that take a path but must act on exactly
/// the object the fd holds (mount targets resolved safely beforehand).
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// pivot_root(2).
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let (n, o) = (cstring(new_root)?, cstring(put_old)?);
    // SAFETY: two NUL-terminated paths.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// rt_sigaction(2) setting `signal`'s disposition to SIG_DFL, straight to the kernel: glibc's
/// sigaction refuses the signals it reserves for its threads (32 and 33), which a process
/// started by glibc's posix_spawn inherits ignored.
pub fn default_signal_disposition(signal: i32) -> io::Result<()> {
    // The kernel's struct sigaction (handler, flags, [restorer,] mask), all zero: SIG_DFL,
    // no flags, nothing blocked. Zero in every layout, and as large as the largest.
    let action = [0u64; 4];
    const SIGSET_BYTES: usize = 8;
    // SAFETY: the kernel reads `action` (large enough for its struct) and writes no old action.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            action.as_ptr(),
            std::ptr::null_mut::<u64>(),
            SIGSET_BYTES,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mark every fd from `first` on close-on-exec, so nothing of the runtime leaks into the
/// container's process (CVE-2024-21626).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat) and its
/// state letter; together with the pid it names one process even after pid reuse.
pub fn proc_start_and_state(pid: libc::pid_t) -> io::Result<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|s| s.chars().next());
    let start = fields.get(19).and_then(|s| s.parse().ok());
    match (start, state) {
        (Some(start), Some(state)) => Ok((start, state)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed /proc stat",
        )),
    }
}
