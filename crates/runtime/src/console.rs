//! `process.terminal`: a pty made inside the container's own devpts, its master sent to the
//! caller's `--console-socket` (one SCM_RIGHTS message, one fd), its slave the process's stdio.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Connect to the console socket. Done by the runtime before clone, while the path is still
/// reachable; the init inherits the connection.
/// Where a process's pty master goes: `(the process's end, the caller's end)`. With a
/// console socket the master is sent there; with `relay` it comes back to the caller over
/// a socketpair (a foreground `run`, the monitor); without a terminal there is none.
pub fn sockets(
    terminal: bool,
    console_socket: Option<&Path>,
    relay: bool,
) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    match (terminal, console_socket) {
        (true, Some(socket)) => Ok((Some(connect(socket)?), None)),
        (true, None) if relay => {
            let (ours, theirs) = UnixStream::pair().context("socketpair")?;
            Ok((Some(theirs), Some(ours)))
        }
        (true, None) => bail!("process.terminal is true but no --console-socket was given"),
        (false, _) => Ok((None, None)),
    }
}

pub fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to console socket {}", socket.display()))
}

/// In the init, after pivot_root: open a pty, send its master, make the slave our terminal.
pub fn setup(socket: &UnixStream, uid: u32, gid: u32) -> Result<()> {
    setup_pty(socket, uid, gid, true)
}

/// `setup`; `bind_console` false for a process exec'd into a running container, whose
/// /dev/console is the init's terminal and stays so.
pub(crate) fn setup_pty(socket: &UnixStream, uid: u32, gid: u32, bind_console: bool) -> Result<()> {
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
    let slave = open_peer(&master)?;
    // The process's user must own its terminal, as login does.
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into()))
        .context("cannot chown the pty")?;
    if bind_console {
        bind_dev_console(&slave)?;
    }
    send_fd(socket, &master, &name)?;
    drop(master);
    make_controlling_terminal(&slave)
}

/// The slave of `master` straight from the kernel (TIOCGPTPEER), not by a path in a /dev
/// the image may have prepared.
fn open_peer(master: &OwnedFd) -> Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open the pty slave");
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The OCI spec wants /dev/console to be the container's terminal.
fn bind_dev_console(slave: &OwnedFd) -> Result<()> {
    let console = open(
        "/dev/console",
        OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o600),
    )
    .context("cannot create /dev/console")?;
    nix::mount::mount(
        Some(crate::sys::fd_path(slave).as_str()),
        crate::sys::fd_path(&console).as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("cannot bind the pty to /dev/console")
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
/// The pty master sent over a console socket (one SCM_RIGHTS fd, the file name as payload),
/// close-on-exec; blocks until it comes.
pub fn receive_master(socket: &UnixStream) -> Result<OwnedFd> {
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("cannot receive the pty master")?;
    let fd = msg
        .cmsgs()
        .context("cannot read the pty master message")?
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .context("no pty master came over the console socket")?;
    // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

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

/// A foreground `run` with a terminal: the pty master relayed to our own stdio, our terminal
/// (if stdin is one) in raw mode until the relay is dropped.
pub struct Relay {
    master: OwnedFd,
    saved: Option<Termios>,
}

impl Relay {
    /// Take the pty master the init sent over `socket`.
    pub fn receive(socket: &UnixStream) -> Result<Relay> {
        let master = receive_master(socket)?;
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let stdin = std::io::stdin();
        let saved = match tcgetattr(&stdin) {
            Ok(t) => {
                let mut raw = t.clone();
                cfmakeraw(&mut raw);
                tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("cannot make the terminal raw")?;
                Some(t)
            }
            Err(_) => None, // stdin is not a terminal: relay bytes as they come
        };
        let relay = Relay { master, saved };
        relay.resize();
        Ok(relay)
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Give the container's terminal our terminal's size (the kernel then sends it SIGWINCH).
    pub fn resize(&self) {
        let mut size = std::mem::MaybeUninit::<libc::winsize>::zeroed();
        // SAFETY: TIOCGWINSZ fills one winsize; TIOCSWINSZ reads it back only if it was filled.
        unsafe {
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, size.as_mut_ptr()) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, size.as_ptr());
            }
        }
    }

    /// Copy what `from` has to `to`. False once `from` is finished (EOF, or EIO from a master
    /// whose slave is closed everywhere).
    pub fn pump(from: BorrowedFd, to: BorrowedFd) -> Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(from, &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => return Ok(false),
                Ok(n) => write_all(to, &buf[..n])?,
                Err(nix::Error::EAGAIN) => return Ok(true),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e).context("cannot relay the terminal"),
            }
            // A blocking `from` (our stdin) gets one read per readiness.
            if from.as_raw_fd() == libc::STDIN_FILENO {
                return Ok(true);
            }
        }
    }
}

fn write_all(to: BorrowedFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(to, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(to, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
            }
            Err(e) => return Err(e).context("cannot relay the terminal"),
        }
    }
    Ok(())
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
