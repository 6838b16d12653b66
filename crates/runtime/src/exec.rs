//! Run another process inside a running container (`exec`): join the init's namespaces and
//! cgroup, apply the process (user, capabilities, rlimits, cwd, terminal) and execve.
//!
//! The caller's own namespaces never change: a forked intermediate joins them and clones the
//! process with CLONE_PARENT (the pid namespace only takes effect for children), so the
//! process is the caller's child, which waits on it with the returned pidfd.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::cgroups::{self, SelfJoin};
use crate::container::{init_pidfd, read_message};
use crate::init::{become_session_leader, reset_signals, wait_for_parent, MSG_ERROR, MSG_GO};
use crate::state::{self, State, Status};
use crate::{console, process, seccomp, sys};

/// The namespaces a process can join, by their /proc/<pid>/ns name: user first (it grants
/// the capabilities to join the others), mount last (it changes our root).
const NAMESPACES: [(&str, i32); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

#[derive(Clone, Copy)]
pub struct ExecOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub process: &'a Process,
    pub console_socket: Option<&'a Path>,
    /// With `process.terminal` and no console socket: the pty master comes back to the caller
    /// (`Execd::console`), as with `CreateOptions::relay_terminal`.
    pub relay_terminal: bool,
}

/// The running process: the caller's child, and where its pty master arrives.
pub struct Execd {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub console: Option<UnixStream>,
}

/// Start `opts.process` in the created or running container `opts.id`; returns once it has
/// exec'd (an error before that, such as a missing binary or a bad cwd, is returned here).
///
/// The caller must be single-threaded (it forks).
pub fn exec(opts: &ExecOptions) -> Result<Execd> {
    exec_preserving_fds(opts, 0)
}

/// [`exec`], passing the caller's fds 3 to 3+`preserve_fds`-1 on to the process (runc's
/// `--preserve-fds`); every other fd is closed on exec.
pub fn exec_preserving_fds(opts: &ExecOptions, preserve_fds: u32) -> Result<Execd> {
    let state = State::load(opts.root, opts.id)?;
    match state.status(opts.root) {
        Status::Created | Status::Running => {}
        Status::Paused => bail!("cannot exec in a paused container {}", opts.id),
        Status::Stopped => bail!("container {} is not running", opts.id),
    }
    let init =
        init_pidfd(&state)?.with_context(|| format!("container {} is not running", opts.id))?;
    let namespaces = open_namespaces(&state)?;
    let cgroup = cgroups::open(&state.cgroup_path)?;
    let seccomp = seccomp::Filter::load_saved(&state::container_dir(opts.root, opts.id)?)?;
    let process = opts.process;
    if process.args().as_deref().unwrap_or_default().is_empty() {
        bail!("process.args must not be empty");
    }
    let (console, relay) = console::sockets(
        process.terminal().unwrap_or(false),
        opts.console_socket,
        opts.relay_terminal,
    )?;
    let cgroup_join = cgroup.self_join()?;
    let (mut sync, child_sync) = crate::container::sync_pair()?;
    let child = Child {
        process,
        namespaces: &namespaces,
        cgroup_join: cgroup_join.as_ref(),
        console: console.as_ref(),
        sync: child_sync,
        preserve_fds,
        seccomp: seccomp.as_ref(),
    };
    let (pid, pidfd) = spawn(child, &mut sync)?;
    drop(console);
    let started = (|| -> Result<()> {
        // Checked again now that our child is inside: the init may have died meanwhile.
        if sys::pidfd_wait_exit(&init, 0)? {
            bail!("container {} is not running", opts.id);
        }
        if cgroup_join.is_none() {
            cgroup
                .add_process(Pid::from_raw(pid))
                .context("cannot join the container's cgroup")?;
        }
        process::set_oom_score_adj(pid, process)?;
        sync.write_all(&[MSG_GO])
            .context("cannot signal the exec'd process")?;
        // The socket is close-on-exec in the child: EOF means it exec'd.
        match read_message(&mut sync)? {
            (0, _) => Ok(()),
            (MSG_ERROR, msg) => bail!("{msg}"),
            (kind, _) => bail!("unexpected message {kind} from the exec'd process"),
        }
    })();
    if let Err(e) = started {
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        return Err(e);
    }
    Ok(Execd {
        pid,
        pidfd,
        console: relay,
    })
}

