//! `docker top`: the processes in a container's cgroup, in the columns of `ps -ef` (the
//! default), `ps aux` or `ps -o ...`, read from the host's /proc. No program is run, neither the
//! container's nor the host's `ps`.

use std::collections::HashMap;
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard_stubs::models::ContainerTopResponse;

use crate::container::Status;
use crate::error::{Error, Result};
use crate::stats::{parse_keyed, Host};
use crate::Engine;

/// A column `ps` can show, as `-o` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// The effective user's name (from the host's /etc/passwd), else its number.
    User,
    Uid,
    Pid,
    Ppid,
    Pgid,
    /// Integer CPU percent over the process's life (`-f`'s C).
    C,
    /// Start time, `-f` style.
    Stime,
    Tty,
    /// CPU time as `[DD-]HH:MM:SS`.
    Time,
    /// CPU time as `M:SS` (BSD style, `aux`).
    BsdTime,
    Args,
    Comm,
    PCpu,
    PMem,
    Vsz,
    Rss,
    Stat,
    Threads,
}

/// `-o` names and the header ps prints for each.
const COLUMNS: &[(&str, Column, &str)] = &[
    ("user", Column::User, "USER"),
    ("euser", Column::User, "EUSER"),
    ("uid", Column::Uid, "UID"),
    ("euid", Column::Uid, "EUID"),
    ("pid", Column::Pid, "PID"),
    ("ppid", Column::Ppid, "PPID"),
    ("pgid", Column::Pgid, "PGID"),
    ("pgrp", Column::Pgid, "PGRP"),
    ("c", Column::C, "C"),
    ("stime", Column::Stime, "STIME"),
    ("start", Column::Stime, "STARTED"),
    ("tty", Column::Tty, "TT"),
    ("tt", Column::Tty, "TT"),
    ("time", Column::Time, "TIME"),
    ("cputime", Column::Time, "TIME"),
    ("args", Column::Args, "COMMAND"),
    ("cmd", Column::Args, "CMD"),
    ("command", Column::Args, "COMMAND"),
    ("comm", Column::Comm, "COMMAND"),
    ("ucomm", Column::Comm, "COMMAND"),
    ("%cpu", Column::PCpu, "%CPU"),
    ("pcpu", Column::PCpu, "%CPU"),
    ("%mem", Column::PMem, "%MEM"),
    ("pmem", Column::PMem, "%MEM"),
    ("vsz", Column::Vsz, "VSZ"),
    ("vsize", Column::Vsz, "VSZ"),
    ("rss", Column::Rss, "RSS"),
    ("rssize", Column::Rss, "RSS"),
    ("stat", Column::Stat, "STAT"),
    ("nlwp", Column::Threads, "NLWP"),
    ("thcount", Column::Threads, "THCNT"),
];

/// `ps -ef` (Docker's default).
const FULL: &[(Column, &str)] = &[
    (Column::User, "UID"),
    (Column::Pid, "PID"),
    (Column::Ppid, "PPID"),
    (Column::C, "C"),
    (Column::Stime, "STIME"),
    (Column::Tty, "TTY"),
    (Column::Time, "TIME"),
    (Column::Args, "CMD"),
];

/// `ps aux`.
const AUX: &[(Column, &str)] = &[
    (Column::User, "USER"),
    (Column::Pid, "PID"),
    (Column::PCpu, "%CPU"),
    (Column::PMem, "%MEM"),
    (Column::Vsz, "VSZ"),
    (Column::Rss, "RSS"),
    (Column::Tty, "TTY"),
    (Column::Stat, "STAT"),
    (Column::Stime, "START"),
    (Column::BsdTime, "TIME"),
    (Column::Args, "COMMAND"),
];

/// Options that only choose which processes ps shows: the container's are all shown anyway.
const SELECTION_FLAGS: &str = "eAaxw-";

fn unsupported(ps_args: &str, why: &str) -> Error {
    Error::InvalidParameter(format!(
        "ps_args {ps_args:?} is not supported ({why}): berth reads /proc itself and knows \
         -ef, aux and -o with the columns {}",
        COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>().join(",")
    ))
}

