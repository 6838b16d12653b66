//! Archives: docker-save tarballs and OCI layouts written by berth and read by skopeo, written
//! by skopeo (or the harness) and loaded by berth; `docker import`; hostile archives.

mod common;

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive::{ArchiveError, EntryProblem, ImportOptions, LoadedImage};
use berth_image::config::{chain_ids, ImageConfig};
use berth_image::digest::Digest;
use berth_image::images::{ImageStore, Progress};
use berth_image::manifest::{media_type, parse_any, Manifest, Parsed, Platform};
use berth_image::reference::Reference;
use berth_image::registry::{ClientOptions, RegistryClient};
use berth_image::snapshot::Snapshot;
use common::*;
use serde_json::Value;
use tar::EntryType;

fn reference(name: &str) -> Reference {
    Reference::parse_normalized(name).unwrap()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    (tmp, store)
}

fn path_str(p: &Path) -> &str {
    let s = p.to_str().unwrap();
    assert!(!s.contains(':'), "skopeo cannot take {s:?}");
    s
}

fn fixture_rootfs() -> PathBuf {
    busybox_oci_layout().parent().unwrap().join("rootfs")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The manifest (parsed, without berth) of the single image of an OCI layout.
fn layout_manifest_json(layout: &Path) -> Value {
    serde_json::from_slice(&layout_manifest(layout).1).unwrap()
}

fn config_digest(layout: &Path) -> Digest {
    layout_manifest_json(layout)["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn config_of(store: &ImageStore, id: &Digest) -> ImageConfig {
    ImageConfig::parse(&store.content.read(id).unwrap()).unwrap()
}

fn stored_manifest(store: &ImageStore, id: &Digest) -> (Digest, Manifest) {
    let record = store.index.image(id).unwrap().unwrap();
    match parse_any(None, store.content.read(&record.manifest).unwrap()).unwrap() {
        Parsed::Manifest(doc) => (record.manifest, doc.into_value()),
        Parsed::Index(_) => panic!("an index is recorded as the manifest of {id}"),
    }
}

/// The diff dir of each layer of an image, bottom first.
fn layer_dirs(store: &ImageStore, id: &Digest) -> Vec<PathBuf> {
    chain_ids(&config_of(store, id).rootfs.diff_ids)
        .iter()
        .map(|c| store.layers.diff_dir(c))
        .collect()
}

/// The blobs an image needs: manifest, config, layers. A load keeps nothing else.
fn image_blobs(store: &ImageStore, id: &Digest) -> Vec<Digest> {
    let (manifest_digest, manifest) = stored_manifest(store, id);
    let mut blobs: Vec<Digest> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
    blobs.extend([manifest_digest, id.clone()]);
    blobs.sort();
    blobs.dedup();
    blobs
}

fn load_file(store: &ImageStore, path: &Path) -> anyhow::Result<Vec<LoadedImage>> {
    store.load(BufReader::new(File::open(path).unwrap()))
}

/// The one-layer busybox image pulled from a registry skopeo pushed it to.
fn pulled_busybox(store: &ImageStore) -> (Registry, Reference, Digest) {
    let registry = Registry::start();
    push_with_skopeo(&busybox_oci_layout(), &registry, "busybox:latest");
    let name = reference(&format!("{}/busybox:latest", registry.host()));
    let client = RegistryClient::new(ClientOptions::default());
    let id = store
        .pull(&client, &name, &Platform::host(), &|_: Progress| {})
        .unwrap();
    (registry, name, id)
}

#[test]
fn a_saved_pulled_image_is_read_by_skopeo_and_loads_back() {
    let (tmp, store) = store();
    let (_registry, name, id) = pulled_busybox(&store);
    let file = tmp.path().join("saved.tar");
    let out = BufWriter::new(File::create(&file).unwrap());
    store.save(&[&name.to_string()], out).unwrap();
    let archive = format!("docker-archive:{}", path_str(&file));

    let config = skopeo(&["inspect", "--config", "--raw", &archive]);
    assert_eq!(Digest::of(config.as_bytes()), id);
    let manifest = json(&skopeo(&["inspect", "--raw", &archive]));
    assert_eq!(manifest["config"]["digest"], id.to_string());
    let diff_ids: Vec<String> = config_of(&store, &id)
        .rootfs
        .diff_ids
        .iter()
        .map(Digest::to_string)
        .collect();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers, diff_ids,
        "the saved layers are the uncompressed tars"
    );
    let inspected = json(&skopeo(&["inspect", &archive]));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);

    let oci = tmp.path().join("copied-oci");
    skopeo(&[
        "copy",
        "--quiet",
        &archive,
        &format!("oci:{}", path_str(&oci)),
    ]);
    let copied = json(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("oci:{}", path_str(&oci)),
    ]));
    assert_eq!(copied["rootfs"]["diff_ids"], Value::from(diff_ids));

    // Docker 25's layout, loaded back by berth into another store.
    let (_other_tmp, other) = self::store();
    let loaded = load_file(&other, &file).unwrap();
    assert_eq!(
        loaded,
        [LoadedImage {
            id: id.clone(),
            tags: vec![name.clone()]
        }]
    );
    assert_eq!(other.index.resolve(&name.to_string()).unwrap(), id);
    assert_eq!(
        tree_diff(&fixture_rootfs(), &layer_dirs(&other, &id)[0]),
        ""
    );
    // What else the archive held waits for the collector.
    other.collect(&|_| false).unwrap();
    assert_eq!(other.content.list().unwrap(), image_blobs(&other, &id));
}

