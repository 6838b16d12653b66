//! `linux.seccomp`: compiled with libseccomp into a BPF program once, when the container is
//! created (so a bad profile fails `create` before anything exists), saved next to the
//! container's state for `exec`, and loaded with seccomp(2) by the init and by exec'd processes.
//!
//! The program is loaded by us rather than by `seccomp_load`: libseccomp would set
//! no_new_privs itself, and it would have to run in the container's process. Where it is
//! loaded follows runc: with `noNewPrivileges` as the very last step before execve (the filter
//! then sees none of the runtime's own syscalls); without, before the capabilities are dropped,
//! because installing a filter without no_new_privs needs CAP_SYS_ADMIN.

use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall, Process, Spec,
};

/// The compiled program next to state.json: the flags (u32, native endian), then the program.
const SAVED_FILTER: &str = "seccomp.bpf";
/// Compiled programs by profile, in the runtime's root: `~` is not allowed in container ids,
/// so the name never clashes with a container's directory.
const CACHE_DIR: &str = "seccomp~cache";
/// Enough for every distinct profile a host uses; beyond it, compiling is just not cached.
const CACHE_ENTRIES: usize = 256;
/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;
const INSTRUCTION_SIZE: usize = std::mem::size_of::<libc::sock_filter>();
/// seccomp(2) filter flags (linux/seccomp.h).
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;

/// A compiled filter and the flags to load it with.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: u32,
}

impl Filter {
    /// The filter `spec` asks for, or None without `linux.seccomp` (errors name the field),
    /// through a cache in the runtime's `root`: libseccomp 2.5 takes ~25 ms to
    /// compile Docker's default profile (more than the rest of `create`), and an engine gives
    /// all its containers the same one. An entry is used only when the key it holds (the
    /// profile, the libseccomp version, the kernel) equals this one byte for byte, so a hash
    /// collision of the file names cannot load another profile's program.
    pub fn from_spec_cached(spec: &Spec, root: &Path) -> Result<Option<Filter>> {
        let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
            return Ok(None);
        };
        let key = cache_key(seccomp)?;
        let path = root
            .join(CACHE_DIR)
            .join(format!("{:016x}.bpf", fnv1a(&key)));
        if let Some(filter) = read_cached(&path, &key) {
            return Ok(Some(filter));
        }
        let filter = compile(seccomp).context("linux.seccomp")?;
        // A cache that cannot be written only costs time.
        if let Err(e) = filter.write_cached(&path, &key) {
            crate::log::debug(&format!("seccomp: not cached: {e:#}"));
        }
        Ok(Some(filter))
    }

    /// Keep the program in the container's directory, for `exec`: atomically, not durably
    /// (like state.json, it does not outlive the container).
    pub fn save(&self, container_dir: &Path) -> Result<()> {
        crate::state::write_replace(&container_dir.join(SAVED_FILTER), &self.encode())
    }

    /// The flags (u32, native endian), then the instructions as the kernel lays them out.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = self.flags.to_ne_bytes().to_vec();
        for insn in &self.program {
            bytes.extend_from_slice(&insn.code.to_ne_bytes());
            bytes.extend_from_slice(&[insn.jt, insn.jf]);
            bytes.extend_from_slice(&insn.k.to_ne_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Filter> {
        let (flags, program) = bytes.split_first_chunk::<4>().context("truncated")?;
        Ok(Filter {
            program: decode(program)?,
            flags: u32::from_ne_bytes(*flags),
        })
    }

    /// A cache entry: the key's length (u32), the key, a checksum of the rest (u64), `encode`.
    fn write_cached(&self, path: &Path, key: &[u8]) -> Result<()> {
        let dir = path.parent().context("cache path")?;
        std::fs::create_dir_all(dir)?;
        if std::fs::read_dir(dir)?.count() >= CACHE_ENTRIES {
            bail!("{} is full", dir.display());
        }
        let mut bytes = u32::try_from(key.len())?.to_ne_bytes().to_vec();
        bytes.extend_from_slice(key);
        let encoded = self.encode();
        bytes.extend_from_slice(&fnv1a(&encoded).to_ne_bytes());
        bytes.extend_from_slice(&encoded);
        crate::state::write_replace(path, &bytes)
    }

    /// The program `save` kept for this container, or None when it has no seccomp filter.
    pub fn load_saved(container_dir: &Path) -> Result<Option<Filter>> {
        let path = container_dir.join(SAVED_FILTER);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Filter::decode(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))
            .map(Some)
    }

    /// Install the filter on the calling thread (and, with TSYNC, its siblings).
    pub fn install(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            // Checked against MAX_INSTRUCTIONS when compiled or read back.
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at our live instructions for the duration of the call; the
        // kernel copies the program.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot load the seccomp filter");
        }
        Ok(())
    }
}

/// Without no_new_privileges, the filter goes in while we still have CAP_SYS_ADMIN: call
/// this before the user and capabilities change.
pub fn install_before_dropping_privileges(
    filter: Option<&Filter>,
    process: &Process,
) -> Result<()> {
    match filter {
        Some(f) if !process.no_new_privileges().unwrap_or(false) => f.install(),
        _ => Ok(()),
    }
}

/// With no_new_privileges, the filter goes in as the last step: call this right before execve.
pub fn install_before_exec(filter: Option<&Filter>, process: &Process) -> Result<()> {
    match filter {
        Some(f) if process.no_new_privileges().unwrap_or(false) => f.install(),
        _ => Ok(()),
    }
}

