//! Terminal handling: tty checks, window size, raw mode while attached, and signals for resize and proxying.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::BorrowedFd;

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal size of `fd` as (rows, columns), if it is a terminal.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; the pointer is valid for the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts stdin into raw mode; the previous settings come back on drop.
pub struct RawMode {
    saved: Termios,
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl RawMode {
    pub fn enter() -> Result<RawMode> {
        let fd = stdin_fd();
        let saved = termios::tcgetattr(fd).context("reading the terminal settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
            .context("setting the terminal to raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Signals the CLI proxies to a container (docker's --sig-proxy set, minus the ones that stop the CLI itself).
pub const PROXIED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks SIGWINCH (and the proxied signals when `proxy`) in this thread and the threads it starts later, and
/// spawns a thread that calls `on_signal` for each one delivered.
pub fn handle_signals(proxy: bool, on_signal: impl Fn(Signal) + Send + 'static) -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    if proxy {
        for s in PROXIED {
            set.add(*s);
        }
    }
    set.thread_block().context("blocking signals")?;
    std::thread::spawn(move || loop {
        match set.wait() {
            Ok(sig) => on_signal(sig),
            Err(_) => return,
        }
    });
    Ok(())
}
