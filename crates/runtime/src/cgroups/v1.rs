//! The cgroup v1 driver: the container has one directory in every mounted hierarchy.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::fs::{
    add_pid, cgroup_subpath, mkdir_exist_ok, own_cgroup, read_file, read_pids, remove_cgroup,
    write_file,
};
use super::knobs::{controller_of, Knobs};
use super::stats::{self, Stats};
use super::{freezer, CgroupManager, CgroupMountSource, SelfJoin};

/// The controller names a v1 mount's options may carry (besides `name=<hierarchy>`); the other
/// options (rw, xattr, release_agent=...) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "debug",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The memory+swap limit, which is what OCI's `memory.swap` means.
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// What a new cpuset cgroup must inherit before it can hold a process.
const CPUSET_KNOBS: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];

/// Pauses before each look at whether a cgroup being removed has emptied (see
/// [`wait_until_empty`]): about a third of a second in all.
const EXIT_RECHECK_DELAYS_MS: [u64; 6] = [0, 1, 4, 16, 64, 256];

/// A mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// The controllers bound to it, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mountpoint: PathBuf,
    /// Where relative cgroup paths start, relative to the mountpoint: this process's own cgroup
    /// in the hierarchy. Empty for the mount's root.
    pub own_cgroup: PathBuf,
}

impl V1Mount {
    /// The hierarchy of `controllers` (comma-separated, as in "cpu,cpuacct" or "name=systemd")
    /// mounted at `mountpoint`; relative cgroup paths start at its root.
    pub fn new(controllers: &str, mountpoint: impl Into<PathBuf>) -> Self {
        Self {
            controllers: controllers.split(',').map(str::to_owned).collect(),
            mountpoint: mountpoint.into(),
            own_cgroup: PathBuf::new(),
        }
    }
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: V1Mount,
    /// The container's cgroup below the mountpoint.
    sub: PathBuf,
    /// The mountpoint joined with `sub`.
    dir: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.mount.controllers.iter().any(|c| c == controller)
    }
}

/// A container's cgroup in the cgroup v1 hierarchies: it joins every one mounted, like runc.
#[derive(Debug, Clone)]
pub struct V1Manager {
    /// The cgroup path as given (a relative one resolves to a different place per hierarchy).
    path: PathBuf,
    hierarchies: Vec<Hierarchy>,
}

impl V1Manager {
    /// The cgroup `cgroup_path` in each of `mounts`: an absolute path from the mount's root, a
    /// relative one from its [`V1Mount::own_cgroup`].
    pub fn new(mounts: Vec<V1Mount>, cgroup_path: &Path) -> Result<Self> {
        let sub = cgroup_subpath(cgroup_path)?;
        let hierarchies = mounts
            .into_iter()
            .map(|mount| {
                let sub = if cgroup_path.is_absolute() {
                    sub.clone()
                } else {
                    cgroup_subpath(&mount.own_cgroup)?.join(&sub)
                };
                Ok(Hierarchy {
                    dir: mount.mountpoint.join(&sub),
                    sub,
                    mount,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            path: cgroup_path.to_owned(),
            hierarchies,
        })
    }

    /// The cgroup `cgroup_path` in every v1 hierarchy this process sees mounted
    /// (/proc/self/mountinfo); a relative path starts from this process's own cgroup in each
    /// (/proc/self/cgroup).
    pub fn open(cgroup_path: &Path) -> Result<Self> {
        let mut mounts = mounted_hierarchies()?;
        if mounts.is_empty() {
            bail!("no cgroup hierarchy: /sys/fs/cgroup is not cgroup2 and no cgroup v1 hierarchy is mounted");
        }
        if cgroup_path.is_relative() {
            let proc_self_cgroup = read_file(Path::new("/proc/self/cgroup"))?;
            for (mount, root) in &mut mounts {
                let own = Path::new(own_cgroup(&proc_self_cgroup, &mount.controllers)?);
                mount.own_cgroup = own
                    .strip_prefix(&*root)
                    .with_context(|| {
                        format!(
                            "own cgroup {} is outside the mount of {}",
                            own.display(),
                            root.display()
                        )
                    })?
                    .to_owned();
            }
        }
        Self::new(
            mounts.into_iter().map(|(mount, _)| mount).collect(),
            cgroup_path,
        )
    }

    fn hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.has(controller))
    }

