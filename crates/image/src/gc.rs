//! Removing images as `docker rmi` does, and collecting what no image needs any more: blobs
//! (manifests, indexes, configs, layer blobs) and unpacked layers (`layers/<chain-id>`).
//!
//! ## Locking rule
//! `<root>/gc.lock` is an flock. Every operation that writes blobs or layers that the index
//! does not reference yet — pull, load, import, build — holds it *shared*
//! ([`ImageStore::writer_lock`]) from before its first look at the store (the "is this layer
//! already there?" checks included) until the index records its image, so writers never
//! wait for each other. Collection holds it *exclusive* while it reads the index, decides
//! and deletes, so it never sees a writer's unreferenced blobs or layers, and a writer never
//! relies on a layer it found present that collection then removes. Collection waits for
//! writers in progress (a flock dies with its process, so a killed pull never blocks it).
//! A thread that holds the shared lock must not start a collection itself: it would wait for
//! its own lock. Tagging ([`ImageStore::tag`]) holds it shared too: an index update that
//! names an image records it again, and must not land between a removal's index update and
//! its collection. Removing a name or an image from the index needs no lock: each update
//! of `refs.json` is atomic on its own.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};

use anyhow::{bail, Context, Result};

use crate::config::{chain_ids, ImageConfig};
use crate::content::ContentError;
use crate::digest::Digest;
use crate::images::ImageStore;
use crate::manifest::{parse_any, Parsed};
use crate::reference::Reference;
use crate::store::ImageRecord;

const GC_LOCK: &str = "gc.lock";

/// Refusals callers must tell apart; the messages are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// Removal by id of an image tagged in several repositories, or with several tags,
    /// without force. Holds the short id.
    #[error(
        "conflict: unable to delete {0} (must be forced) - image is referenced in multiple repositories"
    )]
    Conflict(String),
}

/// What a collection deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: Vec<Digest>,
    /// Chain ids of the unpacked layers removed.
    pub layers: Vec<Digest>,
    /// Indexed images whose config or manifest is missing or malformed. They do not stop
    /// the collection: what they are known to need is kept, the rest of the store collected.
    pub broken: Vec<BrokenImage>,
}

/// An image the index names that cannot be used: a blob it needs is gone or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenImage {
    pub id: Digest,
    pub problem: String,
}

/// What `remove_image` did, for `docker rmi`'s report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The references removed.
    pub untagged: Vec<Reference>,
    /// The image deleted, if it was (an untag that leaves other names deletes nothing).
    pub deleted: Option<Digest>,
    pub collected: Collected,
}

impl Removed {
    /// Docker's report: `Untagged: busybox:latest`, then `Deleted: sha256:<image id>`, then
    /// `Deleted: sha256:<chain id>` for each layer removed.
    pub fn lines(&self) -> Vec<String> {
        let untagged = self
            .untagged
            .iter()
            .map(|r| format!("Untagged: {}", r.familiar()));
        let deleted = self
            .deleted
            .iter()
            .chain(&self.collected.layers)
            .map(|d| format!("Deleted: {d}"));
        untagged.chain(deleted).collect()
    }
}

/// A held flock on `<root>/gc.lock`, released when dropped.
#[derive(Debug)]
pub struct GcLock {
    _file: File,
}

impl ImageStore {
    /// The writers' side of the collection lock (shared): hold it for the whole of a pull,
    /// load or build, until the index records the image.
    pub fn writer_lock(&self) -> Result<GcLock> {
        let file = self.open_gc_lock()?;
        file.lock_shared().context("cannot lock gc.lock (shared)")?;
        Ok(GcLock { _file: file })
    }

    /// The collector's side (exclusive): waits for every writer to finish.
    fn collector_lock(&self) -> Result<GcLock> {
        let file = self.open_gc_lock()?;
        file.lock().context("cannot lock gc.lock (exclusive)")?;
        Ok(GcLock { _file: file })
    }

