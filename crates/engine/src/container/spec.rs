//! The OCI spec of a container, from its (image-merged) config and host config, with
//! Docker's defaults: the 14 default capabilities, masked and read-only paths, /proc, /dev,
//! /sys read-only, /dev/shm, the init layer's files bind-mounted, resources in cgroups.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{
    Capability, LinuxBlockIoBuilder, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxMemory, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::namespaces;
use super::user::ResolvedUser;
use super::Container;
use crate::error::{Error, Result};

/// Where `--init` puts berth-init in the container, and what it is called as.
pub const INIT_PATH: &str = "/sbin/berth-init";

/// Docker's default capabilities (moby oci/caps/defaults.go): CapEff 00000000a80425fb.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const MASKED_PATHS: [&str; 13] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
    "/sys/devices/system/cpu/cpu0/thermal_throttle",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// /dev/shm's size unless `--shm-size` says otherwise (Docker's).
const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The runtime's name in HostConfig, as `/info` lists it.
pub const RUNTIME: &str = "berth";

/// The least memory Docker lets a container limit itself to (or reserve).
const MINIMUM_MEMORY: i64 = 6 << 20;

/// Docker's default CFS period, for `--cpus`.
const CPU_PERIOD: u64 = 100_000;

/// Everything a spec is made from besides the container record.
pub struct SpecInputs<'a> {
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    /// `(path in the container, host file)` of the init layer's files.
    pub init_files: &'a [(&'static str, PathBuf)],
    /// Binds, volumes, tmpfs (see `mounts::oci_mounts`).
    pub mounts: Vec<Mount>,
    pub cgroup_path: PathBuf,
    /// The berth-init binary, when the container asked for `--init`.
    pub init_binary: Option<&'a Path>,
    /// The pid namespace to join (`--pid container:…`), of that container's init.
    pub joined_pid: Option<PathBuf>,
}

/// What Docker writes into a container's HostConfig at create for what was not asked, so
/// that inspect shows what the container gets: its namespace modes, 64 MiB of /dev/shm,
/// swap as large as the memory limit, Docker's masked and read-only paths, the runtime; an
/// unlimited pids limit and the kernel's swappiness as nothing. Settings cgroup v2 has no
/// knob for are dropped there, as Docker does: its warnings are returned.
pub fn complete_host_config(host: &mut HostConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if berth_runtime::cgroups::is_unified() {
        if host.memory_swappiness.take().is_some_and(|s| s != -1) {
            warnings.push(
                "Your kernel does not support memory swappiness capabilities or the cgroup is \
                 not mounted. Memory swappiness discarded."
                    .to_string(),
            );
        }
        if host.oom_kill_disable.take() == Some(true) {
            warnings.push(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
                    .to_string(),
            );
        }
    }
    namespaces::complete(host);
    if host.shm_size.unwrap_or(0) <= 0 {
        host.shm_size = Some(DEFAULT_SHM_SIZE);
    }
    let memory = host.memory.unwrap_or(0);
    if memory > 0 && host.memory_swap.unwrap_or(0) == 0 {
        host.memory_swap = Some(memory * 2);
    }
    host.pids_limit = host.pids_limit.filter(|limit| *limit > 0);
    host.memory_swappiness = host.memory_swappiness.filter(|s| *s != -1);
    if !host.privileged.unwrap_or(false) {
        let (masked, readonly) = (owned(&MASKED_PATHS), owned(&READONLY_PATHS));
        host.masked_paths.get_or_insert(masked);
        host.readonly_paths.get_or_insert(readonly);
    }
    if host.runtime.as_deref().unwrap_or("").is_empty() {
        host.runtime = Some(RUNTIME.to_string());
    }
    warnings
}

