//! `docker stats`: a container's resource usage, read from its cgroup by the runtime's cgroup
//! driver (v1 or v2, as the host has it), in Docker's stats JSON (`GET /containers/{id}/stats`).

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use berth_runtime::cgroups::{stats::Stats as CgroupStats, CgroupManager};
use serde::Serialize;

use crate::container::{Handle, Status};
use crate::error::Result;
use crate::Engine;

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

// ---- from the runtime's reading of a cgroup ----

/// Docker's stats from one reading of a container's cgroup.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub cpu_usage: CpuUsage,
    pub throttling: Throttling,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub io_service_bytes: Vec<BlkioEntry>,
}

impl Sample {
    /// What Docker reports of the runtime's numbers: on cgroup v2 no per-CPU usage, maximum
    /// usage or fail count, and I/O ops in lower case; a memory limit no higher than the
    /// host's memory (which is what a container without one reports).
    pub fn new(stats: CgroupStats, version: &str, host: &Host) -> Sample {
        let v2 = version == "v2";
        let cpu = stats.cpu.usage;
        let memory = stats.memory.usage;
        let io_op = |op: String| if v2 { op.to_lowercase() } else { op };
        let io_service_bytes = stats.blkio.io_service_bytes_recursive.into_iter();
        Sample {
            cpu_usage: CpuUsage {
                total_usage: cpu.total,
                percpu_usage: (!v2).then_some(cpu.percpu),
                usage_in_kernelmode: cpu.kernel,
                usage_in_usermode: cpu.user,
            },
            throttling: Throttling {
                periods: stats.cpu.throttling.periods,
                throttled_periods: stats.cpu.throttling.throttled_periods,
                throttled_time: stats.cpu.throttling.throttled_time,
            },
            memory: MemoryStats {
                usage: Some(memory.usage),
                max_usage: (!v2).then_some(memory.max),
                stats: Some(stats.memory.raw),
                failcnt: (!v2).then_some(memory.failcnt),
                limit: Some(memory.limit.min(host.memory)),
            },
            pids: PidsStats {
                current: Some(stats.pids.current),
                limit: Some(stats.pids.limit),
            },
            io_service_bytes: io_service_bytes
                .map(|entry| BlkioEntry {
                    major: entry.major,
                    minor: entry.minor,
                    op: io_op(entry.op),
                    value: entry.value,
                })
                .collect(),
        }
    }
}

/// Facts about the host the stats need.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// USER_HZ: the unit of /proc/stat.
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
        let memory = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| parse_keyed(&meminfo).get("MemTotal:").copied())
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

/// `key value` lines (/proc/meminfo, /proc/stat).
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

// ---- the engine's side ----

/// Reads one container's stats again and again, each with the previous CPU reading. It
/// does not keep the container alive: once it is removed, `read` says so.
pub struct StatsReader {
    handle: std::sync::Weak<Handle>,
    id: String,
    cgroup: Box<dyn CgroupManager>,
    host: Host,
    previous: Option<(String, CpuStats)>,
}

impl Engine {
    /// A stats reader for container `name_or_id` (404 when there is none).
    pub fn container_stats(&self, name_or_id: &str) -> Result<StatsReader> {
        let handle = self.containers.get(name_or_id)?;
        let cgroup = berth_runtime::cgroups::open(&self.cgroup_path(&handle.id))?;
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
        let sample = Sample::new(self.cgroup.stats(), self.cgroup.version(), &self.host);
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
        stats.blkio_stats.io_service_bytes_recursive = Some(sample.io_service_bytes);
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