#[test]
fn a_docker_archive_written_by_skopeo_loads() {
    for (layout, layers) in [
        (busybox_oci_layout(), 1),
        (busybox_two_layer_oci_layout(), 2),
    ] {
        let (tmp, store) = store();
        let file = tmp.path().join("skopeo.tar");
        skopeo(&[
            "copy",
            "--quiet",
            &format!("oci:{}", path_str(&layout)),
            &format!("docker-archive:{}:busybox:latest", path_str(&file)),
        ]);
        let loaded = load_file(&store, &file).unwrap();
        let id = config_digest(&layout);
        assert_eq!(
            loaded,
            [LoadedImage {
                id: id.clone(),
                tags: vec![reference("busybox:latest")]
            }]
        );
        assert_eq!(store.index.resolve("busybox:latest").unwrap(), id);
        let dirs = layer_dirs(&store, &id);
        assert_eq!(dirs.len(), layers);
        assert_eq!(tree_diff(&fixture_rootfs(), &dirs[0]), "");

        // skopeo writes the layers uncompressed: the manifest made for them says so.
        let (_, manifest) = stored_manifest(&store, &id);
        assert_eq!(
            manifest.media_type.as_deref(),
            Some(media_type::DOCKER_MANIFEST)
        );
        for layer in &manifest.layers {
            assert_eq!(layer.media_type, media_type::DOCKER_LAYER);
            assert_eq!(layer.size, store.content.size(&layer.digest).unwrap());
        }
        // manifest.json, the legacy json and VERSION files: gone once collected.
        store.collect(&|_| false).unwrap();
        assert_eq!(store.content.list().unwrap(), image_blobs(&store, &id));
    }
}

#[test]
fn oci_layouts_from_the_harness_load() {
    let (tmp, store) = store();
    let layout = busybox_oci_layout();
    let repo = reference("busybox");
    let loaded = store.load_oci_layout(&layout, Some(&repo)).unwrap();
    let id = config_digest(&layout);
    assert_eq!(
        loaded,
        [LoadedImage {
            id: id.clone(),
            tags: vec![reference("busybox:latest")]
        }]
    );
    let (manifest_digest, _) = stored_manifest(&store, &id);
    assert_eq!(
        manifest_digest.to_string(),
        layout_manifest(&layout).0,
        "stored as it came"
    );
    assert_eq!(
        tree_diff(&fixture_rootfs(), &layer_dirs(&store, &id)[0]),
        ""
    );

    // The two-layer image: its whiteout hides the file in the mounted rootfs.
    let two = busybox_two_layer_oci_layout();
    let loaded = store.load_oci_layout(&two, None).unwrap();
    let two_id = config_digest(&two);
    assert_eq!(
        loaded,
        [LoadedImage {
            id: two_id.clone(),
            tags: vec![]
        }],
        "a bare tag names no repository"
    );
    let chain = chain_ids(&config_of(&store, &two_id).rootfs.diff_ids);
    let dir = tmp.path().join("container");
    let snap = Snapshot::mount(&store.layers, &dir, &chain).unwrap();
    let (hello, deleted) = (
        snap.merged.join("hello").exists(),
        snap.merged.join(WHITED_OUT_FILE).exists(),
    );
    Snapshot::remove(&dir).unwrap();
    assert!(
        hello && !deleted,
        "hello {hello} deleted-file-visible {deleted}"
    );
}

