//! Image removal and garbage collection (`docker rmi`), and crash safety of a pull killed
//! midway, against a real registry (Debian's docker-registry) fed by skopeo.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_image::config::{chain_ids, ImageConfig};
use berth_image::digest::{Digest, DigestWriter};
use berth_image::gc::RemoveError;
use berth_image::images::ImageStore;
use berth_image::manifest::Platform;
use berth_image::reference::Reference;
use berth_image::registry::{ClientOptions, RegistryClient};
use common::*;
use flate2::write::GzEncoder;
use serde_json::json;

fn reference(registry: &Registry, name_tag: &str) -> Reference {
    Reference::parse_normalized(&format!("{}/{name_tag}", registry.host())).unwrap()
}

fn pull(store: &ImageStore, registry: &Registry, name_tag: &str) -> Digest {
    let client = RegistryClient::new(ClientOptions::default());
    let reference = reference(registry, name_tag);
    store
        .pull(&client, &reference, &Platform::host(), &|_| {})
        .unwrap()
}

/// The registry with busybox (`busybox:latest`) and the two-layer image built on the same
/// base layer (`two:latest`).
fn registry_with_images() -> Registry {
    let registry = Registry::start();
    push_with_skopeo(&busybox_oci_layout(), &registry, "busybox:latest");
    push_with_skopeo(&busybox_two_layer_oci_layout(), &registry, "two:latest");
    registry
}

fn sorted(mut v: Vec<Digest>) -> Vec<Digest> {
    v.sort();
    v
}

fn chain_of(store: &ImageStore, image: &Digest) -> Vec<Digest> {
    let config = ImageConfig::parse(&store.content.read(image).unwrap()).unwrap();
    chain_ids(&config.rootfs.diff_ids)
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

fn tag(store: &ImageStore, image: &Digest, name: &str) -> Reference {
    let reference = Reference::parse_normalized(name).unwrap();
    let manifest = store.index.image(image).unwrap().unwrap().manifest;
    store.index.tag(&reference, image, &manifest).unwrap();
    reference
}

fn untagged(names: &[&Reference]) -> HashSet<Reference> {
    names.iter().map(|r| (*r).clone()).collect()
}

#[test]
fn removing_an_image_keeps_what_another_still_shares() {
    let registry = registry_with_images();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let busybox = pull(&store, &registry, "busybox:latest");
    let busybox_blobs = store.content.list().unwrap();
    let busybox_layers = store.layers.list().unwrap();
    let two = pull(&store, &registry, "two:latest");
    let two_chain = chain_of(&store, &two);
    assert_eq!(two_chain[0], busybox_layers[0], "the base layer is shared");
    assert_eq!(store.layers.list().unwrap().len(), 2);

    let removed = store
        .remove_image(&format!("{}/two", registry.host()), false)
        .unwrap();
    assert_eq!(removed.untagged, vec![reference(&registry, "two:latest")]);
    assert_eq!(removed.deleted, Some(two.clone()));
    assert_eq!(removed.collected.layers, vec![two_chain[1].clone()]);
    assert_eq!(
        removed.collected.blobs.len(),
        3,
        "manifest, config, top layer"
    );
    assert_eq!(
        removed.lines(),
        vec![
            format!("Untagged: {}/two:latest", registry.host()),
            format!("Deleted: {two}"),
            format!("Deleted: {}", two_chain[1]),
        ]
    );
    assert_eq!(store.content.list().unwrap(), busybox_blobs);
    assert_eq!(store.layers.list().unwrap(), busybox_layers);
    assert!(!store.layers.diff_dir(&two_chain[1]).exists());
    assert!(store.layers.diff_dir(&two_chain[0]).join("bin").exists());

    let name = format!("{}/busybox:latest", registry.host());
    let removed = store.remove_image(&name, false).unwrap();
    assert_eq!(removed.deleted, Some(busybox));
    assert_eq!(removed.collected.layers, busybox_layers);
    assert_eq!(sorted(removed.collected.blobs), busybox_blobs);
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());
    assert!(store.index.list().unwrap().is_empty());
    assert!(store.index.images().unwrap().is_empty());
    for dir in ["layers", "l", "content/blobs/sha256"] {
        assert!(is_empty_dir(&tmp.path().join(dir)), "{dir} is not empty");
    }
}

