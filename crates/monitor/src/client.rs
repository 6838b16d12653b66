//! The engine's side: start a monitor and talk to it over its socket. Synchronous; every
//! call is one short exchange.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    connect, recv, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

use crate::protocol::{ExitStatus, MonitorConfig, Reply, Request, MAX_MESSAGE};

/// How long creating a container may take before `spawn` gives up on the monitor.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The monitor binary, and a read-only view of it to start monitors from (see
/// `berth_sys::exe::read_only_view`): a monitor started through the view runs protected at
/// once instead of executing itself a second time (a few ms of every container start).
/// Without a view (no CAP_SYS_ADMIN) each monitor protects itself.
struct MonitorBinary {
    path: PathBuf,
    view: Option<(OwnedFd, PathBuf)>,
}

impl MonitorBinary {
    fn new(path: PathBuf) -> MonitorBinary {
        // Above stdio, which the spawn replaces in the child.
        let view = berth_runtime::sys::read_only_view(&path, 3).ok();
        MonitorBinary { path, view }
    }

    /// A command starting the monitor, named by its path whichever way it is executed.
    fn command(&self) -> Command {
        let Some((_, exec)) = &self.view else {
            return Command::new(&self.path);
        };
        let mut cmd = Command::new(exec);
        cmd.arg0(&self.path);
        cmd
    }
}

/// A monitor that is up: its socket accepts requests.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    pub monitor_pid: i32,
}

/// Starts monitors, keeping one launched ahead of need (the spare): a start hands its config
/// to a monitor that has already been forked, exec'd and loaded, which otherwise is a
/// millisecond or more of every container start.
pub struct Monitors {
    binary: MonitorBinary,
    spare: Mutex<Option<Launched>>,
}

impl Monitors {
    /// No spare yet: [`Monitors::refill`] launches one.
    pub fn new(path: PathBuf) -> Monitors {
        Monitors {
            binary: MonitorBinary::new(path),
            spare: Mutex::new(None),
        }
    }

    /// A monitor waiting for its config: the spare if it is still alive, else a new one.
    pub fn launch(&self) -> Result<Launched> {
        let spare = self.lock_spare().take();
        if let Some(mut spare) = spare {
            if spare.is_waiting() {
                return Ok(spare);
            }
        }
        launch(&self.binary)
    }

    /// Launch a spare if there is none. That spawns a process and waits for its exec: call
    /// it where no start waits for it.
    pub fn refill(&self) -> Result<()> {
        if self.lock_spare().is_some() {
            return Ok(());
        }
        let launched = launch(&self.binary)?;
        // Another refill may have won meanwhile: then this one is dropped (killed, reaped).
        self.lock_spare().get_or_insert(launched);
        Ok(())
    }

