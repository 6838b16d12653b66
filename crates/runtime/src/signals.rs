//! Signals: names and numbers as `kill` takes them, and `run`'s forwarding of the signals it
//! receives to the container until the container exits.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::console::Relay;
use crate::sys;

/// `9`, `KILL`, `SIGKILL`, `kill` → 9.
pub fn parse(text: &str) -> Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if Signal::try_from(n).is_ok() || (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal number {n}");
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

/// The signals a foreground `run` passes on rather than dying of.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    set
}

/// Wait for the init (our child) to exit, forwarding signals to it and, with a terminal,
/// relaying it to our stdio; return its exit code as a shell reports it.
pub fn forward_until_exit(pidfd: &OwnedFd, pid: i32, relay: Option<Relay>) -> Result<i32> {
    let set = forwarded();
    set.thread_block().context("cannot block signals")?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (mut stdin_open, mut master_open) = (relay.is_some(), relay.is_some());
    loop {
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(relay) = &relay {
            let (stdin_events, master_events) = (
                if stdin_open {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
                if master_open {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
            );
            fds.push(PollFd::new(stdin.as_fd(), stdin_events));
            fds.push(PollFd::new(relay.master(), master_events));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r.context("poll")?,
        };
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        if ready(1) {
            if let Some(info) = sfd.read_signal().context("read signalfd")? {
                match &relay {
                    Some(relay) if info.ssi_signo == Signal::SIGWINCH as u32 => relay.resize(),
                    _ => {
                        let _ = sys::pidfd_send_signal(pidfd, info.ssi_signo as i32);
                    }
                }
            }
        }
        if let Some(relay) = &relay {
            if ready(2) {
                stdin_open = Relay::pump(stdin.as_fd(), relay.master())?;
            }
            if ready(3) {
                master_open = Relay::pump(relay.master(), stdout.as_fd())?;
            }
        }
        if ready(0) {
            if let Some(relay) = &relay {
                // What the program wrote just before exiting is still in the pty.
                Relay::pump(relay.master(), stdout.as_fd())?;
            }
            return exit_code(pid);
        }
    }
}

fn exit_code(pid: i32) -> Result<i32> {
    match waitpid(Pid::from_raw(pid), None).context("waitpid")? {
        WaitStatus::Exited(_, code) => Ok(code),
        WaitStatus::Signaled(_, signal, _) => Ok(128 + signal as i32),
        other => bail!("unexpected wait status {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("term").unwrap(), 15);
        assert!(parse("NOPE").is_err());
        assert!(parse("200").is_err());
    }
}