/// What a compiled program depends on: the profile, libseccomp, the kernel (libseccomp adapts
/// actions to what the kernel supports) and this runtime's version.
fn cache_key(seccomp: &LinuxSeccomp) -> Result<Vec<u8>> {
    let libseccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut key = format!(
        "berth-runtime {} libseccomp {libseccomp} kernel {} binary tree\n",
        env!("CARGO_PKG_VERSION"),
        kernel.trim()
    )
    .into_bytes();
    serde_json::to_writer(&mut key, seccomp)?;
    Ok(key)
}

fn read_cached(path: &Path, key: &[u8]) -> Option<Filter> {
    let bytes = std::fs::read(path).ok()?;
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let (stored, rest) = rest.split_at_checked(u32::from_ne_bytes(*len) as usize)?;
    let (sum, encoded) = rest.split_first_chunk::<8>()?;
    if stored != key || u64::from_ne_bytes(*sum) != fnv1a(encoded) {
        return None;
    }
    Filter::decode(encoded).ok()
}

/// FNV-1a, 64 bits: names a cache file (its key is compared in full) and checks its program.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    if seccomp.listener_path().is_some() || seccomp.listener_metadata().is_some() {
        bail!("listenerPath: seccomp user notification is not supported by berth-runtime");
    }
    let default =
        action(seccomp.default_action(), seccomp.default_errno_ret()).context("defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).context("cannot create a libseccomp filter")?;
    // A binary tree by syscall number instead of one comparison after another: Docker's
    // profile allows ~350 syscalls, and the kernel, when the filter is loaded, runs it for
    // every syscall number to find the ones it may allow without running it again (1.0–1.5
    // ms for the linear program here, in every container's start). Best effort: libseccomp
    // before 2.5 has only the linear layout, which is as correct.
    let _ = ctx.set_ctl_optimize(2);
    for arch in seccomp.architectures().as_deref().unwrap_or_default() {
        let name = serde_json::to_value(arch)?;
        let name = name.as_str().unwrap_or_default();
        let scmp: ScmpArch = name
            .parse()
            .with_context(|| format!("architectures: unknown architecture {name}"))?;
        ctx.add_arch(scmp)
            .with_context(|| format!("architectures: libseccomp cannot add {name}"))?;
    }
    for (i, rule) in seccomp
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        add_rule(&mut ctx, rule, default).with_context(|| format!("syscalls[{i}]"))?;
    }
    let flags = seccomp
        .flags()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
        })
        .fold(0, |all, f| all | f);
    let program = export(&ctx)?;
    Ok(Filter { program, flags })
}

/// The action of the spec as libseccomp's; ERRNO and TRACE default to EPERM as in runc.
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    use LinuxSeccompAction as A;
    let ret = || -> Result<i32> {
        let ret = errno_ret.unwrap_or(libc::EPERM as u32);
        i32::try_from(ret).with_context(|| format!("errnoRet {ret} is out of range"))
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(ret()?),
        A::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(ret()?).context("errnoRet of SCMP_ACT_TRACE must fit 16 bits")?,
        ),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => {
            bail!("SCMP_ACT_NOTIFY (seccomp user notification) is not supported by berth-runtime")
        }
    })
}

fn add_rule(ctx: &mut ScmpFilterContext, rule: &LinuxSyscall, default: ScmpAction) -> Result<()> {
    let action = action(rule.action(), rule.errno_ret())?;
    let args = rule.args().as_deref().unwrap_or_default();
    let conditions = args.iter().map(condition).collect::<Result<Vec<_>>>()?;
    // libseccomp refuses a rule that repeats the default action; it would change nothing.
    if action == default {
        return Ok(());
    }
    // Conditions on distinct arguments must all hold (one rule); libseccomp cannot AND two
    // on the same argument, so then each is a rule of its own (any may hold), as runc does.
    let groups: Vec<&[ScmpArgCompare]> = if repeats_an_argument(args) {
        conditions.chunks(1).collect()
    } else {
        vec![&conditions[..]]
    };
    for name in rule.names() {
        // Names this architecture does not know are skipped, as runc does.
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            crate::log::debug(&format!("seccomp: skipping unknown syscall {name}"));
            continue;
        };
        for group in &groups {
            ctx.add_rule_conditional(action, syscall, group)
                .with_context(|| format!("libseccomp refuses the rule for {name}"))?;
        }
    }
    Ok(())
}

fn repeats_an_argument(args: &[LinuxSeccompArg]) -> bool {
    let mut seen = std::collections::HashSet::new();
    !args.iter().all(|a| seen.insert(a.index()))
}

fn condition(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    use LinuxSeccompOperator as O;
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .with_context(|| {
            format!(
                "args: index {} is not a syscall argument (0-5)",
                arg.index()
            )
        })?;
    let (op, datum) = match arg.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        O::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // value is the mask, valueTwo what the masked argument must equal.
        O::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// The filter as BPF: libseccomp (2.5) exports only to a file descriptor, so through a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    // SAFETY: a constant NUL-terminated name; the returned fd is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .context("libseccomp cannot export the filter")?;
    file.flush()?;
    file.rewind()?;
    let mut bytes = vec![];
    file.read_to_end(&mut bytes)?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> Result<Vec<libc::sock_filter>> {
    if !bytes.len().is_multiple_of(INSTRUCTION_SIZE) {
        bail!("a BPF program of {} bytes", bytes.len());
    }
    let count = bytes.len() / INSTRUCTION_SIZE;
    if count == 0 || count > MAX_INSTRUCTIONS {
        bail!(
            "the seccomp filter has {count} instructions; the kernel takes 1 to {MAX_INSTRUCTIONS}"
        );
    }
    Ok(bytes
        .chunks_exact(INSTRUCTION_SIZE)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The `linux.seccomp` part of `features`, in runc's shape.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": [
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
            "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
            "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32",
            "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
        ],
        "knownFlags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"
        ],
        "supportedFlags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"
        ]
    })
}
