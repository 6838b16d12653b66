//! The spare monitor: launched ahead of need, it is the one a start gets, and it works in
//! the directory of the container it was given. A binary of its own: the test counts this
//! process's children (all monitors), which no other test may start meanwhile.

mod common;

use std::path::PathBuf;

use berth_monitor::client::{self, Monitors};
use common::*;

/// This process's children.
fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn cwd(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap()
}

#[test]
fn a_start_gets_the_spare_and_a_dead_spare_is_replaced() {
    let ctx = Ctx::new("spare");
    let monitors = Monitors::new(monitor_bin());
    monitors.refill().unwrap();
    let spare = match children()[..] {
        [pid] => pid,
        ref other => panic!("one spare monitor expected, found {other:?}"),
    };
    ctx.track_monitor(spare);
    assert_eq!(cwd(spare), PathBuf::from("/"));
    // A second refill keeps the one spare.
    monitors.refill().unwrap();
    assert_eq!(children(), vec![spare]);

    let cfg = ctx.container(&["sh", "-c", "echo from-spare"], false, false);
    let spawned = monitors.spawn(&cfg.bundle, &cfg).unwrap();
    assert_eq!(
        spawned.monitor_pid, spare,
        "the start did not get the spare"
    );
    assert_eq!(cwd(spare), cfg.bundle, "a monitor works in its directory");
    let mut stream = client::attach(&cfg.socket, false, true, false).unwrap();
    client::start(&cfg.socket).unwrap();
    assert_eq!(
        demux(&read_all(&mut stream)),
        vec![(1, "from-spare\n".into())]
    );
    assert_eq!(wait_monitor(spare), 0);

    // A spare killed while it waits is not handed out: the start gets a new monitor.
    monitors.refill().unwrap();
    let [killed] = children()[..] else {
        panic!("one spare expected after the refill: {:?}", children());
    };
    ctx.track_monitor(killed);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while std::fs::read_to_string(format!("/proc/{killed}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let cfg = ctx.container(&["true"], false, false);
    let spawned = monitors.spawn(&cfg.bundle, &cfg).unwrap();
    ctx.track_monitor(spawned.monitor_pid);
    assert_ne!(spawned.monitor_pid, killed);
    client::start(&cfg.socket).unwrap();
    assert_eq!(wait_monitor(spawned.monitor_pid), 0);
    assert_eq!(wait_exit(&cfg).exit_code, 0);
}
