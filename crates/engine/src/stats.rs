//! `docker stats`: a container's resource usage read from its cgroup, in Docker's stats JSON
//! (`GET /containers/{id}/stats`). The host decides the cgroup version: a cgroup2 filesystem
//! at /sys/fs/cgroup means v2 (one directory), anything else v1 (one directory per
//! controller, `/sys/fs/cgroup/<controller>/<cgroup path>`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::container::{Handle, Status};
use crate::error::Result;
use crate::Engine;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Between two samples of a stream, and between the two samples a one-time (not one-shot)
/// read takes so that `precpu_stats` is filled, as Docker does.
pub const INTERVAL: Duration = Duration::from_secs(1);

// ---- Docker's stats JSON ----

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: serde_json::Map<String, serde_json::Value>,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub name: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioEntry>>,
    pub io_time_recursive: Option<Vec<BlkioEntry>>,
    pub sectors_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuUsage {
    pub total_usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<u32>,
    pub throttling_data: Throttling,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failcnt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

// ---- where a cgroup's files are ----

/// A container's cgroup on this host.
#[derive(Debug, Clone)]
pub enum Cgroup {
    /// The unified hierarchy: one directory.
    V2(PathBuf),
    /// One directory per v1 controller: `<root>/<controller>/<sub>`.
    V1 { root: PathBuf, sub: PathBuf },
}

impl Cgroup {
    /// The cgroup `path` (from the hierarchy root, as the engine names containers' cgroups) on
    /// this host.
    pub fn detect(path: &Path) -> anyhow::Result<Cgroup> {
        let root = Path::new(CGROUP_ROOT);
        let sub = path.strip_prefix("/").unwrap_or(path).to_path_buf();
        let fs = nix::sys::statfs::statfs(root)
            .map_err(|e| anyhow::anyhow!("cannot statfs {CGROUP_ROOT}: {e}"))?;
        if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            Ok(Cgroup::V2(root.join(sub)))
        } else {
            Ok(Cgroup::V1 {
                root: root.to_path_buf(),
                sub,
            })
        }
    }

    /// A v1 controller's directory (`None` on v2).
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        match self {
            Cgroup::V1 { root, sub } => Some(root.join(controller).join(sub)),
            Cgroup::V2(_) => None,
        }
    }

    /// The pids in the cgroup: v1 from the pids (else memory, cpu) hierarchy.
    pub fn procs(&self) -> anyhow::Result<Vec<i32>> {
        let file = match self {
            Cgroup::V2(dir) => dir.join("cgroup.procs"),
            Cgroup::V1 { .. } => ["pids", "memory", "cpu", "cpuacct"]
                .iter()
                .filter_map(|c| self.controller_dir(c))
                .map(|d| d.join("cgroup.procs"))
                .find(|f| f.exists())
                .ok_or_else(|| anyhow::anyhow!("the container has no cgroup"))?,
        };
        let text = fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Everything the stats JSON takes from the cgroup; missing files leave zeros (a
    /// controller may not be there).
    pub fn sample(&self, host: &Host) -> Sample {
        match self {
            Cgroup::V2(dir) => sample_v2(dir, host),
            Cgroup::V1 { .. } => self.sample_v1(host),
        }
    }

    fn sample_v1(&self, host: &Host) -> Sample {
        let dir = |c: &str| self.controller_dir(c).unwrap_or_default();
        let (cpuacct, cpu, memory, pids, blkio) = (
            dir("cpuacct"),
            dir("cpu"),
            dir("memory"),
            dir("pids"),
            dir("blkio"),
        );
        let ticks = read_keyed(&cpuacct.join("cpuacct.stat"));
        let tick_ns = 1_000_000_000 / host.clock_ticks.max(1);
        let cpu_usage = CpuUsage {
            total_usage: read_u64(&cpuacct.join("cpuacct.usage")).unwrap_or(0),
            percpu_usage: read_list(&cpuacct.join("cpuacct.usage_percpu")),
            usage_in_kernelmode: ticks.get("system").copied().unwrap_or(0) * tick_ns,
            usage_in_usermode: ticks.get("user").copied().unwrap_or(0) * tick_ns,
        };
        let throttle = read_keyed(&cpu.join("cpu.stat"));
        let throttling = Throttling {
            periods: throttle.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: throttle.get("throttled_time").copied().unwrap_or(0),
        };
        let memory_stats = MemoryStats {
            usage: read_u64(&memory.join("memory.usage_in_bytes")),
            max_usage: read_u64(&memory.join("memory.max_usage_in_bytes")),
            stats: Some(read_keyed(&memory.join("memory.stat"))),
            failcnt: read_u64(&memory.join("memory.failcnt")),
            limit: read_u64(&memory.join("memory.limit_in_bytes")).map(|l| l.min(host.memory)),
        };
        Sample {
            cpu_usage,
            throttling,
            memory: memory_stats,
            pids: pids_stats(&pids.join("pids.current"), &pids.join("pids.max")),
            io_service_bytes: read_file(&blkio.join("blkio.throttle.io_service_bytes"))
                .map(|t| parse_blkio_v1(&t)),
        }
    }
}

/// Facts about the host the stats need.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// USER_HZ: the unit of /proc/stat and cpuacct.stat.
    pub clock_ticks: u64,
    /// Total RAM, the limit Docker reports for a container without one.
    pub memory: u64,
    pub online_cpus: u32,
}