fn owned(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// The process's argv: entrypoint + cmd.
pub fn argv_of(c: &bollard_stubs::models::ContainerConfig) -> Vec<String> {
    let mut argv: Vec<String> = c.entrypoint.iter().flatten().cloned().collect();
    argv.extend(c.cmd.iter().flatten().cloned());
    argv
}

pub fn build(container: &Container, inputs: SpecInputs) -> Result<Spec> {
    let host = &container.host_config;
    let privileged = host.privileged.unwrap_or(false);
    let mut args = argv_of(&container.config);
    if args.is_empty() {
        return Err(Error::InvalidParameter("No command specified".into()));
    }
    if inputs.init_binary.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let process = process(container, inputs.user, args, privileged)?;
    let mut mounts = default_mounts(privileged, host)?;
    for (target, source) in inputs.init_files {
        mounts.push(bind(target, source, &["rbind", "rprivate"])?);
    }
    if let Some(init) = inputs.init_binary {
        mounts.push(bind(INIT_PATH, init, &["bind", "ro", "nosuid", "nodev"])?);
    }
    mounts.extend(inputs.mounts);

    let (mut devices, device_rules) =
        super::devices::mapped(host.devices.as_deref().unwrap_or_default())?;
    if privileged {
        // The host's devices, but for those `--device` put somewhere of its own.
        let host_devices = super::devices::host_devices()?;
        let mapped: Vec<PathBuf> = devices.iter().map(|d| d.path().clone()).collect();
        devices.extend(
            host_devices
                .into_iter()
                .filter(|d| !mapped.contains(d.path())),
        );
    }
    let bounding: Vec<Capability> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .into_iter()
        .flatten()
        .collect();
    let seccomp = super::security::linux_seccomp(host, &bounding)?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces::oci(host, inputs.joined_pid))
        .cgroups_path(inputs.cgroup_path.clone())
        .devices(devices)
        .resources(resources(host, privileged, device_rules)?);
    if !privileged {
        // HostConfig's lists replace the defaults when given (the docker CLI sends empty
        // ones for `--security-opt systempaths=unconfined`).
        let or_default = |given: &Option<Vec<String>>, default: &[&str]| {
            given.clone().unwrap_or_else(|| owned(default))
        };
        linux = linux
            .masked_paths(or_default(&host.masked_paths, &MASKED_PATHS))
            .readonly_paths(or_default(&host.readonly_paths, &READONLY_PATHS));
    }
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    // Checked by the runtime: only sysctls of namespaces the container has its own of.
    if let Some(sysctls) = host.sysctls.clone().filter(|s| !s.is_empty()) {
        linux = linux.sysctl(sysctls);
    }
    let linux = linux.build().map_err(|e| anyhow!("linux: {e}"))?;
    // Without a UTS namespace of its own, the runtime would set the host's.
    let hostname = namespaces::private_uts(host)
        .then(|| container.config.hostname.clone().unwrap_or_default());
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(inputs.rootfs)
                .readonly(host.readonly_rootfs.unwrap_or(false))
                .build()
                .map_err(|e| anyhow!("root: {e}"))?,
        )
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
        .map_err(|e| anyhow!("spec: {e}"))?;
    spec.set_hostname(hostname);
    Ok(spec)
}

fn process(
    container: &Container,
    user: &ResolvedUser,
    args: Vec<String>,
    privileged: bool,
) -> Result<Process> {
    let host = &container.host_config;
    let caps = capabilities(host, privileged)?;
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        .inheritable(
            Vec::<Capability>::new()
                .into_iter()
                .collect::<oci_spec::runtime::Capabilities>(),
        )
        .ambient(
            Vec::<Capability>::new()
                .into_iter()
                .collect::<oci_spec::runtime::Capabilities>(),
        )
        .build()
        .map_err(|e| anyhow!("capabilities: {e}"))?;
    let no_new_privileges = super::security::SecurityOpts::parse(host)?.no_new_privileges;
    let cwd = container
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let mut builder = ProcessBuilder::default()
        .terminal(container.config.tty.unwrap_or(false))
        .args(args)
        .env(environment(container, user))
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()
                .map_err(|e| anyhow!("user: {e}"))?,
        )
        .capabilities(caps)
        .no_new_privileges(no_new_privileges)
        .rlimits(rlimits(host)?);
    if let Some(adj) = host.oom_score_adj {
        builder = builder.oom_score_adj(adj as i32);
    }
    Ok(builder.build().map_err(|e| anyhow!("process: {e}"))?)
}

