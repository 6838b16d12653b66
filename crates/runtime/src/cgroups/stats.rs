//! Usage numbers of a cgroup, in the shape of runc's `events --stats` data (its `types.Stats`).
//!
//! Each driver reads its own files through a `read(knob)` function that gives `None` for a
//! knob its host lacks (a controller not mounted or not enabled): that section stays zero.

use std::collections::BTreeMap;

use serde::Serialize;

/// What `read` gives for a knob: its whole text, or `None` if the file is not there.
pub(super) type Read<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// How many processes the OOM killer has killed in the cgroup (for OOM events).
    #[serde(skip)]
    pub oom_kills: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; a limit of u64::MAX is no limit, as runc reports it.
#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

/// Bytes read and written, per device (runc's `blkio`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
}

/// One device's count of one operation: `op` is the kernel's v1 word ("Read", "Write", "Sync",
/// …), "Read" or "Write" on v2.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// A number file; "max" is u64::MAX, anything unreadable 0.
fn number(read: Read, knob: &str) -> u64 {
    read(knob).map_or(0, |text| parse_number(text.trim()))
}

fn parse_number(text: &str) -> u64 {
    if text == "max" {
        return u64::MAX;
    }
    // v1 reports "no limit" as a huge number, sometimes as -1 (signed).
    text.parse()
        .unwrap_or(if text.starts_with('-') { u64::MAX } else { 0 })
}

/// A "key value" file (memory.stat, cpu.stat, memory.events) as a map.
fn keyed(read: Read, knob: &str) -> BTreeMap<String, u64> {
    read(knob)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), parse_number(value.trim())))
        })
        .collect()
}

fn major_minor(device: &str) -> Option<(u64, u64)> {
    let (major, minor) = device.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// v1's `8:0 Read 4096` lines; the `Total` line names no device and is left out.
fn blkio_v1(read: Read) -> Blkio {
    let text = read("blkio.throttle.io_service_bytes_recursive")
        .or_else(|| read("blkio.throttle.io_service_bytes"))
        .unwrap_or_default();
    let entry = |line: &str| {
        let mut words = line.split_whitespace();
        let (major, minor) = major_minor(words.next()?)?;
        let op = words.next()?.to_owned();
        let value = words.next()?.parse().ok()?;
        Some(BlkioEntry {
            major,
            minor,
            op,
            value,
        })
    };
    Blkio {
        io_service_bytes_recursive: text.lines().filter_map(entry).collect(),
    }
}

/// v2's `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 …` lines, of which the byte counts.
fn blkio_v2(read: Read) -> Blkio {
    let mut entries = Vec::new();
    for line in read("io.stat").unwrap_or_default().lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(major_minor) else {
            continue;
        };
        for (key, value) in words.filter_map(|word| word.split_once('=')) {
            let op = match key {
                "rbytes" => "Read",
                "wbytes" => "Write",
                _ => continue,
            };
            if let Ok(value) = value.parse() {
                entries.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_owned(),
                    value,
                });
            }
        }
    }
    Blkio {
        io_service_bytes_recursive: entries,
    }
}

fn pids(read: Read) -> Pids {
    let limit = number(read, "pids.max");
    Pids {
        current: number(read, "pids.current"),
        limit: if limit == u64::MAX { 0 } else { limit },
    }
}

/// The cgroup v1 files: cpuacct, cpu, memory, pids.
pub(super) fn v1(read: Read) -> Stats {
    let cpu_stat = keyed(read, "cpu.stat");
    let cpuacct = keyed(read, "cpuacct.stat");
    // cpuacct.stat counts USER_HZ ticks.
    let tick_ns = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|hz| *hz > 0)
        .map_or(10_000_000, |hz| 1_000_000_000 / hz);
    let entry = |prefix: &str| MemoryEntry {
        limit: number(read, &format!("{prefix}.limit_in_bytes")),
        usage: number(read, &format!("{prefix}.usage_in_bytes")),
        max: number(read, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: number(read, &format!("{prefix}.failcnt")),
    };
    let raw = keyed(read, "memory.stat");
    Stats {
        cpu: Cpu {
            usage: CpuUsage {
                total: number(read, "cpuacct.usage"),
                percpu: read("cpuacct.usage_percpu")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(parse_number)
                    .collect(),
                kernel: cpuacct.get("system").copied().unwrap_or(0) * tick_ns,
                user: cpuacct.get("user").copied().unwrap_or(0) * tick_ns,
            },
            throttling: Throttling {
                periods: cpu_stat.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: cpu_stat.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: cpu_stat.get("throttled_time").copied().unwrap_or(0),
            },
        },
        memory: Memory {
            cache: raw.get("cache").copied().unwrap_or(0),
            usage: entry("memory"),
            swap: entry("memory.memsw"),
            raw,
        },
        pids: pids(read),
        blkio: blkio_v1(read),
        oom_kills: keyed(read, "memory.oom_control")
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
    }
}