/// The columns `ps_args` asks for: `-ef`-style by default, `aux` (any `u`), or the `-o`
/// lists (`-o pid,comm`, `-eo pid,args`, `o pid`).
fn parse_args(ps_args: &str) -> Result<Vec<(Column, String)>> {
    let mut custom: Vec<(Column, String)> = Vec::new();
    let mut bsd_user = false;
    let mut tokens = ps_args.split_whitespace();
    while let Some(token) = tokens.next() {
        let flags = token.trim_start_matches('-');
        let (flags, list) = match flags.find('o') {
            Some(i) => (&flags[..i], Some(&flags[i + 1..])),
            None => (flags, None),
        };
        for flag in flags.chars() {
            match flag {
                'u' => bsd_user = true,
                'f' => {}
                f if SELECTION_FLAGS.contains(f) => {}
                f => return Err(unsupported(ps_args, &format!("option {f:?}"))),
            }
        }
        let Some(list) = list else { continue };
        let list = if list.is_empty() {
            tokens
                .next()
                .ok_or_else(|| unsupported(ps_args, "-o without a list"))?
        } else {
            list
        };
        for key in list.split(',').filter(|k| !k.is_empty()) {
            let (_, column, title) = COLUMNS
                .iter()
                .find(|(name, _, _)| *name == key)
                .ok_or_else(|| unsupported(ps_args, &format!("column {key:?}")))?;
            custom.push((*column, title.to_string()));
        }
    }
    let columns: Vec<(Column, String)> = if !custom.is_empty() {
        custom
    } else {
        let layout = if bsd_user { AUX } else { FULL };
        layout.iter().map(|(c, t)| (*c, t.to_string())).collect()
    };
    if !columns.iter().any(|(c, _)| *c == Column::Pid) {
        // Docker matches the container's pids in this column.
        return Err(Error::InvalidParameter(
            "Couldn't find PID field in ps output".to_string(),
        ));
    }
    Ok(columns)
}

/// What one process's /proc files say.
#[derive(Debug, Clone, Default)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: u32,
    pub tpgid: i32,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    pub nice: i64,
    pub threads: i64,
    /// Since boot, clock ticks.
    pub start_ticks: u64,
    pub vsize: u64,
    pub rss_pages: u64,
    pub euid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
}

impl Proc {
    /// Read /proc/<pid>; `None` when the process is gone (it may exit while we look).
    pub fn read(pid: i32) -> Option<Proc> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut proc = parse_stat(&stat)?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        proc.euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        proc.cmdline = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(proc)
    }

    fn command(&self) -> String {
        if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.join(" ")
        }
    }
}

/// /proc/<pid>/stat: the command name is in parentheses and may hold spaces and
/// parentheses itself, so the fields after it are found from the last `)`.
pub fn parse_stat(stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state) of proc(5).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let unum = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: num(1)? as i32,
        pgrp: num(2)? as i32,
        session: num(3)? as i32,
        tty_nr: num(4)? as u32,
        tpgid: num(5)? as i32,
        cpu_ticks: unum(11)? + unum(12)?,
        nice: num(16)?,
        threads: num(17)?,
        start_ticks: unum(19)?,
        vsize: unum(20)?,
        rss_pages: unum(21)?,
        ..Proc::default()
    })
}

/// A controlling terminal number as ps names it.
fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 0 => "tty".to_string(),
        5 if minor == 1 => "console".to_string(),
        _ => format!("{major}:{minor}"),
    }
}

/// User names by uid from the host's /etc/passwd (what Docker's host-side `ps` shows).
fn host_users() -> HashMap<u32, String> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Local broken-down time of `secs` since the epoch.
fn local_time(secs: i64) -> libc::tm {
    // SAFETY: tm is plain data; localtime_r fills it from `t`, both on this stack frame.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = secs;
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// ps's start time: `HH:MM` today, `MonDD` this year, the year before that.
fn start_column(start: i64, now: i64) -> String {
    let (s, n) = (local_time(start), local_time(now));
    if (s.tm_year, s.tm_yday) == (n.tm_year, n.tm_yday) {
        format!("{:02}:{:02}", s.tm_hour, s.tm_min)
    } else if s.tm_year == n.tm_year {
        let month = MONTHS.get(s.tm_mon as usize).copied().unwrap_or("???");
        format!("{month}{:02}", s.tm_mday)
    } else {
        format!("{}", s.tm_year + 1900)
    }
}

/// `[DD-]HH:MM:SS` of CPU time, as `ps -f` prints it.
fn cpu_time_full(secs: u64) -> String {
    let (days, rest) = (secs / 86400, secs % 86400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}-{hms}")
    } else {
        hms
    }
}