/// The container's Env (already merged with the image's at create) over what Docker sets
/// first — the default PATH, HOSTNAME, TERM with a tty — and HOME last unless set, as runc
/// adds it: `env` in a container lists them in Docker's order.
pub fn environment(container: &Container, user: &ResolvedUser) -> Vec<String> {
    let mut daemon = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!(
            "HOSTNAME={}",
            container.config.hostname.clone().unwrap_or_default()
        ),
    ];
    if container.config.tty.unwrap_or(false) {
        daemon.push("TERM=xterm".into());
    }
    let mut env = merge_env(daemon, container.config.env.as_deref().unwrap_or_default());
    if !env.iter().any(|e| e.split('=').next() == Some("HOME")) {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// `base` with each `KEY=value` of `overrides` replacing the same key or appended (Docker's
/// ReplaceOrAppendEnvValues; a bare `KEY` removes it).
pub(crate) fn merge_env(mut base: Vec<String>, overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    for o in overrides {
        let k = key(o);
        let pos = base.iter().position(|e| key(e) == k);
        match (pos, o.contains('=')) {
            (Some(i), true) => base[i] = o.clone(),
            (None, true) => base.push(o.clone()),
            (Some(i), false) => {
                base.remove(i);
            }
            (None, false) => {}
        }
    }
    base
}

fn parse_cap(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    // oci-spec parses "SYS_ADMIN"; the docker CLI sends "CAP_SYS_ADMIN".
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| Error::InvalidParameter(format!("unknown capability: \"{name}\"")))
}

/// Docker's defaults with `--cap-add`/`--cap-drop` ("ALL" works in both); every capability
/// the host's bounding set has with `--privileged` (this VM's lacks CAP_SYS_RESOURCE, and
/// asking for more than the host has fails).
fn capabilities(host: &HostConfig, privileged: bool) -> Result<oci_spec::runtime::Capabilities> {
    if privileged {
        return Ok(host_capabilities()?.into_iter().collect());
    }
    let mut caps: Vec<Capability> = DEFAULT_CAPS.to_vec();
    let drops = host.cap_drop.iter().flatten();
    for d in drops {
        if d.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            let cap = parse_cap(d)?;
            caps.retain(|c| *c != cap);
        }
    }
    for a in host.cap_add.iter().flatten() {
        if a.eq_ignore_ascii_case("ALL") {
            caps = host_capabilities()?;
        } else {
            let cap = parse_cap(a)?;
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    Ok(caps.into_iter().collect())
}

/// The capabilities in this process's bounding set: what "all" means here (this VM's set
/// lacks CAP_SYS_RESOURCE; asking for more than the host has fails).
pub(crate) fn host_capabilities() -> Result<Vec<Capability>> {
    let bounding = caps::read(None, caps::CapSet::Bounding)
        .context("cannot read the capability bounding set")?;
    let mut caps: Vec<Capability> = bounding
        .into_iter()
        // caps prints CAP_CHOWN; oci-spec parses CHOWN.
        .filter_map(|c| {
            c.to_string()
                .trim_start_matches("CAP_")
                .parse::<Capability>()
                .ok()
        })
        .collect();
    caps.sort_by_key(|c| c.to_string());
    Ok(caps)
}

fn bind(target: &str, source: &Path, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| anyhow!("mount {target}: {e}"))?)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| anyhow!("mount {destination}: {e}"))?)
}

/// Docker's /proc, /dev, /dev/pts, /sys, /sys/fs/cgroup, /dev/mqueue, /dev/shm.
fn default_mounts(privileged: bool, host: &HostConfig) -> Result<Vec<Mount>> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let shm_size = host.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE);
    let shm_size = format!("size={shm_size}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    // The host's /dev/shm with its IPC namespace (as Docker binds it); none with `--ipc none`.
    match host.ipc_mode.as_deref() {
        Some("host") => mounts.push(bind(
            "/dev/shm",
            Path::new("/dev/shm"),
            &["rbind", "rprivate"],
        )?),
        Some("none") => {}
        _ => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?),
    }
    Ok(mounts)
}