    fn open_gc_lock(&self) -> Result<File> {
        let path = self.root.join(GC_LOCK);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    /// The collector's side without waiting: `None` while any writer is at work.
    pub(crate) fn try_collector_lock(&self) -> Result<Option<GcLock>> {
        let file = self.open_gc_lock()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).context("cannot lock gc.lock (exclusive)")
            }
        }
    }

    /// `docker rmi [-f] NAME_OR_ID` with no container using any layer.
    pub fn remove_image(&self, name_or_id: &str, force: bool) -> Result<Removed> {
        self.remove_image_with(name_or_id, force, &|_| false)
    }

    /// `docker rmi`: a name that is one of several references of its image is only untagged;
    /// the last reference, or the image's id (or id prefix), deletes the image with all its
    /// references — by id, an image with tags in several repositories (or several tags)
    /// only with `force`. After a deletion, whatever no image needs is collected, except the
    /// unpacked layers `layers_in_use` (by chain id) says containers still use.
    pub fn remove_image_with(
        &self,
        name_or_id: &str,
        force: bool,
        layers_in_use: &dyn Fn(&Digest) -> bool,
    ) -> Result<Removed> {
        let image_id = self.index.resolve(name_or_id)?;
        let mut removed = Removed::default();
        if is_id_prefix(&image_id, name_or_id) {
            self.check_conflict(&image_id, force)?;
        } else if self.untag_name(name_or_id, &image_id, &mut removed)? {
            return Ok(removed);
        }
        removed.untagged.extend(self.index.remove_image(&image_id)?);
        removed.deleted = Some(image_id);
        removed.collected = self.collect(layers_in_use)?;
        Ok(removed)
    }

    /// Untag `name` only, never deleting the image even when it was its last name (what
    /// `docker rmi -f NAME` does to the image of a running container); the repository's
    /// digest references go with its last tag, as in a removal.
    pub fn untag_only(&self, name: &str) -> Result<Removed> {
        let image_id = self.index.resolve(name)?;
        let mut removed = Removed::default();
        self.untag_name(name, &image_id, &mut removed)?;
        Ok(removed)
    }

    /// By id, Docker deletes without force only an image with at most one tag, all its
    /// references in one repository.
    fn check_conflict(&self, image_id: &Digest, force: bool) -> Result<()> {
        let refs = self.index.references_of(image_id)?;
        if force || refs.is_empty() || is_single_reference(&refs) {
            return Ok(());
        }
        Err(RemoveError::Conflict(image_id.short().to_string()).into())
    }

    /// Untag `name`; whether the image still has other references. As Docker does, the
    /// last tag of a repository takes the repository's digest references (`name@sha256:…`)
    /// with it.
    fn untag_name(&self, name: &str, image_id: &Digest, removed: &mut Removed) -> Result<bool> {
        let reference = Reference::parse_normalized(name)?;
        if self.index.untag(&reference)? {
            removed.untagged.push(reference.clone());
        }
        let remaining = self.index.references_of(image_id)?;
        let repo = reference.name();
        let tag_left = remaining
            .iter()
            .any(|r| r.digest.is_none() && r.name() == repo);
        if reference.digest.is_some() || tag_left {
            return Ok(!remaining.is_empty());
        }
        let (same_repo, others): (Vec<Reference>, Vec<Reference>) =
            remaining.into_iter().partition(|r| r.name() == repo);
        for digest_ref in same_repo {
            if self.index.untag(&digest_ref)? {
                removed.untagged.push(digest_ref);
            }
        }
        Ok(!others.is_empty())
    }

    /// `docker tag SOURCE TARGET`: point `target` at the image `source` names; returns the
    /// image id. Holds the writers' lock: the index update re-records the image, so a
    /// removal of it running at the same time must not collect its blobs in between (its
    /// collection waits and then sees the new name, or it ran first and the image is no
    /// longer there to tag).
    pub fn tag(&self, source: &str, target: &Reference) -> Result<Digest> {
        let _writing = self.writer_lock()?;
        let image_id = self.index.resolve(source)?;
        let record = self
            .index
            .image(&image_id)?
            .ok_or_else(|| crate::store::ImageError::NotFound(source.to_string()))?;
        self.index.tag(target, &image_id, &record.manifest)?;
        Ok(image_id)
    }

    /// Delete every blob and unpacked layer no indexed image needs, except the layers
    /// `layers_in_use` names. Waits for pulls and loads in progress (see the module's
    /// locking rule). An image whose config or manifest is missing or malformed is reported
    /// in [`Collected::broken`] and keeps what it is known to need; a blob that cannot be
    /// read for another reason (an I/O error) stops the collection before anything is
    /// deleted.
    pub fn collect(&self, layers_in_use: &dyn Fn(&Digest) -> bool) -> Result<Collected> {
        let lock = self.collector_lock()?;
        self.collect_locked(&lock, layers_in_use)
    }

    /// [`collect`](ImageStore::collect) now, or `None` without waiting if a pull, load or
    /// build is at work: for tidying up after a failed load without blocking its caller.
    pub fn try_collect(
        &self,
        layers_in_use: &dyn Fn(&Digest) -> bool,
    ) -> Result<Option<Collected>> {
        match self.try_collector_lock()? {
            Some(lock) => self.collect_locked(&lock, layers_in_use).map(Some),
            None => Ok(None),
        }
    }

    fn collect_locked(
        &self,
        _lock: &GcLock,
        layers_in_use: &dyn Fn(&Digest) -> bool,
    ) -> Result<Collected> {
        let mut live_chains = HashSet::new();
        let mut broken = Vec::new();
        let live_blobs = self.index.live_blobs(|id, record| {
            let mut problems = Vec::new();
            let blobs = self.needs(id, record, &mut live_chains, &mut problems)?;
            if !problems.is_empty() {
                broken.push(BrokenImage {
                    id: id.clone(),
                    problem: problems.join("; "),
                });
            }
            Ok(blobs)
        })?;
        let blobs = self.content.retain(&live_blobs)?;
        let mut layers: Vec<Digest> = self
            .layers
            .list()?
            .into_iter()
            .filter(|c| !live_chains.contains(c) && !layers_in_use(c))
            .collect();
        layers.sort();
        for chain_id in &layers {
            self.layers.remove(chain_id)?;
        }
        Ok(Collected {
            blobs,
            layers,
            broken,
        })
    }

    /// The layer blobs of an image, from its manifest; its layers' chain ids, from its
    /// config, go into `chains`. A config or manifest that is missing or malformed adds a
    /// line to `problems` and contributes nothing; any other failure to read one is an error.
    fn needs(
        &self,
        image_id: &Digest,
        record: &ImageRecord,
        chains: &mut HashSet<Digest>,
        problems: &mut Vec<String>,
    ) -> Result<Vec<Digest>> {
        let config = self.document(image_id, "config", problems, |bytes| {
            Ok(ImageConfig::parse(&bytes)?)
        })?;
        if let Some(config) = config {
            chains.extend(chain_ids(&config.rootfs.diff_ids));
        }
        let manifest =
            self.document(
                &record.manifest,
                "manifest",
                problems,
                |bytes| match parse_any(None, bytes)? {
                    Parsed::Manifest(doc) => Ok(doc),
                    Parsed::Index(_) => bail!("it is an index, not an image manifest"),
                },
            )?;
        Ok(manifest
            .iter()
            .flat_map(|doc| doc.value().layers.iter().map(|d| d.digest.clone()))
            .collect())
    }

    /// Blob `digest` parsed by `parse`; `None` (with a line in `problems`) when it is missing
    /// or `parse` refuses it. Only an I/O error reading it is an error.
    fn document<T>(
        &self,
        digest: &Digest,
        what: &str,
        problems: &mut Vec<String>,
        parse: impl FnOnce(Vec<u8>) -> Result<T>,
    ) -> Result<Option<T>> {
        let bytes = match self.content.read(digest) {
            Ok(bytes) => bytes,
            Err(e) if matches!(e.downcast_ref(), Some(ContentError::NotFound(_))) => {
                problems.push(format!("its {what} {digest} is missing"));
                return Ok(None);
            }
            Err(e) => return Err(e.context("cannot tell what the images need: nothing collected")),
        };
        match parse(bytes) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                problems.push(format!("its {what} {digest} is malformed: {e:#}"));
                Ok(None)
            }
        }
    }
}

