//! `docker save`: images out of the store as a docker-save tarball (Docker 25's layout) or
//! into an OCI layout directory.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

use super::load::{layer_type, ManifestItem};
use super::{
    blob_path, descriptor, read_json_file, IMAGE_NAME, INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT,
    OCI_LAYOUT_CONTENT, REF_NAME, REPOSITORIES,
};
use crate::config::ImageConfig;
use crate::digest::{Digest, DigestReader};
use crate::images::{layer_jobs, ImageStore, LayerJob};
use crate::layer::decompress;
use crate::manifest::{
    layer_compression, media_type, parse_any, Descriptor, Document, Index, Manifest, Parsed,
    Platform,
};
use crate::reference::Reference;

/// Gives temp files of one process distinct names.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// An image to save, with the names it is saved under.
struct SaveItem {
    id: Digest,
    tags: Vec<Reference>,
    manifest: Box<Document<Manifest>>,
    config: Vec<u8>,
    parsed_config: ImageConfig,
}

/// `repositories`: familiar name → tag → hex of the image's top layer diff_id.
type Repositories = BTreeMap<String, BTreeMap<String, String>>;

impl ImageStore {
    /// `docker save NAMES > out`: the images `names` (references, ids or id prefixes)
    /// designate, as a tarball in Docker 25's layout. Layers are written uncompressed
    /// (`docker load` wants a layer's file to be its diff_id), each checked against its
    /// diff_id as it is written. An image named by a reference carries that tag; one named
    /// by id carries none, as in Docker.
    pub fn save(&self, names: &[&str], out: impl Write) -> Result<()> {
        // A collection must not delete blobs while they are being written out.
        let _reading = self.writer_lock()?;
        let items = self.save_items(names)?;
        let mut tar = TarWriter::new(out);
        let mut written = HashSet::new();
        let (mut manifests, mut descriptors) = (Vec::new(), Vec::new());
        let mut repositories = Repositories::new();
        for item in &items {
            let layers = self.write_plain_layers(&mut tar, item, &mut written)?;
            tar.add_bytes(&blob_path(&item.id), &item.config)?;
            let manifest = plain_manifest(item, layers);
            let bytes = serde_json::to_vec(&manifest)?;
            let digest = Digest::of(&bytes);
            tar.add_bytes(&blob_path(&digest), &bytes)?;
            let desc = descriptor(media_type::OCI_MANIFEST, &digest, bytes.len() as u64);
            descriptors.extend(index_entries(item, desc));
            add_repositories(&mut repositories, item, &manifest);
            manifests.push(manifest_item(item, &manifest));
        }
        tar.add_bytes(OCI_LAYOUT, OCI_LAYOUT_CONTENT.as_bytes())?;
        let index = merge_index(None, descriptors);
        tar.add_bytes(INDEX_JSON, &serde_json::to_vec(&index)?)?;
        tar.add_bytes(MANIFEST_JSON, &serde_json::to_vec(&manifests)?)?;
        tar.add_bytes(REPOSITORIES, &serde_json::to_vec(&repositories)?)?;
        tar.finish()
    }

