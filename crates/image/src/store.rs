//! The image index, `<root>/refs.json`: which reference names which image, and which
//! manifest each image came from.
//!
//! ```json
//! { "refs":   { "docker.io/library/busybox:latest": "sha256:<image id>",
//!               "docker.io/library/busybox@sha256:<manifest or index>": "sha256:<image id>" },
//!   "images": { "sha256:<image id>": { "manifest": "sha256:…", "index": "sha256:…" } } }
//! ```
//! An image id is the digest of the image's config, as in Docker. An image stays in
//! `images` when its last reference goes (Docker's dangling `<none>` images) until it is
//! removed with `remove_image`.
//!
//! Readers load the file without locking: it is only ever replaced whole by a rename, so
//! they see the old or the new version. Writers serialize on an flock of `refs.lock`
//! (between threads too: each update opens its own file description) and write a temp file,
//! fsync it, rename it over `refs.json` and fsync the directory.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::{is_lower_hex, looks_like_id, Reference};

const INDEX: &str = "refs.json";
/// Only the lock holder writes it, so one fixed name is enough.
const INDEX_TEMP: &str = "refs.json.tmp";
const LOCK: &str = "refs.lock";

/// Lookup failures callers must tell apart; messages are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("image id prefix {0} is ambiguous: it matches more than one image")]
    Ambiguous(String),
}

/// Where an image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image manifest (for this platform).
    pub manifest: Digest,
    /// The manifest list or OCI index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct IndexFile {
    #[serde(default)]
    refs: BTreeMap<Reference, Digest>,
    #[serde(default)]
    images: BTreeMap<Digest, ImageRecord>,
}

#[derive(Debug, Clone)]
pub struct ImageIndex {
    root: PathBuf,
}

