//! Image archives: `docker save` / `docker load` tarballs, OCI image layouts (directories
//! and tarballs), and `docker import` of a plain rootfs tarball.
//!
//! **Reading** ([`ImageStore::load`], [`ImageStore::load_oci_layout`]). An archive is hostile
//! input and nothing is ever written to the filesystem by one of its entry names. Each
//! regular file is streamed into the content store, which names it by its digest, and the
//! archive becomes a map from entry name to digest (`entries`); `manifest.json` (docker
//! save, legacy or Docker 25+) or `index.json` (OCI) is then resolved against that map.
//! Names with `..` components or a leading `/`, device and fifo entries, duplicate names and
//! links that leave the archive are refused ([`ArchiveError`]). Symlinks and hard links
//! inside the archive are aliases in the map: skopeo writes `<id>/layer.tar` as a symlink,
//! Docker does for layers two images share. JSON documents are read only up to
//! [`MAX_JSON_SIZE`]. Every image is checked before anything is indexed: config present and
//! valid, one diff_id per layer, each layer unpacking to its diff_id. Then the images are
//! unpacked and indexed. Blobs the archive carried that no loaded image needs, and all of
//! them when the load fails, stay in the store for
//! [`ImageStore::collect`](crate::images::ImageStore::collect) to delete (see
//! `NewBlobs` for why they are not deleted at once); layers already unpacked stay too: they
//! are valid content, named by what they hold.
//!
//! A docker-save image gets a Docker schema2 manifest made for it (an OCI one if a layer is
//! zstd), whose layer descriptors point at the layer files as the archive carried them.
//!
//! **Writing** ([`ImageStore::save`], [`ImageStore::save_oci_layout`]). `save` writes Docker
//! 25's layout, which both `docker load` and skopeo's `docker-archive:` read: an OCI layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) whose layers are the uncompressed tars,
//! plus `manifest.json` and `repositories` pointing into it. `save_oci_layout` writes an OCI
//! layout directory with the blobs as stored. Both name images in `index.json` as Docker
//! does: `io.containerd.image.name` holds the full reference, `org.opencontainers.image.ref.name`
//! the tag.

mod entries;
mod import;
mod load;
mod save;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Map;

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::images::Tee;
use crate::manifest::Descriptor;
use crate::reference::Reference;

pub use import::ImportOptions;
pub use load::LoadedImage;

/// The largest JSON document (manifest.json, index.json, a manifest, a config) read from an
/// archive: they are read whole into memory.
pub const MAX_JSON_SIZE: u64 = 4 << 20;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// The full name of an image in an OCI index (containerd's annotation, which Docker writes).
const IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's name of an image in an index; Docker writes the tag alone.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What is wrong with an archive, for the problems a caller may want to tell apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive entry {name:?}: {problem}")]
    Entry { name: String, problem: EntryProblem },
    #[error("the archive has more than {0} entries")]
    TooManyEntries(usize),
    /// `referrer` (manifest.json, index.json) names a file the archive does not have.
    #[error("{referrer} names {name:?}, which is not a file in the archive")]
    Missing { referrer: String, name: String },
    #[error("{referrer} names {name:?}: {problem}")]
    BadName {
        referrer: String,
        name: String,
        problem: EntryProblem,
    },
    #[error(
        "{what} is {size} bytes, more than the {MAX_JSON_SIZE} bytes allowed for a JSON document"
    )]
    TooLarge { what: String, size: u64 },
    #[error("the archive has neither manifest.json (docker save) nor index.json (OCI layout)")]
    UnknownFormat,
    #[error("archive entry {name:?} holds {actual}, not the blob its name says")]
    MisnamedBlob { name: String, actual: Digest },
    #[error("{what} {name:?} is not a name:tag reference")]
    NotATag { what: String, name: String },
}