#[test]
fn rmi_untags_names_and_deletes_by_id_as_docker_does() {
    let registry = registry_with_images();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = pull(&store, &registry, "busybox:latest");
    let pulled = reference(&registry, "busybox:latest");
    tag(&store, &image, "other:v1");
    let one = tag(&store, &image, "busybox:1");
    let manifest = store.index.image(&image).unwrap().unwrap().manifest;

    // By id, with names in several repositories: refused, nothing changes.
    let err = store.remove_image(image.short(), false).unwrap_err();
    assert_eq!(
        err.downcast_ref::<RemoveError>(),
        Some(&RemoveError::Conflict(image.short().to_string()))
    );
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple \
             repositories",
            image.short()
        )
    );
    assert_eq!(store.index.references_of(&image).unwrap().len(), 3);

    // By name, while other names remain: only untagged.
    let removed = store.remove_image("other:v1", false).unwrap();
    assert_eq!(removed.lines(), vec!["Untagged: other:v1".to_string()]);
    assert_eq!(removed.deleted, None);
    assert_eq!(store.content.list().unwrap().len(), 3);

    // The last tag of a repository takes the repository's digest references along.
    let by_digest = tag(&store, &image, &format!("busybox@{manifest}"));
    let removed = store.remove_image("busybox:1", false).unwrap();
    assert_eq!(
        removed.untagged.iter().cloned().collect::<HashSet<_>>(),
        untagged(&[&one, &by_digest])
    );
    assert_eq!(removed.deleted, None);
    assert_eq!(
        store.index.references_of(&image).unwrap(),
        vec![pulled.clone()]
    );

    // One tag and a digest reference, all in one repository: by id needs no force.
    let pulled_digest = tag(&store, &image, &format!("{}@{manifest}", pulled.name()));
    let removed = store.remove_image(&image.hex()[..12], false).unwrap();
    assert_eq!(
        removed.untagged.iter().cloned().collect::<HashSet<_>>(),
        untagged(&[&pulled, &pulled_digest])
    );
    assert_eq!(removed.deleted, Some(image.clone()));
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());

    let err = store.remove_image(&image.to_string(), false).unwrap_err();
    assert_eq!(err.to_string(), format!("No such image: {image}"));
    let err = store.remove_image("other:v1", false).unwrap_err();
    assert_eq!(err.to_string(), "No such image: other:v1");
}

#[test]
fn force_deletes_by_id_whatever_names_the_image() {
    let registry = registry_with_images();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = pull(&store, &registry, "busybox:latest");
    let pulled = reference(&registry, "busybox:latest");
    // Two tags in one repository are a conflict too.
    let second = tag(&store, &image, &format!("{}:second", pulled.name()));
    let err = store.remove_image(&image.to_string(), false).unwrap_err();
    assert!(err.downcast_ref::<RemoveError>().is_some(), "{err:#}");

    let removed = store.remove_image(&image.to_string(), true).unwrap();
    assert_eq!(
        removed.untagged.iter().cloned().collect::<HashSet<_>>(),
        untagged(&[&pulled, &second])
    );
    assert_eq!(removed.deleted, Some(image));
    assert_eq!(removed.collected.blobs.len(), 3);
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.index.list().unwrap().is_empty());
}

#[test]
fn a_dangling_image_is_deleted_by_id() {
    let registry = registry_with_images();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = pull(&store, &registry, "busybox:latest");
    store
        .index
        .untag(&reference(&registry, "busybox:latest"))
        .unwrap();
    let removed = store.remove_image(&image.hex()[..8], false).unwrap();
    assert!(removed.untagged.is_empty());
    assert_eq!(removed.lines()[0], format!("Deleted: {image}"));
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());
}