impl ImageIndex {
    /// Open (creating) the index under `root`, dropping the temp file of an update that was
    /// interrupted before its rename.
    pub fn open(root: &Path) -> Result<ImageIndex> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let index = ImageIndex {
            root: root.to_path_buf(),
        };
        let _lock = index.lock()?;
        match fs::remove_file(root.join(INDEX_TEMP)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).context("cannot remove a stale refs.json.tmp")?
            }
            _ => Ok(index),
        }
    }

    /// Point `reference` at `image_id`, moving it off any image it named before, and record
    /// the image's manifest. The index digest recorded earlier is kept if the manifest is the
    /// same one. Hold [`ImageStore::writer_lock`](crate::images::ImageStore::writer_lock)
    /// around it, as [`ImageStore::tag`](crate::images::ImageStore::tag) does: it records the
    /// image again even if a removal just dropped it.
    pub fn tag(&self, reference: &Reference, image_id: &Digest, manifest: &Digest) -> Result<()> {
        self.update(|file| {
            let index = file
                .images
                .get(image_id)
                .filter(|r| r.manifest == *manifest)
                .and_then(|r| r.index.clone());
            let record = ImageRecord {
                manifest: manifest.clone(),
                index,
            };
            file.images.insert(image_id.clone(), record);
            file.refs.insert(reference.clone(), image_id.clone());
        })
    }

    /// Record an image and all its references in one update, as a pull does (e.g.
    /// `name:tag` and `name@<digest pulled>`); `record` replaces what was known of the image.
    pub fn add(
        &self,
        image_id: &Digest,
        record: &ImageRecord,
        references: &[Reference],
    ) -> Result<()> {
        self.update(|file| {
            file.images.insert(image_id.clone(), record.clone());
            for reference in references {
                file.refs.insert(reference.clone(), image_id.clone());
            }
        })
    }

    /// Remove a reference; whether it existed. The image itself stays.
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        self.update(|file| file.refs.remove(reference).is_some())
    }

    /// Forget an image and every reference to it; returns those references.
    pub fn remove_image(&self, image_id: &Digest) -> Result<Vec<Reference>> {
        self.update(|file| {
            file.images.remove(image_id);
            let gone: Vec<Reference> = refs_to(&file.refs, image_id).collect();
            for reference in &gone {
                file.refs.remove(reference);
            }
            gone
        })
    }

    /// The image id that `name` designates, tried as Docker does: a full id (`sha256:<hex>`
    /// or 64 hex digits), a reference (normalized: `busybox` is `…/busybox:latest`), then a
    /// unique prefix of an id, with or without `sha256:`.
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        let file = self.load()?;
        let full = name.strip_prefix("sha256:").unwrap_or(name);
        if looks_like_id(full) {
            let id: Digest = format!("sha256:{full}").parse()?;
            if file.images.contains_key(&id) {
                return Ok(id);
            }
            return Err(not_found(name).into());
        }
        let reference = Reference::parse_normalized(name)?;
        if let Some(id) = file.refs.get(&reference) {
            return Ok(id.clone());
        }
        by_prefix(&file, full, name)
    }

    /// Every reference with the image it names, sorted by reference.
    pub fn list(&self) -> Result<Vec<(Reference, Digest)>> {
        Ok(self.load()?.refs.into_iter().collect())
    }

    /// The references naming `image_id`.
    pub fn references_of(&self, image_id: &Digest) -> Result<Vec<Reference>> {
        Ok(refs_to(&self.load()?.refs, image_id).collect())
    }

    /// Every image, referenced or dangling.
    pub fn images(&self) -> Result<Vec<Digest>> {
        Ok(self.load()?.images.into_keys().collect())
    }

    /// Where the image came from, if the index knows it.
    pub fn image(&self, image_id: &Digest) -> Result<Option<ImageRecord>> {
        Ok(self.load()?.images.remove(image_id))
    }

    /// Every blob the indexed images still need, for `ContentStore::retain`: each image's
    /// id (its config), manifest and index, plus what `blobs_of` adds (its layers, found by
    /// reading the manifest, which this module does not parse).
    pub fn live_blobs(
        &self,
        mut blobs_of: impl FnMut(&Digest, &ImageRecord) -> Result<Vec<Digest>>,
    ) -> Result<HashSet<Digest>> {
        let mut live = HashSet::new();
        for (id, record) in self.load()?.images {
            live.extend(blobs_of(&id, &record)?);
            live.extend(record.index.iter().cloned());
            live.insert(record.manifest);
            live.insert(id);
        }
        Ok(live)
    }

    fn load(&self) -> Result<IndexFile> {
        let path = self.root.join(INDEX);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt image index {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Read, change and write back the index under the lock, so that concurrent updates
    /// (from threads or processes) all land.
    fn update<T>(&self, change: impl FnOnce(&mut IndexFile) -> T) -> Result<T> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        let before = file.clone();
        let result = change(&mut file);
        if file != before {
            self.store(&file)?;
        }
        Ok(result)
    }

    /// The writers' lock, held until the returned file is closed.
    fn lock(&self) -> Result<File> {
        let path = self.root.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    fn store(&self, file: &IndexFile) -> Result<()> {
        let temp = self.root.join(INDEX_TEMP);
        let mut out =
            File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
        serde_json::to_writer_pretty(&mut out, file)?;
        out.write_all(b"\n")?;
        out.sync_data()
            .with_context(|| format!("cannot fsync {}", temp.display()))?;
        fs::rename(&temp, self.root.join(INDEX)).context("cannot replace refs.json")?;
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot fsync {}", self.root.display()))
    }
}

fn refs_to<'a>(
    refs: &'a BTreeMap<Reference, Digest>,
    image_id: &'a Digest,
) -> impl Iterator<Item = Reference> + 'a {
    refs.iter()
        .filter(move |(_, id)| *id == image_id)
        .map(|(reference, _)| reference.clone())
}

/// The one image whose id starts with `prefix` (hex digits, `sha256:` already stripped).
fn by_prefix(file: &IndexFile, prefix: &str, name: &str) -> Result<Digest> {
    let hex_ok = !prefix.is_empty() && prefix.bytes().all(is_lower_hex);
    let mut matches = file
        .images
        .keys()
        .filter(|id| hex_ok && id.hex().starts_with(prefix));
    match (matches.next(), matches.next()) {
        (Some(id), None) => Ok(id.clone()),
        (Some(_), Some(_)) => Err(ImageError::Ambiguous(name.to_string()).into()),
        _ => Err(not_found(name).into()),
    }
}

