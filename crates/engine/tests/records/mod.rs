//! An engine on a temp root with hand-made container records: for tests of what the engine
//! reads about a container (logs, stats) without running one through a monitor.

use std::path::PathBuf;
use std::sync::Arc;

use berth_engine::container::{Container, Handle, State};
use berth_engine::{Config, Engine};

/// An engine on `dir` (no helper binaries: nothing here starts a container), with a cgroup
/// parent of the test's own.
pub fn engine(dir: &tempfile::TempDir, test: &str) -> Arc<Engine> {
    Engine::open(Config {
        root: dir.path().join("root"),
        exec_root: dir.path().join("run"),
        monitor: PathBuf::from("/nonexistent/berth-monitor"),
        init: PathBuf::from("/nonexistent/berth-init"),
        cgroup_parent: format!("/berth-test-{test}-{}", std::process::id()),
    })
    .unwrap()
}

/// Container number `n` (its id is `n` in hex, 32 times), named `<prefix><n>`, with
/// `config` as its Docker config.
pub fn container(engine: &Engine, n: u8, prefix: &str, config: serde_json::Value) -> Arc<Handle> {
    let record: Container = serde_json::from_value(serde_json::json!({
        "id": format!("{n:02x}").repeat(32), "name": format!("{prefix}{n}"),
        "created": "2026-01-01T00:00:00Z", "image": "busybox", "image_id": "sha256:00",
        "config": config, "host_config": {},
        "state": serde_json::to_value(State::default()).unwrap(),
        "restart_count": 0, "mounts": [],
    }))
    .unwrap();
    engine.containers.insert(record).unwrap()
}
