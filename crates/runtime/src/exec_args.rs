//! runc's `exec` command line: the process to run, from `--process proc.json` or from the
//! container's own `process` with the flags applied, and how the command waits for it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use crate::exec::{exec_preserving_fds, ExecOptions};
use crate::state::{self, State};
use crate::{console, signals, spec};

#[derive(Debug, Default, clap::Args)]
pub struct ExecFlags {
    /// A process JSON (the OCI config's `process`); the process flags below are then ignored.
    #[arg(long, short)]
    pub process: Option<PathBuf>,
    /// Do not wait for the process: return once it runs.
    #[arg(long, short)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(long, short)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Add (or override) an environment variable, NAME=value.
    #[arg(long, short)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(long, short)]
    pub user: Option<String>,
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_NAME) to the process's bounding, effective and permitted sets.
    #[arg(long, short)]
    pub cap: Vec<String>,
    /// Pass on this many fds after stdio (3, 4, ...).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
}

/// Run a process in the container; its exit code (128+N if killed by signal N) unless
/// detached, where it is 0 once the process runs.
///
/// The caller must be single-threaded (exec forks).
pub fn run(root: &Path, id: &str, args: &[String], flags: &ExecFlags) -> Result<i32> {
    let process = process(root, id, args, flags)?;
    // A foreground exec waits for its child: SIGCHLD left ignored by our caller would let
    // the kernel reap it and lose its status.
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let execd = exec_preserving_fds(
        &ExecOptions {
            root,
            id,
            process: &process,
            console_socket: flags.console_socket.as_deref(),
            relay_terminal: !flags.detach,
        },
        flags.preserve_fds,
    )?;
    if let Some(pid_file) = &flags.pid_file {
        state::write_atomic(pid_file, execd.pid.to_string().as_bytes())?;
    }
    if flags.detach {
        return Ok(0);
    }
    let relay = execd
        .console
        .as_ref()
        .map(console::Relay::receive)
        .transpose()?;
    signals::forward_until_exit(&execd.pidfd, execd.pid, relay)
}

/// The process to exec: `--process`, or the container's `process` with `args` and the flags.
pub fn process(root: &Path, id: &str, args: &[String], flags: &ExecFlags) -> Result<Process> {
    if let Some(path) = &flags.process {
        if !args.is_empty() {
            bail!("exec: give the command in --process or on the command line, not both");
        }
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&text);
        return serde_path_to_error::deserialize(de)
            .with_context(|| format!("invalid process JSON {}", path.display()));
    }
    if args.is_empty() {
        bail!("exec: no command given (exec ID COMMAND [ARGS...] or --process FILE)");
    }
    let state = State::load(root, id)?;
    let spec = spec::load(&state.bundle)?;
    let mut process = spec
        .process()
        .clone()
        .context("process: missing in config.json")?;
    process.set_args(Some(args.to_vec()));
    process.set_terminal(Some(flags.tty));
    if let Some(cwd) = &flags.cwd {
        process.set_cwd(cwd.clone());
    }
    apply_env(&mut process, &flags.env);
    if let Some(user) = &flags.user {
        apply_user(&mut process, user)?;
    }
    if !flags.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(flags.additional_gids.clone()));
    }
    add_caps(&mut process, &flags.cap)?;
    if flags.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok(process)
}

/// NAME=value replaces the container's NAME, as runc does.
fn apply_env(process: &mut Process, env: &[String]) {
    let list = process.env_mut().get_or_insert_with(Vec::new);
    for kv in env {
        let name = kv.split_once('=').map_or(kv.as_str(), |(name, _)| name);
        list.retain(|old| old.split_once('=').map_or(old.as_str(), |(n, _)| n) != name);
        list.push(kv.clone());
    }
}

/// `uid` or `uid:gid`, numeric.
fn apply_user(process: &mut Process, user: &str) -> Result<()> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let number = |text: &str| -> Result<u32> {
        text.parse()
            .with_context(|| format!("invalid --user {user:?}: use uid[:gid], numeric"))
    };
    process.user_mut().set_uid(number(uid)?);
    if let Some(gid) = gid {
        process.user_mut().set_gid(number(gid)?);
    }
    Ok(())
}

fn add_caps(process: &mut Process, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let caps: Vec<Capability> = names
        .iter()
        .map(|name| {
            serde_json::from_value(serde_json::Value::String(name.clone()))
                .with_context(|| format!("unknown capability {name:?}"))
        })
        .collect::<Result<_>>()?;
    let mut all: LinuxCapabilities = process.capabilities().clone().unwrap_or_default();
    let add = |set: &Option<oci_spec::runtime::Capabilities>| {
        let mut set = set.clone().unwrap_or_default();
        set.extend(caps.iter().copied());
        Some(set)
    };
    let (bounding, effective, permitted) = (
        add(all.bounding()),
        add(all.effective()),
        add(all.permitted()),
    );
    all.set_bounding(bounding)
        .set_effective(effective)
        .set_permitted(permitted);
    process.set_capabilities(Some(all));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_by_name_and_user_parses_uid_gid() {
        let mut p = Process::default();
        p.set_env(Some(vec!["A=1".into(), "B=2".into()]));
        apply_env(&mut p, &["A=3".into(), "C=4".into()]);
        assert_eq!(p.env().as_deref().unwrap(), ["B=2", "A=3", "C=4"]);
        apply_user(&mut p, "1000:100").unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert!(apply_user(&mut p, "nobody").is_err());
    }

    #[test]
    fn caps_are_added_to_three_sets() {
        let mut p = Process::default();
        p.set_capabilities(None);
        add_caps(&mut p, &["CAP_SYS_ADMIN".into()]).unwrap();
        let caps = p.capabilities().clone().unwrap();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        assert!(add_caps(&mut p, &["CAP_NOPE".into()]).is_err());
    }
}
