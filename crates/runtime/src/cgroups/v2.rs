//! The cgroup v2 driver: the container is one directory of the unified hierarchy.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::fs::{
    add_pid, cgroup_subpath, own_cgroup, read_file, read_pids, remove_cgroup, write_file,
};
use super::knobs::{controller_of, Knobs};
use super::stats::{self, Stats};
use super::{freezer, CgroupManager, CgroupMountSource, SelfJoin};

/// The controllers whose knobs this driver writes. A knob file exists only once its controller
/// is enabled in the parent's cgroup.subtree_control, so `create` enables these on the way down.
const CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// How long `remove` waits for processes that are still exiting (killed just before).
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A container's cgroup in a cgroup v2 (unified) hierarchy.
#[derive(Debug, Clone)]
pub struct V2Manager {
    /// The hierarchy's mount point.
    root: PathBuf,
    /// The cgroup below `root`, without a leading `/`.
    sub: PathBuf,
    /// The cgroup path as `path()` reports it: `sub` from the hierarchy root.
    path: PathBuf,
    /// `root` joined with `sub`.
    dir: PathBuf,
}

impl V2Manager {
    /// The cgroup `cgroup_path` of the hierarchy mounted at `mount_root`. The path is taken from
    /// the hierarchy root whether or not it starts with `/` ([`V2Manager::open`] resolves
    /// relative ones).
    pub fn new(mount_root: &Path, cgroup_path: &Path) -> Result<Self> {
        let sub = cgroup_subpath(cgroup_path)?;
        Ok(Self {
            root: mount_root.to_owned(),
            path: Path::new("/").join(&sub),
            dir: mount_root.join(&sub),
            sub,
        })
    }

    /// Like [`V2Manager::new`], but a relative `cgroup_path` is taken from this process's own
    /// cgroup (the `0::` line of /proc/self/cgroup).
    ///
    /// Like runc, this assumes the hierarchy is mounted at the root of this process's cgroup
    /// namespace, which is how /proc/self/cgroup reports paths; it saves reading mountinfo.
    pub fn open(mount_root: &Path, cgroup_path: &Path) -> Result<Self> {
        if cgroup_path.is_absolute() {
            return Self::new(mount_root, cgroup_path);
        }
        let proc_self_cgroup = read_file(Path::new("/proc/self/cgroup"))?;
        let own = own_cgroup(&proc_self_cgroup, &[])?;
        Self::new(mount_root, &Path::new(own).join(cgroup_path))
    }

    /// Enables [`CONTROLLERS`] in the subtree_control of every ancestor, from the root down to
    /// the parent. Not in the cgroup itself: a cgroup with processes may not have controllers
    /// enabled for its children.
    fn enable_controllers(&self) -> Result<()> {
        let ancestors: Vec<&Path> = self.sub.ancestors().skip(1).collect();
        for ancestor in ancestors.into_iter().rev() {
            enable_controllers_in(&self.root.join(ancestor))?;
        }
        Ok(())
    }
}

/// Enables in `dir`'s children those of [`CONTROLLERS`] that `dir` has (enabling one it lacks
/// fails the whole write).
fn enable_controllers_in(dir: &Path) -> Result<()> {
    let available = read_file(&dir.join("cgroup.controllers"))?;
    let enable: Vec<String> = available
        .split_whitespace()
        .filter(|controller| CONTROLLERS.contains(controller))
        .map(|controller| format!("+{controller}"))
        .collect();
    if enable.is_empty() {
        return Ok(());
    }
    write_file(&dir.join("cgroup.subtree_control"), &enable.join(" "))
}

impl CgroupManager for V2Manager {
    fn version(&self) -> &'static str {
        "v2"
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create cgroup {}", self.dir.display()))?;
        self.enable_controllers()
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        Cgroup2Knobs {
            dir: &self.dir,
            enabled: OnceCell::new(),
        }
        .write_resources(resources)
    }

    fn add_process(&self, pid: Pid) -> Result<()> {
        add_pid(&self.dir, pid)
    }

    fn self_join(&self) -> Result<Option<SelfJoin>> {
        Ok(None)
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        read_pids(&self.dir)
    }

    fn remove(&self) -> Result<()> {
        remove_cgroup(&self.dir, wait_until_empty)
    }

    fn mount_sources(&self) -> Vec<CgroupMountSource> {
        vec![CgroupMountSource {
            subdir: None,
            host_path: self.dir.clone(),
        }]
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        freezer::set_v2(&self.dir, frozen)
    }

    fn frozen(&self) -> Result<bool> {
        freezer::is_frozen_v2(&self.dir)
    }

    fn stats(&self) -> Stats {
        stats::v2(&|knob| fs::read_to_string(self.dir.join(knob)).ok())
    }
}