    /// A monitor for `config` (whose files go in `dir`), ready.
    pub fn spawn(&self, dir: &Path, config: &MonitorConfig) -> Result<Spawned> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.launch()?.configure(config)
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Option<Launched>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Start the monitor in `/` with its config pipe on stdin, its ready pipe on stdout and
/// stderr on /dev/null; it makes its own session and waits for its config. Started before
/// the config is made, it execs and loads meanwhile (on another CPU, or before the start is
/// asked for at all).
fn launch(monitor: &MonitorBinary) -> Result<Launched> {
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (ready, ready_theirs) = nix::unistd::pipe2(cloexec).context("cannot make a pipe")?;
    let (config_theirs, config) = nix::unistd::pipe2(cloexec).context("cannot make a pipe")?;
    // Nothing to run between fork and exec, so the standard library spawns with
    // posix_spawn (vfork): no copy of berthd's page tables, no copy-on-write faults after.
    let child = monitor
        .command()
        .current_dir("/")
        .stdin(Stdio::from(config_theirs))
        .stdout(Stdio::from(ready_theirs))
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", monitor.path.display()))?;
    Ok(Launched {
        child: Some(child),
        config: Some(std::fs::File::from(config)),
        ready: Some(ready),
    })
}

/// A monitor waiting for its config. Dropped unconfigured, it is killed and reaped.
pub struct Launched {
    child: Option<std::process::Child>,
    config: Option<std::fs::File>,
    ready: Option<OwnedFd>,
}

impl Launched {
    /// Whether the monitor is still there, waiting (a spare may have been killed).
    fn is_waiting(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Give the monitor its config; return once it reports ready. On failure the monitor's
    /// message is the error and the monitor has been reaped. A monitor that started is the
    /// caller's child: the caller reaps it when it exits (it watches it with a pidfd).
    pub fn configure(mut self, config: &MonitorConfig) -> Result<Spawned> {
        let json = serde_json::to_vec(config).context("cannot encode the monitor config")?;
        // Whether it arrived whole, the monitor's reply says (its end reads to EOF, which
        // comes as this end is dropped).
        if let Some(mut pipe) = self.config.take() {
            let _ = pipe.write_all(&json);
        }
        let (Some(mut child), Some(ready)) = (self.child.take(), self.ready.take()) else {
            bail!("the monitor is gone");
        };
        let line = match read_ready_line(ready) {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // A container it made meanwhile is the caller's to delete
                // (`container::delete` with force), as after any failed start.
                let _ = child.kill();
                let _ = child.wait();
                bail!("the monitor did not report ready within {READY_TIMEOUT:?}");
            }
            line => line,
        };
        let reply = line
            .as_deref()
            .ok()
            .and_then(|l| serde_json::from_str::<Reply>(l).ok());
        match reply {
            Some(Reply { ok: Some(true), .. }) => Ok(Spawned {
                monitor_pid: child.id() as i32,
            }),
            other => {
                let status = child.wait();
                match other.and_then(|r| r.error) {
                    Some(e) => bail!("{e}"),
                    None => bail!(
                        "the monitor exited without reporting ready ({})",
                        status.map(|s| s.to_string()).unwrap_or_default()
                    ),
                }
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One line from the ready pipe, within READY_TIMEOUT. Not "until EOF": the container's
/// init, forked by the monitor, holds a copy of the pipe until it execs.
fn read_ready_line(fd: OwnedFd) -> std::io::Result<String> {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    let mut file = std::fs::File::from(fd);
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < MAX_MESSAGE {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) } {
            0 => return Err(std::io::ErrorKind::TimedOut.into()),
            n if n < 0 => {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            _ => {}
        }
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Start the container or exec process; its pid.
pub fn start(socket: &Path) -> Result<i32> {
    let reply = request(socket, &Request::Start, None)?;
    reply.pid.context("the monitor's start reply has no pid")
}

/// Attach to the process's stdio: the returned stream carries its output (raw with a tty,
/// multiplexed without) and takes its input.
pub fn attach(socket: &Path, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair().context("socketpair")?;
    attach_stream(socket, theirs, stdin, stdout, stderr)?;
    Ok(ours)
}

/// `attach` with the monitor's end made by the caller (an attach that waited for the
/// container to start); the stream is closed here once the monitor has its copy.
pub fn attach_stream(
    socket: &Path,
    stream: UnixStream,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<()> {
    let req = Request::Attach {
        stdin,
        stdout,
        stderr,
    };
    request(socket, &req, Some(stream.as_raw_fd())).map(drop)
}

/// Set the terminal's size (with a tty).
pub fn resize(socket: &Path, height: u16, width: u16) -> Result<()> {
    request(socket, &Request::Resize { height, width }, None).map(drop)
}

/// The exit file, once the monitor has written it.
pub fn read_exit(exit_file: &Path) -> Result<Option<ExitStatus>> {
    match std::fs::read(exit_file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("corrupt exit file {}", exit_file.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", exit_file.display())),
    }
}

/// One request (with an fd in SCM_RIGHTS) and its reply.
fn request(socket: &Path, req: &Request, fd: Option<i32>) -> Result<Reply> {
    let conn = connect_seqpacket(socket)?;
    let body = serde_json::to_vec(req)?;
    let fds: Vec<i32> = fd.into_iter().collect();
    let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&body)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .context("cannot send to the monitor")?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        match recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::Error::EINTR) => continue,
            r => break r.context("cannot read the monitor's reply")?,
        }
    };
    if n == 0 {
        bail!("the monitor closed the connection without a reply");
    }
    let reply: Reply =
        serde_json::from_slice(&buf[..n]).context("malformed reply from the monitor")?;
    reply.into_result()
}

fn connect_seqpacket(path: &Path) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let (addr, _dir) = socket_addr(path)?;
    connect(fd.as_raw_fd(), &addr)
        .with_context(|| format!("cannot connect to the monitor at {}", path.display()))?;
    Ok(fd)
}

/// The address of the unix socket at `path` (for the monitor's bind too). A path longer
/// than sun_path holds (an exec's socket is two 64-digit ids deep) is reached through its
/// directory, opened here: `/proc/self/fd/<dir>/<name>`; keep the fd until bind/connect.
pub fn socket_addr(path: &Path) -> Result<(UnixAddr, Option<OwnedFd>)> {
    const SUN_PATH_MAX: usize = 107;
    if path.as_os_str().len() <= SUN_PATH_MAX {
        let addr =
            UnixAddr::new(path).with_context(|| format!("socket path {}", path.display()))?;
        return Ok((addr, None));
    }
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => bail!("invalid socket path {}", path.display()),
    };
    let dir_fd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let short = Path::new("/proc/self/fd")
        .join(dir_fd.as_raw_fd().to_string())
        .join(name);
    let addr = UnixAddr::new(&short).with_context(|| format!("socket path {}", path.display()))?;
    Ok((addr, Some(dir_fd)))
}