/// The init's namespaces that differ from ours, opened now (verified to be the init's
/// afterwards, so a reused pid cannot substitute another process's).
fn open_namespaces(state: &State) -> Result<Vec<(File, i32)>> {
    let mut out = vec![];
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{}/ns/{name}", state.pid);
        let file = match File::open(&theirs) {
            Ok(f) => f,
            // A namespace type this kernel does not have.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {theirs}")),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .with_context(|| format!("cannot stat /proc/self/ns/{name}"))?;
        let meta = file.metadata()?;
        // Joining our own user namespace is an error (EINVAL); the others would be no-ops.
        if (meta.dev(), meta.ino()) != (ours.dev(), ours.ino()) {
            out.push((file, flag));
        }
    }
    if !state.init_alive() {
        bail!("container {} is not running", state.id);
    }
    Ok(out)
}

/// What the forked children need.
struct Child<'a> {
    process: &'a Process,
    namespaces: &'a [(File, i32)],
    /// The cgroup's files with which the process moves itself in; `None`: we move it.
    cgroup_join: Option<&'a SelfJoin>,
    console: Option<&'a UnixStream>,
    sync: UnixStream,
    /// How many fds after stdio the process keeps.
    preserve_fds: u32,
    seccomp: Option<&'a seccomp::Filter>,
}

/// Fork an intermediate that joins the namespaces and clones the process (our child, by
/// CLONE_PARENT) into them; returns its pid and a pidfd.
fn spawn(child: Child, sync: &mut UnixStream) -> Result<(i32, OwnedFd)> {
    let report = child.sync.try_clone().ok();
    let namespaces = child.namespaces;
    crate::container::clone_through_intermediate(
        sync,
        report,
        0,
        || join(namespaces),
        move || run(child),
    )
}

fn join(namespaces: &[(File, i32)]) -> Result<()> {
    for (file, flag) in namespaces {
        setns(file, CloneFlags::from_bits_retain(*flag))
            .with_context(|| format!("cannot join the container's namespace {flag:#x}"))?;
    }
    Ok(())
}

/// In the process: wait for `go`, join the cgroup, apply the process, exec. Never returns; a
/// failure is reported on the sync socket. A panic is caught: unwinding would run the caller's
/// code.
fn run(mut child: Child) -> ! {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare_and_exec(&child)))
        .unwrap_or_else(|_| anyhow::anyhow!("the exec'd process panicked"));
    let mut buf = vec![MSG_ERROR];
    buf.extend_from_slice(format!("{err:#}").as_bytes());
    let _ = child.sync.write_all(&buf);
    // SAFETY: _exit skips atexit handlers and buffers shared with the parent's copy.
    unsafe { libc::_exit(127) }
}

/// The init's `prepare` minus what the container already has (rootfs, hostname, /dev/console).
fn prepare_and_exec(child: &Child) -> anyhow::Error {
    let result = (|| -> Result<()> {
        wait_for_parent(&child.sync)?;
        if let Some(cgroup) = child.cgroup_join {
            cgroup.join()?;
        }
        let process = child.process;
        if process.terminal().unwrap_or(false) {
            let socket = child
                .console
                .context("process.terminal needs a console socket")?;
            let user = process.user();
            console::setup_pty(socket, user.uid(), user.gid(), false)?;
        } else {
            become_session_leader()?;
        }
        process::set_rlimits(process)?;
        process::enter_cwd(process)?;
        let exe = process::find_executable(process)?;
        seccomp::install_before_dropping_privileges(child.seccomp, process)?;
        process::set_user_and_capabilities(process)?;
        let umask = process.user().umask().unwrap_or(0o022);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
        process::set_no_new_privileges(process)?;
        reset_signals()?;
        sys::cloexec_from(3u32.saturating_add(child.preserve_fds))
            .context("cannot mark fds close-on-exec")?;
        seccomp::install_before_exec(child.seccomp, process)?;
        Err(process::exec(&exe, process))
    })();
    result
        .err()
        .unwrap_or_else(|| anyhow::anyhow!("exec returned"))
}
