//! Volumes through the engine: create/inspect/list/remove, Docker's name rules, in-use
//! refusal, prune's defaults and filters, and the copy-up from an (untrusted) image rootfs.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::container::Container;
use berth_engine::{Config, Engine, Error};

struct TestEngine {
    engine: Arc<Engine>,
    dir: tempfile::TempDir,
}

fn engine(test: &str) -> TestEngine {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        root: dir.path().join("root"),
        exec_root: dir.path().join("run"),
        monitor: PathBuf::from("/nonexistent/berth-monitor"),
        init: PathBuf::from("/nonexistent/berth-init"),
        cgroup_parent: format!("/berth-test-{test}-{}", std::process::id()),
    };
    TestEngine {
        engine: Engine::open(config).unwrap(),
        dir,
    }
}

/// A container record that mounts `volumes` (what create leaves in the store).
fn container_with_volumes(id: &str, name: &str, volumes: &[&str]) -> Container {
    let mounts: Vec<serde_json::Value> = volumes
        .iter()
        .map(|v| {
            serde_json::json!({"Type": "volume", "Name": v, "Destination": format!("/{v}"),
                               "Driver": "local", "RW": true})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": id, "name": name, "created": "2026-01-01T00:00:00Z", "image": "busybox",
        "image_id": "sha256:00", "config": {}, "host_config": {}, "state": serde_json::to_value(berth_engine::container::State::default()).unwrap(),
        "restart_count": 0, "mounts": mounts,
    }))
    .unwrap()
}

fn id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn no_labels() -> HashMap<String, String> {
    HashMap::new()
}

fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut f: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        f.entry(k.to_string()).or_default().push(v.to_string());
    }
    f
}

fn names(list: &bollard_stubs::models::VolumeListResponse) -> Vec<String> {
    list.volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect()
}

#[tokio::test]
async fn create_inspect_list_remove() {
    let t = engine("volumes-crud");
    let e = &t.engine;
    let labels: HashMap<String, String> = [("team".to_string(), "a".to_string())].into();
    let v = e
        .create_volume(Some("data1"), None, labels.clone(), no_labels())
        .unwrap();
    assert_eq!(v.name, "data1");
    assert_eq!(v.driver, "local");
    assert_eq!(v.labels, labels);
    let data = t.dir.path().join("root/volumes/data1/_data");
    assert_eq!(Path::new(&v.mountpoint), data);
    assert!(data.is_dir());
    assert!(t
        .dir
        .path()
        .join("root/volumes/data1/volume.json")
        .is_file());
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["Scope"], "local");
    assert!(humantime::parse_rfc3339(json["CreatedAt"].as_str().unwrap()).is_ok());

    // Creating an existing name gives it back unchanged (labels of the second call ignored).
    let again = e
        .create_volume(Some("data1"), Some("local"), no_labels(), no_labels())
        .unwrap();
    assert_eq!(again.created_at, v.created_at);
    assert_eq!(again.labels, labels);

    e.create_volume(Some("other"), None, no_labels(), no_labels())
        .unwrap();
    let all = e.list_volumes(&HashMap::new()).unwrap();
    assert_eq!(names(&all), ["data1", "other"]);
    let by_label = e.list_volumes(&filters(&[("label", "team=a")])).unwrap();
    assert_eq!(names(&by_label), ["data1"]);
    let by_name = e.list_volumes(&filters(&[("name", "oth")])).unwrap();
    assert_eq!(names(&by_name), ["other"]);
    assert!(matches!(
        e.list_volumes(&filters(&[("bogus", "1")])),
        Err(Error::InvalidParameter(_))
    ));

    fs::write(data.join("f"), "x").unwrap();
    e.remove_volume("data1", false).unwrap();
    assert!(!t.dir.path().join("root/volumes/data1").exists());
    let err = e.inspect_volume("data1").unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(err.message(), "get data1: no such volume");
    assert_eq!(e.remove_volume("data1", false).unwrap_err().status(), 404);
    e.remove_volume("data1", true).unwrap();

    // Metadata survives a reopen of the store.
    drop(t.engine);
}

