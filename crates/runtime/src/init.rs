//! The container's init: the child of clone3, already in its new namespaces. It waits for the
//! parent (id maps, cgroup), builds the rootfs, reports ready, waits for `start` on the exec
//! fifo, drops privileges and execs the user's program.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{CgroupMountSource, SelfJoin};
use crate::namespaces::Namespaces;
use crate::rootfs::{self, RootfsPlan};
use crate::{hooks, log, process, seccomp};

/// Messages on the sync socket between the runtime and the init.
pub const MSG_GO: u8 = b'G';
/// The runtime moved the init into its cgroup (or left that to the init: see
/// `InitArgs::cgroup_join`): it may make its cgroup namespace and go on to exec.
pub const MSG_IN_CGROUP: u8 = b'C';
pub const MSG_READY: u8 = b'R';
pub const MSG_ERROR: u8 = b'E';
/// From the intermediate process: the init's pid.
pub const MSG_PID: u8 = b'P';
/// From the init, before pivot_root: run prestart and createRuntime hooks now.
pub const MSG_HOOKS: u8 = b'H';
/// The runtime's hooks ran; followed by the state JSON for the init's own hooks.
pub const MSG_HOOKS_DONE: u8 = b'D';

pub struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub namespaces: &'a Namespaces,
    pub cgroup_sources: &'a [CgroupMountSource],
    /// The cgroup's files with which the init moves itself in, right after `go`; `None`: the
    /// runtime moves it.
    pub cgroup_join: Option<&'a SelfJoin>,
    pub no_pivot: bool,
    /// The exec fifo, opened O_PATH: reopened for writing through /proc once inside.
    pub exec_fifo: &'a OwnedFd,
    pub console: Option<&'a UnixStream>,
    pub sync: UnixStream,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
}

/// Never returns: execs the user's program or exits 1 after reporting why. A panic is
/// caught too: unwinding would run the parent's code (and its guards) in this child.
pub fn run(mut args: InitArgs) -> ! {
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(&args)))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the container's init panicked")));
    let (exe, hook_state) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let mut buf = vec![MSG_ERROR];
            buf.extend_from_slice(format!("{e:#}").as_bytes());
            let _ = args.sync.write_all(&buf);
            // SAFETY: _exit skips atexit handlers and buffers shared with the parent's copy.
            unsafe { libc::_exit(1) }
        }
    };
    let _ = args.sync.write_all(&[MSG_READY]);
    let err = wait_and_exec(args.exec_fifo, args.spec, &exe, args.seccomp, hook_state);
    // After `ready` nobody waits on the sync socket: tell the container's stderr and the log.
    log::error(&format!("{err:#}"));
    // SAFETY: as above.
    unsafe { libc::_exit(127) }
}

/// Everything that can fail and must fail `create`: returns the program to exec, and the
/// state JSON for startContainer hooks when the config has hooks.
fn prepare(args: &InitArgs) -> Result<(std::path::PathBuf, Option<Vec<u8>>)> {
    wait_for_parent(&args.sync)?;
    if let Some(cgroup) = args.cgroup_join {
        cgroup.join()?;
    }
    let ns = args.namespaces;
    if ns.in_user_namespace() {
        // Become the user namespace's root, so what we create is owned by the mapped root.
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .context("cannot become root in the user namespace (gid)")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .context("cannot become root in the user namespace (uid)")?;
    }
    if ns.creates(LinuxNamespaceType::Network) {
        crate::network::bring_up_loopback()?;
    }
    set_uts(args.spec, ns)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let process = args.spec.process().as_ref().context("process: missing")?;
    let with_hooks = hooks::init_needs_state(args.spec);
    let hook_state = std::cell::RefCell::new(None);
    let create_hooks = || -> Result<()> {
        *hook_state.borrow_mut() = Some(run_create_hooks(&args.sync, args.spec)?);
        Ok(())
    };
    rootfs::setup(&RootfsPlan {
        spec: args.spec,
        rootfs: args.rootfs,
        bundle: args.bundle,
        cgroup_sources: args.cgroup_sources,
        in_user_namespace: ns.in_user_namespace(),
        no_pivot: args.no_pivot,
        before_pivot: with_hooks.then_some(&create_hooks as &dyn Fn() -> Result<()>),
    })?;
    if process.terminal().unwrap_or(false) {
        let socket = args
            .console
            .context("process.terminal needs --console-socket")?;
        // A session of its own, with the pty as its controlling terminal.
        crate::console::setup(socket, process.user().uid(), process.user().gid())?;
    } else {
        become_session_leader()?;
    }
    process::make_cwd(process)?;
    rootfs::finish(args.spec)?;
    // Unless we moved ourselves, the parent moves us into our cgroup while we set up the
    // rootfs: that waits for the kernel's migration lock (see `CgroupManager::add_process`),
    // which this overlaps with the mounts. Nothing above forks (hooks wait for the cgroup
    // first).
    if !with_hooks {
        wait_for(&args.sync, MSG_IN_CGROUP)?;
    }
    if ns.creates(LinuxNamespaceType::Cgroup) {
        // Unshared only now that we are in our cgroup: it becomes the namespace's root.
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .context("cannot create the cgroup namespace")?;
    }
    process::set_rlimits(process)?;
    process::enter_cwd(process)?;
    let exe = process::find_executable(process)?;
    seccomp::install_before_dropping_privileges(args.seccomp, process)?;
    // Privileges go before `ready`, so a failure here fails `create`, not a later exec.
    process::set_user_and_capabilities(process)?;
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    process::set_no_new_privileges(process)?;
    Ok((exe, hook_state.into_inner()))
}

