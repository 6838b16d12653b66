//! Thin wrappers over the *at syscalls the layer code needs: every path they take is either a
//! single component relative to a directory fd we resolved ourselves, or resolved by openat2
//! inside a root fd.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use libc::c_int;

/// Resolution flags for paths inside a layer: symlinks (absolute or `..`) are resolved as if
/// the layer root were `/`, magic links (/proc/self/fd/…) are never followed, and mount points
/// are never crossed.
pub const IN_ROOT: u64 =
    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
/// As [`IN_ROOT`], and any symlink at all is an error (ELOOP).
pub const IN_ROOT_NO_SYMLINKS: u64 = IN_ROOT | libc::RESOLVE_NO_SYMLINKS;

pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs a syscall again while it fails with EINTR.
fn retry(mut f: impl FnMut() -> c_int) -> io::Result<c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}

pub fn errno(e: &io::Error) -> c_int {
    e.raw_os_error().unwrap_or(0)
}

fn owned(fd: c_int) -> OwnedFd {
    // SAFETY: the caller passes a descriptor a syscall just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub use berth_sys::openat2;

pub fn openat(dir: BorrowedFd, name: &CStr, flags: c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
    .map(owned)
}

pub fn open_path(path: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) }).map(owned)
}

pub fn fstatat(dir: BorrowedFd, name: &CStr, flags: c_int) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the kernel fills `st` when it returns success.
    retry(|| unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: initialised by the successful fstatat.
    Ok(unsafe { st.assume_init() })
}

pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the kernel fills `st` when it returns success.
    retry(|| unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful fstat.
    Ok(unsafe { st.assume_init() })
}

pub fn mkdirat(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
        .map(drop)
}

pub fn unlinkat(dir: BorrowedFd, name: &CStr, flags: c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: plain syscall on valid C strings.
    retry(|| unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

pub fn linkat(
    olddir: BorrowedFd,
    oldname: &CStr,
    newdir: BorrowedFd,
    newname: &CStr,
) -> io::Result<()> {
    // SAFETY: plain syscall on valid C strings; flags 0: a symlink is linked, never followed.
    retry(|| unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            0,
        )
    })
    .map(drop)
}

pub fn mknodat(dir: BorrowedFd, name: &CStr, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, dev) })
        .map(drop)
}

/// fchownat(2) with AT_SYMLINK_NOFOLLOW: a symlink itself is changed, never its target.
pub fn lchownat(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    retry(|| unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

pub fn fchmod(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    retry(|| unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// utimensat(2) with AT_SYMLINK_NOFOLLOW.
pub fn lutimensat(dir: BorrowedFd, name: &CStr, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: `times` points at two timespecs.
    retry(|| unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn futimens(fd: BorrowedFd, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: `times` points at two timespecs.
    retry(|| unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }).map(drop)
}

pub fn fsetxattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is valid for its length.
    retry(|| unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// The /proc path of an fd: following it reaches exactly the inode the fd refers to (for an
/// O_PATH|O_NOFOLLOW fd of a symlink, the symlink itself), with no path lookup of our own.
pub fn proc_fd_path(fd: BorrowedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// setxattr on the inode behind an fd (works for O_PATH fds of symlinks, devices and fifos).
pub fn setxattr_fd(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    let path = proc_fd_path(fd);
    // SAFETY: `value` is valid for its length.
    retry(|| unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// chmod on the inode behind an O_PATH fd (fchmod refuses O_PATH fds).
pub fn chmod_fd(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    let path = proc_fd_path(fd);
    // SAFETY: plain syscall on a valid C string.
    retry(|| unsafe { libc::chmod(path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub fn readlinkat(dir: BorrowedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if errno(&e) == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// Where xattr reads go: a real fd (f*xattr) or any fd through its /proc path.
enum XattrTarget {
    Fd(RawFd),
    Path(CString),
}

impl XattrTarget {
    fn of(fd: BorrowedFd, is_path_fd: bool) -> XattrTarget {
        if is_path_fd {
            XattrTarget::Path(proc_fd_path(fd))
        } else {
            XattrTarget::Fd(fd.as_raw_fd())
        }
    }

    fn list(&self, buf: &mut [u8]) -> isize {
        // SAFETY: `buf` is valid for its length (a zero length asks for the size).
        unsafe {
            match self {
                XattrTarget::Fd(fd) => libc::flistxattr(*fd, buf.as_mut_ptr().cast(), buf.len()),
                XattrTarget::Path(p) => {
                    libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                }
            }
        }
    }

    fn get(&self, name: &CStr, buf: &mut [u8]) -> isize {
        // SAFETY: `buf` is valid for its length (a zero length asks for the size).
        unsafe {
            match self {
                XattrTarget::Fd(fd) => {
                    libc::fgetxattr(*fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                }
                XattrTarget::Path(p) => libc::getxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                ),
            }
        }
    }
}

/// Calls `f` with a growing buffer until the value fits (xattr calls return ERANGE when the
/// buffer is too small, and the size may change between the two calls).
fn sized(mut f: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let n = f(&mut []);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        if n == 0 {
            return Ok(buf);
        }
        let m = f(&mut buf);
        if m < 0 {
            let e = io::Error::last_os_error();
            if errno(&e) == libc::ERANGE {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}

/// All xattrs of the inode behind `fd`, sorted by name. `is_path_fd` for O_PATH fds.
pub fn xattrs(fd: BorrowedFd, is_path_fd: bool) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let target = XattrTarget::of(fd, is_path_fd);
    let names = match sized(|b| target.list(b)) {
        Ok(n) => n,
        Err(e) if errno(&e) == libc::ENOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = cstr(name)?;
        match sized(|b| target.get(&name, b)) {
            Ok(v) => out.push((name, v)),
            // Removed between list and get.
            Err(e) if errno(&e) == libc::ENODATA => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr of the inode behind `fd`, if it has it.
pub fn xattr(fd: BorrowedFd, is_path_fd: bool, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let target = XattrTarget::of(fd, is_path_fd);
    match sized(|b| target.get(name, b)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(errno(&e), libc::ENODATA | libc::ENOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

pub fn file_type(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}