    /// Write the images `names` designate into the OCI layout directory `dir` (created if
    /// need be; an existing layout is added to, replacing entries of the same names), with
    /// their configs and layers as stored. An OCI manifest is written as stored; a Docker
    /// schema2 one is translated to OCI media types (skopeo's `oci:` reader skips any other
    /// kind of entry). Each file is written to a temp file, fsynced and renamed into place;
    /// `index.json` last.
    pub fn save_oci_layout(&self, names: &[&str], dir: &Path) -> Result<()> {
        let _reading = self.writer_lock()?;
        let items = self.save_items(names)?;
        let blob_dir = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blob_dir)
            .with_context(|| format!("cannot create {}", blob_dir.display()))?;
        let mut descriptors = Vec::new();
        for item in &items {
            let manifest = item.manifest.value();
            let layers = manifest.layers.iter().map(|l| &l.digest);
            for digest in layers.chain([&manifest.config.digest]) {
                write_blob(&blob_dir, digest, self.content.open_blob(digest)?)?;
            }
            let bytes = oci_manifest(&item.manifest)?;
            let digest = Digest::of(&bytes);
            write_blob(&blob_dir, &digest, &bytes[..])?;
            let desc = descriptor(media_type::OCI_MANIFEST, &digest, bytes.len() as u64);
            descriptors.extend(index_entries(item, desc));
        }
        write_atomic(dir, OCI_LAYOUT, OCI_LAYOUT_CONTENT.as_bytes())?;
        let index = merge_index(existing_index(dir)?, descriptors);
        write_atomic(dir, INDEX_JSON, &serde_json::to_vec(&index)?[..])
    }

    /// The images `names` designate, each once, with the tags among `names` that name it.
    fn save_items(&self, names: &[&str]) -> Result<Vec<SaveItem>> {
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            let id = self.index.resolve(name)?;
            let at = match items.iter().position(|i| i.id == id) {
                Some(at) => at,
                None => {
                    items.push(self.save_item(id.clone())?);
                    items.len() - 1
                }
            };
            let tags = &mut items[at].tags;
            match self.tag_named(name, &id)? {
                Some(tag) if !tags.contains(&tag) => tags.push(tag),
                _ => {}
            }
        }
        Ok(items)
    }

    fn save_item(&self, id: Digest) -> Result<SaveItem> {
        let manifest = self.stored_manifest(&id)?;
        let config = self.content.read(&id)?;
        let parsed_config =
            ImageConfig::parse(&config).with_context(|| format!("image config {id}"))?;
        Ok(SaveItem {
            id,
            tags: Vec::new(),
            manifest,
            config,
            parsed_config,
        })
    }

    /// The tag `name` is, if it is one that names image `id` (rather than an id or prefix).
    fn tag_named(&self, name: &str, id: &Digest) -> Result<Option<Reference>> {
        let Ok(reference) = Reference::parse_normalized(name) else {
            return Ok(None);
        };
        let tagged = reference.tag.is_some() && reference.digest.is_none();
        let names_it = self.index.references_of(id)?.contains(&reference);
        Ok((tagged && names_it).then_some(reference))
    }

    /// Write the image's layers not `written` yet, uncompressed; their descriptors.
    fn write_plain_layers(
        &self,
        tar: &mut TarWriter<impl Write>,
        item: &SaveItem,
        written: &mut HashSet<Digest>,
    ) -> Result<Vec<Descriptor>> {
        let jobs = layer_jobs(item.manifest.value(), &item.parsed_config)?;
        jobs.iter()
            .map(|job| {
                let size = self
                    .layers
                    .meta(&job.chain_id)
                    .with_context(|| format!("image {}", item.id))?
                    .size;
                if written.insert(job.diff_id.clone()) {
                    self.write_plain_layer(tar, job, size)?;
                }
                Ok(descriptor(media_type::OCI_LAYER, &job.diff_id, size))
            })
            .collect()
    }

    /// The layer's tar, decompressed from its stored blob: exactly `size` bytes whose digest
    /// must be the diff_id.
    fn write_plain_layer(
        &self,
        tar: &mut TarWriter<impl Write>,
        job: &LayerJob,
        size: u64,
    ) -> Result<()> {
        let blob = self.content.open_blob(&job.desc.digest)?;
        let (_, plain) = decompress(io::BufReader::new(blob))?;
        let mut hashed = DigestReader::new(ExactSize {
            inner: plain,
            left: size,
        });
        tar.add(&blob_path(&job.diff_id), size, &mut hashed)
            .with_context(|| format!("cannot write layer {}", job.desc.digest))?;
        let (found, _) = hashed.finish();
        if found != job.diff_id {
            bail!(
                "the stored blob {} unpacks to {found}, not to layer {}: the store is corrupt",
                job.desc.digest,
                job.diff_id
            );
        }
        Ok(())
    }
}

