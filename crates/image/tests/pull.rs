//! Pull and push against a real registry (Debian's docker-registry), with images made and
//! read back by an independent client (skopeo).

mod common;

use std::path::Path;
use std::process::Command;

use berth_image::digest::Digest;
use berth_image::images::{ImageStore, Phase, Progress};
use berth_image::manifest::Platform;
use berth_image::reference::Reference;
use berth_image::registry::{ClientOptions, RegistryClient};
use berth_image::snapshot::{InitFiles, Snapshot};
use common::*;

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
}

fn reference(registry: &Registry, name_tag: &str) -> Reference {
    Reference::parse_normalized(&format!("{}/{name_tag}", registry.host())).unwrap()
}

fn no_progress(_: Progress) {}

/// `diff -r` of two trees, without following symlinks: empty when they are the same.
fn tree_diff(a: &Path, b: &Path) -> String {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .args([a, b])
        .output()
        .expect("diff");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config_digest(layout: &Path) -> Digest {
    let (_, manifest) = layout_manifest(layout);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn pull_unpacks_exactly_what_skopeo_pushed() {
    let registry = Registry::start();
    let layout = busybox_oci_layout();
    push_with_skopeo(&layout, &registry, "busybox:latest");
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let phases = std::sync::Mutex::new(vec![]);
    let record = |p: Progress| phases.lock().unwrap().push(p.phase);
    let image = store
        .pull(
            &client(),
            &reference(&registry, "busybox:latest"),
            &Platform::host(),
            &record,
        )
        .unwrap();
    assert_eq!(image, config_digest(&layout));
    assert!(phases.lock().unwrap().contains(&Phase::Done));

    let layers = store.layers.list().unwrap();
    assert_eq!(layers.len(), 1);
    let rootfs = layout.parent().unwrap().join("rootfs");
    assert_eq!(tree_diff(&rootfs, &store.layers.diff_dir(&layers[0])), "");
    assert_eq!(
        store.index.resolve("127.0.0.1").ok(),
        None,
        "a host is not a name"
    );
    let name = format!("{}/busybox:latest", registry.host());
    assert_eq!(store.index.resolve(&name).unwrap(), image);

    // A second pull finds everything there.
    let again = std::sync::Mutex::new(vec![]);
    let record = |p: Progress| again.lock().unwrap().push(p.phase);
    store
        .pull(
            &client(),
            &reference(&registry, "busybox:latest"),
            &Platform::host(),
            &record,
        )
        .unwrap();
    assert!(again.lock().unwrap().contains(&Phase::Exists));
}

#[test]
fn two_layers_with_a_whiteout_mount_as_one_rootfs() {
    let registry = Registry::start();
    push_with_skopeo(&busybox_two_layer_oci_layout(), &registry, "two:latest");
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = store
        .pull(
            &client(),
            &reference(&registry, "two:latest"),
            &Platform::host(),
            &no_progress,
        )
        .unwrap();
    let config = store.content.read(&image).unwrap();
    let config = berth_image::config::ImageConfig::parse(&config).unwrap();
    let chain = berth_image::config::chain_ids(&config.rootfs.diff_ids);
    let dir = tmp.path().join("containers/c");
    let snap = Snapshot::mount(&store.layers, &dir, &chain, &InitFiles::default()).unwrap();
    let hello = snap.merged.join("hello").exists();
    let deleted = snap.merged.join(WHITED_OUT_FILE).exists();
    let sh = snap.merged.join("bin/sh").exists();
    Snapshot::remove(&dir).unwrap();
    assert!(
        hello && sh && !deleted,
        "hello {hello} sh {sh} deleted-file-visible {deleted}"
    );
}

#[test]
fn push_is_read_back_by_skopeo_with_the_same_digests() {
    let registry = Registry::start();
    let layout = busybox_oci_layout();
    push_with_skopeo(&layout, &registry, "busybox:latest");
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let image = store
        .pull(
            &client(),
            &reference(&registry, "busybox:latest"),
            &Platform::host(),
            &no_progress,
        )
        .unwrap();
    let copy = reference(&registry, "berth/copy:v1");
    let record = store.index.image(&image).unwrap().unwrap();
    store.index.tag(&copy, &image, &record.manifest).unwrap();
    let pushed = store.push(&client(), &copy, &no_progress).unwrap();
    assert_eq!(pushed, record.manifest);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &registry.docker_ref("berth/copy:v1"),
    ]);
    assert_eq!(Digest::of(raw.as_bytes()), record.manifest);
}

#[test]
fn a_corrupted_layer_fails_the_pull_and_leaves_nothing() {
    let registry = Registry::start();
    let layout = busybox_oci_layout();
    push_with_skopeo(&layout, &registry, "busybox:latest");
    let (_, manifest) = layout_manifest(&layout);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hex = layer.hex();
    let data = registry
        .dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    // Another valid gzip tar in its place: only the digest can tell.
    let other_layout = busybox_two_layer_oci_layout();
    let (_, other) = layout_manifest(&other_layout);
    let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
    let other_layer = other["layers"][1]["digest"].as_str().unwrap();
    std::fs::copy(layout_blob(&other_layout, other_layer), &data).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let err = store
        .pull(
            &client(),
            &reference(&registry, "busybox:latest"),
            &Platform::host(),
            &no_progress,
        )
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("digest") || text.contains("crc") || text.contains("checksum"),
        "{text}"
    );
    assert!(
        store.layers.list().unwrap().is_empty(),
        "no layer from a bad blob"
    );
    assert!(!store.content.has(&layer), "no blob from a bad download");
}