    /// Whether this kernel has the knob file (the directory must exist).
    fn has_knob(&self, knob: &str) -> bool {
        self.knob_path(knob).is_ok_and(|path| path.exists())
    }

    /// blkio.weight and blkio.weight_device were CFQ's, gone since Linux 5.0; BFQ has them as
    /// blkio.bfq.weight and blkio.bfq.weight_device.
    fn set_blkio_weight(&self, name: &str, value: Option<impl Display>) -> Result<()> {
        let Some(value) = value else { return Ok(()) };
        if !self.set_if_present(&format!("blkio.{name}"), &value)? {
            self.set(&format!("blkio.bfq.{name}"), &value)?;
        }
        Ok(())
    }
}

impl CgroupManager for V1Manager {
    fn version(&self) -> &'static str {
        "v1"
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<()> {
        for h in &self.hierarchies {
            if h.has("cpuset") {
                create_cpuset(&h.mount.mountpoint, &h.sub)?;
            } else {
                fs::create_dir_all(&h.dir)
                    .with_context(|| format!("cannot create cgroup {}", h.dir.display()))?;
            }
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.write_resources(resources)
    }

    fn add_process(&self, pid: Pid) -> Result<()> {
        self.hierarchies
            .iter()
            .try_for_each(|h| add_pid(&h.dir, pid))
    }

    fn self_join(&self) -> Result<Option<SelfJoin>> {
        let tasks = self.hierarchies.iter().map(|h| {
            let path = h.dir.join("tasks");
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Ok((path, file))
        });
        Ok(Some(SelfJoin(tasks.collect::<Result<_>>()?)))
    }

    /// Every hierarchy holds the same processes; the pids one is there to count them.
    fn pids(&self) -> Result<Vec<Pid>> {
        match self.hierarchy("pids").or(self.hierarchies.first()) {
            Some(h) => read_pids(&h.dir),
            None => Ok(Vec::new()),
        }
    }

    /// Stops at the first hierarchy that fails: the same processes are in all of them, so waiting
    /// in the others would only multiply the wait. Running it again finishes the job.
    fn remove(&self) -> Result<()> {
        self.hierarchies
            .iter()
            .try_for_each(|h| remove_cgroup(&h.dir, wait_until_empty))
    }

    fn mount_sources(&self) -> Vec<CgroupMountSource> {
        self.hierarchies
            .iter()
            .map(|h| CgroupMountSource {
                subdir: Some(h.mount.mountpoint.file_name().map_or_else(
                    || h.mount.controllers.join(","),
                    |name| name.to_string_lossy().into_owned(),
                )),
                host_path: h.dir.clone(),
            })
            .collect()
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        freezer::set_v1(&self.knob_path("freezer.state")?, frozen)
    }

    fn frozen(&self) -> Result<bool> {
        freezer::is_frozen_v1(&self.knob_path("freezer.state")?)
    }

    fn stats(&self) -> Stats {
        stats::v1(&|knob| fs::read_to_string(self.knob_path(knob).ok()?).ok())
    }
}

impl Knobs for V1Manager {
    const UNLIMITED: &'static str = "-1";
    const HUGETLB_LIMIT: &'static str = "limit_in_bytes";

