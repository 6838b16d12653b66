//! A container's life: create (clone the init into its namespaces and cgroup), start (release
//! it through the exec fifo), kill, delete, and run (all of them, waiting in between).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;
use oci_spec::runtime::{Linux, LinuxNamespaceType, Spec};

use crate::cgroups::{self, CgroupManager};
use crate::hooks::{self, Kind};
use crate::init::{
    self, InitArgs, MSG_ERROR, MSG_GO, MSG_HOOKS, MSG_HOOKS_DONE, MSG_IN_CGROUP, MSG_PID, MSG_READY,
};
use crate::namespaces::{self, Namespaces};
use crate::state::{self, State, Status, EXEC_FIFO};
use crate::{console, process, spec, sys};

/// How long to wait for killed processes to die before giving up (the kernel normally takes
/// microseconds; only a process stuck in uninterruptible sleep takes longer).
const KILL_TIMEOUT_MS: i32 = 10_000;

#[derive(Clone, Copy)]
pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    /// With `process.terminal` and no console socket: make the pty's master come back to the
    /// caller (`Created::console`), which relays it (a foreground `run`).
    pub relay_terminal: bool,
}

/// A created container, and a pidfd of its init for a caller that waits on it (`run`).
pub struct Created {
    pub state: State,
    pub pidfd: OwnedFd,
    /// Where the pty master arrives, with `relay_terminal`.
    pub console: Option<UnixStream>,
}

/// Undoes a half-made container: kills the init, removes the cgroup and the state directory.
struct CreateGuard {
    done: bool,
    dir: PathBuf,
    cgroup: Option<Box<dyn CgroupManager>>,
    init: Option<(i32, OwnedFd)>,
    /// Once the init exists: the hooks and the state poststop sees when create fails.
    poststop: Option<(oci_spec::runtime::Hooks, Vec<u8>)>,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some((pid, pidfd)) = self.init.take() {
            let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
            // The init is our child: reap exactly it (a shim has other children).
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.remove();
        }
        let _ = fs::remove_dir_all(&self.dir);
        // The OCI lifecycle: a failed create is destroyed, then its poststop hooks run.
        if let Some((hooks, state)) = &self.poststop {
            hooks::run_warning(hooks, Kind::Poststop, state);
        }
    }
}

pub fn create(opts: &CreateOptions) -> Result<Created> {
    let bundle = fs::canonicalize(opts.bundle)
        .with_context(|| format!("bundle {} does not exist", opts.bundle.display()))?;
    let spec = spec::load(&bundle)?;
    spec::validate(&spec)?;
    // Compiled before anything exists: a bad profile leaves nothing behind.
    let seccomp = crate::seccomp::Filter::from_spec_cached(&spec, opts.root)?;
    let rootfs = fs::canonicalize(spec::rootfs(&spec, &bundle)?)?;
    let linux = spec.linux().as_ref();
    let namespaces = Namespaces::from_linux(linux)?;
    let process = spec.process().as_ref().context("process: missing")?;
    let (console, relay) = console::sockets(
        process.terminal().unwrap_or(false),
        opts.console_socket,
        opts.relay_terminal,
    )?;

    let dir = state::container_dir(opts.root, opts.id)?;
    fs::create_dir_all(opts.root)
        .with_context(|| format!("cannot create root {}", opts.root.display()))?;
    match fs::create_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container \"{}\" already exists", opts.id)
        }
        r => r.with_context(|| format!("cannot create {}", dir.display()))?,
    }
    let mut guard = CreateGuard {
        done: false,
        dir: dir.clone(),
        cgroup: None,
        init: None,
        poststop: None,
    };
    let exec_fifo = make_exec_fifo(&dir)?;
    if let Some(filter) = &seccomp {
        filter.save(&dir)?;
    }
    hooks::save(&dir, &spec)?;

    let cgroup_path = cgroup_path(&spec, opts.id);
    // In the guard before it exists on disk: a half-made cgroup is removed too.
    let cgroup = &**guard.cgroup.insert(cgroups::open(&cgroup_path)?);
    cgroup.create()?;
    if let Some(resources) = linux.and_then(|l| l.resources().as_ref()) {
        cgroup.apply(&cgroups::devices::complete(resources)?)?;
    }

    let cgroup_join = cgroup.self_join()?;
    let (mut sync, child_sync) = sync_pair()?;
    let init_args = InitArgs {
        spec: &spec,
        bundle: &bundle,
        rootfs: &rootfs,
        namespaces: &namespaces,
        cgroup_sources: &cgroup.mount_sources(),
        cgroup_join: cgroup_join.as_ref(),
        no_pivot: opts.no_pivot,
        exec_fifo: &exec_fifo,
        console: console.as_ref(),
        sync: child_sync,
        seccomp: seccomp.as_ref(),
    };
    let (pid, pidfd) = spawn_init(&namespaces, linux, init_args, &mut sync)?;
    guard.init = Some((pid, pidfd.try_clone().context("dup pidfd")?));

    let (pid_start, _) = sys::proc_start_and_state(pid).context("the container's init vanished")?;
    let state = State {
        id: opts.id.to_string(),
        pid,
        pid_start,
        bundle,
        rootfs,
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        owner: String::new(),
        cgroup_path,
    };
    if let Some(all) = spec.hooks() {
        guard.poststop = Some((all.clone(), hooks::state_json(&state, Kind::Poststop)?));
    }
    // The runtime moves the init into its cgroup only where the init cannot move itself.
    let mover = cgroup_join.is_none().then_some(cgroup);
    setup_init(&spec, &namespaces, mover, &state, &mut sync)?;
    state.save(&dir)?;
    crate::log::debug(&format!(
        "created container {} (init pid {pid}, cgroup {} {})",
        opts.id,
        cgroup.version(),
        state.cgroup_path.display()
    ));
    if let Some(pid_file) = opts.pid_file {
        state::write_atomic(pid_file, pid.to_string().as_bytes())?;
    }
    guard.done = true;
    Ok(Created {
        state,
        pidfd,
        console: relay,
    })
}