#[test]
fn layers_containers_use_outlive_their_image() {
    let registry = registry_with_images();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let two = pull(&store, &registry, "two:latest");
    let chain = chain_of(&store, &two);
    let in_use = |c: &Digest| chain.contains(c);
    let removed = store
        .remove_image_with(&format!("{}/two", registry.host()), false, &in_use)
        .unwrap();
    assert_eq!(removed.deleted, Some(two));
    assert!(removed.collected.layers.is_empty());
    assert!(store.content.list().unwrap().is_empty());
    assert_eq!(sorted(store.layers.list().unwrap()), sorted(chain.clone()));

    // Once the container is gone, the next collection takes them.
    let collected = store.collect(&|_| false).unwrap();
    assert_eq!(collected.layers, sorted(chain));
    assert!(collected.blobs.is_empty());
    assert!(store.layers.list().unwrap().is_empty());
}

#[test]
fn collection_waits_for_writers_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    // What a pull has written before the index names its image.
    let unindexed = store
        .content
        .put_bytes(b"a blob of a pull in progress")
        .unwrap();
    let writer = store.writer_lock().unwrap();
    let other_writer = store.writer_lock().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let store = &store;
        s.spawn(move || tx.send(store.collect(&|_| false).map(|c| c.blobs)));
        let early = rx.recv_timeout(Duration::from_millis(300));
        assert!(early.is_err(), "collection ran under a writer: {early:?}");
        assert!(store.content.has(&unindexed));
        drop(writer);
        drop(other_writer);
        let collected = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(collected, vec![unindexed]);
    });
    assert!(tmp.path().join("gc.lock").is_file());
}

/// busybox loaded from the harness's OCI layout as `busybox:latest`.
fn load_busybox(store: &ImageStore) -> Digest {
    let repo = Reference::parse_normalized("busybox").unwrap();
    store
        .load_oci_layout(&busybox_oci_layout(), Some(&repo))
        .unwrap()[0]
        .id
        .clone()
}

#[test]
fn collection_reports_and_skips_an_image_whose_blobs_are_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = load_busybox(&store);
    let manifest = store.index.image(&image).unwrap().unwrap().manifest;
    store.remove_image("busybox", false).unwrap();
    // What an index update racing the removal did before tagging took the writers' lock:
    // the record is back, its blobs are not.
    let name = Reference::parse_normalized("late:1").unwrap();
    store.index.tag(&name, &image, &manifest).unwrap();
    let stray = store.content.put_bytes(b"garbage").unwrap();

    let collected = store.collect(&|_| false).unwrap();
    assert_eq!(collected.blobs, vec![stray]);
    assert_eq!(collected.broken.len(), 1);
    assert_eq!(collected.broken[0].id, image);
    let problem = &collected.broken[0].problem;
    assert!(
        problem.contains(&format!("config {image} is missing"))
            && problem.contains(&format!("manifest {manifest} is missing")),
        "{problem}"
    );
    // The broken image can still be removed, and the store is clean after.
    let removed = store.remove_image("late:1", false).unwrap();
    assert_eq!(removed.deleted, Some(image));
    assert!(removed.collected.broken.is_empty());
    assert!(store.index.images().unwrap().is_empty());
}