fn rlimits(host: &HostConfig) -> Result<Vec<PosixRlimit>> {
    let mut out = Vec::new();
    for u in host.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        let typ: PosixRlimitType = format!("RLIMIT_{}", name.to_ascii_uppercase())
            .parse()
            .map_err(|_| Error::InvalidParameter(format!("invalid ulimit type: {name}")))?;
        let soft = u.soft.unwrap_or(0);
        let hard = u.hard.unwrap_or(soft);
        if soft < 0 || hard < 0 || soft > hard {
            return Err(Error::InvalidParameter(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft as u64)
                .hard(hard as u64)
                .build()
                .map_err(|e| anyhow!("rlimit: {e}"))?,
        );
    }
    Ok(out)
}

/// Docker's device cgroup: deny all (the runtime adds the allow rules every container
/// needs: null, zero, full, random, urandom, tty, console, ptmx, pts, tun, and mknod);
/// everything with `--privileged`.
fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>> {
    let all = LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()
        .map_err(|e| anyhow!("device rule: {e}"))?;
    Ok(vec![all])
}

/// `--memory` (with its swap), `--memory-reservation`, `--oom-kill-disable` and
/// `--memory-swappiness`.
fn memory(host: &HostConfig) -> Result<Option<LinuxMemory>> {
    let limit = host.memory.filter(|m| *m > 0);
    let reservation = host.memory_reservation.filter(|m| *m > 0);
    let no_oom_kill = host.oom_kill_disable.unwrap_or(false);
    // -1: the kernel's default (the docker CLI's when `--memory-swappiness` is not given).
    let swappiness = host.memory_swappiness.filter(|s| *s != -1);
    if limit.is_none() && reservation.is_none() && !no_oom_kill && swappiness.is_none() {
        return Ok(None);
    }
    let mut m = LinuxMemoryBuilder::default();
    if let Some(swappiness) = swappiness {
        let swappiness = u64::try_from(swappiness)
            .ok()
            .filter(|s| *s <= 100)
            .ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "Invalid value: {swappiness}, valid memory swappiness range is 0-100"
                ))
            })?;
        m = m.swappiness(swappiness);
    }
    if let Some(limit) = limit {
        if limit < MINIMUM_MEMORY {
            return Err(Error::InvalidParameter(
                "Minimum memory limit allowed is 6MB".into(),
            ));
        }
        m = m.limit(limit);
        // Docker: swap unset → as much swap as memory (memory+swap = 2 × memory).
        match host.memory_swap {
            Some(-1) => m = m.swap(-1),
            Some(s) if s > 0 => {
                if s < limit {
                    return Err(Error::InvalidParameter(
                        "Minimum memoryswap limit should be larger than memory limit, see usage"
                            .into(),
                    ));
                }
                m = m.swap(s)
            }
            _ => m = m.swap(limit * 2),
        }
    }
    if let Some(reservation) = reservation {
        if reservation < MINIMUM_MEMORY {
            return Err(Error::InvalidParameter(
                "Minimum memory reservation allowed is 6MB".into(),
            ));
        }
        if limit.is_some_and(|limit| limit < reservation) {
            return Err(Error::InvalidParameter(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
                    .into(),
            ));
        }
        m = m.reservation(reservation);
    }
    if no_oom_kill {
        m = m.disable_oom_killer(true);
    }
    Ok(Some(m.build().map_err(|e| anyhow!("memory: {e}"))?))
}

/// The resource settings checked as at a start, for create: Docker refuses a container
/// it could not start before making it.
pub fn check_resources(host: &HostConfig) -> Result<()> {
    resources(host, host.privileged.unwrap_or(false), Vec::new()).map(drop)
}

/// `--cpuset-cpus` / `--cpuset-mems` (`what`: Docker's words for them) name only CPUs or
/// memory nodes the host has online (the list in `online`, e.g. /sys/devices/system/cpu/online).
fn check_cpuset(requested: &str, what: &str, online: &str) -> Result<()> {
    let invalid = || Error::InvalidParameter(format!("Invalid value {requested} for {what}"));
    let wanted = parse_cpuset(requested).ok_or_else(invalid)?;
    let available = std::fs::read_to_string(online).unwrap_or_default();
    let Some(have) = parse_cpuset(available.trim()) else {
        return Ok(()); // Not known here: the kernel decides at the start.
    };
    if !wanted.is_subset(&have) {
        let noun = if what == "cpuset cpus" {
            "CPUs"
        } else {
            "memory nodes"
        };
        return Err(Error::InvalidParameter(format!(
            "Requested {noun} are not available - requested {requested}, available: {}",
            available.trim()
        )));
    }
    Ok(())
}

