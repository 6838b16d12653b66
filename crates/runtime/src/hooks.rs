//! OCI hooks: programs from config.json's `hooks` run at points of a container's life, each
//! with the container's state JSON on stdin. prestart, createRuntime, poststart and poststop
//! run in the runtime's namespaces; createContainer runs in the init before pivot_root and
//! startContainer in the init after `start`, just before the user's program.
//!
//! The hooks are saved beside the state at create (`hooks.json`), so `start` and `delete` run
//! what the container was created with even when the bundle has changed or gone.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::state::{OciState, State, Status};
use crate::{log, state, sys};

const HOOKS_FILE: &str = "hooks.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// The state's status a hook of this kind sees (the OCI spec's "creating" has no
    /// `Status`: the container has no state a command could show yet).
    fn status(self) -> &'static str {
        match self {
            Kind::Prestart | Kind::CreateRuntime | Kind::CreateContainer => "creating",
            Kind::StartContainer => "created",
            Kind::Poststart => "running",
            Kind::Poststop => "stopped",
        }
    }
}

const ALL: [Kind; 6] = [
    Kind::Prestart,
    Kind::CreateRuntime,
    Kind::CreateContainer,
    Kind::StartContainer,
    Kind::Poststart,
    Kind::Poststop,
];

/// The hooks of one kind, in config order.
pub fn of_kind(hooks: &Hooks, kind: Kind) -> &[Hook] {
    #[allow(deprecated)] // prestart is deprecated in the spec but still run, as runc does
    let list = match kind {
        Kind::Prestart => hooks.prestart(),
        Kind::CreateRuntime => hooks.create_runtime(),
        Kind::CreateContainer => hooks.create_container(),
        Kind::StartContainer => hooks.start_container(),
        Kind::Poststart => hooks.poststart(),
        Kind::Poststop => hooks.poststop(),
    };
    list.as_deref().unwrap_or_default()
}

/// Whether the init must stop before pivot_root for the runtime's create-time hooks, or
/// needs the state for its own (createContainer, startContainer).
pub fn init_needs_state(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|hooks| {
        ALL[..4]
            .iter()
            .any(|&kind| !of_kind(hooks, kind).is_empty())
    })
}

/// Checked at create, before anything exists: what the spec requires of every hook.
pub fn validate(spec: &Spec) -> Result<()> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    for kind in ALL {
        for hook in of_kind(hooks, kind) {
            let path = hook.path();
            if !path.is_absolute() {
                bail!(
                    "hooks.{}: path {} is not absolute",
                    kind.name(),
                    path.display()
                );
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                bail!(
                    "hooks.{}: {}: timeout must be greater than zero",
                    kind.name(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// The state JSON a hook of `kind` reads on stdin.
pub fn state_json(state: &State, kind: Kind) -> Result<Vec<u8>> {
    let oci: OciState = state.oci_state(if kind == Kind::Poststop {
        Status::Stopped
    } else {
        Status::Created
    });
    let mut value = serde_json::to_value(oci)?;
    value["status"] = kind.status().into();
    Ok(serde_json::to_vec(&value)?)
}

/// The same state as another kind of hook sees it (the init gets the create-time state and
/// reuses it for startContainer).
pub fn restate(json: &[u8], kind: Kind) -> Result<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(json).context("bad state JSON")?;
    value["status"] = kind.status().into();
    Ok(serde_json::to_vec(&value)?)
}

/// Remember the config's hooks for `start` and `delete`; nothing when there are none.
pub fn save(dir: &Path, spec: &Spec) -> Result<()> {
    match spec.hooks() {
        Some(hooks) => state::write_replace(&dir.join(HOOKS_FILE), &serde_json::to_vec(hooks)?),
        None => Ok(()),
    }
}

/// The hooks saved at create; none when the file is absent.
pub fn load(dir: &Path) -> Result<Option<Hooks>> {
    let path = dir.join(HOOKS_FILE);
    match fs::read(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_slice(&text).with_context(|| format!("corrupt {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Run the hooks of `kind` in order; the first failure stops them and is the error.
pub fn run(hooks: &Hooks, kind: Kind, state: &[u8]) -> Result<()> {
    for hook in of_kind(hooks, kind) {
        run_one(hook, state)
            .with_context(|| format!("{} hook {} failed", kind.name(), hook.path().display()))?;
    }
    Ok(())
}

/// For poststart and poststop, whose failures the spec makes warnings: every hook runs.
pub fn run_warning(hooks: &Hooks, kind: Kind, state: &[u8]) {
    for hook in of_kind(hooks, kind) {
        if let Err(e) = run_one(hook, state) {
            let msg = format!(
                "{} hook {} failed: {e:#}",
                kind.name(),
                hook.path().display()
            );
            eprintln!("berth-runtime: warning: {msg}");
            log::warn(&msg);
        }
    }
}

/// One hook: argv from `args` (args[0] is argv0, the path when there are none), exactly the
/// hook's `env`, the state on stdin, its output on our stderr, killed after `timeout` seconds.
fn run_one(hook: &Hook, state: &[u8]) -> Result<()> {
    let path = hook.path();
    let args = hook.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        match entry.split_once('=') {
            Some((key, value)) => cmd.env(key, value),
            None => cmd.env(entry, ""),
        };
    }
    // Our stdout may be a caller's pipe (containerd reads it): a hook's chatter goes to stderr.
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("dup stderr")?;
    cmd.stdin(state_stdin(state)?)
        .stdout(stderr)
        .stderr(Stdio::inherit());
    // Its own process group, so a timeout kills what it started too.
    cmd.process_group(0);
    let mut child = cmd.spawn().context("cannot start it")?;
    let status = match hook.timeout() {
        None => child.wait().context("cannot wait for it")?,
        Some(seconds) => wait_with_timeout(&mut child, seconds)?,
    };
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}

/// The state as a memfd rather than a pipe: a hook that does not read it cannot block us
/// (and so escape its timeout), however big the annotations make it.
fn state_stdin(state: &[u8]) -> Result<Stdio> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let mut file = fs::File::from(
        memfd_create(c"berth-hook-state", MFdFlags::MFD_CLOEXEC).context("memfd_create")?,
    );
    file.write_all(state)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .context("cannot write the state for the hook")?;
    Ok(Stdio::from(file))
}

/// Wait for the hook up to `seconds`; past that kill it and fail.
fn wait_with_timeout(
    child: &mut std::process::Child,
    seconds: i64,
) -> Result<std::process::ExitStatus> {
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    // The child is not reaped yet, so the pid is still its own.
    let pidfd = sys::pidfd_open(pid).context("pidfd_open")?;
    let ms = i32::try_from(seconds.saturating_mul(1000)).unwrap_or(i32::MAX);
    if !sys::pidfd_wait_exit(&pidfd, ms).context("cannot wait for it")? {
        // The group id is the hook's pid, ours until it is reaped below.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        bail!("timed out after {seconds}s and was killed");
    }
    child.wait().context("cannot wait for it")
}