#[test]
fn an_oci_layout_tarball_loads() {
    let (tmp, store) = store();
    let layout = busybox_two_layer_oci_layout();
    let file = tmp.path().join("oci.tar");
    let status = Command::new("tar")
        .args(["-C", path_str(&layout), "-cf", path_str(&file), "."])
        .status()
        .unwrap();
    assert!(status.success());
    let loaded = load_file(&store, &file).unwrap();
    let id = config_digest(&layout);
    assert_eq!(
        loaded,
        [LoadedImage {
            id: id.clone(),
            tags: vec![]
        }]
    );
    assert_eq!(layer_dirs(&store, &id).len(), 2);
    store.collect(&|_| false).unwrap();
    assert_eq!(store.content.list().unwrap(), image_blobs(&store, &id));
}

#[test]
fn an_oci_layout_saved_by_berth_is_read_by_skopeo() {
    let (tmp, store) = store();
    let layout = busybox_two_layer_oci_layout();
    let id = store
        .load_oci_layout(&layout, Some(&reference("busybox")))
        .unwrap()[0]
        .id
        .clone();
    let dir = tmp.path().join("saved-oci");
    store.save_oci_layout(&["busybox:latest"], &dir).unwrap();
    let target = format!("oci:{}:latest", path_str(&dir));
    let (manifest_digest, manifest_bytes) = layout_manifest(&layout);
    assert_eq!(
        skopeo(&["inspect", "--raw", &target]).as_bytes(),
        &manifest_bytes[..]
    );
    let inspected = json(&skopeo(&["inspect", &target]));
    assert_eq!(inspected["Digest"], manifest_digest);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    // An image loaded from a docker archive (a schema2 manifest made by berth) joins the
    // same layout under another name, and skopeo copies it out.
    let file = tmp.path().join("skopeo.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}", path_str(&busybox_oci_layout())),
        &format!("docker-archive:{}:one:v1", path_str(&file)),
    ]);
    let one = load_file(&store, &file).unwrap()[0].id.clone();
    store.save_oci_layout(&["one:v1"], &dir).unwrap();
    let index = json(&fs::read_to_string(dir.join("index.json")).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let copy = tmp.path().join("copy-oci");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:v1", path_str(&dir)),
        &format!("oci:{}", path_str(&copy)),
    ]);
    let config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("oci:{}", path_str(&copy)),
    ]);
    assert_eq!(Digest::of(config.as_bytes()), one);
    assert_ne!(one, id);
}