/// Clone the container's init, our child, into its new namespaces. Joining namespaces by path
/// changes the caller for good, so then an intermediate process joins them and clones the
/// init with CLONE_PARENT, reports its pid and exits.
fn spawn_init(
    namespaces: &Namespaces,
    linux: Option<&Linux>,
    args: InitArgs,
    sync: &mut UnixStream,
) -> Result<(i32, OwnedFd)> {
    // The cgroup namespace is made by the init itself, once it is inside its cgroup.
    let flags = namespaces.clone_flags & !(LinuxNamespaceType::Cgroup as u64);
    let clone_init = |flags| sys::clone3_fork(flags).context("cannot clone the container's init");
    if !namespaces.needs_intermediate() {
        return match clone_init(flags)? {
            sys::Forked::Child => init::run(args),
            sys::Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
        };
    }
    let report = args.sync.try_clone().ok();
    let enter = || namespaces.enter_for_init(linux);
    clone_through_intermediate(sync, report, flags, enter, move || init::run(args))
}

/// Fork an intermediate process that runs `enter` (joining namespaces, which changes a
/// process for good), then clones `flags | CLONE_PARENT` to run `child` — so the clone is
/// the caller's child — reports its pid on `report` and exits. Returns the clone's pid and
/// a pidfd. Shared by the init (joined namespaces) and exec (all of the container's).
pub(crate) fn clone_through_intermediate(
    sync: &mut UnixStream,
    mut report: Option<UnixStream>,
    flags: u64,
    enter: impl FnOnce() -> Result<()>,
    child: impl FnOnce() -> std::convert::Infallible,
) -> Result<(i32, OwnedFd)> {
    let fork = |flags| sys::clone3_fork(flags).context("cannot fork");
    let intermediate = match fork(0)? {
        sys::Forked::Child => {
            let result = enter().and_then(|()| match fork(flags | libc::CLONE_PARENT as u64)? {
                sys::Forked::Child => match child() {},
                sys::Forked::Parent { pid, .. } => Ok(pid),
            });
            let msg = match result {
                Ok(pid) => format!("{}{pid}", MSG_PID as char),
                Err(e) => format!("{}{e:#}", MSG_ERROR as char),
            };
            if let Some(report) = report.as_mut() {
                let _ = report.write_all(msg.as_bytes());
            }
            // SAFETY: _exit skips atexit handlers and buffers shared with the parent's copy.
            unsafe { libc::_exit(0) }
        }
        sys::Forked::Parent { pid, .. } => pid,
    };
    // Our copies of the child's ends: the intermediate's death must read as EOF.
    drop((report, child));
    let reported = read_message(sync);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(intermediate), None);
    let pid: i32 = match reported? {
        (MSG_PID, text) => text
            .parse()
            .context("bad pid from the intermediate process")?,
        (MSG_ERROR, text) => bail!("{text}"),
        _ => bail!("the intermediate process exited without cloning the process"),
    };
    // CLONE_PARENT made it our child: its pid cannot be reused before we reap it.
    Ok((pid, sys::pidfd_open(pid).context("pidfd_open")?))
}