/// Before pivot_root, in our cgroup: the runtime runs prestart and createRuntime hooks in
/// its namespaces, then createContainer hooks run here, in the container's. Returns the state.
fn run_create_hooks(sync: &UnixStream, spec: &Spec) -> Result<Vec<u8>> {
    wait_for(sync, MSG_IN_CGROUP)?;
    let mut sync = sync.try_clone().context("dup the sync socket")?;
    sync.write_all(&[MSG_HOOKS])
        .context("cannot ask the runtime to run hooks")?;
    let state = match crate::container::read_message(&mut sync)? {
        (MSG_HOOKS_DONE, state) => state.into_bytes(),
        _ => bail!("the runtime went away before the container was set up"),
    };
    if let Some(all) = spec.hooks() {
        hooks::run(all, hooks::Kind::CreateContainer, &state)?;
    }
    Ok(state)
}

pub(crate) fn wait_for_parent(sync: &UnixStream) -> Result<()> {
    wait_for(sync, MSG_GO)
}

fn wait_for(mut sync: &UnixStream, message: u8) -> Result<()> {
    let mut byte = [0u8];
    match sync.read(&mut byte) {
        Ok(1) if byte[0] == message => Ok(()),
        _ => bail!("the runtime went away before the container was set up"),
    }
}

fn set_uts(spec: &Spec, ns: &Namespaces) -> Result<()> {
    let own_uts = ns.creates(LinuxNamespaceType::Uts) || ns.joins(LinuxNamespaceType::Uts);
    for (name, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if !own_uts {
            bail!("{name} is set but the container has no uts namespace");
        }
        let result = if name == "hostname" {
            nix::unistd::sethostname(value)
        } else {
            set_domainname(value)
        };
        result.with_context(|| format!("cannot set {name} {value:?}"))?;
    }
    Ok(())
}

fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: pointer and length of a live byte slice.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    nix::errno::Errno::result(ret).map(drop)
}

/// After ready: block until `start`, then exec. Returns only on failure.
fn wait_and_exec(
    exec_fifo: &OwnedFd,
    spec: &Spec,
    exe: &Path,
    seccomp: Option<&seccomp::Filter>,
    hook_state: Option<Vec<u8>>,
) -> anyhow::Error {
    let result = (|| -> Result<()> {
        // Held open (close-on-exec) until the exec: `start` waits for it to close, so
        // startContainer hooks finish before `start` returns and runs poststart, as in runc.
        let _fifo = wait_for_start(exec_fifo)?;
        let process = spec.process().as_ref().context("process: missing")?;
        reset_signals()?;
        crate::sys::cloexec_from(3).context("cannot mark fds close-on-exec")?;
        if let (Some(all), Some(state)) = (spec.hooks(), hook_state) {
            let state = hooks::restate(&state, hooks::Kind::StartContainer)?;
            hooks::run(all, hooks::Kind::StartContainer, &state)?;
        }
        seccomp::install_before_exec(seccomp, process)?;
        Err(process::exec(exe, process))
    })();
    result
        .err()
        .unwrap_or_else(|| anyhow::anyhow!("exec returned"))
}

/// Opening the fifo for writing blocks until `start` opens it for reading. It is reopened
/// through /proc/self/fd, so /proc must be the kernel's procfs and what opens must be the
/// fifo we hold, not something the image arranged.
fn wait_for_start(fifo: &OwnedFd) -> Result<std::fs::File> {
    let proc = nix::sys::statfs::statfs("/proc").context("cannot stat /proc")?;
    if proc.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        bail!("/proc in the container is not procfs: mount proc there");
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(crate::sys::fd_path(fifo))
        .context("cannot open the exec fifo")?;
    let (held, opened) = (nix::sys::stat::fstat(fifo)?, nix::sys::stat::fstat(&file)?);
    if (held.st_dev, held.st_ino) != (opened.st_dev, opened.st_ino) {
        bail!("the exec fifo reopened through /proc is not the runtime's fifo");
    }
    file.write_all(b"0").context("cannot write the exec fifo")?;
    Ok(file)
}

/// A session of the process's own, as runc makes for every container process: none of the
/// caller's outside the container's namespaces, and job control (a shell's process groups)
/// works inside.
pub(crate) fn become_session_leader() -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    Ok(())
}

/// The program gets default dispositions and an empty mask, whatever the runtime inherited
/// or set up: an ignored signal stays ignored across exec (Rust ignores SIGPIPE; a caller may
/// ignore SIGCHLD, which would make the program's children vanish unwaited; a parent that
/// used posix_spawn left glibc's two reserved signals ignored).
pub(crate) fn reset_signals() -> Result<()> {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        crate::sys::default_signal_disposition(signal)
            .with_context(|| format!("cannot reset the disposition of signal {signal}"))?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("cannot reset the signal mask")
}