/// Waits up to [`EXIT_GRACE`] for the cgroup to have no process left (see [`wait_for_event`]).
fn wait_until_empty(dir: &Path) -> Result<()> {
    if wait_for_event(dir, "populated 0", EXIT_GRACE)? {
        return Ok(());
    }
    bail!(
        "cgroup {} still has processes {:?} after {EXIT_GRACE:?}",
        dir.display(),
        read_pids(dir)?
    )
}

/// Waits up to `timeout` for `line` (e.g. "populated 0", "frozen 1") in the cgroup's
/// cgroup.events, which signals POLLPRI on every change, so there is an fd to wait on.
/// False on timeout.
pub(super) fn wait_for_event(dir: &Path, line: &str, timeout: Duration) -> Result<bool> {
    let path = dir.join("cgroup.events");
    let mut events =
        File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        // Reading also marks the current state as seen, so poll reports only later changes.
        let mut text = String::new();
        events
            .seek(SeekFrom::Start(0))
            .and_then(|_| events.read_to_string(&mut text))
            .with_context(|| format!("cannot read {}", path.display()))?;
        if text.lines().any(|l| l == line) {
            return Ok(true);
        }
        let left = PollTimeout::try_from(deadline.saturating_duration_since(Instant::now()))?;
        match poll(&mut [PollFd::new(events.as_fd(), PollFlags::POLLPRI)], left) {
            Ok(0) => return Ok(false),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot poll {}", path.display())),
        }
    }
}

/// The knobs of one cgroup v2 directory, for one `apply`.
struct Cgroup2Knobs<'a> {
    dir: &'a Path,
    /// The cgroup's cgroup.controllers (what its parent enabled), read at the first knob written.
    enabled: OnceCell<String>,
}

impl Cgroup2Knobs<'_> {
    fn enabled(&self) -> Result<&str> {
        if let Some(enabled) = self.enabled.get() {
            return Ok(enabled);
        }
        let enabled = read_file(&self.dir.join("cgroup.controllers"))?;
        Ok(self.enabled.get_or_init(|| enabled))
    }

    /// memory.max may OOM-kill the container when set below its usage; with checkBeforeUpdate
    /// the caller prefers an error.
    fn refuse_limit_below_usage(&self, limit: i64) -> Result<()> {
        let usage: i64 = read_file(&self.knob_path("memory.current")?)?
            .trim()
            .parse()
            .context("bad memory.current")?;
        if (0..usage).contains(&limit) {
            bail!("cannot apply memory.max {limit}: below the current usage {usage} (checkBeforeUpdate)");
        }
        Ok(())
    }
}