/// The cgroup v2 files: cpu.stat, memory.*, pids.*.
pub(super) fn v2(read: Read) -> Stats {
    let cpu_stat = keyed(read, "cpu.stat");
    let usec = |key: &str| cpu_stat.get(key).copied().unwrap_or(0) * 1000;
    let events = keyed(read, "memory.events");
    let raw = keyed(read, "memory.stat");
    Stats {
        cpu: Cpu {
            usage: CpuUsage {
                total: usec("usage_usec"),
                percpu: vec![],
                kernel: usec("system_usec"),
                user: usec("user_usec"),
            },
            throttling: Throttling {
                periods: cpu_stat.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: cpu_stat.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: usec("throttled_usec"),
            },
        },
        memory: Memory {
            cache: raw.get("file").copied().unwrap_or(0),
            usage: MemoryEntry {
                limit: number(read, "memory.max"),
                usage: number(read, "memory.current"),
                max: number(read, "memory.peak"),
                failcnt: events.get("max").copied().unwrap_or(0),
            },
            swap: MemoryEntry {
                limit: number(read, "memory.swap.max"),
                usage: number(read, "memory.swap.current"),
                max: number(read, "memory.swap.peak"),
                failcnt: 0,
            },
            raw,
        },
        pids: pids(read),
        blkio: blkio_v2(read),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |knob| map.get(knob).cloned()
    }

    #[test]
    fn v2_reads_usec_and_max() {
        let read = files(&[
            (
                "cpu.stat",
                "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 7\n",
            ),
            ("memory.max", "max\n"),
            ("memory.current", "4096\n"),
            ("memory.events", "low 0\nmax 2\noom 1\noom_kill 1\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            (
                "io.stat",
                "8:0 rbytes=4096 wbytes=512 rios=1 dbytes=0\n253:1 rbytes=1 wbytes=2\n",
            ),
        ]);
        let stats = v2(&read);
        assert_eq!(stats.cpu.usage.total, 5000);
        assert_eq!(stats.cpu.usage.user, 3000);
        assert_eq!(stats.cpu.throttling.periods, 7);
        assert_eq!(stats.memory.usage.limit, u64::MAX);
        assert_eq!(stats.memory.usage.usage, 4096);
        assert_eq!(stats.memory.usage.failcnt, 2);
        assert_eq!(stats.oom_kills, 1);
        assert_eq!((stats.pids.current, stats.pids.limit), (3, 0));
        assert_eq!(
            blkio_summary(&stats),
            [
                (8, 0, "Read", 4096),
                (8, 0, "Write", 512),
                (253, 1, "Read", 1),
                (253, 1, "Write", 2)
            ]
        );
    }

    fn blkio_summary(stats: &Stats) -> Vec<(u64, u64, &str, u64)> {
        let entries = &stats.blkio.io_service_bytes_recursive;
        entries
            .iter()
            .map(|e| (e.major, e.minor, e.op.as_str(), e.value))
            .collect()
    }

    #[test]
    fn v1_reads_cpuacct_memory_and_pids() {
        let read = files(&[
            ("cpuacct.usage", "123\n"),
            ("cpuacct.usage_percpu", "100 23 \n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.usage_in_bytes", "8192\n"),
            ("memory.stat", "cache 4096\nrss 100\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
            ),
            ("pids.current", "1\n"),
            ("pids.max", "10\n"),
            (
                "blkio.throttle.io_service_bytes",
                "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            ),
        ]);
        let stats = v1(&read);
        assert_eq!(stats.cpu.usage.total, 123);
        assert_eq!(stats.cpu.usage.percpu, [100, 23]);
        assert_eq!(stats.memory.usage.usage, 8192);
        assert_eq!(stats.memory.cache, 4096);
        assert_eq!(stats.memory.raw["rss"], 100);
        assert_eq!(stats.oom_kills, 4);
        assert_eq!((stats.pids.current, stats.pids.limit), (1, 10));
        assert_eq!(
            blkio_summary(&stats),
            [(8, 0, "Read", 4096), (8, 0, "Write", 0)]
        );
        // Missing files are zero, not errors.
        assert_eq!(stats.memory.swap.limit, 0);
    }
}