/// Write a blob into an OCI layout's `blobs/sha256`, unless it is there.
fn write_blob(blob_dir: &Path, digest: &Digest, data: impl Read) -> Result<()> {
    if blob_dir.join(digest.hex()).is_file() {
        return Ok(());
    }
    write_atomic(blob_dir, digest.hex(), data)
}

/// The bytes of `doc` as an OCI manifest: as stored, or translated from Docker schema2
/// (same config and layer blobs, OCI media types).
fn oci_manifest(doc: &Document<Manifest>) -> Result<Cow<'_, [u8]>> {
    if doc.media_type() != media_type::DOCKER_MANIFEST {
        return Ok(Cow::Borrowed(doc.bytes()));
    }
    let mut manifest = doc.value().clone();
    manifest.media_type = Some(media_type::OCI_MANIFEST.to_string());
    manifest.config.media_type = media_type::OCI_CONFIG.to_string();
    for layer in &mut manifest.layers {
        layer.media_type = match layer.media_type.as_str() {
            media_type::DOCKER_FOREIGN_LAYER_GZIP => media_type::OCI_NONDISTRIBUTABLE_LAYER_GZIP,
            other => layer_type(layer_compression(other)?, true),
        }
        .to_string();
    }
    Ok(Cow::Owned(serde_json::to_vec(&manifest)?))
}

/// The OCI manifest of the uncompressed layers written into a docker-save tarball.
fn plain_manifest(item: &SaveItem, layers: Vec<Descriptor>) -> Manifest {
    let config_size = item.config.len() as u64;
    Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: descriptor(media_type::OCI_CONFIG, &item.id, config_size),
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    }
}

fn manifest_item(item: &SaveItem, manifest: &Manifest) -> ManifestItem {
    ManifestItem {
        config: blob_path(&item.id),
        repo_tags: item.tags.iter().map(Reference::familiar).collect(),
        layers: manifest
            .layers
            .iter()
            .map(|l| blob_path(&l.digest))
            .collect(),
    }
}

fn add_repositories(repositories: &mut Repositories, item: &SaveItem, manifest: &Manifest) {
    let Some(top) = manifest.layers.last() else {
        return;
    };
    for tag in &item.tags {
        let tags = repositories.entry(tag.familiar_name()).or_default();
        tags.insert(
            tag.tag.clone().unwrap_or_default(),
            top.digest.hex().to_string(),
        );
    }
}

/// The index.json entries of an image whose manifest is `manifest`: one per tag, named as
/// Docker names them, or one without a name.
fn index_entries(item: &SaveItem, mut manifest: Descriptor) -> Vec<Descriptor> {
    let config = &item.parsed_config;
    if !config.os.is_empty() && !config.architecture.is_empty() {
        let variant = config.variant.as_deref();
        manifest.platform = Some(Platform::new(&config.os, &config.architecture, variant));
    }
    if item.tags.is_empty() {
        return vec![manifest];
    }
    item.tags
        .iter()
        .map(|tag| {
            let mut named = manifest.clone();
            named
                .annotations
                .insert(IMAGE_NAME.to_string(), tag.to_string());
            let bare = tag.tag.clone().unwrap_or_default();
            named.annotations.insert(REF_NAME.to_string(), bare);
            named
        })
        .collect()
}

/// `existing` (or an empty index) without the entries `ours` replace, then `ours`.
fn merge_index(existing: Option<Index>, ours: Vec<Descriptor>) -> Index {
    let mut index = existing.unwrap_or_else(|| Index {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: Default::default(),
        extra: Default::default(),
    });
    index
        .manifests
        .retain(|old| !ours.iter().any(|new| replaces(new, old)));
    index.manifests.extend(ours);
    index
}