impl Host {
    pub fn read() -> Host {
        // SAFETY: sysconf only reads system configuration.
        let (ticks, cpus) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            )
        };
        let memory = read_keyed(Path::new("/proc/meminfo"))
            .get("MemTotal:")
            .map(|kib| kib * 1024)
            .unwrap_or(u64::MAX);
        Host {
            clock_ticks: u64::try_from(ticks).unwrap_or(100).max(1),
            memory,
            online_cpus: u32::try_from(cpus).unwrap_or(1).max(1),
        }
    }

    /// The host's CPU time, all CPUs, in nanoseconds (user+nice+system+idle+iowait+irq+
    /// softirq of /proc/stat's `cpu` line, as Docker counts it).
    pub fn system_cpu_usage(&self) -> Option<u64> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: u64 = line
            .split_whitespace()
            .skip(1)
            .take(7)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        Some(ticks.saturating_mul(1_000_000_000) / self.clock_ticks)
    }
}

/// One reading of a cgroup.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub cpu_usage: CpuUsage,
    pub throttling: Throttling,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub io_service_bytes: Option<Vec<BlkioEntry>>,
}

fn sample_v2(dir: &Path, host: &Host) -> Sample {
    let cpu = read_keyed(&dir.join("cpu.stat"));
    let usec = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    let limit = match read_file(&dir.join("memory.max")).as_deref().map(str::trim) {
        Some("max") | None => host.memory,
        Some(n) => n.parse().unwrap_or(host.memory).min(host.memory),
    };
    let memory = MemoryStats {
        usage: read_u64(&dir.join("memory.current")),
        max_usage: None,
        stats: Some(read_keyed(&dir.join("memory.stat"))),
        failcnt: None,
        limit: Some(limit),
    };
    Sample {
        cpu_usage: CpuUsage {
            total_usage: usec("usage_usec"),
            percpu_usage: None,
            usage_in_kernelmode: usec("system_usec"),
            usage_in_usermode: usec("user_usec"),
        },
        throttling: Throttling {
            periods: cpu.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: usec("throttled_usec"),
        },
        memory,
        pids: pids_stats(&dir.join("pids.current"), &dir.join("pids.max")),
        io_service_bytes: read_file(&dir.join("io.stat")).map(|t| parse_io_stat_v2(&t)),
    }
}

fn pids_stats(current: &Path, max: &Path) -> PidsStats {
    PidsStats {
        current: read_u64(current),
        limit: read_file(max).map(|m| m.trim().parse().unwrap_or(0)),
    }
}

fn read_file(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read_file(path)?.trim().parse().ok()
}