/// The sync socket pair between the runtime (first) and a child it forks: SEQPACKET, so
/// each message arrives whole.
pub(crate) fn sync_pair() -> Result<(UnixStream, UnixStream)> {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    Ok((UnixStream::from(parent), UnixStream::from(child)))
}

/// One message from the sync socket: its kind byte and text; kind 0 at EOF.
pub(crate) fn read_message(sync: &mut UnixStream) -> Result<(u8, String)> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = match sync.read(&mut buf) {
        // The init exited without reading what we sent last (it failed first): on a seqpacket
        // socket that error is reported (once) before the message it queued for us.
        Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => sync.read(&mut buf),
        r => r,
    }
    .context("cannot read from the container's init")?;
    Ok(match buf[..n].split_first() {
        Some((&kind, text)) => (kind, String::from_utf8_lossy(text).into_owned()),
        None => (0, String::new()),
    })
}

/// The init's half of the handshake from the parent's side: id maps, go, cgroup, ready.
/// `cgroup`: the one to move the init into; `None` when it moves itself.
fn setup_init(
    spec: &Spec,
    namespaces: &Namespaces,
    cgroup: Option<&dyn CgroupManager>,
    state: &State,
    sync: &mut UnixStream,
) -> Result<()> {
    let pid = state.pid;
    if namespaces.creates(LinuxNamespaceType::User) {
        let linux = spec.linux().as_ref();
        let uids = linux
            .and_then(|l| l.uid_mappings().as_deref())
            .unwrap_or_default();
        let gids = linux
            .and_then(|l| l.gid_mappings().as_deref())
            .unwrap_or_default();
        namespaces::write_id_maps(pid, uids, gids)?;
    }
    if let Some(process) = spec.process() {
        process::set_oom_score_adj(pid, process)?;
    }
    sync.write_all(&[MSG_GO])
        .context("cannot signal the container's init")?;
    // While the init sets up its rootfs (see MSG_IN_CGROUP).
    let moved = cgroup
        .map_or(Ok(()), |cgroup| cgroup.add_process(Pid::from_raw(pid)))
        .and_then(|()| {
            sync.write_all(&[MSG_IN_CGROUP])
                .context("cannot signal the container's init")
        });
    if let Err(e) = moved {
        // The init may have failed first (and be gone): its own message says why.
        return Err(init_error_if_any(sync).unwrap_or(e));
    }
    loop {
        match read_message(sync)? {
            (MSG_READY, _) => return Ok(()),
            (MSG_HOOKS, _) => run_create_hooks(spec, state, sync)?,
            (MSG_ERROR, msg) => bail!("{msg}"),
            _ => bail!("the container's init exited during setup"),
        }
    }
}

/// The init stopped before pivot_root, its mounts made: prestart and createRuntime hooks run
/// here, in the runtime's namespaces; then the init gets the state for its own hooks.
fn run_create_hooks(spec: &Spec, state: &State, sync: &mut UnixStream) -> Result<()> {
    let json = hooks::state_json(state, Kind::CreateRuntime)?;
    if let Some(all) = spec.hooks() {
        hooks::run(all, Kind::Prestart, &json)?;
        hooks::run(all, Kind::CreateRuntime, &json)?;
    }
    let mut message = vec![MSG_HOOKS_DONE];
    message.extend_from_slice(&json);
    sync.write_all(&message)
        .context("cannot signal the container's init")
}

/// The error the init reported, if it reported one already (without waiting for one).
fn init_error_if_any(sync: &mut UnixStream) -> Option<anyhow::Error> {
    sync.set_nonblocking(true).ok()?;
    let message = read_message(sync);
    let _ = sync.set_nonblocking(false);
    match message {
        Ok((MSG_ERROR, msg)) => Some(anyhow::anyhow!("{msg}")),
        _ => None,
    }
}

/// `linux.cgroupsPath`, or `/berth/<id>` when the config has none.
fn cgroup_path(spec: &Spec, id: &str) -> PathBuf {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_else(|| Path::new("/berth").join(id))
}