/// Docker names what was not found in its familiar form: `No such image: busybox:latest`.
fn not_found(name: &str) -> ImageError {
    let shown = match Reference::parse_normalized(name) {
        Ok(reference) => reference.familiar(),
        Err(_) if looks_like_id(name) => format!("sha256:{name}"),
        Err(_) => name.to_string(),
    };
    ImageError::NotFound(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        Reference::parse_normalized(s).unwrap()
    }

    fn index() -> (tempfile::TempDir, ImageIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = ImageIndex::open(dir.path()).unwrap();
        (dir, index)
    }

    fn id(hex_prefix: &str) -> Digest {
        format!("sha256:{hex_prefix:0<64}").parse().unwrap()
    }

    fn not_found_message(index: &ImageIndex, name: &str) -> String {
        let err = index.resolve(name).unwrap_err();
        match err.downcast_ref::<ImageError>() {
            Some(e @ ImageError::NotFound(_)) => e.to_string(),
            _ => panic!("{name}: {err}"),
        }
    }

    #[test]
    fn tag_untag_and_list() {
        let (_dir, index) = index();
        let (a, b, m) = (id("aa"), id("bb"), Digest::of(b"manifest"));
        index.tag(&reference("busybox"), &a, &m).unwrap();
        index.tag(&reference("busybox:1"), &a, &m).unwrap();
        index.tag(&reference("localhost:5000/x"), &b, &m).unwrap();
        assert_eq!(
            index.list().unwrap(),
            vec![
                (reference("busybox:1"), a.clone()),
                (reference("busybox:latest"), a.clone()),
                (reference("localhost:5000/x:latest"), b.clone()),
            ]
        );
        assert_eq!(
            index.references_of(&a).unwrap(),
            vec![reference("busybox:1"), reference("busybox")]
        );
        assert!(index.untag(&reference("busybox:1")).unwrap());
        assert!(!index.untag(&reference("busybox:1")).unwrap());
        // Retagging moves the name; the old image stays, dangling.
        index.tag(&reference("busybox"), &b, &m).unwrap();
        assert!(index.references_of(&a).unwrap().is_empty());
        assert_eq!(index.images().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(
            index.remove_image(&b).unwrap(),
            vec![reference("busybox"), reference("localhost:5000/x")]
        );
        assert_eq!(index.images().unwrap(), vec![a]);
        assert!(index.list().unwrap().is_empty());
    }

    #[test]
    fn records_manifest_and_index() {
        let (dir, index) = index();
        let (image, manifest, list) = (id("cc"), Digest::of(b"m"), Digest::of(b"list"));
        let record = ImageRecord {
            manifest: manifest.clone(),
            index: Some(list.clone()),
        };
        let refs = [reference("app:1"), reference("app").with_digest(&list)];
        index.add(&image, &record, &refs).unwrap();
        // Tagging again with the same manifest keeps the index it came from.
        index.tag(&reference("app:2"), &image, &manifest).unwrap();
        let reopened = ImageIndex::open(dir.path()).unwrap();
        assert_eq!(reopened.image(&image).unwrap(), Some(record));
        assert_eq!(reopened.resolve(&format!("app@{list}")).unwrap(), image);
        assert_eq!(reopened.references_of(&image).unwrap().len(), 3);
        let text = fs::read_to_string(dir.path().join(INDEX)).unwrap();
        assert!(text.contains(&format!("\"docker.io/library/app@{list}\"")));
    }

    #[test]
    fn resolves_names_ids_and_prefixes() {
        let (_dir, index) = index();
        let m = Digest::of(b"m");
        let (a, b) = (id("abc1"), id("abc2"));
        index.tag(&reference("busybox"), &a, &m).unwrap();
        index.tag(&reference("other:v1"), &b, &m).unwrap();
        for name in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            "abc1",
            "sha256:abc1",
            a.hex(),
            &a.to_string(),
        ] {
            assert_eq!(index.resolve(name).unwrap(), a, "{name}");
        }
        assert_eq!(index.resolve("abc2").unwrap(), b);
        let err = index.resolve("abc").unwrap_err();
        assert_eq!(
            err.downcast_ref::<ImageError>(),
            Some(&ImageError::Ambiguous("abc".into()))
        );
        assert!(err.to_string().contains("abc"));
        assert_eq!(
            not_found_message(&index, "nope"),
            "No such image: nope:latest"
        );
        assert_eq!(
            not_found_message(&index, "other"),
            "No such image: other:latest"
        );
        assert_eq!(
            not_found_message(&index, "abd"),
            "No such image: abd:latest"
        );
        let absent = id("ff");
        assert_eq!(
            not_found_message(&index, absent.hex()),
            format!("No such image: {absent}")
        );
        assert_eq!(
            not_found_message(&index, &absent.to_string()),
            format!("No such image: {absent}")
        );
        assert!(index.resolve("Bad:Name").is_err());
    }

    #[test]
    fn concurrent_updates_from_threads_all_land() {
        let (dir, index) = index();
        let m = Digest::of(b"m");
        std::thread::scope(|s| {
            for t in 0..8 {
                let (dir, m) = (dir.path(), &m);
                s.spawn(move || {
                    let own = ImageIndex::open(dir).unwrap();
                    for i in 0..20 {
                        let r = reference(&format!("t{t}:v{i}"));
                        own.tag(&r, &id(&format!("{t:x}{i:02x}")), m).unwrap();
                    }
                });
            }
        });
        assert_eq!(index.list().unwrap().len(), 8 * 20);
        assert!(!dir.path().join(INDEX_TEMP).exists());
    }

    /// Run by `concurrent_updates_from_processes_all_land` in child processes.
    #[test]
    #[ignore = "a helper run as a child process"]
    fn tag_from_child_process() {
        let (Ok(root), Ok(who)) = (
            std::env::var("BERTH_INDEX_ROOT"),
            std::env::var("BERTH_INDEX_CHILD"),
        ) else {
            return;
        };
        let index = ImageIndex::open(Path::new(&root)).unwrap();
        for i in 0..25 {
            let r = reference(&format!("p{who}:v{i}"));
            index
                .tag(&r, &id(&format!("{who}{i:02x}")), &id("ee"))
                .unwrap();
        }
    }

    #[test]
    fn concurrent_updates_from_processes_all_land() {
        let (dir, index) = index();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|who| {
                std::process::Command::new(&exe)
                    .args([
                        "--ignored",
                        "--exact",
                        "store::tests::tag_from_child_process",
                    ])
                    .env("BERTH_INDEX_ROOT", dir.path())
                    .env("BERTH_INDEX_CHILD", who.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        assert_eq!(index.list().unwrap().len(), 4 * 25);
    }

    #[test]
    fn interrupted_update_leaves_the_old_index() {
        let (dir, index) = index();
        index.tag(&reference("kept"), &id("11"), &id("22")).unwrap();
        // A writer killed after writing its temp file but before the rename.
        fs::write(dir.path().join(INDEX_TEMP), b"{\"refs\": {\"half").unwrap();
        let index = ImageIndex::open(dir.path()).unwrap();
        assert!(!dir.path().join(INDEX_TEMP).exists());
        assert_eq!(index.resolve("kept").unwrap(), id("11"));
    }

    #[test]
    fn corrupt_index_is_an_error_not_a_panic() {
        let (dir, index) = index();
        fs::write(
            dir.path().join(INDEX),
            b"{\"refs\": {\"Not A Ref\": \"x\"}}",
        )
        .unwrap();
        let err = index.list().unwrap_err();
        assert!(
            format!("{err:#}").contains("corrupt image index"),
            "{err:#}"
        );
    }

    #[test]
    fn live_blobs_feed_garbage_collection() {
        let (_dir, index) = index();
        let content_dir = tempfile::tempdir().unwrap();
        let content = crate::content::ContentStore::open(content_dir.path()).unwrap();
        let blob = |s: &str| content.put_bytes(s.as_bytes()).unwrap();
        let (config, manifest, list, layer) = (
            blob("config"),
            blob("manifest"),
            blob("list"),
            blob("layer"),
        );
        let (old_config, old_manifest, old_layer) =
            (blob("old config"), blob("old manifest"), blob("old layer"));
        let stray = blob("stray");
        let record = ImageRecord {
            manifest: manifest.clone(),
            index: Some(list.clone()),
        };
        index.add(&config, &record, &[reference("app")]).unwrap();
        index
            .tag(&reference("old"), &old_config, &old_manifest)
            .unwrap();
        index.remove_image(&old_config).unwrap();
        let live = index
            .live_blobs(|id, _| {
                Ok(if *id == config {
                    vec![layer.clone()]
                } else {
                    vec![]
                })
            })
            .unwrap();
        let mut removed = content.retain(&live).unwrap();
        removed.sort();
        let mut expected = vec![old_config, old_manifest, old_layer, stray];
        expected.sort();
        assert_eq!(removed, expected);
        let mut kept = vec![config, manifest, list, layer];
        kept.sort();
        assert_eq!(content.list().unwrap(), kept);
    }
}