#[tokio::test]
async fn anonymous_volumes_and_other_drivers() {
    let t = engine("volumes-anon");
    let v = t
        .engine
        .create_volume(None, None, no_labels(), no_labels())
        .unwrap();
    assert_eq!(v.name.len(), 64);
    assert!(v.name.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(v.labels.contains_key("com.docker.volume.anonymous"));
    let err = t
        .engine
        .create_volume(Some("x1"), Some("nfs"), no_labels(), no_labels())
        .unwrap_err();
    assert_eq!(err.status(), 404);
    let opts: HashMap<String, String> = [("type".to_string(), "tmpfs".to_string())].into();
    let err = t
        .engine
        .create_volume(Some("x2"), None, no_labels(), opts)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(t.engine.inspect_volume("x2").is_err());
}

#[tokio::test]
async fn names_follow_dockers_rule() {
    let t = engine("volumes-names");
    for bad in ["a", "a/b", "-ab", "..", "../x", ".ab", "a b", "ab\u{e9}"] {
        let err = t
            .engine
            .create_volume(Some(bad), None, no_labels(), no_labels())
            .unwrap_err();
        assert_eq!(err.status(), 400, "{bad:?} was accepted");
        assert!(
            err.message().starts_with(&format!("create {bad}: ")),
            "{}",
            err.message()
        );
    }
    let err = t
        .engine
        .create_volume(Some("a/b"), None, no_labels(), no_labels())
        .unwrap_err();
    assert!(err
        .message()
        .contains("includes invalid characters for a local volume name"));
    for good in ["ab", "0x", "my_vol.1-2", "A.B"] {
        t.engine
            .create_volume(Some(good), None, no_labels(), no_labels())
            .unwrap();
    }
    assert_eq!(
        t.engine.inspect_volume("../root").unwrap_err().status(),
        404
    );
}

#[tokio::test]
async fn a_mounted_volume_cannot_be_removed() {
    let t = engine("volumes-inuse");
    let e = &t.engine;
    e.create_volume(Some("busy"), None, no_labels(), no_labels())
        .unwrap();
    e.create_volume(Some("idle"), None, no_labels(), no_labels())
        .unwrap();
    let record = container_with_volumes(&id(1), "user1", &["busy"]);
    e.containers.insert(record).unwrap();
    let err = e.remove_volume("busy", false).unwrap_err();
    assert_eq!(err.status(), 409);
    assert_eq!(
        err.message(),
        format!("remove busy: volume is in use - [{}]", id(1))
    );
    assert_eq!(e.remove_volume("busy", true).unwrap_err().status(), 409);
    let dangling = e.list_volumes(&filters(&[("dangling", "true")])).unwrap();
    assert_eq!(names(&dangling), ["idle"]);
    let used = e.list_volumes(&filters(&[("dangling", "false")])).unwrap();
    assert_eq!(names(&used), ["busy"]);
    e.containers.remove(&id(1)).unwrap();
    e.remove_volume("busy", false).unwrap();
}

#[tokio::test]
async fn prune_takes_unused_anonymous_volumes_unless_all() {
    let t = engine("volumes-prune");
    let e = &t.engine;
    let anon_free = e
        .create_volume(None, None, no_labels(), no_labels())
        .unwrap()
        .name;
    let anon_used = e
        .create_volume(None, None, no_labels(), no_labels())
        .unwrap()
        .name;
    let keep: HashMap<String, String> = [("keep".to_string(), "yes".to_string())].into();
    e.create_volume(Some("named"), None, no_labels(), no_labels())
        .unwrap();
    e.create_volume(Some("kept"), None, keep, no_labels())
        .unwrap();
    e.containers
        .insert(container_with_volumes(&id(2), "user2", &[&anon_used]))
        .unwrap();
    fs::write(
        Path::new(&e.volumes.mountpoint(&anon_free)).join("blob"),
        [7u8; 1000],
    )
    .unwrap();

    let pruned = e.prune_volumes(&HashMap::new()).unwrap();
    assert_eq!(
        pruned.volumes_deleted.unwrap(),
        std::slice::from_ref(&anon_free)
    );
    assert_eq!(pruned.space_reclaimed, Some(1000));

    let pruned = e
        .prune_volumes(&filters(&[("all", "true"), ("label!", "keep=yes")]))
        .unwrap();
    assert_eq!(pruned.volumes_deleted.unwrap(), ["named"]);
    let left = names(&e.list_volumes(&HashMap::new()).unwrap());
    let mut want = vec![anon_used.clone(), "kept".to_string()];
    want.sort();
    assert_eq!(left, want);
    assert!(e.prune_volumes(&filters(&[("dangling", "true")])).is_err());
}

/// An image rootfs whose `/data` has a file, a subdirectory, an absolute symlink and a
/// fifo, and whose `/link` is a symlink that climbs out of the rootfs.
fn hostile_rootfs(base: &Path) -> PathBuf {
    let rootfs = base.join("rootfs");
    let data = rootfs.join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("file"), "content").unwrap();
    fs::set_permissions(data.join("file"), fs::Permissions::from_mode(0o4750)).unwrap();
    std::os::unix::fs::chown(data.join("file"), Some(1000), Some(1001)).unwrap();
    // chown clears set-id bits: set the mode again.
    fs::set_permissions(data.join("file"), fs::Permissions::from_mode(0o4750)).unwrap();
    fs::write(data.join("sub/deep"), "deep").unwrap();
    fs::hard_link(data.join("file"), data.join("sub/hard")).unwrap();
    symlink("/etc/passwd", data.join("passwd-link")).unwrap();
    nix::unistd::mkfifo(
        &data.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(&data, Some(33), Some(34)).unwrap();
    // Outside the rootfs: what a resolution from the host's `/` would reach.
    let outside = base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "host secret").unwrap();
    fs::create_dir_all(rootfs.join(outside.strip_prefix("/").unwrap())).unwrap();
    fs::write(
        rootfs
            .join(outside.strip_prefix("/").unwrap())
            .join("inside"),
        "in the image",
    )
    .unwrap();
    symlink(
        format!("../../../../../../..{}", outside.display()),
        rootfs.join("link"),
    )
    .unwrap();
    rootfs
}