    fn knob_path(&self, knob: &str) -> Result<PathBuf> {
        let controller = controller_of(knob);
        let hierarchy = self.hierarchy(controller).ok_or_else(|| {
            anyhow!("cannot apply {knob}: the {controller} cgroup controller is not available (not mounted)")
        })?;
        Ok(hierarchy.dir.join(knob))
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<()> {
        let non_zero = |value: &u64| *value != 0;
        self.set_some("cpu.shares", cpu.shares().filter(non_zero))?;
        // A quota of zero or below is no quota: -1 to v1.
        let quota = cpu.quota().map(|quota| if quota > 0 { quota } else { -1 });
        self.set_pair(
            ("cpu.cfs_period_us", cpu.period().filter(non_zero)),
            ("cpu.cfs_quota_us", quota),
        )?;
        self.set_some("cpu.cfs_burst_us", cpu.burst())?;
        self.set_pair(
            ("cpu.rt_period_us", cpu.realtime_period().filter(non_zero)),
            (
                "cpu.rt_runtime_us",
                cpu.realtime_runtime().filter(|&runtime| runtime != 0),
            ),
        )?;
        self.set_some("cpu.idle", cpu.idle())
    }

    /// memory.checkBeforeUpdate needs nothing here: v1 itself refuses (EBUSY) a limit below the
    /// usage it cannot reclaim.
    fn apply_memory(&self, memory: &LinuxMemory) -> Result<()> {
        // A kernel without swap accounting has no memsw file and does not limit swap, which is
        // all that -1 asks.
        let swap = memory
            .swap()
            .filter(|&swap| swap >= 0 || self.has_knob(MEMSW));
        self.set_pair(
            ("memory.limit_in_bytes", memory.limit().map(Self::limit)),
            (MEMSW, swap.map(Self::limit)),
        )?;
        self.set_some(
            "memory.soft_limit_in_bytes",
            memory.reservation().map(Self::limit),
        )?;
        self.set_some(
            "memory.kmem.limit_in_bytes",
            memory.kernel().map(Self::limit),
        )?;
        self.set_some(
            "memory.kmem.tcp.limit_in_bytes",
            memory.kernel_tcp().map(Self::limit),
        )?;
        self.set_some("memory.swappiness", memory.swappiness())?;
        self.set_some(
            "memory.oom_control",
            memory.disable_oom_killer().map(u8::from),
        )?;
        self.set_some("memory.use_hierarchy", memory.use_hierarchy().map(u8::from))
    }

    fn apply_block_io(&self, block_io: &LinuxBlockIo) -> Result<()> {
        self.set_blkio_weight("weight", block_io.weight())?;
        self.set_some("blkio.leaf_weight", block_io.leaf_weight())?;
        for device in block_io.weight_device().iter().flatten() {
            let line = |weight: Option<u16>| {
                weight.map(|w| format!("{}:{} {w}", device.major(), device.minor()))
            };
            self.set_blkio_weight("weight_device", line(device.weight()))?;
            self.set_some("blkio.leaf_weight_device", line(device.leaf_weight()))?;
        }
        for (knob, devices) in [
            (
                "blkio.throttle.read_bps_device",
                block_io.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                block_io.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                block_io.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                block_io.throttle_write_iops_device(),
            ),
        ] {
            for device in devices.iter().flatten() {
                self.set(
                    knob,
                    format!("{}:{} {}", device.major(), device.minor(), device.rate()),
                )?;
            }
        }
        Ok(())
    }

    fn apply_network(&self, network: &LinuxNetwork) -> Result<()> {
        self.set_some("net_cls.classid", network.class_id())?;
        for priority in network.priorities().iter().flatten() {
            self.set(
                "net_prio.ifpriomap",
                format!("{} {}", priority.name(), priority.priority()),
            )?;
        }
        Ok(())
    }

    fn apply_unified(&self, _: &HashMap<String, String>) -> Result<()> {
        bail!("cannot apply unified: it sets cgroup v2 files, and this host uses cgroup v1")
    }

    /// In order: an allow rule goes to devices.allow, a deny rule to devices.deny (so a
    /// leading `a *:* rwm` deny empties the list the allows then fill).
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        for rule in rules {
            let knob = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            self.set(knob, super::devices::v1_line(rule))?;
        }
        Ok(())
    }
}

/// mkdir -p in the cpuset hierarchy. A new cpuset cgroup has empty cpuset.cpus and cpuset.mems,
/// and the kernel refuses processes into it (ENOSPC) until they are set, so each level, top
/// down, gets its parent's values where empty (which also mends a level left empty by an
/// interrupted earlier run).
fn create_cpuset(mountpoint: &Path, sub: &Path) -> Result<()> {
    let mut level = mountpoint.to_path_buf();
    let mut values = CPUSET_KNOBS
        .iter()
        .map(|knob| read_file(&level.join(knob)))
        .collect::<Result<Vec<_>>>()?;
    for component in sub.components() {
        level.push(component);
        mkdir_exist_ok(&level)?;
        for (knob, value) in CPUSET_KNOBS.iter().zip(&mut values) {
            let path = level.join(knob);
            let own = read_file(&path)?;
            if own.trim().is_empty() {
                write_file(&path, value.trim())?;
            } else {
                *value = own;
            }
        }
    }
    Ok(())
}

/// v1 has no event to wait on for "no process left". Processes killed just before leave within
/// milliseconds (a large one takes longer to free its memory), so look again a handful of times,
/// backing off.
fn wait_until_empty(dir: &Path) -> Result<()> {
    for delay in EXIT_RECHECK_DELAYS_MS {
        thread::sleep(Duration::from_millis(delay));
        if read_pids(dir)?.is_empty() {
            return Ok(());
        }
    }
    bail!(
        "cgroup {} still has processes {:?}",
        dir.display(),
        read_pids(dir)?
    )
}

/// The v1 hierarchies mounted in this process's mount namespace, read once per namespace:
/// a monitor opens its container's cgroup at create, start and delete, and the kernel takes
/// a tenth of a millisecond to print mountinfo. Hierarchies are mounted at boot and stay;
/// a process that moves to another mount namespace reads them again.
fn mounted_hierarchies() -> Result<Vec<(V1Mount, PathBuf)>> {
    type Cached = Option<(u64, Vec<(V1Mount, PathBuf)>)>;
    static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    use std::os::unix::fs::MetadataExt;
    let namespace = fs::metadata("/proc/self/ns/mnt")
        .context("cannot stat /proc/self/ns/mnt")?
        .ino();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached, mounts)) = &*cache {
        if *cached == namespace {
            return Ok(mounts.clone());
        }
    }
    // Lossy: only cgroup mounts matter, and their paths are plain ASCII.
    let mountinfo = fs::read("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&String::from_utf8_lossy(&mountinfo));
    *cache = Some((namespace, mounts.clone()));
    Ok(mounts)
}

