//! The container's process: rlimits, oom score, user and groups, capabilities,
//! no_new_privs, working directory, and finally execve.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

use crate::log;

/// Apply `process.rlimits`. The kernel refuses to raise a hard limit above the host's without
/// CAP_SYS_RESOURCE; say so, with the host's value, instead of a bare EPERM.
pub fn set_rlimits(process: &Process) -> Result<()> {
    for rl in process.rlimits().as_deref().unwrap_or_default() {
        set_rlimit(rl)?;
    }
    Ok(())
}

fn set_rlimit(rl: &PosixRlimit) -> Result<()> {
    let resource = rlimit_resource(rl.typ());
    let name = rlimit_name(rl.typ());
    let limit = libc::rlimit {
        rlim_cur: rl.soft(),
        rlim_max: rl.hard(),
    };
    // SAFETY: setrlimit reads one valid rlimit struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    unsafe { libc::getrlimit(resource, &mut host) };
    bail!(
        "cannot set {name} to soft {} hard {}: {err} (the host's hard limit is {})",
        rl.soft(),
        rl.hard(),
        host.rlim_max
    )
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as T;
    match typ {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn rlimit_name(typ: PosixRlimitType) -> String {
    serde_json::to_value(typ)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{typ:?}"))
}

/// Written by the runtime for the init (`pid`): the init itself may be an unprivileged user
/// namespace root by then, which may not change its own score.
pub fn set_oom_score_adj(pid: i32, process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .with_context(|| format!("cannot set oomScoreAdj {adj}"))?;
    }
    Ok(())
}

/// Find the executable like execvp does, with the container's PATH, inside the (pivoted)
/// root: done before `create` returns so a missing binary fails `create`, as with runc.
pub fn find_executable(process: &Process) -> Result<PathBuf> {
    let args = process.args().as_deref().unwrap_or_default();
    let Some(arg0) = args.first() else {
        bail!("process.args must not be empty");
    };
    if arg0.contains('/') {
        return check_executable(Path::new(arg0));
    }
    let path_var = process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path_var
        .split(':')
        .map(|dir| Path::new(dir).join(arg0))
        .find(|p| check_executable(p).is_ok())
        .with_context(|| format!("exec: {arg0:?}: executable file not found in $PATH"))
}

fn check_executable(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("exec: {:?}", path.display().to_string()))?;
    if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
        bail!("exec: {:?}: permission denied", path.display().to_string());
    }
    Ok(path.to_path_buf())
}

/// Become `process.user`, keeping exactly the capabilities the config lists.
pub fn set_user_and_capabilities(process: &Process) -> Result<()> {
    let user = process.user();
    let caps = process.capabilities().as_ref();
    let host = host_bounding()?;
    if let Some(caps) = caps {
        drop_bounding(&host, caps.bounding().as_ref())?;
    }
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    // Without KEEPCAPS, leaving uid 0 clears the permitted set that capset sets again below.
    set_keepcaps(true)?;
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).context("cannot set additionalGids")?;
    nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("cannot set gid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).with_context(|| format!("cannot set uid {uid}"))?;
    set_keepcaps(false)?;
    if let Some(caps) = caps {
        set_capabilities(&host, caps)?;
    }
    Ok(())
}

fn set_keepcaps(on: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_KEEPCAPS)");
    }
    Ok(())
}

/// The capabilities this host can grant: a cap outside the runtime's own bounding set (this
/// VM lacks CAP_SYS_RESOURCE, for one) cannot be given, so "all" means all the host holds.
fn host_bounding() -> Result<caps::CapsHashSet> {
    caps::read(None, caps::CapSet::Bounding).context("cannot read the capability bounding set")
}

fn to_caps(set: Option<&Capabilities>) -> Result<caps::CapsHashSet> {
    set.into_iter()
        .flatten()
        .map(|c| {
            let name = format!("CAP_{c}");
            name.parse::<caps::Capability>()
                .map_err(|_| anyhow::anyhow!("unknown capability {name}"))
        })
        .collect()
}