/// The fifo that holds the init until `start`; writable by any uid, since the init may be
/// root of a user namespace when it opens it.
fn make_exec_fifo(dir: &Path) -> Result<OwnedFd> {
    let path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .context("cannot create the exec fifo")?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o622))?;
    nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("cannot open the exec fifo")
}

/// Release a created container: open the fifo for reading and wait for the init's byte, or
/// for the init's death, whichever comes first.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let state = State::load(root, id)?;
    match state.status(root) {
        Status::Created => {}
        status => bail!("cannot start container \"{id}\": it is {status}, not created"),
    }
    // The pidfd first: once the fifo is open, the init may exec and exit at any moment.
    let pidfd = init_pidfd(&state)?.with_context(|| format!("container \"{id}\" has exited"))?;
    let fifo_path = state.dir(root).join(EXEC_FIFO);
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot start container \"{id}\": it was already started"))?;
    wait_readable(&fifo, &pidfd)?;
    let mut byte = [0u8];
    let n = nix::unistd::read(&fifo, &mut byte).context("cannot read the exec fifo")?;
    if n != 1 {
        bail!("container \"{id}\" exited before it was started");
    }
    fs::remove_file(&fifo_path).context("cannot remove the exec fifo")?;
    wait_closed(&fifo)?;
    if let Some(all) = hooks::load(&state.dir(root))? {
        hooks::run_warning(
            &all,
            Kind::Poststart,
            &hooks::state_json(&state, Kind::Poststart)?,
        );
    }
    Ok(())
}

/// Block until the fifo has the init's byte; error if the init dies first.
fn wait_readable(fifo: &OwnedFd, pidfd: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r.context("poll")?,
        };
        let fifo_events = fds[0].revents().unwrap_or(PollFlags::empty());
        if fifo_events.contains(PollFlags::POLLIN) {
            return Ok(());
        }
        if fifo_events.contains(PollFlags::POLLHUP) {
            // The init wrote its byte to another reader and closed: a concurrent `start`.
            bail!("the container was already started");
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            bail!("the container's init exited before it was started");
        }
    }
}

/// As runc: the init holds the fifo open until it execs the program (close-on-exec), so its
/// closing means startContainer hooks ran and the program started (or the init died).
fn wait_closed(fifo: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r.context("poll")?,
        };
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
        {
            return Ok(());
        }
        // Stray bytes (nothing the init writes): drain them and wait on.
        let mut buf = [0u8; 64];
        match nix::unistd::read(fifo, &mut buf) {
            Ok(0) => return Ok(()),
            Err(nix::Error::EAGAIN) | Ok(_) => {}
            Err(e) => return Err(e).context("cannot read the exec fifo"),
        }
    }
}

/// A pidfd of the container's init if it is still the process we started.
pub(crate) fn init_pidfd(state: &State) -> Result<Option<OwnedFd>> {
    let pidfd = match sys::pidfd_open(state.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e).context("pidfd_open"),
    };
    // Checked after opening: the pidfd now pins the process, so the check cannot go stale.
    Ok(state.init_alive().then_some(pidfd))
}

/// Send `signal` to the init, or with `all` to every process in the container's cgroup.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let state = State::load(root, id)?;
    if all {
        return kill_all(&state, signal);
    }
    // containerd recognises runc's wording when a stop races the container's exit.
    let pidfd = init_pidfd(&state)?.context("container not running")?;
    sys::pidfd_send_signal(&pidfd, signal)
        .with_context(|| format!("cannot signal container \"{id}\""))?;
    thaw_to_kill(&state, signal)
}

/// A frozen process dies of SIGKILL only once thawed: a SIGKILL to a paused container thaws it.
fn thaw_to_kill(state: &State, signal: i32) -> Result<()> {
    if signal != libc::SIGKILL {
        return Ok(());
    }
    let cgroup = cgroups::open(&state.cgroup_path)?;
    if cgroup.frozen().unwrap_or(false) {
        cgroup.set_frozen(false)?;
    }
    Ok(())
}

/// Signal every process of the cgroup. It is frozen meanwhile (where there is a freezer), so
/// none can fork a child that the list misses; thawed after unless it was paused before.
fn kill_all(state: &State, signal: i32) -> Result<()> {
    let cgroup = cgroups::open(&state.cgroup_path)?;
    let paused = cgroup.frozen().unwrap_or(false);
    let froze = !paused && cgroup.set_frozen(true).is_ok();
    let signalled = cgroup_pidfds(&*cgroup).and_then(|pidfds| {
        pidfds
            .iter()
            .try_for_each(|pidfd| match sys::pidfd_send_signal(pidfd, signal) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                r => r.with_context(|| format!("cannot signal container \"{}\"", state.id)),
            })
    });
    if froze {
        cgroup.set_frozen(false)?;
    }
    signalled?;
    thaw_to_kill(state, signal)
}