#[tokio::test]
async fn populate_copies_the_image_directory_without_following_links() {
    let t = engine("volumes-populate");
    let e = &t.engine;
    let rootfs = hostile_rootfs(t.dir.path());
    e.create_volume(Some("pop"), None, no_labels(), no_labels())
        .unwrap();
    e.volumes.populate_from("pop", &rootfs, "/data").unwrap();
    let vol = e.volumes.mountpoint("pop");
    assert_eq!(fs::read_to_string(vol.join("file")).unwrap(), "content");
    let meta = fs::metadata(vol.join("file")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 1001, 0o4750)
    );
    assert_eq!(fs::read_to_string(vol.join("sub/deep")).unwrap(), "deep");
    let hard = fs::metadata(vol.join("sub/hard")).unwrap();
    assert_eq!(
        (hard.ino(), hard.nlink()),
        (meta.ino(), 2),
        "hard links stay links"
    );
    assert_eq!(
        fs::read_link(vol.join("passwd-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(fs::symlink_metadata(vol.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let root_meta = fs::metadata(&vol).unwrap();
    assert_eq!(
        (root_meta.uid(), root_meta.gid(), root_meta.mode() & 0o7777),
        (33, 34, 0o751)
    );
    let src_mtime = fs::metadata(rootfs.join("data/file")).unwrap().mtime();
    assert_eq!(meta.mtime(), src_mtime);

    // A second populate of a volume that is no longer empty changes nothing.
    fs::write(rootfs.join("data/new"), "later").unwrap();
    e.volumes.populate_from("pop", &rootfs, "/data").unwrap();
    assert!(!vol.join("new").exists());

    // The mount point is a symlink out of the rootfs: it resolves inside it.
    e.create_volume(Some("esc"), None, no_labels(), no_labels())
        .unwrap();
    e.volumes.populate_from("esc", &rootfs, "/link").unwrap();
    let esc = e.volumes.mountpoint("esc");
    assert!(
        !esc.join("secret").exists(),
        "copied a file from outside the rootfs"
    );
    assert_eq!(
        fs::read_to_string(esc.join("inside")).unwrap(),
        "in the image"
    );

    // A path missing from the image leaves the volume empty.
    e.create_volume(Some("none"), None, no_labels(), no_labels())
        .unwrap();
    e.volumes
        .populate_from("none", &rootfs, "/missing/dir")
        .unwrap();
    assert_eq!(
        fs::read_dir(e.volumes.mountpoint("none")).unwrap().count(),
        0
    );
}

use std::os::unix::fs::FileTypeExt;
