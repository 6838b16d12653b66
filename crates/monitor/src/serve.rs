//! The monitor's loop: one poll(2) over the process's pidfd, its stdio, the control socket
//! and the attached clients, until the process has exited and its output is drained.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_monitor::protocol::{ExitStatus, MonitorConfig, Reply, Request, MAX_MESSAGE};
use berth_runtime::container::{self, CreateOptions};
use berth_runtime::exec::{self, ExecOptions};
use berth_runtime::state::{State, Status};
use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;

use crate::output::{Attach, JsonLog, MAX_PENDING};
use crate::stdio::{self, Io};

/// After the process exits, how long its output may take to reach EOF (processes that
/// outlive it may hold the pipes), and attached clients to take what is queued for them.
const DRAIN: Duration = Duration::from_secs(2);

/// How long after the start the monitor gives back the memory it set up with (see
/// `memory::release_file_pages`): not at once, because that is most of a millisecond of
/// work which a short-lived process's exit would wait for, and a monitor whose process has
/// exited by then is about to go anyway.
const RELEASE_AFTER: Duration = Duration::from_millis(50);

/// The process being watched: our child.
struct Proc {
    pid: i32,
    pidfd: OwnedFd,
}

struct Exited {
    status: ExitStatus,
    deadline: Instant,
}

pub struct Monitor {
    cfg: MonitorConfig,
    listener: OwnedFd,
    /// Connected control clients; None once closed (removed after the round).
    controls: Vec<Option<OwnedFd>>,
    attaches: Vec<Attach>,
    io: Io,
    stdin_pending: Vec<u8>,
    /// Close the process's stdin once what is pending is written (stdin_once).
    stdin_close: bool,
    log: Option<JsonLog>,
    proc: Option<Proc>,
    started: bool,
    /// When to release the set-up's memory; None once done (or before the start).
    release_at: Option<Instant>,
    /// Exec mode before start: the container's init, whose death ends the wait.
    container_init: Option<OwnedFd>,
    cgroup_path: Option<std::path::PathBuf>,
    exited: Option<Exited>,
}

/// What each pollfd stands for.
#[derive(Clone, Copy)]
enum Slot {
    Listener,
    Proc,
    ContainerInit,
    Output(usize),
    Stdin,
    Control(usize),
    Attach(usize),
}

impl Monitor {
    /// Everything before `ready`: the container created (container mode) or found running
    /// (exec mode), the log open, the socket listening.
    pub fn setup(cfg: MonitorConfig) -> Result<Monitor> {
        let dir = cfg
            .socket
            .parent()
            .context("the socket path has no directory")?;
        std::env::set_current_dir(dir)
            .with_context(|| format!("cannot change into {}", dir.display()))?;
        let log = cfg.log_path.as_deref().map(JsonLog::open).transpose()?;
        let mut monitor = Monitor {
            listener: listen(&cfg.socket)?,
            controls: vec![],
            attaches: vec![],
            io: Io::default(),
            stdin_pending: vec![],
            stdin_close: false,
            log,
            proc: None,
            started: false,
            release_at: None,
            container_init: None,
            cgroup_path: None,
            exited: None,
            cfg,
        };
        let ready = match monitor.cfg.exec {
            Some(_) => running_init(&monitor.cfg).map(|init| monitor.container_init = Some(init)),
            None => monitor.create(),
        };
        if let Err(e) = ready {
            let _ = std::fs::remove_file(&monitor.cfg.socket);
            return Err(e);
        }
        Ok(monitor)
    }

    fn create(&mut self) -> Result<()> {
        let cfg = &self.cfg;
        let (created, io) = stdio::with_pipes(cfg.tty, cfg.open_stdin, || {
            container::create(&CreateOptions {
                root: &cfg.runtime_root,
                id: &cfg.id,
                bundle: &cfg.bundle,
                pid_file: None,
                console_socket: None,
                no_pivot: false,
                relay_terminal: cfg.tty,
            })
        })?;
        let io = match (&created.console, cfg.tty) {
            (Some(console), _) => stdio::from_console(console, cfg.open_stdin),
            (None, true) => Err(anyhow::anyhow!(
                "a tty was asked for but the bundle's process.terminal is false"
            )),
            (None, false) => Ok(io),
        };
        let io = match io.and_then(|io| io.set_nonblocking().map(|()| io)) {
            Ok(io) => io,
            Err(e) => {
                let _ = container::delete(&cfg.runtime_root, &cfg.id, true);
                return Err(e);
            }
        };
        self.io = io;
        self.cgroup_path = Some(created.state.cgroup_path.clone());
        self.proc = Some(Proc {
            pid: created.state.pid,
            pidfd: created.pidfd,
        });
        Ok(())
    }

