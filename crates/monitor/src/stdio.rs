//! The process's stdio as the monitor holds it: pipes (our ends nonblocking) or a pty master.
//!
//! The container's init and an exec'd process inherit the monitor's fds 0/1/2, so the pipes'
//! far ends are put there for the create/exec call and replaced by /dev/null right after:
//! the monitor must not keep a write end of an output pipe, or it would never see EOF.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use berth_monitor::protocol::{STREAM_STDERR, STREAM_STDOUT};
use berth_runtime::console::Relay;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;

/// One output of the process: stdout or stderr (a pty has only "stdout").
pub struct Output {
    pub fd: OwnedFd,
    pub stream: u8,
    /// Reached EOF: removed after the round.
    pub eof: bool,
}

/// Our ends of the process's stdio.
#[derive(Default)]
pub struct Io {
    pub outputs: Vec<Output>,
    /// Where the process's input goes (a pipe, or the pty master); None without open stdin.
    pub stdin: Option<OwnedFd>,
    /// The pty master, for resize.
    pub master: Option<OwnedFd>,
}

/// Run `spawn` with pipes on fds 0/1/2 (stdin /dev/null unless `open_stdin`); returns what
/// it returned and our ends. With `tty` the process gets a pty instead, and 0/1/2 stay
/// /dev/null.
pub fn with_pipes<T>(
    tty: bool,
    open_stdin: bool,
    spawn: impl FnOnce() -> Result<T>,
) -> Result<(T, Io)> {
    if tty {
        return Ok((spawn()?, Io::default()));
    }
    let devnull = dev_null()?;
    let mut io = Io::default();
    let stdin_src = if open_stdin {
        let (r, w) = pipe()?;
        io.stdin = Some(w);
        r
    } else {
        devnull.try_clone()?
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    io.outputs.push(Output {
        fd: out_r,
        stream: STREAM_STDOUT,
        eof: false,
    });
    io.outputs.push(Output {
        fd: err_r,
        stream: STREAM_STDERR,
        eof: false,
    });
    for (src, target) in [(&stdin_src, 0), (&out_w, 1), (&err_w, 2)] {
        dup2(src.as_raw_fd(), target)?;
    }
    drop((stdin_src, out_w, err_w));
    let result = spawn();
    // Whatever happened, our copies of the process's ends go.
    for target in 0..=2 {
        dup2(devnull.as_raw_fd(), target)?;
    }
    Ok((result?, io))
}

/// Our ends of a pty whose master arrives on `socket` (create/exec with relay_terminal).
pub fn from_console(socket: &std::os::unix::net::UnixStream, open_stdin: bool) -> Result<Io> {
    // Our stdin is /dev/null, not a terminal: Relay changes no terminal mode here.
    let relay = Relay::receive(socket)?;
    let master = relay.master().try_clone_to_owned()?;
    Ok(Io {
        outputs: vec![Output {
            fd: master.try_clone()?,
            stream: STREAM_STDOUT,
            eof: false,
        }],
        stdin: if open_stdin {
            Some(master.try_clone()?)
        } else {
            None
        },
        master: Some(master),
    })
}

/// /dev/null: a stdin without input, and the monitor's own stdio between create/exec calls.
fn dev_null() -> Result<OwnedFd> {
    open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).context("open /dev/null")
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")
}

/// Our end of every pipe and the master never block the loop.
pub fn set_nonblocking(fd: impl AsFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn dup2(src: i32, target: i32) -> Result<()> {
    // SAFETY: dup2 onto a stdio number this process owns; the old fd there is closed by it.
    if unsafe { libc::dup2(src, target) } < 0 {
        return Err(std::io::Error::last_os_error()).context("dup2");
    }
    Ok(())
}

impl Io {
    pub fn set_nonblocking(&self) -> Result<()> {
        for o in &self.outputs {
            set_nonblocking(&o.fd)?;
        }
        if let Some(s) = &self.stdin {
            set_nonblocking(s)?;
        }
        Ok(())
    }
}
