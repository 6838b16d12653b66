//! `process.terminal`: a pty made inside the container's own devpts, its master sent to the
//! caller's `--console-socket` (one SCM_RIGHTS message, one fd), its slave the process's stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

/// Connect to the console socket. Done by the runtime before clone, while the path is still
/// reachable; the init inherits the connection.
pub fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to console socket {}", socket.display()))
}

/// In the init, after pivot_root: open a pty, send its master, make the slave our terminal.
pub fn setup(socket: &UnixStream, uid: u32, gid: u32) -> Result<()> {
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("cannot open /dev/ptmx")?;
    // SAFETY: unlockpt on an fd we own.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unlockpt");
    }
    let name = pts_name(&master)?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {name}"))?;
    // The process's user must own its terminal, as login does.
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into()))
        .context("cannot chown the pty")?;
    send_fd(socket, &master, &name)?;
    drop(master);
    make_controlling_terminal(&slave)
}

fn pts_name(master: &OwnedFd) -> Result<String> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCGPTN");
    }
    Ok(format!("/dev/pts/{n}"))
}

/// Exactly one message with exactly one fd: what go-runc's console receiver accepts.
fn send_fd(socket: &UnixStream, fd: &OwnedFd, name: &str) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .context("cannot send the pty master to the console socket")?;
    Ok(())
}

fn make_controlling_terminal(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSCTTY");
    }
    for target in 0..=2 {
        // SAFETY: dup2 onto the stdio numbers, which this process owns.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot make the pty stdio");
        }
    }
    Ok(())
}