impl Knobs for Cgroup2Knobs<'_> {
    const UNLIMITED: &'static str = "max";
    const HUGETLB_LIMIT: &'static str = "max";

    fn knob_path(&self, knob: &str) -> Result<PathBuf> {
        let controller = controller_of(knob);
        // cgroup.* files are the core's, present in every cgroup.
        if controller != "cgroup" && !self.enabled()?.split_whitespace().any(|c| c == controller) {
            bail!("cannot apply {knob}: the {controller} controller is not enabled in the cgroup v2 hierarchy");
        }
        Ok(self.dir.join(knob))
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<()> {
        if cpu.realtime_runtime().is_some_and(|v| v != 0)
            || cpu.realtime_period().is_some_and(|v| v != 0)
        {
            bail!("cannot apply cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no realtime CPU limits");
        }
        self.set_some(
            "cpu.weight",
            cpu.shares().filter(|&s| s != 0).map(cpu_weight),
        )?;
        self.set_some("cpu.max", cpu_max(cpu.quota(), cpu.period()))?;
        self.set_some("cpu.max.burst", cpu.burst())?;
        self.set_some("cpu.idle", cpu.idle())
    }

    fn apply_memory(&self, memory: &LinuxMemory) -> Result<()> {
        let unsupported = [
            ("kernel", memory.kernel().is_some()),
            ("kernelTCP", memory.kernel_tcp().is_some()),
            ("swappiness", memory.swappiness().is_some()),
            (
                "disableOOMKiller",
                memory.disable_oom_killer() == Some(true),
            ),
            // v2 is always hierarchical: asking for it is fine, refusing it is not possible.
            ("useHierarchy", memory.use_hierarchy() == Some(false)),
        ];
        if let Some((knob, _)) = unsupported.iter().find(|(_, set)| *set) {
            bail!("cannot apply memory.{knob}: cgroup v2 has no equivalent");
        }
        if let Some(limit) = memory.limit() {
            if memory.check_before_update() == Some(true) {
                self.refuse_limit_below_usage(limit)?;
            }
            self.set("memory.max", Self::limit(limit))?;
        }
        self.set_some("memory.low", memory.reservation().map(Self::limit))?;
        match swap_max(memory.limit(), memory.swap())? {
            // Without swap accounting there is no memory.swap.max, and swap is not limited.
            Some(max) if max == Self::UNLIMITED => {
                self.set_if_present("memory.swap.max", max).map(drop)
            }
            max => self.set_some("memory.swap.max", max),
        }
    }

    fn apply_block_io(&self, block_io: &LinuxBlockIo) -> Result<()> {
        let devices = block_io.weight_device().iter().flatten();
        if block_io.leaf_weight().is_some() || devices.clone().any(|d| d.leaf_weight().is_some()) {
            bail!("cannot apply blockIO leafWeight: cgroup v2 has no equivalent");
        }
        self.set_some(
            "io.weight",
            block_io
                .weight()
                .map(|w| format!("default {}", io_weight(w))),
        )?;
        for device in devices {
            let weight = device
                .weight()
                .map(|w| format!("{}:{} {}", device.major(), device.minor(), io_weight(w)));
            self.set_some("io.weight", weight)?;
        }
        for line in io_max_lines(block_io) {
            self.set("io.max", line)?;
        }
        Ok(())
    }

    fn apply_network(&self, network: &LinuxNetwork) -> Result<()> {
        if network.class_id().is_some() || network.priorities().iter().flatten().next().is_some() {
            bail!("cannot apply network (classID, priorities): cgroup v2 has no net_cls or net_prio controller");
        }
        Ok(())
    }

    /// cgroup v2 has no device files: the rules become an eBPF program attached to the cgroup
    /// (replacing the one an earlier `apply` attached).
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        super::bpf::apply(self.dir, rules)
    }

    /// Each key is a file of the cgroup directory, written as is.
    fn apply_unified(&self, unified: &HashMap<String, String>) -> Result<()> {
        for (knob, value) in unified {
            if knob.is_empty() || knob.contains('/') || knob.starts_with('.') {
                bail!("cannot apply unified {knob:?}: not a file name of the cgroup directory");
            }
            self.set(knob, value)?;
        }
        Ok(())
    }
}

/// cpu.weight (1..=10000, default 100) for v1 cpu.shares (2..=262144, default 1024), the
/// mapping runc and crun use.
fn cpu_weight(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// io.weight (1..=10000) for a blkio weight (10..=1000), the mapping runc and crun use.
fn io_weight(weight: u16) -> u64 {
    1 + ((u64::from(weight.clamp(10, 1000)) - 10) * 9999) / 990
}

/// cpu.max, "$QUOTA $PERIOD": a quota of zero or below is no quota ("max"); without a period
/// the kernel keeps the current one.
fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let period = period.filter(|&p| p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let quota = quota
        .filter(|&q| q > 0)
        .map_or_else(|| "max".to_owned(), |q| q.to_string());
    Some(match period {
        Some(period) => format!("{quota} {period}"),
        None => quota,
    })
}

/// memory.swap.max: OCI's swap is the memory+swap total, v2 limits swap alone.
fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    Ok(match (limit, swap) {
        (_, None) => None,
        (_, Some(swap)) if swap < 0 => Some("max".to_owned()),
        (Some(limit), Some(swap)) if limit >= 0 && swap >= limit => {
            Some((swap - limit).to_string())
        }
        (Some(limit), Some(swap)) if limit >= 0 => {
            bail!("cannot apply memory.swap.max: memory+swap ({swap}) is below the memory limit ({limit})")
        }
        (_, Some(_)) => bail!("cannot apply memory.swap.max: a swap limit needs a memory limit"),
    })
}

