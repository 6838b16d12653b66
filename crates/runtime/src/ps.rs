//! `ps`: the processes of a container, as the pids in its cgroup (json) or as `ps` shows them
//! (table).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cgroups;
use crate::state::State;

/// The pids (in our pid namespace) of every process in the container's cgroup.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let state = State::load(root, id)?;
    let cgroup = cgroups::open(&state.cgroup_path)?;
    let pids = cgroup
        .pids()
        .with_context(|| format!("cannot list the processes of container \"{id}\""))?;
    Ok(pids.into_iter().map(|pid| pid.as_raw()).collect())
}

/// `ps <ps_args>` (default `-ef`), keeping the header and the lines of `pids`, as runc does.
pub fn table(pids: &[i32], ps_args: &[String]) -> Result<String> {
    let default = ["-ef".to_owned()];
    let args = if ps_args.is_empty() {
        &default[..]
    } else {
        ps_args
    };
    let out = Command::new("ps")
        .args(args)
        .output()
        .context("cannot run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    filter_table(&String::from_utf8_lossy(&out.stdout), pids)
}

/// The header of `ps` output and its lines whose PID column is one of `pids`.
fn filter_table(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().context("ps printed nothing")?;
    let column = header
        .split_whitespace()
        .position(|field| field == "PID")
        .context("ps output has no PID column (add -o pid or -f)")?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|f| f.parse().ok());
        if pid.is_some_and(|pid| wanted.contains(&pid)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_the_header_and_the_containers_lines() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n";
        assert_eq!(
            filter_table(text, &[42]).unwrap(),
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n"
        );
        assert!(filter_table("USER COMMAND\n", &[1]).is_err());
    }
}