#[test]
fn a_collection_waits_for_a_tag_in_progress() {
    // The race: a tag resolves the image, a removal drops it from the index and collects
    // its blobs, then the tag records the image again — now without blobs. Here the tag is
    // held inside its index update (the test holds the index's lock) while the removal's
    // index update is made by hand and a collection starts: it must wait for the tag.
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = load_busybox(&store);
    let index_lock = fs::File::create(tmp.path().join("refs.lock")).unwrap();
    index_lock.lock().unwrap();
    std::thread::scope(|s| {
        let store = &store;
        let late = Reference::parse_normalized("late:1").unwrap();
        let tagger = s.spawn(move || store.tag("busybox", &late));
        // Time for the tag to resolve the image and block on the index lock.
        std::thread::sleep(Duration::from_millis(300));
        // What `remove_image` does to the index.
        let path = tmp.path().join("refs.json");
        let mut refs: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        refs["images"]
            .as_object_mut()
            .unwrap()
            .remove(&image.to_string());
        refs["refs"].as_object_mut().unwrap().clear();
        fs::write(&path, serde_json::to_vec(&refs).unwrap()).unwrap();
        let collector = s.spawn(move || store.collect(&|_| false));
        std::thread::sleep(Duration::from_millis(300));
        let waited = !collector.is_finished();
        // Released before any assertion: a failing one must not leave the tag blocked.
        index_lock.unlock().unwrap();
        assert!(waited, "the collection ran while a tag was in progress");
        assert_eq!(tagger.join().unwrap().unwrap(), image);
        let collected = collector.join().unwrap().unwrap();
        assert!(collected.broken.is_empty(), "{:?}", collected.broken);
        assert!(collected.blobs.is_empty(), "{:?}", collected.blobs);
    });
    // The tag won: the image is whole under its new name.
    assert_eq!(store.index.resolve("late:1").unwrap(), image);
    assert!(store.collect(&|_| false).unwrap().broken.is_empty());
    let err = store
        .tag("busybox", &Reference::parse_normalized("x").unwrap())
        .unwrap_err();
    assert_eq!(err.to_string(), "No such image: busybox:latest");
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a pull killed midway
// ---------------------------------------------------------------------------------------------

const CHILD_ROOT: &str = "BERTH_GC_TEST_CHILD_ROOT";
const CHILD_REFERENCE: &str = "BERTH_GC_TEST_CHILD_REFERENCE";
/// The big layer: this many files of FILE_SIZE random bytes (incompressible: the gzip blob
/// is as big).
const FILES: usize = 64;
const FILE_SIZE: usize = 1 << 20;
/// Kill the pull once its layer's temp blob has this many bytes.
const MIDWAY: u64 = 8 << 20;
const DEADLINE: Duration = Duration::from_secs(120);

/// Run by `a_pull_killed_midway_leaves_a_store_that_sweeps_and_pulls_again` as a child
/// process (this test binary, re-executed), and killed there.
#[test]
#[ignore = "a helper run as a child process"]
fn pull_in_a_child_process() {
    let (Ok(root), Ok(name)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_REFERENCE)) else {
        return;
    };
    let store = ImageStore::open(Path::new(&root)).unwrap();
    let client = RegistryClient::new(ClientOptions::default());
    let reference = Reference::parse_normalized(&name).unwrap();
    store
        .pull(&client, &reference, &Platform::host(), &|_| {})
        .unwrap();
}

#[test]
fn a_pull_killed_midway_leaves_a_store_that_sweeps_and_pulls_again() {
    let fixture = big_image();
    let registry = Registry::start();
    push_with_skopeo(&fixture.join("oci"), &registry, "big:latest");
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("{}/big:latest", registry.host());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "pull_in_a_child_process"])
        .env(CHILD_ROOT, tmp.path())
        .env(CHILD_REFERENCE, &name)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let midway = wait_until_midway(tmp.path(), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    midway.unwrap();
    let (temps, staging) = (tmp.path().join("content/tmp"), tmp.path().join("staging"));
    assert!(!is_empty_dir(&temps) && !is_empty_dir(&staging));

    let store = ImageStore::open(tmp.path()).unwrap();
    assert!(is_empty_dir(&temps), "temp blobs left after open");
    assert!(is_empty_dir(&staging), "staging dirs left after open");
    assert!(store.index.images().unwrap().is_empty());
    assert!(store.index.list().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());

    let client = RegistryClient::new(ClientOptions::default());
    let reference = Reference::parse_normalized(&name).unwrap();
    let image = store
        .pull(&client, &reference, &Platform::host(), &|_| {})
        .unwrap();
    let layers = store.layers.list().unwrap();
    assert_eq!(layers, chain_of(&store, &image));
    assert_eq!(
        tree_diff(&fixture.join("rootfs"), &store.layers.diff_dir(&layers[0])),
        ""
    );
    let blobs = store.content.list().unwrap();
    assert_eq!(blobs.len(), 3, "manifest, config, layer: {blobs:?}");
    for blob in blobs {
        let path = store.content.path(&blob);
        assert_eq!(sha256sum(&path), blob, "{}", path.display());
    }
    assert_eq!(store.collect(&|_| false).unwrap(), Default::default());
}