/// A kernel cpu list ("0-3,5") as its numbers.
fn parse_cpuset(list: &str) -> Option<std::collections::BTreeSet<u32>> {
    let mut set = std::collections::BTreeSet::new();
    for part in list.split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let (low, high): (u32, u32) = (low.parse().ok()?, high.parse().ok()?);
        if low > high || high - low > 4096 {
            return None;
        }
        set.extend(low..=high);
    }
    Some(set)
}

/// `mapped_devices`: the rules of `--device`, after Docker's.
fn resources(
    host: &HostConfig,
    privileged: bool,
    mapped_devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources> {
    let mut devices = device_rules(privileged)?;
    devices.extend(mapped_devices);
    let mut r = LinuxResourcesBuilder::default().devices(devices);
    if let Some(memory) = memory(host)? {
        r = r.memory(memory);
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut has_cpu = false;
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        if host.cpu_quota.unwrap_or(0) > 0 || host.cpu_period.unwrap_or(0) > 0 {
            return Err(Error::InvalidParameter(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
            ));
        }
        cpu = cpu
            .quota(nano * CPU_PERIOD as i64 / 1_000_000_000)
            .period(CPU_PERIOD);
        has_cpu = true;
    }
    if let Some(q) = host.cpu_quota.filter(|q| *q > 0) {
        cpu = cpu.quota(q);
        has_cpu = true;
    }
    if let Some(p) = host.cpu_period.filter(|p| *p > 0) {
        cpu = cpu.period(p as u64);
        has_cpu = true;
    }
    if let Some(s) = host.cpu_shares.filter(|s| *s > 0) {
        cpu = cpu.shares(s as u64);
        has_cpu = true;
    }
    if let Some(cpus) = host.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        check_cpuset(&cpus, "cpuset cpus", "/sys/devices/system/cpu/online")?;
        cpu = cpu.cpus(cpus);
        has_cpu = true;
    }
    if let Some(mems) = host.cpuset_mems.clone().filter(|c| !c.is_empty()) {
        check_cpuset(&mems, "cpuset mems", "/sys/devices/system/node/online")?;
        cpu = cpu.mems(mems);
        has_cpu = true;
    }
    if has_cpu {
        r = r.cpu(cpu.build().map_err(|e| anyhow!("cpu: {e}"))?);
    }
    if let Some(limit) = host.pids_limit.filter(|p| *p != 0) {
        r = r.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(|e| anyhow!("pids: {e}"))?,
        );
    }
    if let Some(weight) = host.blkio_weight.filter(|w| *w > 0) {
        if !(10..=1000).contains(&weight) {
            return Err(Error::InvalidParameter(
                "Range of blkio weight is from 10 to 1000".into(),
            ));
        }
        r = r.block_io(
            LinuxBlockIoBuilder::default()
                .weight(weight)
                .build()
                .map_err(|e| anyhow!("blkio: {e}"))?,
        );
    }
    Ok(r.build().map_err(|e| anyhow!("resources: {e}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        let set = |l: &str| parse_cpuset(l).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(set("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(set("3"), Some(vec![3]));
        assert_eq!(set("2-1"), None);
        assert_eq!(set("a"), None);
        assert_eq!(set(""), None);
    }

    #[test]
    fn env_overrides_replace_keys_in_place_append_new_ones_and_unset_bare_ones() {
        let base = vec![
            "PATH=/bin".to_string(),
            "A=1".to_string(),
            "B=2".to_string(),
        ];
        let merged = merge_env(base, &["A=x".into(), "C=3".into(), "B".into()]);
        assert_eq!(merged, ["PATH=/bin", "A=x", "C=3"]);
    }
}