/// Docker's test of whether `name` designates the image by id: it is a prefix of the id,
/// with or without `sha256:`.
pub fn is_id_prefix(image_id: &Digest, name: &str) -> bool {
    image_id.to_string().starts_with(name) || image_id.hex().starts_with(name)
}

/// At most one tag, and every reference in one repository (Docker's `isSingleReference`).
pub fn is_single_reference(refs: &[Reference]) -> bool {
    let tags = refs.iter().filter(|r| r.digest.is_none()).count();
    let repos: HashSet<String> = refs.iter().map(Reference::name).collect();
    tags <= 1 && repos.len() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<Reference> {
        names
            .iter()
            .map(|n| Reference::parse_normalized(n).unwrap())
            .collect()
    }

    #[test]
    fn single_reference_as_docker_counts_it() {
        let m = format!("@{}", Digest::of(b"m"));
        assert!(is_single_reference(&refs(&["busybox"])));
        assert!(is_single_reference(&refs(&[
            "busybox",
            &format!("busybox{m}")
        ])));
        assert!(is_single_reference(&refs(&[&format!("busybox{m}")])));
        assert!(!is_single_reference(&refs(&["busybox", "busybox:1"])));
        assert!(!is_single_reference(&refs(&["busybox", "other"])));
        assert!(!is_single_reference(&refs(&[
            "busybox",
            &format!("other{m}")
        ])));
    }

    #[test]
    fn id_prefixes_with_and_without_the_algorithm() {
        let id = Digest::of(b"config");
        for name in [&id.to_string(), id.hex(), id.short(), &id.to_string()[..10]] {
            assert!(is_id_prefix(&id, name), "{name}");
        }
        assert!(!is_id_prefix(&id, "busybox"));
        assert!(!is_id_prefix(&id, &Digest::of(b"other").hex()[..12]));
    }

    #[test]
    fn report_lines_are_dockers() {
        let (image, layer) = (Digest::of(b"image"), Digest::of(b"layer"));
        let removed = Removed {
            untagged: refs(&["busybox", "localhost:5000/x:1"]),
            deleted: Some(image.clone()),
            collected: Collected {
                blobs: vec![Digest::of(b"blob")],
                layers: vec![layer.clone()],
                broken: Vec::new(),
            },
        };
        assert_eq!(
            removed.lines(),
            vec![
                "Untagged: busybox:latest".to_string(),
                "Untagged: localhost:5000/x:1".to_string(),
                format!("Deleted: {image}"),
                format!("Deleted: {layer}"),
            ]
        );
    }
}
