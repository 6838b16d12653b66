//! System calls more than one berth crate needs and libc does not wrap. Paths that come from
//! images or containers are resolved here with openat2, inside a root fd, never by the
//! kernel's plain lookup from `/`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::c_int;

pub mod exe;

fn errno(e: &io::Error) -> c_int {
    e.raw_os_error().unwrap_or(0)
}

fn owned(fd: c_int) -> OwnedFd {
    // SAFETY: the caller passes a descriptor a syscall just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// openat2(2). EAGAIN (a concurrent rename somewhere on the system) is retried a few times.
pub fn openat2(
    dir: BorrowedFd,
    path: &CStr,
    flags: c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    let mut again = 0;
    loop {
        // SAFETY: `how` and `path` outlive the call; the size passed is the struct's.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            return Ok(owned(r as c_int));
        }
        let e = io::Error::last_os_error();
        match errno(&e) {
            libc::EINTR => continue,
            libc::EAGAIN if again < 16 => again += 1,
            libc::ENOSYS => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2 is not supported by this kernel (Linux 5.6 or later is needed)",
                ))
            }
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

    fn open_in(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
        let path = CString::new(path).unwrap();
        openat2(root.as_fd(), &path, libc::O_PATH, 0, IN_ROOT)
    }

    fn same_file(a: &OwnedFd, b: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let fd_meta = std::fs::metadata(format!("/proc/self/fd/{}", a.as_raw_fd())).unwrap();
        let meta = std::fs::metadata(b).unwrap();
        (fd_meta.dev(), fd_meta.ino()) == (meta.dev(), meta.ino())
    }

    #[test]
    fn links_and_dotdot_stay_inside_the_root() {
        let tmp = tempfile_dir();
        let root_dir = tmp.join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::fs::write(root_dir.join("etc/passwd"), "inside").unwrap();
        symlink("/etc/passwd", root_dir.join("abs")).unwrap();
        symlink("../../../../etc/passwd", root_dir.join("rel")).unwrap();
        let root = OwnedFd::from(std::fs::File::open(&root_dir).unwrap());
        let inside = root_dir.join("etc/passwd");
        for path in ["abs", "rel", "../../etc/passwd", "/etc/passwd"] {
            let fd = open_in(&root, path).unwrap();
            assert!(same_file(&fd, &inside), "{path} left the root");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-sys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