fn read_list(path: &Path) -> Option<Vec<u64>> {
    let text = read_file(path)?;
    Some(
        text.split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, /proc/meminfo).
fn read_keyed(path: &Path) -> BTreeMap<String, u64> {
    read_file(path).map(|t| parse_keyed(&t)).unwrap_or_default()
}

pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next()?;
            let value = words.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

fn major_minor(dev: &str) -> Option<(u64, u64)> {
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// v1 `blkio.throttle.io_service_bytes`: `8:0 Read 4096` lines (and a `Total` line).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (major, minor) = major_minor(words.next()?)?;
            let op = words.next()?.to_string();
            let value = words.next()?.parse().ok()?;
            Some(BlkioEntry {
                major,
                minor,
                op,
                value,
            })
        })
        .collect()
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 ...` becomes Docker's read/write entries.
pub fn parse_io_stat_v2(text: &str) -> Vec<BlkioEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(major_minor) else {
            continue;
        };
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let op = match key {
                "rbytes" => "read",
                "wbytes" => "write",
                _ => continue,
            };
            if let Ok(value) = value.parse() {
                entries.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value,
                });
            }
        }
    }
    entries
}

// ---- the engine's side ----

/// Reads one container's stats again and again, each with the previous CPU reading. It
/// does not keep the container alive: once it is removed, `read` says so.
pub struct StatsReader {
    handle: std::sync::Weak<Handle>,
    id: String,
    cgroup: Cgroup,
    host: Host,
    previous: Option<(String, CpuStats)>,
}

impl Engine {
    /// A stats reader for container `name_or_id` (404 when there is none).
    pub fn container_stats(&self, name_or_id: &str) -> Result<StatsReader> {
        let handle = self.containers.get(name_or_id)?;
        let cgroup = Cgroup::detect(&self.cgroup_path(&handle.id))?;
        Ok(StatsReader {
            handle: std::sync::Arc::downgrade(&handle),
            id: handle.id.clone(),
            cgroup,
            host: Host::read(),
            previous: None,
        })
    }
}

impl StatsReader {
    /// The stats now; `None` once the container is removed. A container that is not running
    /// gets Docker's zeros (name and id only, `read` the zero time).
    pub fn read(&mut self) -> Option<Stats> {
        let (name, status) = {
            let handle = self.handle.upgrade()?;
            let record = handle.lock();
            (format!("/{}", record.name), record.state.status)
        };
        let mut stats = Stats {
            name,
            id: self.id.clone(),
            read: crate::time::ZERO_TIME.to_string(),
            preread: crate::time::ZERO_TIME.to_string(),
            ..Stats::default()
        };
        if !matches!(status, Status::Running | Status::Paused) {
            self.previous = None;
            return Some(stats);
        }
        let sample = self.cgroup.sample(&self.host);
        let cpu = CpuStats {
            cpu_usage: sample.cpu_usage,
            system_cpu_usage: self.host.system_cpu_usage(),
            online_cpus: Some(self.host.online_cpus),
            throttling_data: sample.throttling,
        };
        stats.read = crate::time::now_rfc3339();
        if let Some((preread, precpu)) = self.previous.take() {
            stats.preread = preread;
            stats.precpu_stats = precpu;
        }
        self.previous = Some((stats.read.clone(), cpu.clone()));
        stats.cpu_stats = cpu;
        stats.memory_stats = sample.memory;
        stats.pids_stats = sample.pids;
        stats.blkio_stats.io_service_bytes_recursive = sample.io_service_bytes;
        Some(stats)
    }

    /// What `GET /containers/{id}/stats?stream=0` answers: one reading; unless `one_shot`,
    /// taken [`INTERVAL`] after a first one so that `precpu_stats` is filled (blocking).
    pub fn single(&mut self, one_shot: bool) -> Option<Stats> {
        let first = self.read()?;
        if one_shot || first.read == crate::time::ZERO_TIME {
            return Some(first);
        }
        std::thread::sleep(INTERVAL);
        self.read()
    }

    /// A stream: one reading per [`INTERVAL`] written to `out` as a JSON line, until the
    /// container is removed or the client goes away (a write fails). Blocking.
    pub fn stream_to(mut self, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        while let Some(stats) = self.read() {
            serde_json::to_writer(&mut *out, &stats)?;
            out.write_all(b"\n")?;
            out.flush()?;
            std::thread::sleep(INTERVAL);
        }
        Ok(())
    }
}