#[test]
fn import_makes_a_one_layer_image_of_a_rootfs_tarball() {
    let (tmp, store) = store();
    let plain = tmp.path().join("rootfs.tar");
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "-C",
            path_str(&fixture_rootfs()),
            "-cf",
            path_str(&plain),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let gzipped = tmp.path().join("rootfs.tar.gz");
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("gzip -c {} > {}", path_str(&plain), path_str(&gzipped)),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let diff_id = Digest::of(&fs::read(&plain).unwrap());

    let name = reference("imported:1");
    let id = store
        .import(
            File::open(&plain).unwrap(),
            Some(&name),
            &ImportOptions::default(),
        )
        .unwrap();
    let config = config_of(&store, &id);
    assert_eq!(config.rootfs.diff_ids, std::slice::from_ref(&diff_id));
    assert_eq!(
        config.history[0].comment.as_deref(),
        Some("Imported from -")
    );
    assert_eq!(
        (config.os.clone(), config.architecture.clone()),
        (Platform::host().os, Platform::host().architecture)
    );
    assert_eq!(store.index.resolve("imported:1").unwrap(), id);
    assert_eq!(
        tree_diff(&fixture_rootfs(), &layer_dirs(&store, &id)[0]),
        ""
    );
    let (_, manifest) = stored_manifest(&store, &id);
    assert_eq!(manifest.layers[0].digest, diff_id);
    assert_eq!(manifest.layers[0].media_type, media_type::DOCKER_LAYER);

    let gz_id = store
        .import(
            File::open(&gzipped).unwrap(),
            None,
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(config_of(&store, &gz_id).rootfs.diff_ids, [diff_id]);
    let (_, manifest) = stored_manifest(&store, &gz_id);
    assert_eq!(manifest.layers[0].media_type, media_type::DOCKER_LAYER_GZIP);
}

// ---------------------------------------------------------------------------------------------
// Hostile archives
// ---------------------------------------------------------------------------------------------

/// An entry of a hand-made archive, with raw name and link target.
#[derive(Clone)]
struct RawEntry {
    kind: EntryType,
    name: Vec<u8>,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn file(name: &str, data: &[u8]) -> RawEntry {
    RawEntry {
        kind: EntryType::Regular,
        name: name.as_bytes().to_vec(),
        link: vec![],
        data: data.to_vec(),
    }
}

fn symlink(name: &str, target: &str) -> RawEntry {
    RawEntry {
        kind: EntryType::Symlink,
        name: name.as_bytes().to_vec(),
        link: target.as_bytes().to_vec(),
        data: vec![],
    }
}

/// A tar of `entries` (the tar crate's own setters refuse `..`: the names are put in raw).
fn tar_of(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_size(e.data.len() as u64);
        h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A one-image docker archive of the busybox fixture with `config` as its config.
fn docker_archive(config: &[u8], manifest_json: &str) -> Vec<RawEntry> {
    let layout = busybox_oci_layout();
    let layer = layout_manifest_json(&layout)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    vec![
        file("config.json", config),
        file("layer.tar.gz", &read(&layout_blob(&layout, &layer))),
        file("manifest.json", manifest_json.as_bytes()),
    ]
}

fn fixture_config() -> Vec<u8> {
    let layout = busybox_oci_layout();
    read(&layout_blob(&layout, &config_digest(&layout).to_string()))
}

const MANIFEST: &str =
    r#"[{"Config":"config.json","RepoTags":["bad:latest"],"Layers":["layer.tar.gz"]}]"#;

/// The store after a refused load: no image; once collected, no blob and no layer (a
/// failed load leaves what it stored to the collector, see the concurrent pull test).
fn assert_nothing_loaded(store: &ImageStore) {
    store.collect(&|_| false).unwrap();
    assert!(store.index.images().unwrap().is_empty());
    assert!(store.index.list().unwrap().is_empty());
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());
}

fn archive_error(result: anyhow::Result<Vec<LoadedImage>>) -> (ArchiveError, String) {
    let err = result.unwrap_err();
    let text = format!("{err:#}");
    match err.downcast::<ArchiveError>() {
        Ok(e) => (e, text),
        Err(other) => panic!("not an archive error: {other:#}"),
    }
}

#[test]
fn hostile_entry_names_and_links_are_refused_and_nothing_escapes() {
    let (tmp, store) = store();
    let sentinel = tmp.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    let abs = format!("{}/pwned", sentinel.display());
    let good = docker_archive(&fixture_config(), MANIFEST);
    let cases = [
        ("../sentinel/pwned", EntryProblem::DotDot),
        ("x/../../pwned", EntryProblem::DotDot),
        (abs.as_str(), EntryProblem::Absolute),
    ];
    for (name, want) in cases {
        let mut entries = good.clone();
        entries.insert(1, file(name, b"pwned\n"));
        let (err, text) = archive_error(store.load(&tar_of(&entries)[..]));
        assert!(
            matches!(&err, ArchiveError::Entry { problem, .. } if *problem == want),
            "{text}"
        );
        assert!(text.contains(name), "{text}");
        assert_nothing_loaded(&store);
    }
    for target in [abs.as_str(), "../../sentinel", "/etc/passwd"] {
        let mut entries = good.clone();
        entries.insert(0, symlink("evil", target));
        let (err, text) = archive_error(store.load(&tar_of(&entries)[..]));
        let want = EntryProblem::LinkOutside(target.to_string());
        assert!(
            matches!(&err, ArchiveError::Entry { problem, .. } if *problem == want),
            "{text}"
        );
        assert_nothing_loaded(&store);
    }
    assert_eq!(
        fs::read_dir(&sentinel).unwrap().count(),
        0,
        "something was written outside"
    );
    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["sentinel", "store"]);
    // The same archive without the hostile entry loads.
    assert_eq!(store.load(&tar_of(&good)[..]).unwrap().len(), 1);
}

#[test]
fn a_manifest_naming_a_missing_file_loads_nothing() {
    let (_tmp, store) = store();
    let manifest = MANIFEST.replace("layer.tar.gz", "nowhere/layer.tar");
    let (err, text) =
        archive_error(store.load(&tar_of(&docker_archive(&fixture_config(), &manifest))[..]));
    assert_eq!(
        err,
        ArchiveError::Missing {
            referrer: "manifest.json".into(),
            name: "nowhere/layer.tar".into()
        }
    );
    assert!(text.contains("nowhere/layer.tar"), "{text}");
    assert_nothing_loaded(&store);

    let huge = format!("[{}]", " ".repeat(5 << 20));
    let (err, _) =
        archive_error(store.load(&tar_of(&docker_archive(&fixture_config(), &huge))[..]));
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
    assert_nothing_loaded(&store);

    let (err, _) = archive_error(store.load(&tar_of(&[file("readme", b"hi")])[..]));
    assert_eq!(err, ArchiveError::UnknownFormat);
    assert_nothing_loaded(&store);
}

#[test]
fn a_layer_that_is_not_the_configs_loads_nothing() {
    let (_tmp, store) = store();
    let mut config: Value = serde_json::from_slice(&fixture_config()).unwrap();
    let wrong = Digest::of(b"another layer");
    config["rootfs"]["diff_ids"][0] = Value::from(wrong.to_string());
    let entries = docker_archive(&serde_json::to_vec(&config).unwrap(), MANIFEST);
    let err = store.load(&tar_of(&entries)[..]).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("unpacks to") && text.contains(&wrong.to_string()),
        "{text}"
    );
    assert_nothing_loaded(&store);
}

