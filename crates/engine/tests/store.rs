//! The container store on disk: a removal takes a container's directory away at once, and
//! one a crash cut short is finished when the store opens again.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_engine::container::{Container, ContainerStore, Handle, State};

fn record(n: u8) -> Container {
    serde_json::from_value(serde_json::json!({
        "id": format!("{n:02x}").repeat(32), "name": format!("c{n}"),
        "created": "2026-01-01T00:00:00Z", "image": "busybox", "image_id": "sha256:00",
        "config": {}, "host_config": {},
        "state": serde_json::to_value(State::default()).unwrap(),
        "restart_count": 0, "mounts": [],
    }))
    .unwrap()
}

/// A store on `dir` with containers 1 (kept) and 2 (to remove).
fn store_of_two(dir: &std::path::Path) -> (ContainerStore, Arc<Handle>, Arc<Handle>) {
    let store = ContainerStore::open(dir).unwrap();
    let kept = store.insert(record(1)).unwrap();
    let removed = store.insert(record(2)).unwrap();
    (store, kept, removed)
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_removed_container_is_gone_and_its_directory_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, kept, removed) = store_of_two(dir.path());
    store.remove(&removed.id).unwrap();
    assert!(store.get(&removed.id).is_err());
    assert!(!removed.paths.dir.exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries(dir.path()).len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(entries(dir.path()), vec![kept.id.clone()]);
    // Nothing comes back when the store opens again.
    let store = ContainerStore::open(dir.path()).unwrap();
    assert!(store.get(&removed.id).is_err());
    assert!(store.get(&kept.id).is_ok());
}

#[test]
fn a_removal_a_crash_cut_short_is_finished_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (store, kept, removed) = store_of_two(dir.path());
    // Where `remove` renames a directory (its record still in it), before the thread that
    // deletes it has run.
    let trash = dir.path().join(format!(".removed-{}", removed.id));
    fs::rename(&removed.paths.dir, &trash).unwrap();
    drop(store);
    let store = ContainerStore::open(dir.path()).unwrap();
    assert!(
        store.get(&removed.id).is_err(),
        "a removed container came back"
    );
    assert!(store.get(&kept.id).is_ok());
    assert_eq!(entries(dir.path()), vec![kept.id.clone()]);
}
