//! `berth-monitor`: one per container (or exec). Reads its config from stdin (to EOF), moves
//! into the directory of its socket, creates the container (or checks the one to exec in is
//! running), reports ready on stdout, then serves its socket until the process exits, and
//! records the exit. Its working directory is how an engine recognises a container's
//! monitor: it is launched before it knows which container it is for (see
//! `client::Monitors`).
//!
//! Single-threaded and synchronous: it forks (create, exec), and it stays small.

mod memory;
mod output;
mod serve;
mod stdio;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use berth_monitor::protocol::{MonitorConfig, Reply};

fn main() {
    if let Err(e) = berth_runtime::sys::protect_self_exe() {
        eprintln!("berth-monitor: cannot run from a read-only copy of itself: {e}");
        std::process::exit(1);
    }
    // Its own session: a hang-up of its parent's does not reach it. Fails only for a
    // session leader, which a spawned child is not.
    let _ = nix::unistd::setsid();
    let (config, ready) = match take_pipes() {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("berth-monitor: {e:#}");
            std::process::exit(1);
        }
    };
    let result = setup_signals().and_then(|()| serve::Monitor::setup(read_config(config)?));
    let reply = match &result {
        Ok(_) => Reply::ok(),
        Err(e) => Reply::error(format!("{e:#}")),
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.push(b'\n');
    let _ = std::fs::File::from(ready).write_all(&line);
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

/// The config pipe (stdin) and the ready pipe (stdout) our parent passed, moved off stdio
/// (close-on-exec: the container's process must not keep them), with /dev/null put in their
/// place.
fn take_pipes() -> Result<(OwnedFd, OwnedFd)> {
    // try_clone_to_owned dups with F_DUPFD_CLOEXEC.
    let config = std::io::stdin().as_fd().try_clone_to_owned();
    let ready = std::io::stdout().as_fd().try_clone_to_owned();
    let (config, ready) = (
        config.context("no config pipe on stdin")?,
        ready.context("no ready pipe on stdout")?,
    );
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    nix::unistd::dup2_stdin(&null).context("cannot put /dev/null on stdin")?;
    nix::unistd::dup2_stdout(&null).context("cannot put /dev/null on stdout")?;
    Ok((config, ready))
}

/// The config, read to EOF.
fn read_config(pipe: OwnedFd) -> Result<MonitorConfig> {
    let mut text = Vec::new();
    std::fs::File::from(pipe)
        .read_to_end(&mut text)
        .context("cannot read the config")?;
    serde_json::from_slice(&text).context("invalid config")
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