#[test]
fn links_inside_the_archive_are_followed_as_docker_writes_them() {
    // Docker's legacy save writes a layer two images share once, and a symlink to it for
    // the second image, which manifest.json names.
    let (_tmp, store) = store();
    let manifest = MANIFEST.replace("layer.tar.gz", "second/layer.tar");
    let mut entries = docker_archive(&fixture_config(), &manifest);
    entries.insert(0, symlink("second/layer.tar", "../layer.tar.gz"));
    let loaded = store.load(&tar_of(&entries)[..]).unwrap();
    let id = config_digest(&busybox_oci_layout());
    assert_eq!(
        loaded,
        [LoadedImage {
            id: id.clone(),
            tags: vec![reference("bad:latest")]
        }]
    );
    assert_eq!(
        tree_diff(&fixture_rootfs(), &layer_dirs(&store, &id)[0]),
        ""
    );
}

#[test]
fn a_layer_already_unpacked_is_still_checked_against_its_blob() {
    let (_tmp, store) = store();
    let layout = busybox_oci_layout();
    let id = config_digest(&layout);
    store.load_oci_layout(&layout, None).unwrap();
    let (_, manifest) = stored_manifest(&store, &id);
    let blob = manifest.layers[0].digest.clone();

    // The layer stays unpacked while its blob goes (as after a failed load): loading the
    // image again brings the blob back, checked by hashing it.
    store.index.remove_image(&id).unwrap();
    store.content.delete(&blob).unwrap();
    store.load_oci_layout(&layout, None).unwrap();
    assert!(store.content.has(&blob));
    assert_eq!(store.layers.list().unwrap().len(), 1);

    // A config claiming the unpacked layer for some other blob is refused.
    let two = busybox_two_layer_oci_layout();
    let other = layout_manifest_json(&two)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut entries = docker_archive(&fixture_config(), MANIFEST);
    entries[1].data = read(&layout_blob(&two, &other));
    let err = store.load(&tar_of(&entries)[..]).unwrap_err();
    assert!(format!("{err:#}").contains("unpacks to"), "{err:#}");
    assert!(store.index.resolve("bad:latest").is_err());
    store.collect(&|_| false).unwrap();
    assert!(!store.content.has(&other.parse().unwrap()));
}

/// A reader of `bytes` that runs `hook` once, the first time a read starts at or past
/// `offset`: something else happening while a load is part-way through its archive.
struct HookAt<'a, F: FnMut()> {
    bytes: &'a [u8],
    pos: usize,
    offset: usize,
    hook: Option<F>,
}

