//! berth-init: the PID 1 of containers run with `--init`, like tini.
//!
//! It runs its arguments as its only child, in the child's own process group which it makes
//! the terminal's foreground group (so job control and ^C reach the shell, not the init), sends
//! every signal it receives on to the child, reaps every process that ends up as its child
//! (orphans are re-parented to PID 1 and nobody else would), and exits with the child's status:
//! its exit code, or 128 + the signal that killed it.
//!
//! It is statically linked (see build.rs) because it is bind-mounted into arbitrary root
//! filesystems.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::process::exit;
use std::ptr;

/// Signals that are about the init itself (a fault in its own code): never blocked, so that
/// they act on the init as usual instead of being waited for.
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        eprintln!("usage: berth-init PROGRAM [ARGUMENT...]");
        exit(2);
    }
    // Nothing after the program name is ours: `berth-init -- sh` is accepted like tini's.
    let args = if args[0] == "--" {
        &args[1..]
    } else {
        &args[..]
    };
    match run(args) {
        Ok(status) => exit(status),
        Err(e) => {
            eprintln!("berth-init: {e}");
            exit(1);
        }
    }
}

/// Start the child and supervise it until it ends; its exit status.
fn run(args: &[OsString]) -> io::Result<i32> {
    let argv = to_cstrings(args)?;
    // Not PID 1 (a shared PID namespace): orphans would go to the real PID 1, so ask for
    // them, as `tini -s` does.
    // SAFETY: getpid and prctl(PR_SET_CHILD_SUBREAPER) only affect this process.
    if unsafe { libc::getpid() } != 1 {
        check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    }
    let (waited, original) = block_signals()?;
    let child = spawn(&argv, &original)?;
    supervise(child, &waited)
}

fn to_cstrings(args: &[OsString]) -> io::Result<Vec<CString>> {
    args.iter()
        .map(|a| {
            CString::new(a.clone().into_vec()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an argument contains a NUL byte",
                )
            })
        })
        .collect()
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Block every catchable, asynchronous signal so that they queue up for `sigwaitinfo`; the
/// set waited for and the mask to give back to the child.
fn block_signals() -> io::Result<(libc::sigset_t, libc::sigset_t)> {
    // SAFETY: sigset_t is plain data; sigfillset/sigdelset initialise and edit it, and
    // sigprocmask reads one and fills the other, both living on this stack frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut original: libc::sigset_t = std::mem::zeroed();
        check(libc::sigfillset(&mut set))?;
        for sig in SYNCHRONOUS {
            check(libc::sigdelset(&mut set, sig))?;
        }
        check(libc::sigprocmask(libc::SIG_BLOCK, &set, &mut original))?;
        Ok((set, original))
    }
}

/// fork + exec the child. In the child only async-signal-safe calls are made (this process
/// has a single thread, but the rule keeps it correct either way).
fn spawn(argv: &[CString], original_mask: &libc::sigset_t) -> io::Result<libc::pid_t> {
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(ptr::null());
    // SAFETY: fork has no memory-safety preconditions; the child only calls the
    // async-signal-safe functions in `exec_child` and never returns from it.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        exec_child(&pointers, original_mask);
    }
    Ok(pid)
}

/// In the child: own process group in the terminal's foreground, the signal state the init
/// was started with, then exec. Exit codes on failure are the shell's: 127 not found, 126
/// not executable.
fn exec_child(argv: &[*const libc::c_char], original_mask: &libc::sigset_t) -> ! {
    // SAFETY: plain syscalls on this process; `argv` is a NULL-terminated array of pointers
    // to NUL-terminated strings owned by the parent's stack, intact in the child's copy.
    unsafe {
        libc::setpgid(0, 0);
        // SIGTTOU is still blocked, so a background group may take the terminal; no terminal
        // (ENOTTY) is the common case and fine.
        libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        // Rust's runtime ignores SIGPIPE, and ignored signals stay ignored across exec.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, original_mask, ptr::null_mut());
        libc::execvp(argv[0], argv.as_ptr());
        let errno = *libc::__errno_location();
        let status = match errno {
            libc::ENOENT => 127,
            libc::EACCES => 126,
            _ => 1,
        };
        let msg = b"berth-init: cannot execute the command: ";
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
        let reason = libc::strerror(errno);
        libc::write(libc::STDERR_FILENO, reason.cast(), libc::strlen(reason));
        libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
        libc::_exit(status)
    }
}

/// Wait for signals: SIGCHLD reaps, everything else goes to the child. Returns the child's
/// status once it has ended.
fn supervise(child: libc::pid_t, waited: &libc::sigset_t) -> io::Result<i32> {
    loop {
        // SAFETY: `waited` is an initialised set; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(waited, ptr::null_mut()) };
        if sig < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if sig == libc::SIGCHLD {
            if let Some(status) = reap(child)? {
                return Ok(status);
            }
        } else {
            // SAFETY: kill has no memory effects. ESRCH (the child is exiting) is harmless:
            // its SIGCHLD is on the way.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Reap every child that has ended (SIGCHLDs coalesce, so one signal may stand for many);
/// the status of `child` if it is among them.
fn reap(child: libc::pid_t) -> io::Result<Option<i32>> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid place for waitpid to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(result);
        }
        if pid < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ECHILD) => Ok(result),
                Some(libc::EINTR) => continue,
                _ => Err(e),
            };
        }
        if pid == child {
            result = Some(exit_status(status));
        }
    }
}

/// A wait status as a shell shows it.
fn exit_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