/// What all rows share: the clock and the host.
struct Context {
    host: Host,
    users: HashMap<u32, String>,
    boot_time: i64,
    now: i64,
    page_size: u64,
}

impl Context {
    fn read() -> Context {
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_keyed(&s).get("btime").copied())
            .unwrap_or(0) as i64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // SAFETY: sysconf only reads system configuration.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Context {
            host: Host::read(),
            users: host_users(),
            boot_time,
            now,
            page_size: u64::try_from(page_size).unwrap_or(4096),
        }
    }

    fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn started(&self, p: &Proc) -> i64 {
        self.boot_time + (p.start_ticks / self.host.clock_ticks) as i64
    }

    /// CPU use over the process's life, in percent of one CPU.
    fn cpu_percent(&self, p: &Proc) -> f64 {
        let alive = (self.now - self.started(p)).max(1) as f64;
        p.cpu_ticks as f64 / self.host.clock_ticks as f64 / alive * 100.0
    }

    fn cell(&self, p: &Proc, column: Column) -> String {
        let cpu_secs = p.cpu_ticks / self.host.clock_ticks;
        let rss = p.rss_pages * self.page_size;
        match column {
            Column::User => self.user(p.euid),
            Column::Uid => p.euid.to_string(),
            Column::Pid => p.pid.to_string(),
            Column::Ppid => p.ppid.to_string(),
            Column::Pgid => p.pgrp.to_string(),
            Column::C => (self.cpu_percent(p) as u64).to_string(),
            Column::Stime => start_column(self.started(p), self.now),
            Column::Tty => tty_name(p.tty_nr),
            Column::Time => cpu_time_full(cpu_secs),
            Column::BsdTime => format!("{}:{:02}", cpu_secs / 60, cpu_secs % 60),
            Column::Args => p.command(),
            Column::Comm => p.comm.clone(),
            Column::PCpu => format!("{:.1}", self.cpu_percent(p)),
            Column::PMem => format!("{:.1}", rss as f64 / self.host.memory.max(1) as f64 * 100.0),
            Column::Vsz => (p.vsize / 1024).to_string(),
            Column::Rss => (rss / 1024).to_string(),
            Column::Stat => stat_column(p),
            Column::Threads => p.threads.to_string(),
        }
    }
}

/// `ps aux`'s STAT: the state letter and BSD flags.
fn stat_column(p: &Proc) -> String {
    let mut s = p.state.to_string();
    if p.nice < 0 {
        s.push('<');
    } else if p.nice > 0 {
        s.push('N');
    }
    if p.session == p.pid {
        s.push('s');
    }
    if p.threads > 1 {
        s.push('l');
    }
    if p.tpgid >= 0 && p.pgrp == p.tpgid {
        s.push('+');
    }
    s
}

/// The `top` table for the processes `pids`.
pub fn table(pids: &[i32], ps_args: &str) -> Result<ContainerTopResponse> {
    let columns = parse_args(ps_args)?;
    let ctx = Context::read();
    let mut procs: Vec<Proc> = pids.iter().filter_map(|&pid| Proc::read(pid)).collect();
    procs.sort_by_key(|p| p.pid);
    let rows = procs
        .iter()
        .map(|p| columns.iter().map(|(c, _)| ctx.cell(p, *c)).collect())
        .collect();
    Ok(ContainerTopResponse {
        titles: Some(columns.into_iter().map(|(_, title)| title).collect()),
        processes: Some(rows),
    })
}

impl Engine {
    /// `GET /containers/{id}/top?ps_args=`: 409 when the container is not running.
    pub fn container_top(&self, name_or_id: &str, ps_args: &str) -> Result<ContainerTopResponse> {
        let handle = self.containers.get(name_or_id)?;
        let status = handle.lock().state.status;
        if !matches!(status, Status::Running | Status::Paused) {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                handle.id
            )));
        }
        parse_args(ps_args)?;
        let cgroup = berth_runtime::cgroups::open(&self.cgroup_path(&handle.id))?;
        let pids: Vec<i32> = cgroup.pids()?.into_iter().map(|pid| pid.as_raw()).collect();
        table(&pids, ps_args)
    }
}
