//! The freezer: stop every process of a cgroup (`pause`) and let them go on (`resume`).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::fs::{read_file, write_file};

/// How long a freeze or thaw may take before it is an error. The kernel normally needs
/// microseconds; a task in an uninterruptible sleep (I/O on a dead NFS server) holds it back.
pub(super) const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// v1: `freezer.state` goes THAWED → FREEZING → FROZEN. A task that was forking or in an
/// uninterruptible sleep keeps it FREEZING; writing FROZEN again retries those, as runc does.
/// A freeze that does not complete is undone, so the container is never left half frozen.
pub(super) fn set_v1(state_file: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut delay = Duration::from_micros(100);
    loop {
        write_file(state_file, want)?;
        if read_file(state_file)?.trim() == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                let _ = write_file(state_file, "THAWED");
            }
            bail!(
                "{} did not become {want} within {FREEZE_TIMEOUT:?}",
                state_file.display()
            );
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// v1: FREEZING (a freeze under way, or one that failed) is not paused yet.
pub(super) fn is_frozen_v1(state_file: &Path) -> Result<bool> {
    Ok(read_file(state_file)?.trim() == "FROZEN")
}

/// v2: write `cgroup.freeze`; the kernel says it is done with "frozen 1" (or 0) in
/// `cgroup.events`.
pub(super) fn set_v2(dir: &Path, frozen: bool) -> Result<()> {
    let (value, event) = if frozen {
        ("1", "frozen 1")
    } else {
        ("0", "frozen 0")
    };
    write_file(&dir.join("cgroup.freeze"), value)?;
    if super::v2::wait_for_event(dir, event, FREEZE_TIMEOUT)? {
        return Ok(());
    }
    if frozen {
        let _ = write_file(&dir.join("cgroup.freeze"), "0");
    }
    bail!(
        "cgroup {} did not report \"{event}\" within {FREEZE_TIMEOUT:?}",
        dir.display()
    )
}

/// v2: what was asked (`cgroup.freeze`), as runc reports it.
pub(super) fn is_frozen_v2(dir: &Path) -> Result<bool> {
    Ok(read_file(&dir.join("cgroup.freeze"))?.trim() == "1")
}