impl<F: FnMut()> std::io::Read for HookAt<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.offset {
            if let Some(mut hook) = self.hook.take() {
                hook();
            }
        }
        // Never read across the offset in one call, so the hook runs exactly there.
        let end = if self.pos < self.offset {
            self.offset
        } else {
            self.bytes.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_failed_load_leaves_blobs_a_concurrent_pull_relies_on() {
    // The load stores busybox's config and layer blobs, then a pull of the same image
    // finds them present and indexes its image on them, then the load fails (a hostile
    // entry). The pulled image must keep its blobs.
    let (_tmp, store) = store();
    let registry = Registry::start();
    push_with_skopeo(&busybox_oci_layout(), &registry, "busybox:latest");
    let name = reference(&format!("{}/busybox:latest", registry.host()));
    let mut entries = docker_archive(&fixture_config(), MANIFEST);
    let hostile_at = tar_of(&entries[..2]).len() - 1024; // before the end-of-archive blocks
    entries.insert(2, file("../escape", b"x"));
    let archive = tar_of(&entries);
    let pulled = std::cell::RefCell::new(None);
    let reader = HookAt {
        bytes: &archive,
        pos: 0,
        offset: hostile_at,
        hook: Some(|| {
            let client = RegistryClient::new(ClientOptions::default());
            let id = store.pull(&client, &name, &Platform::host(), &|_: Progress| {});
            *pulled.borrow_mut() = Some(id.unwrap());
        }),
    };
    let (err, _) = archive_error(store.load(reader));
    assert!(matches!(err, ArchiveError::Entry { .. }), "{err}");
    let id = pulled.into_inner().expect("the pull ran during the load");
    assert_eq!(id, config_digest(&busybox_oci_layout()));
    let collected = store.collect(&|_| false).unwrap();
    assert!(collected.broken.is_empty(), "{:?}", collected.broken);
    for blob in image_blobs(&store, &id) {
        assert!(
            store.content.has(&blob),
            "blob {blob} of the pulled image is gone"
        );
    }
    // The image is whole: it saves and loads back elsewhere.
    let mut saved = Vec::new();
    store.save(&[&name.to_string()], &mut saved).unwrap();
    let (_tmp2, other) = self::store();
    assert_eq!(other.load(&saved[..]).unwrap()[0].id, id);
}

/// A gzipped tar holding one file of `size` zero bytes: a few KiB that unpack to `size`.
fn zero_bomb(size: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size as u64);
        h.set_cksum();
        b.append_data(
            &mut h,
            "zeros",
            std::io::Read::take(std::io::repeat(0), size as u64),
        )
        .unwrap();
        b.finish().unwrap();
    }
    gz.finish().unwrap()
}

/// Nothing of a refused unpack is left: no layer, no staging dir, no temp blob, and once
/// collected no blob.
fn assert_nothing_left(store: &ImageStore, root: &Path) {
    store.collect(&|_| false).unwrap();
    assert!(store.index.images().unwrap().is_empty());
    assert!(store.layers.list().unwrap().is_empty());
    assert!(store.content.list().unwrap().is_empty());
    for dir in ["staging", "layers", "l", "content/tmp"] {
        let left: Vec<_> = fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}

fn assert_too_large(err: anyhow::Error, limit: u64) {
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("larger than {limit} bytes uncompressed")),
        "{text}"
    );
}

#[test]
fn a_layer_over_the_size_cap_is_refused_by_pull_load_and_import() {
    const LIMIT: u64 = 8 << 20;
    let bomb = zero_bomb(32 << 20);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    // The default cap lets the layer through: it is a legitimate 32 MiB layer elsewhere.
    let (tmp, source) = store();
    let name = reference("bomb:1");
    source
        .import(&bomb[..], Some(&name), &ImportOptions::default())
        .unwrap();
    let registry = Registry::start();
    let remote = reference(&format!("{}/bomb:1", registry.host()));
    source.tag(&name.to_string(), &remote).unwrap();
    let client = RegistryClient::new(ClientOptions::default());
    source.push(&client, &remote, &|_: Progress| {}).unwrap();
    let mut saved = Vec::new();
    source.save(&["bomb:1"], &mut saved).unwrap();

    let root = tmp.path().join("capped");
    let mut capped = ImageStore::open(&root).unwrap();
    capped.set_max_layer_size(LIMIT);
    let err = capped
        .pull(&client, &remote, &Platform::host(), &|_: Progress| {})
        .unwrap_err();
    assert_too_large(err, LIMIT);
    assert_nothing_left(&capped, &root);

    assert_too_large(capped.load(&saved[..]).unwrap_err(), LIMIT);
    assert_nothing_left(&capped, &root);

    let err = capped
        .import(&bomb[..], None, &ImportOptions::default())
        .unwrap_err();
    assert_too_large(err, LIMIT);
    assert_nothing_left(&capped, &root);
}