/// Remove a stopped or created container; with `force` a running one is killed first, and
/// the remains of a `create` that was itself killed (a directory without state) are removed.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = state::container_dir(root, id)?;
    if force && !dir.join(state::STATE_FILE).exists() {
        // As runc: nothing to delete is success with --force (containerd's shim deletes
        // again when it cleans up).
        return match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", dir.display()))
            }
            _ => Ok(()),
        };
    }
    let state = State::load(root, id)?;
    let status = state.status(root);
    if matches!(status, Status::Running | Status::Paused) && !force {
        bail!("cannot delete container \"{id}\" that is not stopped: {status}");
    }
    let cgroup = cgroups::open(&state.cgroup_path)?;
    kill_all_and_wait(&state, &*cgroup)?;
    cgroup.remove()?;
    let poststop = hooks::load(&dir)?;
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove the state of \"{id}\""))?;
    if let Some(all) = poststop {
        hooks::run_warning(
            &all,
            Kind::Poststop,
            &hooks::state_json(&state, Kind::Poststop)?,
        );
    }
    Ok(())
}

/// Pidfds of every process in the cgroup, opened before anything is killed: once the init
/// dies the others' pids are free for reuse. A cgroup that is gone holds nothing.
fn cgroup_pidfds(cgroup: &dyn CgroupManager) -> Result<Vec<OwnedFd>> {
    let pids = match cgroup.pids() {
        Ok(pids) => pids,
        Err(e) if is_not_found(&e) => vec![],
        Err(e) => return Err(e),
    };
    Ok(pids
        .into_iter()
        .filter_map(|pid| sys::pidfd_open(pid.as_raw()).ok())
        .collect())
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// SIGKILL the init (whose death ends its pid namespace) and everything in the cgroup,
/// thaw it if it was paused (a frozen process cannot die), and wait on pidfds until each is
/// gone.
fn kill_all_and_wait(state: &State, cgroup: &dyn CgroupManager) -> Result<()> {
    let init = init_pidfd(state)?;
    let all = cgroup_pidfds(cgroup)?;
    for pidfd in init.iter().chain(&all) {
        let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
    }
    if cgroup.frozen().unwrap_or(false) {
        cgroup.set_frozen(false)?;
    }
    for pidfd in init.iter().chain(&all) {
        if !sys::pidfd_wait_exit(pidfd, KILL_TIMEOUT_MS)? {
            bail!(
                "a process of container \"{}\" did not die after SIGKILL",
                state.id
            );
        }
    }
    Ok(())
}

/// create + start + wait + delete; the exit status is the container's (128+N if killed by
/// signal N). Signals sent to the runtime are forwarded to the container.
pub fn run(opts: &CreateOptions, detach: bool) -> Result<i32> {
    let created = create(&CreateOptions {
        relay_terminal: !detach,
        ..*opts
    })?;
    let relay = match created
        .console
        .as_ref()
        .map(console::Relay::receive)
        .transpose()
    {
        Ok(relay) => relay,
        Err(e) => {
            let _ = delete(opts.root, opts.id, true);
            return Err(e);
        }
    };
    if let Err(e) = start(opts.root, opts.id) {
        let _ = delete(opts.root, opts.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = crate::signals::forward_until_exit(&created.pidfd, created.state.pid, relay);
    delete(opts.root, opts.id, true)?;
    code
}

/// Every container under `root`, with its current status.
pub fn list(root: &Path) -> Result<Vec<(State, Status)>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", root.display())),
    };
    let mut all = vec![];
    for entry in entries {
        let name = entry?.file_name();
        // A directory without a state file is a create in progress: not a container yet.
        if let Ok(state) = State::load(root, &name.to_string_lossy()) {
            let status = state.status(root);
            all.push((state, status));
        }
    }
    all.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(all)
}

pub fn state(root: &Path, id: &str) -> Result<String> {
    let state = State::load(root, id)?;
    let status = state.status(root);
    Ok(serde_json::to_string_pretty(&state.oci_state(status))?)
}
