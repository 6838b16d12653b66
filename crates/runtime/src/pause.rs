//! `pause` and `resume`: freeze and thaw every process of a container through its cgroup's
//! freezer; `state` reports a frozen container as paused.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cgroups;
use crate::state::{State, Status};

/// Freeze a created or running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let state = State::load(root, id)?;
    match state.status(root) {
        Status::Created | Status::Running => {}
        status => bail!("cannot pause container \"{id}\": it is {status}, not running"),
    }
    set_frozen(&state, true)
}

/// Thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let state = State::load(root, id)?;
    match state.status(root) {
        Status::Paused => {}
        status => bail!("cannot resume container \"{id}\": it is {status}, not paused"),
    }
    set_frozen(&state, false)
}

fn set_frozen(state: &State, frozen: bool) -> Result<()> {
    let what = if frozen { "freeze" } else { "thaw" };
    cgroups::open(&state.cgroup_path)?
        .set_frozen(frozen)
        .with_context(|| format!("cannot {what} container \"{}\"", state.id))
}
