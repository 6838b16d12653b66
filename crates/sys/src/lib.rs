//! System calls more than one berth crate needs and libc does not wrap. Paths that come from
//! images or containers are resolved here with openat2, inside a root fd, never by the
//! kernel's plain lookup from `/`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::c_int;

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
