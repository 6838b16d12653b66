//! `berth-monitor <dir>`: one per container (or exec). Reads its config from fd 4 (to EOF),
//! creates the container (or checks the one to exec in is running), reports ready on fd 3,
//! then serves its socket until the process exits, and records the exit. `<dir>` names the
//! container's run dir, which is how an engine recognises its monitors.
//!
//! Single-threaded and synchronous: it forks (create, exec), and it stays small.

mod memory;
mod output;
mod serve;
mod stdio;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use berth_monitor::client::{CONFIG_FD, READY_FD};
use berth_monitor::protocol::{MonitorConfig, Reply};

fn main() {
    if let Err(e) = berth_runtime::sys::protect_self_exe() {
        eprintln!("berth-monitor: cannot run from a read-only copy of itself: {e}");
        std::process::exit(1);
    }
    let ready = take_ready_fd();
    let result = setup_signals().and_then(|()| {
        std::env::args_os()
            .nth(1)
            .context("usage: berth-monitor <dir>")?;
        serve::Monitor::setup(read_config()?)
    });
    let reply = match &result {
        Ok(_) => Reply::ok(),
        Err(e) => Reply::error(format!("{e:#}")),
    };
    if let Some(ready) = ready {
        let mut file = std::fs::File::from(ready);
        let mut line = serde_json::to_vec(&reply).unwrap_or_default();
        line.push(b'\n');
        let _ = file.write_all(&line);
    }
    let code = match result.and_then(serve::Monitor::run) {
        Ok(()) => 0,
        Err(e) => {
            // After ready nobody reads our output; stderr is /dev/null unless run by hand.
            eprintln!("berth-monitor: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// The config on CONFIG_FD, read to EOF.
fn read_config() -> Result<MonitorConfig> {
    let fd = inherited(CONFIG_FD).with_context(|| format!("no config on fd {CONFIG_FD}"))?;
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut text)
        .with_context(|| format!("cannot read the config on fd {CONFIG_FD}"))?;
    serde_json::from_slice(&text).context("invalid config")
}

/// fd 3, if our parent passed one.
fn take_ready_fd() -> Option<OwnedFd> {
    inherited(READY_FD)
}

/// `fd`, if our parent passed it (fds 3 and 4 are ours by the spawn protocol), made
/// close-on-exec: the container's process must not keep it.
fn inherited(fd: i32) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only checks whether the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: as above, on an fd that is open.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the fd is open and nothing else in this process owns it (called once per fd).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Outlive the daemon: a hang-up (the session going) or a client gone (SIGPIPE) must not
/// kill the monitor. SIGCHLD must be default, not ignored (inherited through exec), or the
/// kernel would reap the container's init before we read its exit status.
fn setup_signals() -> Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_IGN/SIG_DFL runs no handler code.
    unsafe {
        signal(Signal::SIGPIPE, SigHandler::SigIgn)?;
        signal(Signal::SIGHUP, SigHandler::SigIgn)?;
        signal(Signal::SIGCHLD, SigHandler::SigDfl)?;
    }
    Ok(())
}