/// io.max lines, one per device with all its limits: "MAJ:MIN rbps=N wiops=N ...". A rate of 0
/// removes the limit, as it does in v1.
fn io_max_lines(block_io: &LinuxBlockIo) -> Vec<String> {
    let mut lines: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for (key, devices) in [
        ("rbps", block_io.throttle_read_bps_device()),
        ("wbps", block_io.throttle_write_bps_device()),
        ("riops", block_io.throttle_read_iops_device()),
        ("wiops", block_io.throttle_write_iops_device()),
    ] {
        for device in devices.iter().flatten() {
            let (major, minor) = (device.major(), device.minor());
            let line = lines
                .entry((major, minor))
                .or_insert_with(|| format!("{major}:{minor}"));
            match device.rate() {
                0 => line.push_str(&format!(" {key}=max")),
                rate => line.push_str(&format!(" {key}={rate}")),
            }
        }
    }
    lines.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::is_cgroup2;
    use crate::cgroups::testing::{fake_cgroup, memory, read, unique_name, Cleanup, Sleeper};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxNetworkBuilder, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };

    const ALL: &str = "cpu memory pids io hugetlb cpuset";
    const KNOBS: &[&str] = &[
        "cgroup.subtree_control",
        "cpu.weight",
        "cpu.max",
        "cpu.max.burst",
        "cpu.idle",
        "cpuset.cpus",
        "cpuset.mems",
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "hugetlb.2MB.rsvd.max",
        "hugetlb.1GB.max",
    ];

    /// A fake unified hierarchy with the cgroup /a/c, whose parent enabled `leaf_controllers`.
    fn fake_hierarchy(leaf_controllers: &str) -> (tempfile::TempDir, V2Manager) {
        let root = tempfile::tempdir().unwrap();
        for level in ["", "a"] {
            fake_cgroup(&root.path().join(level), &["cgroup.subtree_control"]);
            fs::write(
                root.path().join(level).join("cgroup.controllers"),
                format!("{ALL}\n"),
            )
            .unwrap();
        }
        let leaf = root.path().join("a/c");
        fake_cgroup(&leaf, KNOBS);
        fs::write(
            leaf.join("cgroup.controllers"),
            format!("{leaf_controllers}\n"),
        )
        .unwrap();
        let manager = V2Manager::new(root.path(), Path::new("/a/c")).unwrap();
        (root, manager)
    }

    fn throttle(major: i64, minor: i64, rate: u64) -> oci_spec::runtime::LinuxThrottleDevice {
        LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()
    }

    #[test]
    fn apply_writes_every_knob() {
        let (_root, manager) = fake_hierarchy(ALL);
        let resources = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0-1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(128i64 << 20)
                    .reservation(32i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(200u16)
                        .build()
                        .unwrap()])
                    .throttle_read_bps_device(vec![throttle(8, 0, 1 << 20), throttle(8, 16, 0)])
                    .throttle_write_iops_device(vec![throttle(8, 0, 100)])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![
                LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(4i64 << 20)
                    .build()
                    .unwrap(),
                LinuxHugepageLimitBuilder::default()
                    .page_size("1GB")
                    .limit(-1)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        manager.apply(&resources).unwrap();
        let expected = [
            ("cpu.weight", "39\n"),
            ("cpu.max", "50000 100000\n"),
            ("cpu.max.burst", ""),
            ("cpu.idle", ""),
            ("cpuset.cpus", "0-1\n"),
            ("cpuset.mems", "0\n"),
            ("memory.max", "67108864\n"),
            ("memory.low", "33554432\n"),
            ("memory.swap.max", "67108864\n"),
            ("pids.max", "100\n"),
            ("io.weight", "default 4950\n8:0 1920\n"),
            ("io.max", "8:0 rbps=1048576 wiops=100\n8:16 rbps=max\n"),
            ("hugetlb.2MB.max", "4194304\n"),
            ("hugetlb.2MB.rsvd.max", "4194304\n"),
            ("hugetlb.1GB.max", "max\n"),
        ];
        for (knob, content) in expected {
            assert_eq!(read(&manager.dir.join(knob)), content, "{knob}");
        }
        assert!(
            !manager.dir.join("hugetlb.1GB.rsvd.max").exists(),
            "created a knob the kernel lacks"
        );
    }

    #[test]
    fn unset_values_write_nothing() {
        let (_root, manager) = fake_hierarchy("");
        let resources = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().build().unwrap())
            .memory(LinuxMemoryBuilder::default().build().unwrap())
            .block_io(LinuxBlockIoBuilder::default().build().unwrap())
            .build()
            .unwrap();
        manager.apply(&resources).unwrap();
        for knob in KNOBS {
            assert_eq!(read(&manager.dir.join(knob)), "", "{knob}");
        }
    }

    #[test]
    fn create_enables_controllers_from_the_root_down_to_the_parent() {
        let (root, manager) = fake_hierarchy(ALL);
        fs::write(
            root.path().join("a/cgroup.controllers"),
            "cpu pids misc perf_event\n",
        )
        .unwrap();
        manager.create().unwrap();
        let enabled = |level: &str| read(&root.path().join(level).join("cgroup.subtree_control"));
        assert_eq!(enabled(""), "+cpu +memory +pids +io +hugetlb +cpuset\n");
        assert_eq!(enabled("a"), "+cpu +pids +misc\n");
        assert_eq!(
            enabled("a/c"),
            "",
            "the container's own cgroup must keep no controllers for children"
        );
    }

    #[test]
    fn a_controller_not_enabled_is_an_error_naming_the_knob() {
        let (_root, manager) = fake_hierarchy("cpu pids");
        let err = manager.apply(&memory(64 << 20, -1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot apply memory.max: the memory controller is not enabled in the cgroup v2 hierarchy"
        );
    }

    #[test]
    fn knobs_without_a_v2_equivalent_are_errors() {
        let (_root, manager) = fake_hierarchy(ALL);
        let memory =
            |m: LinuxMemoryBuilder| LinuxResourcesBuilder::default().memory(m.build().unwrap());
        let cases = [
            (
                memory(LinuxMemoryBuilder::default().swappiness(60u64)),
                "memory.swappiness",
            ),
            (
                memory(LinuxMemoryBuilder::default().disable_oom_killer(true)),
                "memory.disableOOMKiller",
            ),
            (
                memory(LinuxMemoryBuilder::default().kernel(1i64 << 20)),
                "memory.kernel",
            ),
            (
                LinuxResourcesBuilder::default().cpu(
                    LinuxCpuBuilder::default()
                        .realtime_runtime(1000i64)
                        .build()
                        .unwrap(),
                ),
                "cpu.realtime",
            ),
            (
                LinuxResourcesBuilder::default().block_io(
                    LinuxBlockIoBuilder::default()
                        .leaf_weight(100u16)
                        .build()
                        .unwrap(),
                ),
                "leafWeight",
            ),
            (
                LinuxResourcesBuilder::default().network(
                    LinuxNetworkBuilder::default()
                        .class_id(7u32)
                        .build()
                        .unwrap(),
                ),
                "network",
            ),
        ];
        for (resources, knob) in cases {
            let err = manager
                .apply(&resources.build().unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("cannot apply ") && err.contains(knob),
                "{knob}: {err}"
            );
        }
        let disabled = LinuxMemoryBuilder::default()
            .disable_oom_killer(false)
            .use_hierarchy(true);
        manager.apply(&memory(disabled).build().unwrap()).unwrap();
    }

    #[test]
    fn unified_writes_files_of_the_cgroup_only() {
        let (_root, manager) = fake_hierarchy(ALL);
        let unified = |key: &str| {
            let map = HashMap::from([(key.to_owned(), "10".to_owned())]);
            LinuxResourcesBuilder::default()
                .unified(map)
                .build()
                .unwrap()
        };
        manager.apply(&unified("pids.max")).unwrap();
        assert_eq!(read(&manager.dir.join("pids.max")), "10\n");
        assert!(manager.apply(&unified("../pids.max")).is_err());
        assert!(manager
            .apply(&unified("rdma.max"))
            .unwrap_err()
            .to_string()
            .contains("rdma controller"));
    }

    #[test]
    fn conversions() {
        assert_eq!(
            (cpu_weight(2), cpu_weight(1024), cpu_weight(262_144)),
            (1, 39, 10_000)
        );
        assert_eq!(
            (io_weight(10), io_weight(500), io_weight(1000)),
            (1, 4950, 10_000)
        );
        let max = |quota, period| cpu_max(quota, period);
        assert_eq!(max(Some(50_000), Some(100_000)).unwrap(), "50000 100000");
        assert_eq!(max(Some(-1), Some(100_000)).unwrap(), "max 100000");
        assert_eq!(max(Some(0), None).unwrap(), "max");
        assert_eq!(max(Some(20_000), None).unwrap(), "20000");
        assert_eq!(max(None, None), None);
        let swap = |limit, swap| swap_max(limit, swap);
        assert_eq!(swap(Some(64), Some(128)).unwrap().unwrap(), "64");
        assert_eq!(swap(Some(64), Some(64)).unwrap().unwrap(), "0");
        assert_eq!(swap(Some(64), Some(-1)).unwrap().unwrap(), "max");
        assert_eq!(swap(None, Some(-1)).unwrap().unwrap(), "max");
        assert_eq!(swap(Some(64), None).unwrap(), None);
        assert!(swap(Some(128), Some(64)).is_err());
        assert!(swap(None, Some(64)).is_err());
        assert!(swap(Some(-1), Some(64)).is_err());
    }

    /// The unified hierarchy of a hybrid host, or None (with a note) to skip.
    fn real_hierarchy() -> Option<&'static Path> {
        let root = Path::new("/sys/fs/cgroup/unified");
        if is_cgroup2(root).unwrap_or(false) {
            return Some(root);
        }
        eprintln!("skipping: no cgroup2 mounted at {}", root.display());
        None
    }

    #[test]
    fn real_cgroup_lifecycle() {
        let Some(root) = real_hierarchy() else { return };
        let parent = root.join(unique_name());
        let manager = V2Manager::new(
            root,
            &Path::new("/").join(parent.file_name().unwrap()).join("c"),
        )
        .unwrap();
        let _cleanup = Cleanup(vec![
            manager.dir.join("sub"),
            manager.dir.clone(),
            parent.clone(),
        ]);
        manager.create().unwrap();
        assert!(manager.dir.is_dir());

        if manager.dir.join("hugetlb.2MB.max").exists() {
            let limit = LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(8i64 << 20)
                .build()
                .unwrap();
            manager
                .apply(
                    &LinuxResourcesBuilder::default()
                        .hugepage_limits(vec![limit])
                        .build()
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(read(&manager.dir.join("hugetlb.2MB.max")), "8388608\n");
        } else {
            eprintln!(
                "note: no hugetlb.2MB.max in {}, hugetlb not tested",
                manager.dir.display()
            );
        }

        let mut child = Sleeper::spawn();
        manager.add_process(child.pid()).unwrap();
        assert_eq!(manager.pids().unwrap(), vec![child.pid()]);
        let proc_cgroup = read(Path::new(&format!("/proc/{}/cgroup", child.pid())));
        assert!(
            proc_cgroup.contains(&format!("0::{}\n", manager.path().display())),
            "{proc_cgroup}"
        );

        // A sub-cgroup of the container's own, and a process killed but still exiting.
        fs::create_dir(manager.dir.join("sub")).unwrap();
        child.kill();
        manager.remove().unwrap();
        assert!(!manager.dir.exists());
        assert!(parent.exists(), "remove must not touch the parent");
        manager.remove().unwrap();
    }

    #[test]
    fn real_freeze_and_thaw() {
        let Some(root) = real_hierarchy() else { return };
        let manager = V2Manager::new(root, Path::new(&unique_name())).unwrap();
        let _cleanup = Cleanup(vec![manager.dir.clone()]);
        manager.create().unwrap();
        let child = Sleeper::spawn();
        manager.add_process(child.pid()).unwrap();
        assert!(!manager.frozen().unwrap());
        manager.set_frozen(true).unwrap();
        assert!(manager.frozen().unwrap());
        assert!(read(&manager.dir.join("cgroup.events")).contains("frozen 1\n"));
        manager.set_frozen(false).unwrap();
        assert!(!manager.frozen().unwrap());
        assert!(read(&manager.dir.join("cgroup.events")).contains("frozen 0\n"));
        // cpu.stat is the core's: there even without the cpu controller.
        assert!(manager.dir.join("cpu.stat").exists());
        let stats = manager.stats();
        assert_eq!(stats.pids.limit, 0);
        drop(child);
        manager.remove().unwrap();
    }

    #[test]
    fn real_remove_refuses_a_cgroup_with_a_live_process() {
        let Some(root) = real_hierarchy() else { return };
        let manager = V2Manager::new(root, Path::new(&unique_name())).unwrap();
        let _cleanup = Cleanup(vec![manager.dir.clone()]);
        manager.create().unwrap();
        let child = Sleeper::spawn();
        manager.add_process(child.pid()).unwrap();
        let err = format!("{:#}", manager.remove().unwrap_err());
        assert!(err.contains("still has processes"), "{err}");
        drop(child);
        manager.remove().unwrap();
    }
}