/// Whether `new` takes `old`'s place in an index: the same entry, or the same ref name for
/// the same image name (or for no image name at all).
fn replaces(new: &Descriptor, old: &Descriptor) -> bool {
    let get = |d: &Descriptor, key: &str| d.annotations.get(key).cloned();
    let same_ref = get(old, REF_NAME).is_some() && get(old, REF_NAME) == get(new, REF_NAME);
    let same_image = get(old, IMAGE_NAME).is_none_or(|n| Some(n) == get(new, IMAGE_NAME));
    old == new || (same_ref && same_image)
}

/// The index.json of the layout at `dir`, if it has one.
fn existing_index(dir: &Path) -> Result<Option<Index>> {
    let path = dir.join(INDEX_JSON);
    if !path.exists() {
        return Ok(None);
    }
    match parse_any(None, read_json_file(&path)?) {
        Ok(Parsed::Index(index)) => Ok(Some(index.into_value())),
        Ok(Parsed::Manifest(_)) => bail!("{} is not an image index", path.display()),
        Err(e) => Err(e).with_context(|| format!("cannot add to {}", path.display())),
    }
}

/// Write `dir/name` atomically and durably: a temp file in `dir`, fsync, rename, fsync of
/// `dir`.
fn write_atomic(dir: &Path, name: &str, mut data: impl Read) -> Result<()> {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        io::copy(&mut data, &mut file)?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", dir.join(name).display()))
}

/// The tarball being written: regular files, mode 0644, owned by root, mtime 0.
struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> TarWriter<W> {
        TarWriter {
            builder: tar::Builder::new(out),
        }
    }

    fn add(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        self.builder
            .append_data(&mut header, name, data)
            .with_context(|| format!("cannot write {name} into the archive"))
    }

    fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.add(name, bytes.len() as u64, bytes)
    }

    fn finish(self) -> Result<()> {
        let mut out = self
            .builder
            .into_inner()
            .context("cannot finish the archive")?;
        out.flush().context("cannot finish the archive")
    }
}

/// Exactly `left` bytes of `inner`, which must end there: a tar header announces an entry's
/// size before its data, so a stream of any other length is an error, not a bad archive.
struct ExactSize<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(size_error("longer")),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(size_error("shorter"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn size_error(how: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the layer is {how} than the size the layer store recorded"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], size: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ExactSize {
            inner: data,
            left: size,
        }
        .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn exact_size_refuses_other_lengths() {
        assert_eq!(read_all(b"abc", 3).unwrap(), b"abc");
        assert!(read_all(b"abcd", 3)
            .unwrap_err()
            .to_string()
            .contains("longer"));
        assert!(read_all(b"ab", 3)
            .unwrap_err()
            .to_string()
            .contains("shorter"));
    }

    fn entry(digest: &str, names: &[(&str, &str)]) -> Descriptor {
        let mut d = descriptor(media_type::OCI_MANIFEST, &Digest::of(digest.as_bytes()), 1);
        for (k, v) in names {
            d.annotations.insert(k.to_string(), v.to_string());
        }
        d
    }

    #[test]
    fn merging_replaces_entries_of_the_same_name() {
        let skopeo = entry("a", &[(REF_NAME, "latest")]);
        let other_repo = entry("b", &[(REF_NAME, "latest"), (IMAGE_NAME, "x/other:latest")]);
        let unnamed = entry("c", &[]);
        let kept_tag = entry("d", &[(REF_NAME, "1.0")]);
        let existing = merge_index(
            None,
            vec![
                skopeo,
                other_repo.clone(),
                unnamed.clone(),
                kept_tag.clone(),
            ],
        );
        let ours = entry("e", &[(REF_NAME, "latest"), (IMAGE_NAME, "busybox:latest")]);
        let merged = merge_index(Some(existing), vec![ours.clone(), unnamed.clone()]);
        assert_eq!(merged.manifests, vec![other_repo, kept_tag, ours, unnamed]);
    }
}