    /// Serve until the process has exited and everything is written; then record the exit.
    pub fn run(mut self) -> Result<()> {
        loop {
            if let Some(exited) = &self.exited {
                if self.io.outputs.is_empty() || Instant::now() >= exited.deadline {
                    break;
                }
            }
            self.release_when_due();
            let (mut fds, slots) = self.poll_set();
            let wake_at = match &self.exited {
                Some(e) => Some(e.deadline),
                None => self.release_at,
            };
            let timeout = wake_at.map_or(-1, |at| {
                let left = at.saturating_duration_since(Instant::now());
                // Rounded up: poll must not wake before `at` and find nothing due.
                left.as_micros().div_ceil(1000) as i32
            });
            // SAFETY: fds is a valid array of pollfd of the length passed.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err).context("poll");
            }
            for (pfd, slot) in fds.iter().zip(slots) {
                if pfd.revents != 0 && self.handle(slot, pfd.revents) {
                    let _ = std::fs::remove_file(&self.cfg.socket);
                    return Ok(());
                }
            }
            self.attaches.retain(|a| !a.dead);
            self.controls.retain(Option::is_some);
            self.io.outputs.retain(|o| !o.eof);
        }
        self.finish()
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Slot>) {
        let mut fds = vec![];
        let mut slots = vec![];
        let mut add = |fd: RawFd, events: i16, slot: Slot| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            slots.push(slot);
        };
        add(self.listener.as_raw_fd(), libc::POLLIN, Slot::Listener);
        if let (Some(p), None) = (&self.proc, &self.exited) {
            add(p.pidfd.as_raw_fd(), libc::POLLIN, Slot::Proc);
        }
        if let Some(init) = &self.container_init {
            add(init.as_raw_fd(), libc::POLLIN, Slot::ContainerInit);
        }
        // A client that does not keep up holds back the output (and so the process).
        let backlog = self.attaches.iter().any(|a| a.pending.len() >= MAX_PENDING);
        for (i, o) in self.io.outputs.iter().enumerate().filter(|(_, o)| !o.eof) {
            let events = if backlog { 0 } else { libc::POLLIN };
            add(o.fd.as_raw_fd(), events, Slot::Output(i));
        }
        if let (Some(stdin), false) = (&self.io.stdin, self.stdin_pending.is_empty()) {
            add(stdin.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
        }
        for (i, c) in self.controls.iter().enumerate() {
            let fd = c.as_ref().map_or(-1, |c| c.as_raw_fd());
            add(fd, libc::POLLIN, Slot::Control(i));
        }
        for (i, a) in self.attaches.iter().enumerate() {
            let mut events = 0;
            if a.reading && self.stdin_pending.is_empty() {
                events |= libc::POLLIN;
            }
            if !a.pending.is_empty() {
                events |= libc::POLLOUT;
            }
            add(a.sock.as_raw_fd(), events, Slot::Attach(i));
        }
        (fds, slots)
    }

    /// One ready fd. True when the monitor is done without an exit to record.
    fn handle(&mut self, slot: Slot, revents: i16) -> bool {
        match slot {
            Slot::Listener => self.accept(),
            Slot::Proc => self.reap(),
            Slot::ContainerInit => return true,
            Slot::Output(i) => self.read_output(i),
            Slot::Stdin => self.write_stdin(),
            Slot::Control(i) => self.serve_control(i),
            Slot::Attach(i) => self.attach_ready(i, revents),
        }
        false
    }

    fn accept(&mut self) {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        if let Ok(fd) = sock::accept4(self.listener.as_raw_fd(), flags) {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            self.controls
                .push(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }

    fn read_output(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        let output = &self.io.outputs[i];
        let stream = output.stream;
        match nix::unistd::read(&output.fd, &mut buf) {
            // EOF (EIO: a pty whose every slave is closed).
            Ok(0) | Err(nix::Error::EIO) => self.io.outputs[i].eof = true,
            Ok(n) => {
                let data = &buf[..n];
                if let Some(log) = &mut self.log {
                    log.write(stream, data);
                }
                for a in &mut self.attaches {
                    a.send(self.cfg.tty, stream, data);
                }
            }
            Err(_) => {}
        }
    }

    fn write_stdin(&mut self) {
        let Some(stdin) = &self.io.stdin else {
            self.stdin_pending.clear();
            return;
        };
        while !self.stdin_pending.is_empty() {
            match nix::unistd::write(stdin, &self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => return,
                Err(_) => {
                    // The process closed its stdin (EPIPE): input has nowhere to go.
                    self.stdin_pending.clear();
                    self.io.stdin = None;
                    return;
                }
            }
        }
        if self.stdin_close {
            self.io.stdin = None;
        }
    }

    fn attach_ready(&mut self, i: usize, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            self.attaches[i].flush();
        }
        if revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 16 * 1024];
            let a = &mut self.attaches[i];
            match nix::unistd::read(&a.sock, &mut buf) {
                Ok(0) => {
                    a.reading = false;
                    self.stdin_ended(i);
                }
                Ok(n) => {
                    if a.stdin && self.io.stdin.is_some() {
                        self.stdin_pending.extend_from_slice(&buf[..n]);
                        self.write_stdin();
                    }
                }
                Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                Err(_) => self.drop_attach(i),
            }
        } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            self.drop_attach(i);
        }
    }

    fn drop_attach(&mut self, i: usize) {
        let a = &mut self.attaches[i];
        a.dead = true;
        if a.reading {
            a.reading = false;
            self.stdin_ended(i);
        }
    }

    /// An attached client's input ended: with stdin_once, so does the process's stdin.
    fn stdin_ended(&mut self, i: usize) {
        if self.attaches[i].stdin && self.cfg.stdin_once && !self.cfg.tty {
            self.stdin_close = true;
            if self.stdin_pending.is_empty() {
                self.io.stdin = None;
            }
        }
    }

    fn serve_control(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        let Some(fd) = self.controls[i].as_ref().map(|c| c.as_raw_fd()) else {
            return;
        };
        let (n, passed) = match recv_with_fd(fd, &mut buf) {
            Ok(r) => r,
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => return,
            Err(_) => (0, None),
        };
        if n == 0 {
            self.controls[i] = None;
            return;
        }
        let request = serde_json::from_slice::<Request>(&buf[..n]);
        let is_start = matches!(request, Ok(Request::Start));
        let reply = match request {
            Ok(req) => self
                .request(req, passed)
                .unwrap_or_else(|e| Reply::error(format!("{e:#}"))),
            Err(e) => Reply::error(format!("bad request: {e}")),
        };
        if let Ok(json) = serde_json::to_vec(&reply) {
            let _ = sock::send(
                fd,
                &json[..json.len().min(MAX_MESSAGE)],
                MsgFlags::MSG_NOSIGNAL,
            );
        }
        if is_start && reply.ok == Some(true) {
            // From here on only the loop runs, for as long as the process does.
            self.release_at = Some(Instant::now() + RELEASE_AFTER);
        }
    }

    fn release_when_due(&mut self) {
        if self.exited.is_some() {
            self.release_at = None;
        }
        if self.release_at.is_some_and(|at| Instant::now() >= at) {
            self.release_at = None;
            crate::memory::release_file_pages();
        }
    }

    fn request(&mut self, req: Request, fd: Option<OwnedFd>) -> Result<Reply> {
        match req {
            Request::Start => {
                let pid = self.start()?;
                Ok(Reply {
                    pid: Some(pid),
                    ..Reply::ok()
                })
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let fd = fd.context("attach needs the client's socket in SCM_RIGHTS")?;
                if self.exited.is_some() {
                    bail!("the process has exited");
                }
                stdio::set_nonblocking(&fd)?;
                self.attaches.push(Attach::new(fd, stdin, stdout, stderr));
                Ok(Reply::ok())
            }
            Request::Resize { height, width } => {
                if let Some(master) = &self.io.master {
                    resize(master, height, width)?;
                }
                Ok(Reply::ok())
            }
        }
    }

    fn start(&mut self) -> Result<i32> {
        if self.exited.is_some() {
            bail!("the process has already exited");
        }
        if self.started {
            bail!("already started");
        }
        let cfg = &self.cfg;
        let pid = match &cfg.exec {
            None => {
                container::start(&cfg.runtime_root, &cfg.id)?;
                self.proc.as_ref().map(|p| p.pid).unwrap_or_default()
            }
            Some(exec) => {
                let mut process = exec.process.clone();
                process.set_terminal(Some(cfg.tty));
                let (execd, io) = stdio::with_pipes(cfg.tty, cfg.open_stdin, || {
                    exec::exec(&ExecOptions {
                        root: &cfg.runtime_root,
                        id: &cfg.id,
                        process: &process,
                        console_socket: None,
                        relay_terminal: cfg.tty,
                    })
                })?;
                let io = match &execd.console {
                    Some(console) => stdio::from_console(console, cfg.open_stdin)?,
                    None => io,
                };
                io.set_nonblocking()?;
                self.io = io;
                self.container_init = None;
                self.proc = Some(Proc {
                    pid: execd.pid,
                    pidfd: execd.pidfd,
                });
                execd.pid
            }
        };
        self.started = true;
        Ok(pid)
    }

    /// The process exited: reap it, note how, and (container mode) delete the container,
    /// which kills what is left in it so the output reaches EOF.
    fn reap(&mut self) {
        let Some(proc) = &self.proc else {
            return;
        };
        let code = match nix::sys::wait::waitpid(Pid::from_raw(proc.pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            // Not yet a zombie (a stop): poll again.
            Ok(_) => return,
            // Reaped by someone else (cannot happen with SIGCHLD at its default): the status
            // is lost, but the exit is still recorded, as a failure.
            Err(_) => 255,
        };
        let finished_at = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let mut oom_killed = false;
        if self.cfg.exec.is_none() {
            oom_killed = self.cgroup_path.as_deref().is_some_and(oom_killed_in);
            let _ = container::delete(&self.cfg.runtime_root, &self.cfg.id, true);
        }
        self.exited = Some(Exited {
            status: ExitStatus {
                exit_code: code,
                finished_at,
                oom_killed,
            },
            deadline: Instant::now() + DRAIN,
        });
    }

    /// Flush the log and the clients, write the exit file, hang up on the clients.
    fn finish(mut self) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.flush_partial();
        }
        self.flush_attaches(Instant::now() + DRAIN);
        let _ = std::fs::remove_file(&self.cfg.socket);
        if let Some(exited) = &self.exited {
            let json = serde_json::to_vec(&exited.status)?;
            berth_runtime::state::write_replace(&self.cfg.exit_file, &json)?;
        }
        // Dropping closes them; shutdown first so a client holding a dup sees EOF too.
        for a in &self.attaches {
            let _ = sock::shutdown(a.sock.as_raw_fd(), sock::Shutdown::Both);
        }
        Ok(())
    }

    /// Give every attached client what is queued for it, until `deadline`. The clients
    /// stay connected: they see EOF only after the exit file exists.
    fn flush_attaches(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            let mut fds: Vec<libc::pollfd> = self
                .attaches
                .iter()
                .filter(|a| !a.dead && !a.pending.is_empty())
                .map(|a| libc::pollfd {
                    fd: a.sock.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                })
                .collect();
            if fds.is_empty() {
                return;
            }
            // SAFETY: fds is a valid array of pollfd of the length passed.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
            for a in &mut self.attaches {
                a.flush();
            }
        }
    }
}

