//! `events`: a container's resource usage as runc prints it, one JSON object per line
//! (`{"type":"stats","id":…,"data":{…}}`), once (`--stats`) or every interval until the
//! container stops, with `{"type":"oom","id":…}` when the OOM killer kills in its cgroup.

use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cgroups::{self, stats::Stats, CgroupManager};
use crate::state::{State, Status};

/// How often the stream looks for OOM kills and for the container's end between stats.
const POLL: Duration = Duration::from_millis(200);

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Stats>,
}

/// Print the container's events to `out`: one stats event with `once`, else a stats event
/// every `interval` and OOM events as they happen, until the container stops.
pub fn events(
    root: &Path,
    id: &str,
    once: bool,
    interval: Duration,
    out: &mut impl Write,
) -> Result<()> {
    if interval.is_zero() {
        bail!("--interval must be greater than 0");
    }
    let state = State::load(root, id)?;
    if state.status(root) == Status::Stopped {
        bail!("container \"{id}\" is not running");
    }
    let cgroup = cgroups::open(&state.cgroup_path)?;
    if once {
        return emit(out, "stats", id, Some(&cgroup.stats()));
    }
    stream(
        &state,
        &*cgroup,
        interval.max(Duration::from_millis(1)),
        out,
    )
}

fn stream(
    state: &State,
    cgroup: &dyn CgroupManager,
    interval: Duration,
    out: &mut impl Write,
) -> Result<()> {
    let mut oom_kills = cgroup.stats().oom_kills;
    let mut next_stats = Instant::now();
    while state.init_alive() {
        let stats = cgroup.stats();
        if stats.oom_kills > oom_kills {
            oom_kills = stats.oom_kills;
            emit(out, "oom", &state.id, None)?;
        }
        let now = Instant::now();
        if now >= next_stats {
            emit(out, "stats", &state.id, Some(&stats))?;
            next_stats = now + interval;
        }
        thread::sleep(POLL.min(next_stats.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

fn emit(out: &mut impl Write, kind: &str, id: &str, data: Option<&Stats>) -> Result<()> {
    let line = serde_json::to_string(&Event { kind, id, data })?;
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write the event")
}