/// Waits until the child's download is well under way; an error if it ended first.
fn wait_until_midway(root: &Path, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "the pull ended ({status}) before it could be killed"
            ));
        }
        if largest_file(&root.join("content/tmp")) >= MIDWAY {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no partial download of {MIDWAY} bytes within {DEADLINE:?}"
    ))
}

fn largest_file(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// The digest of a file by coreutils' sha256sum, not berth's code.
fn sha256sum(path: &Path) -> Digest {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split(' ').next().unwrap())
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The big image: one layer of random files, as an OCI layout
// ---------------------------------------------------------------------------------------------

/// `target/test-fixtures/gc-big-image`: `rootfs/` (the layer's tree) and `oci/` (the
/// layout), built once and kept; a build is swapped in by rename, so a half-built fixture is
/// never used.
fn big_image() -> PathBuf {
    let dir = berth_testkit::fixtures_dir().join("gc-big-image");
    if dir.join("oci/index.json").is_file() {
        return dir;
    }
    let build = tempfile::Builder::new()
        .prefix(".gc-big-image.")
        .tempdir_in(berth_testkit::fixtures_dir())
        .unwrap();
    write_rootfs(&build.path().join("rootfs"));
    write_layout(&build.path().join("rootfs"), &build.path().join("oci"));
    if let Err(e) = fs::rename(build.path(), &dir) {
        // Another test process finished its copy first.
        assert!(
            dir.join("oci/index.json").is_file(),
            "{}: {e}",
            dir.display()
        );
    }
    dir
}

/// FILES files of random bytes (xorshift: fast, deterministic and incompressible).
fn write_rootfs(rootfs: &Path) {
    fs::create_dir_all(rootfs.join("data")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..FILES {
        let bytes: Vec<u8> = (0..FILE_SIZE / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        fs::write(rootfs.join(format!("data/file{i:02}")), bytes).unwrap();
    }
}

/// The OCI layout of a one-layer image of `rootfs`: the tar made by GNU tar, the rest here.
fn write_layout(rootfs: &Path, layout: &Path) {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let tar = layout.join("layer.tar");
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar");
    let (layer, layer_size) = gzip_blob(&tar, &blobs);
    let diff_id = sha256sum(&tar);
    fs::remove_file(&tar).unwrap();
    let config = json!({
        "architecture": Platform::host().architecture,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config_desc = json_blob(&config, "application/vnd.oci.image.config.v1+json", &blobs);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer,
            "size": layer_size,
        }],
    });
    let mut manifest_desc = json_blob(
        &manifest,
        "application/vnd.oci.image.manifest.v1+json",
        &blobs,
    );
    manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// gzip `tar` into the layout's blobs; its digest and size.
fn gzip_blob(tar: &Path, blobs: &Path) -> (Digest, u64) {
    let part = blobs.join("layer.part");
    let out = DigestWriter::new(fs::File::create(&part).unwrap());
    let mut gz = GzEncoder::new(out, flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(tar).unwrap(), &mut gz).unwrap();
    let (mut file, digest, size) = gz.finish().unwrap().finish();
    file.flush().unwrap();
    fs::rename(&part, blobs.join(digest.hex())).unwrap();
    (digest, size)
}

/// Store a JSON document as a blob; its descriptor.
fn json_blob(value: &serde_json::Value, media_type: &str, blobs: &Path) -> serde_json::Value {
    let bytes = value.to_string().into_bytes();
    let digest = Digest::of(&bytes);
    fs::write(blobs.join(digest.hex()), &bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}