/// Exec mode: the container must be running; a pidfd of its init.
fn running_init(cfg: &MonitorConfig) -> Result<OwnedFd> {
    let state = State::load(&cfg.runtime_root, &cfg.id)?;
    let not_running = || anyhow::anyhow!("container {} is not running", cfg.id);
    if state.status(&cfg.runtime_root) != Status::Running {
        return Err(not_running());
    }
    let pidfd = berth_runtime::sys::pidfd_open(state.pid).map_err(|_| not_running())?;
    // Checked after opening: the pidfd now pins the process, so a reused pid cannot pass.
    if !state.init_alive() {
        return Err(not_running());
    }
    Ok(pidfd)
}

fn listen(path: &Path) -> Result<OwnedFd> {
    let fd = sock::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("socket")?;
    // A socket file left by an earlier monitor of the same directory.
    let _ = std::fs::remove_file(path);
    let (addr, _dir) = berth_monitor::client::socket_addr(path)?;
    sock::bind(fd.as_raw_fd(), &addr).with_context(|| format!("cannot bind {}", path.display()))?;
    sock::listen(&fd, sock::Backlog::new(16).context("backlog")?).context("listen")?;
    Ok(fd)
}

/// One message and the fd passed with it, if any (extra fds are closed).
fn recv_with_fd(sock: RawFd, buf: &mut [u8]) -> nix::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = sock::recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let sock::ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: SCM_RIGHTS just installed this fd; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    Ok((msg.bytes, fd))
}

fn resize(master: &OwnedFd, height: u16, width: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot resize the terminal");
    }
    Ok(())
}

/// Whether the kernel's OOM killer killed a process of the cgroup: `oom_kill` in v1's
/// memory.oom_control or v2's memory.events.
fn oom_killed_in(cgroup_path: &Path) -> bool {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    let root = Path::new("/sys/fs/cgroup");
    [
        root.join("memory").join(rel).join("memory.oom_control"),
        root.join(rel).join("memory.events"),
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .any(|text| {
        text.lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    })
}
