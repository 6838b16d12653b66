//! `docker stats` and `docker top` from cgroups: cgroup v1 on a real cgroup of this host
//! with a real process in it, cgroup v2 on fixture files (this host binds cpu/memory/pids to
//! v1), and top's ps columns.

mod records;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use berth_engine::container::{Handle, Status};
use berth_engine::stats::{Host, Sample};
use berth_engine::Engine;
use berth_runtime::cgroups::{v2::V2Manager, CgroupManager};
use records::engine;

const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];
const MEMORY_LIMIT: u64 = 64 << 20;

fn host_is_v1() -> bool {
    berth_runtime::cgroups::open(Path::new("/x")).is_ok_and(|cgroup| cgroup.version() == "v1")
}

/// A v1 cgroup (in every controller above) holding a shell that has burnt some CPU and
/// waits on a `sleep` child; removed, with its processes, on drop.
struct Busy {
    dirs: Vec<PathBuf>,
    child: Child,
}

impl Busy {
    fn start(cgroup: &Path) -> Busy {
        let sub = cgroup.strip_prefix("/").unwrap();
        let dirs: Vec<PathBuf> = V1_CONTROLLERS
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(sub))
            .collect();
        for dir in &dirs {
            fs::create_dir_all(dir).unwrap();
        }
        let memory = &dirs[0];
        fs::write(
            memory.join("memory.limit_in_bytes"),
            MEMORY_LIMIT.to_string(),
        )
        .unwrap();
        fs::write(dirs[3].join("pids.max"), "50").unwrap();
        let script = "read go; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; \
                      sleep 60 & echo burned; wait";
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut busy = Busy { dirs, child };
        for dir in &busy.dirs {
            fs::write(dir.join("cgroup.procs"), busy.child.id().to_string()).unwrap();
        }
        let child = &mut busy.child;
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "burned\n");
        busy
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The sleep first (it is in the cgroup too), then the shell.
        if let Ok(procs) = fs::read_to_string(self.dirs[0].join("cgroup.procs")) {
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                unsafe_kill(pid);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in &self.dirs {
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

fn unsafe_kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn container(engine: &Engine, n: u8, status: Status) -> Arc<Handle> {
    let handle = records::container(engine, n, "stats", serde_json::json!({}));
    handle.update(|c| c.state.status = status).unwrap();
    handle
}

#[tokio::test]
async fn v1_stats_of_a_running_container() {
    if !host_is_v1() {
        eprintln!("skipped: this host has no cgroup v1 hierarchies");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "stats-v1");
    let h = container(&e, 1, Status::Running);
    let busy = Busy::start(&e.cgroup_path(&h.id));

    let mut reader = e.container_stats(&h.id).unwrap();
    let first = reader.read().unwrap();
    assert_eq!(first.name, "/stats1");
    assert_eq!(first.id, h.id);
    assert_eq!(first.preread, "0001-01-01T00:00:00Z");
    assert_eq!(first.pids_stats.current, Some(2));
    assert_eq!(first.pids_stats.limit, Some(50));
    let cpu = &first.cpu_stats.cpu_usage;
    assert!(cpu.total_usage > 1_000_000, "{cpu:?}");
    let percpu: u64 = cpu.percpu_usage.as_ref().unwrap().iter().sum();
    assert!(percpu > 0 && percpu <= cpu.total_usage + 1_000_000);
    assert!(first.cpu_stats.system_cpu_usage.unwrap() > cpu.total_usage);
    assert!(first.cpu_stats.online_cpus.unwrap() >= 1);
    let mem = &first.memory_stats;
    assert!(mem.usage.unwrap() > 0);
    assert_eq!(mem.limit, Some(MEMORY_LIMIT));
    assert!(mem
        .stats
        .as_ref()
        .unwrap()
        .contains_key("total_inactive_file"));
    assert!(first.blkio_stats.io_service_bytes_recursive.is_some());

    // The next reading carries this one as its "pre" values.
    let second = reader.read().unwrap();
    assert_eq!(second.preread, first.read);
    assert_eq!(second.precpu_stats, first.cpu_stats);
    let json = serde_json::to_value(&second).unwrap();
    for key in [
        "read",
        "preread",
        "pids_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "blkio_stats",
        "name",
        "id",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert!(json["cpu_stats"]["cpu_usage"]["usage_in_usermode"].is_u64());
    assert!(json["cpu_stats"]["throttling_data"]["periods"].is_u64());

    // Stopped: Docker's zeros. Removed: the reader ends.
    h.update(|c| c.state.status = Status::Exited).unwrap();
    let stopped = reader.read().unwrap();
    assert_eq!(stopped.read, "0001-01-01T00:00:00Z");
    assert_eq!(stopped.cpu_stats.cpu_usage.total_usage, 0);
    assert_eq!(stopped.memory_stats.usage, None);
    let id = h.id.clone();
    drop(h);
    e.containers.remove(&id).unwrap();
    assert!(reader.read().is_none());
    drop(busy);
}

#[test]
fn v2_stats_from_cgroup_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("stats");
    fs::create_dir(&dir).unwrap();
    let files: HashMap<&str, &str> = [
        ("cpu.stat", "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 700\n"),
        ("memory.current", "1048576\n"),
        ("memory.max", "max\n"),
        ("memory.stat", "anon 4096\nfile 8192\ninactive_file 1024\n"),
        ("pids.current", "3\n"),
        ("pids.max", "max\n"),
        ("io.stat", "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n253:1 rbytes=1 wbytes=2\n"),
    ]
    .into();
    for (name, text) in &files {
        fs::write(dir.join(name), text).unwrap();
    }
    let host = Host {
        clock_ticks: 100,
        memory: 8 << 30,
        online_cpus: 4,
    };
    let cgroup = V2Manager::open(root.path(), Path::new("/stats")).unwrap();
    let sample = || Sample::new(cgroup.stats(), cgroup.version(), &host);
    let s = sample();
    assert_eq!(s.cpu_usage.total_usage, 5_000_000);
    assert_eq!(s.cpu_usage.usage_in_usermode, 3_000_000);
    assert_eq!(s.cpu_usage.usage_in_kernelmode, 2_000_000);
    assert_eq!(s.cpu_usage.percpu_usage, None);
    assert_eq!(
        (s.throttling.periods, s.throttling.throttled_periods),
        (10, 2)
    );
    assert_eq!(s.throttling.throttled_time, 700_000);
    assert_eq!(s.memory.usage, Some(1 << 20));
    assert_eq!(
        s.memory.limit,
        Some(8 << 30),
        "no limit reads as the host's memory"
    );
    assert_eq!(s.memory.stats.as_ref().unwrap()["inactive_file"], 1024);
    assert_eq!((s.pids.current, s.pids.limit), (Some(3), Some(0)));
    assert_eq!((s.memory.max_usage, s.memory.failcnt), (None, None));
    let io = s.io_service_bytes;
    let summary: Vec<(u64, u64, &str, u64)> = io
        .iter()
        .map(|e| (e.major, e.minor, e.op.as_str(), e.value))
        .collect();
    assert_eq!(
        summary,
        [
            (8, 0, "read", 4096),
            (8, 0, "write", 512),
            (253, 1, "read", 1),
            (253, 1, "write", 2)
        ]
    );

    fs::write(dir.join("memory.max"), "268435456\n").unwrap();
    fs::write(dir.join("pids.max"), "99\n").unwrap();
    let s = sample();
    assert_eq!(s.memory.limit, Some(256 << 20));
    assert_eq!(s.pids.limit, Some(99));
}

#[test]
fn proc_stat_with_a_hostile_command_name() {
    let stat = "42 (a) (b) c) S 1 42 42 34816 42 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 \
                8392704 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
    let p = berth_engine::top::parse_stat(stat).unwrap();
    assert_eq!(p.pid, 42);
    assert_eq!(p.comm, "a) (b) c");
    assert_eq!((p.state, p.ppid, p.pgrp, p.session), ('S', 1, 42, 42));
    assert_eq!(p.tty_nr, 34816);
    assert_eq!(p.cpu_ticks, 300);
    assert_eq!(
        (p.threads, p.start_ticks, p.vsize, p.rss_pages),
        (3, 12345, 8392704, 224)
    );
}

#[tokio::test]
async fn top_lists_the_processes_of_the_container_cgroup() {
    if !host_is_v1() {
        eprintln!("skipped: this host has no cgroup v1 hierarchies");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "top-v1");
    let h = container(&e, 2, Status::Running);
    let busy = Busy::start(&e.cgroup_path(&h.id));
    let sh = busy.pid().to_string();

    // The shell reports before its `sleep` child has necessarily exec'd: wait for it.
    let mut top = e.container_top(&h.id, "").unwrap();
    for _ in 0..100 {
        let rows = top.processes.as_ref().unwrap();
        if rows.iter().any(|r| r[7] == "sleep 60") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        top = e.container_top(&h.id, "").unwrap();
    }
    assert_eq!(
        top.titles.unwrap(),
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows = top.processes.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let shell = rows
        .iter()
        .find(|r| r[1] == sh)
        .expect("the shell is listed");
    assert_eq!(shell[0], "root");
    assert!(shell[7].starts_with("sh -c read go;"), "{shell:?}");
    assert_eq!(shell[5], "?");
    let sleep = rows
        .iter()
        .find(|r| r[7] == "sleep 60")
        .unwrap_or_else(|| panic!("sleep is not listed: {rows:?}"));
    assert_eq!(sleep[2], sh, "sleep's parent is the shell");
    assert!(sleep[6].len() == 8 && sleep[4].len() >= 5, "{sleep:?}");

    // The shell sleeps in `wait` once it has started `sleep` and printed: until then it may
    // still be running (R).
    let mut aux = e.container_top(&h.id, "aux").unwrap();
    for _ in 0..100 {
        let rows = aux.processes.as_ref().unwrap();
        if rows.iter().any(|r| r[1] == sh && r[7].starts_with('S')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        aux = e.container_top(&h.id, "aux").unwrap();
    }
    assert_eq!(aux.titles.unwrap()[10], "COMMAND");
    let rows = aux.processes.unwrap();
    assert!(rows.iter().all(|r| r.len() == 11));
    let shell = rows.iter().find(|r| r[1] == sh).unwrap();
    assert!(shell[7].starts_with('S'), "{shell:?}");
    assert!(shell[5].parse::<u64>().unwrap() > 0, "RSS in KiB");

    let custom = e.container_top(&h.id, "-eo pid,comm,user").unwrap();
    assert_eq!(custom.titles.unwrap(), ["PID", "COMMAND", "USER"]);
    let rows = custom.processes.unwrap();
    assert!(
        rows.contains(&vec![sh.clone(), "sh".to_string(), "root".to_string()]),
        "{rows:?}"
    );
    let err = e.container_top(&h.id, "-o comm").unwrap_err();
    assert_eq!(
        (err.status(), err.message().as_str()),
        (400, "Couldn't find PID field in ps output")
    );
    assert_eq!(
        e.container_top(&h.id, "--sort pid").unwrap_err().status(),
        400
    );
    assert_eq!(
        e.container_top(&h.id, "-o pid,bogus").unwrap_err().status(),
        400
    );
    h.update(|c| c.state.status = Status::Exited).unwrap();
    let err = e.container_top("stats2", "").unwrap_err();
    assert_eq!(err.status(), 409);
    assert_eq!(err.message(), format!("Container {} is not running", h.id));
    drop(busy);
}