/// The v1 hierarchies mounted, from the text of /proc/self/mountinfo, each with the cgroup its
/// mount shows at the mountpoint (the root field). A hierarchy mounted more than once (bind
/// mounts) counts once, at its first mount: the host's own.
fn parse_mountinfo(mountinfo: &str) -> Vec<(V1Mount, PathBuf)> {
    let mut mounts: Vec<(V1Mount, PathBuf)> = Vec::new();
    for (mount, root) in mountinfo.lines().filter_map(parse_mount_line) {
        if !mounts
            .iter()
            .any(|(m, _)| m.controllers == mount.controllers)
        {
            mounts.push((mount, root));
        }
    }
    mounts
}

/// One mountinfo line if it is a cgroup v1 mount:
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - cgroup SOURCE SUPER_OPTIONS`.
fn parse_mount_line(line: &str) -> Option<(V1Mount, PathBuf)> {
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut filesystem = filesystem.split(' ');
    if filesystem.next()? != "cgroup" {
        return None;
    }
    let controllers: Vec<String> = filesystem
        .nth(1)?
        .split(',')
        .filter(|option| V1_CONTROLLERS.contains(option) || option.starts_with("name="))
        .map(str::to_owned)
        .collect();
    let mut fields = mount.split(' ');
    let root = unescape(fields.nth(3)?);
    let mountpoint = unescape(fields.next()?);
    let mount = V1Mount {
        controllers,
        mountpoint,
        own_cgroup: PathBuf::new(),
    };
    (!mount.controllers.is_empty()).then_some((mount, root))
}

/// A mountinfo path: space, tab, newline and backslash come escaped as `\ooo` (octal).
fn unescape(field: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let octal = tail
            .get(..3)
            .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        match (byte, octal) {
            (b'\\', Some(code)) => {
                bytes.push(code);
                rest = &tail[3..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::testing::{fake_cgroup, memory, read, unique_name, Cleanup, Sleeper};
    use crate::cgroups::{is_cgroup2, CGROUP_ROOT};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    const MIB: i64 = 1 << 20;

    fn cpu(quota: i64, period: u64) -> LinuxCpuBuilder {
        LinuxCpuBuilder::default().quota(quota).period(period)
    }

    #[test]
    fn mountinfo_gives_each_v1_hierarchy_once() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/x /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,pids
50 60 0:32 / /run/bound/memory rw,relatime - cgroup cgroup rw,memory
";
        let mounts = parse_mountinfo(mountinfo);
        let summary: Vec<(String, String, String)> = mounts
            .iter()
            .map(|(m, root)| {
                (
                    m.controllers.join(","),
                    m.mountpoint.display().to_string(),
                    root.display().to_string(),
                )
            })
            .collect();
        let expected = [
            ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/"),
            ("memory", "/sys/fs/cgroup/memory", "/docker/x"),
            ("name=systemd", "/sys/fs/cgroup/systemd", "/"),
            ("pids", "/sys/fs/cgroup/odd name", "/"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(summary, expected);
    }

    #[test]
    fn relative_paths_start_at_each_own_cgroup() {
        let mut memory = V1Mount::new("memory", "/m");
        memory.own_cgroup = PathBuf::from("/user/1");
        let manager = V1Manager::new(
            vec![memory, V1Mount::new("cpu,cpuacct", "/c")],
            Path::new("x/y"),
        )
        .unwrap();
        let dirs: Vec<PathBuf> = manager
            .mount_sources()
            .into_iter()
            .map(|s| s.host_path)
            .collect();
        assert_eq!(
            dirs,
            [PathBuf::from("/m/user/1/x/y"), PathBuf::from("/c/x/y")]
        );
        let manager = V1Manager::new(vec![V1Mount::new("memory", "/m")], Path::new("/x")).unwrap();
        assert_eq!(manager.mount_sources()[0].host_path, Path::new("/m/x"));
        assert!(V1Manager::new(vec![], Path::new("../x")).is_err());
    }

    /// Fake hierarchies under a temp dir with the cgroup /c, each with `files` of its controller.
    fn fake_hierarchies(hierarchies: &[(&str, &[&str])]) -> (tempfile::TempDir, V1Manager) {
        let root = tempfile::tempdir().unwrap();
        let mounts = hierarchies
            .iter()
            .map(|(controllers, files)| {
                fake_cgroup(&root.path().join(controllers).join("c"), files);
                V1Mount::new(controllers, root.path().join(controllers))
            })
            .collect();
        let manager = V1Manager::new(mounts, Path::new("/c")).unwrap();
        (root, manager)
    }

    fn knob(manager: &V1Manager, knob: &str) -> String {
        read(&manager.knob_path(knob).unwrap())
    }

    #[test]
    fn apply_writes_v1_files() {
        let (_root, manager) = fake_hierarchies(&[
            (
                "cpu,cpuacct",
                &[
                    "cpu.shares",
                    "cpu.cfs_period_us",
                    "cpu.cfs_quota_us",
                    "cpu.cfs_burst_us",
                ],
            ),
            (
                "memory",
                &[
                    MEMSW,
                    "memory.limit_in_bytes",
                    "memory.soft_limit_in_bytes",
                    "memory.swappiness",
                    "memory.oom_control",
                ],
            ),
            ("pids", &["pids.max"]),
            (
                "blkio",
                &["blkio.bfq.weight", "blkio.throttle.read_bps_device"],
            ),
        ]);
        let throttle = |minor: i64, rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(minor)
                .rate(rate)
                .build()
                .unwrap()
        };
        let resources = LinuxResourcesBuilder::default()
            .cpu(cpu(-1, 100_000).shares(512u64).build().unwrap())
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 * MIB)
                    .swap(-1)
                    .reservation(32 * MIB)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .throttle_read_bps_device(vec![throttle(0, 1024), throttle(16, 0)])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        manager.apply(&resources).unwrap();
        let expected = [
            ("cpu.shares", "512\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_burst_us", ""),
            ("memory.limit_in_bytes", "67108864\n"),
            (MEMSW, "-1\n"),
            ("memory.soft_limit_in_bytes", "33554432\n"),
            ("memory.swappiness", "10\n"),
            ("memory.oom_control", "1\n"),
            ("pids.max", "max\n"),
            ("blkio.bfq.weight", "300\n"),
            ("blkio.throttle.read_bps_device", "8:0 1024\n8:16 0\n"),
        ];
        for (file, content) in expected {
            assert_eq!(knob(&manager, file), content, "{file}");
        }
    }

    #[test]
    fn swap_is_memory_plus_swap_and_needs_swap_accounting_unless_unlimited() {
        let (_root, manager) = fake_hierarchies(&[("memory", &["memory.limit_in_bytes", MEMSW])]);
        manager.apply(&memory(64 * MIB, 192 * MIB)).unwrap();
        assert_eq!(knob(&manager, "memory.limit_in_bytes"), "67108864\n");
        assert_eq!(knob(&manager, MEMSW), "201326592\n");

        let (_root, manager) = fake_hierarchies(&[("memory", &["memory.limit_in_bytes"])]);
        manager.apply(&memory(64 * MIB, -1)).unwrap();
        assert_eq!(knob(&manager, "memory.limit_in_bytes"), "67108864\n");
        let err = format!(
            "{:#}",
            manager.apply(&memory(64 * MIB, 128 * MIB)).unwrap_err()
        );
        assert!(err.contains(MEMSW) && err.contains("134217728"), "{err}");
    }

    #[test]
    fn knobs_of_unmounted_controllers_are_errors() {
        let (_root, manager) = fake_hierarchies(&[("memory", &[]), ("name=systemd", &[])]);
        let limit = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(MIB)
            .build()
            .unwrap();
        let err = manager.apply(
            &LinuxResourcesBuilder::default()
                .hugepage_limits(vec![limit])
                .build()
                .unwrap(),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "cannot apply hugetlb.2MB.limit_in_bytes: the hugetlb cgroup controller is not available (not mounted)"
        );
        let unified = HashMap::from([("memory.max".to_owned(), "1".to_owned())]);
        let err = manager.apply(
            &LinuxResourcesBuilder::default()
                .unified(unified)
                .build()
                .unwrap(),
        );
        assert!(err.unwrap_err().to_string().contains("cgroup v1"));
    }

    #[test]
    fn open_resolves_relative_paths_from_the_own_cgroup() {
        let relative = Path::new("berth-test-not-created");
        let manager = open_or_skip(relative);
        let Some(manager) = manager else { return };
        let sources = manager.mount_sources();
        let memory = sources
            .iter()
            .find(|s| s.subdir.as_deref() == Some("memory"))
            .expect("memory hierarchy");
        let proc_self_cgroup = read(Path::new("/proc/self/cgroup"));
        let own = proc_self_cgroup
            .lines()
            .find_map(|l| l.split_once(":memory:/"))
            .unwrap()
            .1;
        assert_eq!(
            memory.host_path,
            Path::new(CGROUP_ROOT)
                .join("memory")
                .join(own)
                .join(relative)
        );
        assert!(!memory.host_path.exists());
    }

    /// The host's v1 driver for `cgroup_path`, or None (with a note) on a v2 host.
    fn open_or_skip(cgroup_path: &Path) -> Option<V1Manager> {
        if is_cgroup2(Path::new(CGROUP_ROOT)).unwrap()
            || !Path::new(CGROUP_ROOT).join("memory").is_dir()
        {
            eprintln!("skipping: {CGROUP_ROOT} has no cgroup v1 hierarchies");
            return None;
        }
        Some(V1Manager::open(cgroup_path).unwrap())
    }

    #[test]
    fn real_cgroup_lifecycle() {
        let parent = unique_name();
        let Some(manager) = open_or_skip(&Path::new("/").join(&parent).join("c")) else {
            return;
        };
        let dirs: Vec<PathBuf> = manager
            .mount_sources()
            .into_iter()
            .map(|s| s.host_path)
            .collect();
        let _cleanup = Cleanup(
            dirs.iter()
                .flat_map(|d| [d.clone(), d.parent().unwrap().to_owned()])
                .collect(),
        );
        manager.create().unwrap();
        assert!(dirs.iter().all(|d| d.is_dir()));
        let cpuset_root = read(&Path::new(CGROUP_ROOT).join("cpuset/cpuset.cpus"));
        assert_eq!(
            knob(&manager, "cpuset.cpus"),
            cpuset_root,
            "inherited from the parent levels"
        );

        let resources = LinuxResourcesBuilder::default()
            .cpu(
                cpu(50_000, 100_000)
                    .shares(512u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
            .build()
            .unwrap();
        manager.apply(&resources).unwrap();
        for (file, value) in [
            ("cpu.cfs_quota_us", "50000\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.shares", "512\n"),
            ("cpuset.cpus", "0\n"),
            ("cpuset.mems", "0\n"),
            ("pids.max", "42\n"),
        ] {
            assert_eq!(knob(&manager, file), value, "{file}");
        }
        // Raising needs memsw first, lowering needs the limit first: both must work.
        let swap_accounting = manager.has_knob(MEMSW);
        for (limit, swap) in [
            (64 * MIB, 128 * MIB),
            (256 * MIB, 512 * MIB),
            (32 * MIB, 48 * MIB),
        ] {
            manager
                .apply(&memory(limit, if swap_accounting { swap } else { -1 }))
                .unwrap();
            assert_eq!(
                knob(&manager, "memory.limit_in_bytes"),
                format!("{limit}\n")
            );
            if swap_accounting {
                assert_eq!(knob(&manager, MEMSW), format!("{swap}\n"));
            }
        }
        // Period and quota change together.
        manager
            .apply(
                &LinuxResourcesBuilder::default()
                    .cpu(cpu(5_000, 10_000).build().unwrap())
                    .build()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(knob(&manager, "cpu.cfs_period_us"), "10000\n");

        let mut child = Sleeper::spawn();
        manager.add_process(child.pid()).unwrap();
        assert_eq!(manager.pids().unwrap(), vec![child.pid()]);
        let proc_cgroup = read(Path::new(&format!("/proc/{}/cgroup", child.pid())));
        for controller in [":memory:", ":cpuset:", ":name=systemd:"] {
            assert!(
                proc_cgroup.contains(&format!("{controller}/{parent}/c\n")),
                "{controller} {proc_cgroup}"
            );
        }
        child.kill();
        manager.remove().unwrap();
        assert!(dirs
            .iter()
            .all(|d| !d.exists() && d.parent().unwrap().exists()));
        manager.remove().unwrap();
    }
}