/// Why an archive entry (or a name that refers to one) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("absolute name (it would leave the archive)")]
    Absolute,
    #[error("name has a '..' component (it would leave the archive)")]
    DotDot,
    #[error("name is not UTF-8")]
    NotUtf8,
    #[error("name is longer than {0} bytes")]
    TooLong(usize),
    #[error("names the archive's root")]
    Root,
    #[error("link target {0:?} is outside the archive")]
    LinkOutside(String),
    #[error("link has no target")]
    EmptyLink,
    #[error("too many levels of links")]
    LinkLoop,
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    #[error("more than one entry has this name")]
    Duplicate,
}

/// The content store as an archive operation writes to it. What it adds is never deleted
/// here, not even when the operation fails: a pull running at the same time (it holds the
/// writers' lock too) may have found one of these blobs present and built its image on it.
/// Blobs no image needs — all of a failed load's, and the files of an archive that no
/// loaded image uses (`manifest.json`, legacy `json` and `VERSION` files, ...) — are left to
/// [`ImageStore::collect`](crate::images::ImageStore::collect), which holds the lock
/// exclusively and so never races a writer.
struct NewBlobs<'a> {
    content: &'a ContentStore,
}

impl<'a> NewBlobs<'a> {
    fn new(content: &'a ContentStore) -> NewBlobs<'a> {
        NewBlobs { content }
    }

    /// Store what `reader` yields, passing the bytes through `inspect` on their way in
    /// (which must read them to the end); returns the blob's digest and what `inspect` found.
    fn put_inspected<T>(
        &mut self,
        reader: impl Read,
        inspect: impl FnOnce(&mut dyn Read) -> io::Result<T>,
    ) -> Result<(Digest, T)> {
        let mut writer = self.content.writer()?;
        let found = inspect(&mut Tee::new(reader, &mut writer, |_| ()))?;
        let (digest, _) = writer.commit(None)?;
        Ok((digest, found))
    }

    fn put(&mut self, reader: impl Read) -> Result<Digest> {
        let (digest, _) = self.put_inspected(reader, |r| io::copy(r, &mut io::sink()).map(drop))?;
        Ok(digest)
    }

    fn put_bytes(&mut self, bytes: &[u8]) -> Result<Digest> {
        self.content.put_bytes(bytes)
    }

    /// Store blob `digest` from what `open` gives, unless the store has it already.
    fn put_known<R: Read>(
        &mut self,
        digest: &Digest,
        open: impl FnOnce() -> Result<R>,
    ) -> Result<()> {
        if !self.content.has(digest) {
            self.content.put(Some(digest), open()?)?;
        }
        Ok(())
    }
}

/// `blobs/sha256/<hex>`: where an OCI layout keeps a blob.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: Vec::new(),
        annotations: BTreeMap::new(),
        extra: Map::new(),
    }
}

/// Refuse a JSON document bigger than [`MAX_JSON_SIZE`].
fn check_json_size(what: &str, size: u64) -> Result<(), ArchiveError> {
    if size > MAX_JSON_SIZE {
        return Err(ArchiveError::TooLarge {
            what: what.to_string(),
            size,
        });
    }
    Ok(())
}

/// A JSON document from the content store (`what` names it in errors).
fn read_json_blob(content: &ContentStore, digest: &Digest, what: &str) -> Result<Vec<u8>> {
    check_json_size(what, content.size(digest)?)?;
    content.read(digest)
}

/// A JSON document from a file, not following a symlink in its last component.
fn read_json_file(path: &Path) -> Result<Vec<u8>> {
    let what = path.display().to_string();
    let file = open_no_follow(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    check_json_size(&what, bytes.len() as u64)?;
    Ok(bytes)
}

fn open_no_follow(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// `text` (from `what`: manifest.json's RepoTags, an index annotation) as a `name:tag`.
fn tag_reference(text: &str, what: &str) -> Result<Reference> {
    let reference = Reference::parse_normalized(text)
        .with_context(|| format!("{what} {text:?} is not a valid reference"))?;
    if reference.digest.is_some() || reference.tag.is_none() {
        return Err(ArchiveError::NotATag {
            what: what.to_string(),
            name: text.to_string(),
        }
        .into());
    }
    Ok(reference)
}