fn drop_bounding(host: &caps::CapsHashSet, bounding: Option<&Capabilities>) -> Result<()> {
    let keep = to_caps(bounding)?;
    for &cap in host {
        if !keep.contains(&cap) {
            caps::drop(None, caps::CapSet::Bounding, cap)
                .with_context(|| format!("cannot drop {cap} from the bounding set"))?;
        }
    }
    Ok(())
}

/// Effective, permitted and inheritable in one capset(2) (they constrain each other, so one
/// at a time can fail half way), then the ambient set.
fn set_capabilities(host: &caps::CapsHashSet, c: &LinuxCapabilities) -> Result<()> {
    let granted = |set: Option<&Capabilities>| -> Result<u64> {
        let wanted = to_caps(set)?;
        for missing in wanted.iter().filter(|c| !host.contains(c)) {
            log::warn(&format!(
                "{missing} is not in the host's bounding set; not granted"
            ));
        }
        Ok(wanted
            .iter()
            .filter(|c| host.contains(c))
            .fold(0, |m, c| m | c.bitmask()))
    };
    let effective = granted(c.effective().as_ref())?;
    let permitted = granted(c.permitted().as_ref())?;
    let inheritable = granted(c.inheritable().as_ref())?;
    capset(effective, permitted, inheritable)?;
    // The kernel only raises an ambient cap that is also permitted and inheritable; like
    // runc, a config asking for more gets what is possible and a warning.
    for cap in to_caps(c.ambient().as_ref())?
        .into_iter()
        .filter(|c| host.contains(c))
    {
        if let Err(e) = caps::raise(None, caps::CapSet::Ambient, cap) {
            log::warn(&format!("cannot raise ambient {cap}: {e}"));
        }
    }
    Ok(())
}

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |bits: u64, i: u32| (bits >> (32 * i)) as u32;
    let data = [0, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: a v3 header and the two data words v3 requires.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("capset failed");
    }
    Ok(())
}

pub fn set_no_new_privileges(process: &Process) -> Result<()> {
    if process.no_new_privileges().unwrap_or(false) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_NO_NEW_PRIVS)");
        }
    }
    Ok(())
}

/// chdir to `process.cwd` and check the result is inside the container: a cwd reached
/// through a leaked host fd reads as "(unreachable)…" (CVE-2024-21626).
/// Make the init's cwd where it is missing, as runc does: after pivot_root (so the path and
/// any symlink on it resolve inside the container) and before the root is made read-only.
pub fn make_cwd(process: &Process) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let cwd = process.cwd();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(cwd)
        .with_context(|| format!("cannot create cwd {}", cwd.display()))
}

pub fn enter_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd.as_path())
        .with_context(|| format!("cannot chdir to cwd {}", cwd.display()))?;
    let now = nix::unistd::getcwd().context("getcwd")?;
    if !now.is_absolute() || now.starts_with("(unreachable)") {
        bail!("cwd {} is outside the container", cwd.display());
    }
    Ok(())
}

/// Replace the init with the user's program. Returns only on failure.
pub fn exec(path: &Path, process: &Process) -> anyhow::Error {
    let cstrings = |v: &[String]| -> Result<Vec<CString>> {
        v.iter()
            .map(|s| {
                CString::new(s.as_bytes()).with_context(|| format!("{s:?} contains a NUL byte"))
            })
            .collect()
    };
    let prepared = (|| -> Result<_> {
        let path = CString::new(path.as_os_str().as_encoded_bytes())?;
        let args = cstrings(process.args().as_deref().unwrap_or_default())?;
        let env = cstrings(process.env().as_deref().unwrap_or_default())?;
        Ok((path, args, env))
    })();
    match prepared {
        Ok((p, args, env)) => match nix::unistd::execve(&p, &args, &env) {
            Err(e) => anyhow::Error::new(e).context(format!("exec {}", path.display())),
        },
        Err(e) => e,
    }
}
