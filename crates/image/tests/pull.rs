//! Pull and push against a real registry (Debian's docker-registry), with images made and
//! read back by an independent client (skopeo).

mod common;

use std::path::Path;

use berth_image::digest::Digest;
use berth_image::images::{ImageStore, Phase, Progress};
use berth_image::manifest::Platform;
use berth_image::reference::Reference;
use berth_image::registry::{ClientOptions, RegistryClient};
use berth_image::snapshot::Snapshot;
use common::*;

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
}

fn reference(registry: &Registry, name_tag: &str) -> Reference {
    Reference::parse_normalized(&format!("{}/{name_tag}", registry.host())).unwrap()
}

fn no_progress(_: Progress) {}

/// A digest in the layout's manifest, by JSON pointer (`/config/digest`).
fn manifest_digest_at(layout: &Path, pointer: &str) -> Digest {
    let (_, manifest) = layout_manifest(layout);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    manifest
        .pointer(pointer)
        .and_then(|d| d.as_str())
        .unwrap()
        .parse()
        .unwrap()
}

/// A registry holding `layout` as `name_tag`, and a fresh store in a temp dir.
struct Fixture {
    registry: Registry,
    tmp: tempfile::TempDir,
    store: ImageStore,
}

impl Fixture {
    fn new(layout: &Path, name_tag: &str) -> Fixture {
        let registry = Registry::start();
        push_with_skopeo(layout, &registry, name_tag);
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        Fixture {
            registry,
            tmp,
            store,
        }
    }

    fn pull(&self, name_tag: &str, progress: &(dyn Fn(Progress) + Sync)) -> anyhow::Result<Digest> {
        let reference = reference(&self.registry, name_tag);
        self.store
            .pull(&client(), &reference, &Platform::host(), progress)
    }
}

#[test]
fn pull_unpacks_exactly_what_skopeo_pushed() {
    let layout = busybox_oci_layout();
    let f = Fixture::new(&layout, "busybox:latest");
    let (registry, store) = (&f.registry, &f.store);
    let phases = std::sync::Mutex::new(vec![]);
    let record = |p: Progress| phases.lock().unwrap().push(p.phase);
    let image = f.pull("busybox:latest", &record).unwrap();
    assert_eq!(image, manifest_digest_at(&layout, "/config/digest"));
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
    f.pull("busybox:latest", &record).unwrap();
    assert!(again.lock().unwrap().contains(&Phase::Exists));
}

#[test]
fn two_layers_with_a_whiteout_mount_as_one_rootfs() {
    let f = Fixture::new(&busybox_two_layer_oci_layout(), "two:latest");
    let (tmp, store) = (&f.tmp, &f.store);
    let image = f.pull("two:latest", &no_progress).unwrap();
    let config = store.content.read(&image).unwrap();
    let config = berth_image::config::ImageConfig::parse(&config).unwrap();
    let chain = berth_image::config::chain_ids(&config.rootfs.diff_ids);
    let dir = tmp.path().join("containers/c");
    let snap = Snapshot::mount(&store.layers, &dir, &chain).unwrap();
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
    let f = Fixture::new(&busybox_oci_layout(), "busybox:latest");
    let (registry, store) = (&f.registry, &f.store);
    let image = f.pull("busybox:latest", &no_progress).unwrap();
    let copy = reference(registry, "berth/copy:v1");
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
    let layout = busybox_oci_layout();
    let f = Fixture::new(&layout, "busybox:latest");
    let layer = manifest_digest_at(&layout, "/layers/0/digest");
    let hex = layer.hex();
    let data = f
        .registry
        .dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    // Another valid gzip tar in its place: only the digest can tell.
    let other_layout = busybox_two_layer_oci_layout();
    let other_layer = manifest_digest_at(&other_layout, "/layers/1/digest");
    std::fs::copy(layout_blob(&other_layout, &other_layer.to_string()), &data).unwrap();

    let text = format!("{:#}", f.pull("busybox:latest", &no_progress).unwrap_err());
    assert!(text.contains("digest mismatch"), "{text}");
    let store = &f.store;
    assert!(
        store.layers.list().unwrap().is_empty(),
        "no layer from a bad blob"
    );
    assert!(!store.content.has(&layer), "no blob from a bad download");
}

/// A tag naming a manifest list: the pull picks the manifest of the host's platform (the
/// other entry is a different image) and records the index it came through.
#[test]
fn pull_through_an_index_picks_the_host_platform() {
    let one = busybox_oci_layout();
    let two = busybox_two_layer_oci_layout();
    let f = Fixture::new(&one, "multi:one");
    push_with_skopeo(&two, &f.registry, "multi:two");
    let entry = |layout: &Path, arch: &str| {
        let (digest, bytes) = layout_manifest(layout);
        serde_json::json!({
            "mediaType": berth_image::manifest::media_type::OCI_MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let host = Platform::host().architecture;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": berth_image::manifest::media_type::OCI_INDEX,
        "manifests": [entry(&two, other), entry(&one, &host)]
    });
    let index = serde_json::to_vec(&index).unwrap();
    let repo = berth_image::registry::Repository::new(&f.registry.host(), "multi").unwrap();
    let media_type = berth_image::manifest::media_type::OCI_INDEX;
    let index_digest = client()
        .push_manifest(&repo, "latest", media_type, &index)
        .unwrap();

    let image = f.pull("multi:latest", &no_progress).unwrap();
    assert_eq!(image, manifest_digest_at(&one, "/config/digest"));
    let record = f.store.index.image(&image).unwrap().unwrap();
    assert_eq!(record.index, Some(index_digest));
    assert!(f.store.content.has(record.index.as_ref().unwrap()));
}
