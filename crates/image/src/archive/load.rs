//! `docker load`: docker-save tarballs (legacy and Docker 25+), OCI layout tarballs and OCI
//! layout directories into the store.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::entries::ArchiveFiles;
use super::{
    blob_path, descriptor, open_no_follow, read_json_blob, read_json_file, tag_reference,
    ArchiveError, NewBlobs, IMAGE_NAME, INDEX_JSON, MANIFEST_JSON, REF_NAME,
};
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::images::{choose_manifest, layer_jobs, run_parallel, ImageStore};
use crate::layer::{decompress, Compression};
use crate::manifest::{
    from_json, media_type, null_as_default, parse_any, Descriptor, Manifest, Parsed, Platform,
};
use crate::reference::Reference;
use crate::store::ImageRecord;

/// An image an archive held, now in the store: its id and the names it was tagged with
/// (none for an image the archive did not name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

/// One entry of a docker-save `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ManifestItem {
    /// The config's file in the archive.
    pub(super) config: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) repo_tags: Vec<String>,
    /// The layer tars' files, bottom first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) layers: Vec<String>,
}

/// An image whose manifest, config and layer blobs are in the content store, checked but
/// not yet unpacked or indexed.
pub(super) struct Staged {
    pub(super) record: ImageRecord,
    pub(super) manifest: Manifest,
    pub(super) config: ImageConfig,
    pub(super) tags: Vec<Reference>,
}

impl Staged {
    fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }
}

/// Where the blobs of an OCI layout come from.
trait LayoutBlobs {
    /// Make sure blob `digest` is in the content store.
    fn fetch(&self, digest: &Digest, blobs: &mut NewBlobs) -> Result<()>;
}

/// The files of an archive, already in the store: `blobs/sha256/<hex>` must hold `<hex>`.
struct ArchiveBlobs<'a>(&'a ArchiveFiles);

impl LayoutBlobs for ArchiveBlobs<'_> {
    fn fetch(&self, digest: &Digest, _: &mut NewBlobs) -> Result<()> {
        let name = blob_path(digest);
        let found = self.0.resolve(&name, "the OCI index")?;
        if found != digest {
            bail!(ArchiveError::MisnamedBlob {
                name,
                actual: found.clone(),
            });
        }
        Ok(())
    }
}

/// An OCI layout directory: blob file names are made from validated digests only.
struct LayoutDir<'a>(&'a Path);

impl LayoutBlobs for LayoutDir<'_> {
    fn fetch(&self, digest: &Digest, blobs: &mut NewBlobs) -> Result<()> {
        let path = self.0.join(blob_path(digest));
        blobs
            .put_known(digest, || open_no_follow(&path))
            .with_context(|| format!("cannot copy blob {digest} from {}", self.0.display()))
    }
}

impl ImageStore {
    /// `docker load`: load every image of a docker-save tarball (legacy or Docker 25+) or an
    /// OCI layout tarball. Tags come from `manifest.json`'s RepoTags, or from the index's
    /// `io.containerd.image.name` annotations or `org.opencontainers.image.ref.name` ones
    /// that hold a whole reference (a bare tag names no repository: the image loads
    /// untagged). Nothing is indexed unless every image loads.
    pub fn load(&self, reader: impl Read) -> Result<Vec<LoadedImage>> {
        let _lock = self.writer_lock()?;
        let mut blobs = NewBlobs::new(&self.content);
        let files = ArchiveFiles::read(reader, &mut blobs)?;
        let staged = if files.has(MANIFEST_JSON) {
            self.stage_docker_archive(&files, &mut blobs)?
        } else if files.has(INDEX_JSON) {
            let index = files.resolve(INDEX_JSON, "the archive")?;
            let index = read_json_blob(&self.content, index, INDEX_JSON)?;
            self.stage_oci_index(&index, &ArchiveBlobs(&files), &mut blobs, None)?
        } else {
            bail!(ArchiveError::UnknownFormat);
        };
        self.install(staged)
    }

    /// Load every image of the OCI layout directory `dir`. As [`ImageStore::load`]; an
    /// image whose ref name is a bare tag is tagged in `repository`, if given.
    pub fn load_oci_layout(
        &self,
        dir: &Path,
        repository: Option<&Reference>,
    ) -> Result<Vec<LoadedImage>> {
        let _lock = self.writer_lock()?;
        let mut blobs = NewBlobs::new(&self.content);
        let index = read_json_file(&dir.join(INDEX_JSON))?;
        let staged = self.stage_oci_index(&index, &LayoutDir(dir), &mut blobs, repository)?;
        self.install(staged)
    }

    /// Unpack the layers of every staged image, then index them all.
    pub(super) fn install(&self, staged: Vec<Staged>) -> Result<Vec<LoadedImage>> {
        for image in &staged {
            let jobs = layer_jobs(&image.manifest, &image.config)?;
            run_parallel(&jobs, |job| {
                self.unpack_layer(job, self.content.open_blob(&job.desc.digest)?)
            })?;
        }
        staged
            .into_iter()
            .map(|image| {
                self.index.add(image.id(), &image.record, &image.tags)?;
                Ok(LoadedImage {
                    id: image.id().clone(),
                    tags: image.tags,
                })
            })
            .collect()
    }

    fn stage_docker_archive(
        &self,
        files: &ArchiveFiles,
        blobs: &mut NewBlobs,
    ) -> Result<Vec<Staged>> {
        let manifest = files.resolve(MANIFEST_JSON, "the archive")?;
        let bytes = read_json_blob(&self.content, manifest, MANIFEST_JSON)?;
        let items: Vec<ManifestItem> = from_json("manifest.json", &bytes)?;
        items
            .iter()
            .map(|item| self.stage_docker_image(files, item, blobs))
            .collect()
    }

    fn stage_docker_image(
        &self,
        files: &ArchiveFiles,
        item: &ManifestItem,
        blobs: &mut NewBlobs,
    ) -> Result<Staged> {
        let config_digest = files.resolve(&item.config, MANIFEST_JSON)?;
        let config = read_json_blob(&self.content, config_digest, &item.config)?;
        let config = ImageConfig::parse(&config)
            .with_context(|| format!("image config {:?} of the archive", item.config))?;
        let layers = item
            .layers
            .iter()
            .map(|name| files.resolve(name, MANIFEST_JSON).cloned())
            .collect::<Result<Vec<Digest>, _>>()?;
        let tags = item
            .repo_tags
            .iter()
            .map(|t| tag_reference(t, "manifest.json's RepoTags entry"))
            .collect::<Result<_>>()?;
        let (manifest, digest) = self.make_manifest(config_digest, &layers, blobs)?;
        config.validate(&manifest)?;
        Ok(Staged {
            record: ImageRecord {
                manifest: digest,
                index: None,
            },
            manifest,
            config,
            tags,
        })
    }

    /// Store a manifest for an image that came without one (docker save, import): a Docker
    /// schema2 manifest, or an OCI one if a layer is zstd (which schema2 cannot say), whose
    /// layer media types say how each stored layer blob is compressed.
    pub(super) fn make_manifest(
        &self,
        config: &Digest,
        layers: &[Digest],
        blobs: &mut NewBlobs,
    ) -> Result<(Manifest, Digest)> {
        let compressions = layers
            .iter()
            .map(|d| Ok(decompress(self.content.open_blob(d)?)?.0))
            .collect::<Result<Vec<_>>>()?;
        let oci = compressions.contains(&Compression::Zstd);
        let (manifest_type, config_type) = if oci {
            (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
        } else {
            (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
        };
        let layers = layers
            .iter()
            .zip(compressions)
            .map(|(d, c)| Ok(descriptor(layer_type(c, oci), d, self.content.size(d)?)))
            .collect::<Result<_>>()?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest_type.to_string()),
            config: descriptor(config_type, config, self.content.size(config)?),
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let digest = blobs.put_bytes(&serde_json::to_vec(&manifest)?)?;
        Ok((manifest, digest))
    }

    fn stage_oci_index(
        &self,
        index: &[u8],
        source: &dyn LayoutBlobs,
        blobs: &mut NewBlobs,
        repository: Option<&Reference>,
    ) -> Result<Vec<Staged>> {
        let Parsed::Index(index) = parse_any(None, index).context("index.json")? else {
            bail!("index.json is an image manifest, not an OCI image index");
        };
        index
            .value()
            .manifests
            .iter()
            .map(|desc| {
                let tags = oci_tags(desc, repository)?;
                self.stage_oci_image(desc, source, blobs, tags)
            })
            .collect()
    }

    /// The image `desc` (in index.json) names: a manifest, or an index to choose the host's
    /// manifest from.
    fn stage_oci_image(
        &self,
        desc: &Descriptor,
        source: &dyn LayoutBlobs,
        blobs: &mut NewBlobs,
        tags: Vec<Reference>,
    ) -> Result<Staged> {
        let first = self.fetch_document(desc, source, blobs)?;
        let (doc, index) = choose_manifest(first, &Platform::host(), |chosen| {
            self.fetch_document(chosen, source, blobs)
        })?;
        let manifest = doc.value().clone();
        source.fetch(&manifest.config.digest, blobs)?;
        let config = read_json_blob(&self.content, &manifest.config.digest, "image config")?;
        let config = ImageConfig::parse(&config)
            .with_context(|| format!("image config {}", manifest.config.digest))?;
        config.validate(&manifest)?;
        for layer in &manifest.layers {
            source.fetch(&layer.digest, blobs)?;
        }
        Ok(Staged {
            record: ImageRecord {
                manifest: doc.digest().clone(),
                index,
            },
            manifest,
            config,
            tags,
        })
    }

    fn fetch_document(
        &self,
        desc: &Descriptor,
        source: &dyn LayoutBlobs,
        blobs: &mut NewBlobs,
    ) -> Result<Parsed> {
        source.fetch(&desc.digest, blobs)?;
        let what = format!("manifest {}", desc.digest);
        let bytes = read_json_blob(&self.content, &desc.digest, &what)?;
        parse_any(Some(&desc.media_type), bytes).with_context(|| what)
    }
}

/// A layer's media type in a manifest made by berth.
pub(super) fn layer_type(compression: Compression, oci: bool) -> &'static str {
    use media_type::*;
    match (compression, oci) {
        (Compression::None, false) => DOCKER_LAYER,
        (Compression::Gzip, false) => DOCKER_LAYER_GZIP,
        (Compression::None, true) => OCI_LAYER,
        (Compression::Gzip, true) => OCI_LAYER_GZIP,
        (Compression::Zstd, _) => OCI_LAYER_ZSTD,
    }
}

/// The names an OCI index entry gives its image: the full name Docker and containerd write,
/// else a ref name holding a whole reference (`busybox:1`, `host:5000/x:y`), else a bare
/// tag in `repository`.
fn oci_tags(desc: &Descriptor, repository: Option<&Reference>) -> Result<Vec<Reference>> {
    if let Some(name) = desc.annotations.get(IMAGE_NAME) {
        return Ok(vec![tag_reference(name, IMAGE_NAME)?]);
    }
    match (desc.annotations.get(REF_NAME), repository) {
        (Some(name), _) if name.contains(['/', ':']) => Ok(vec![tag_reference(name, REF_NAME)?]),
        (Some(tag), Some(repository)) => Ok(vec![repository
            .with_tag(tag)
            .with_context(|| format!("{REF_NAME} {tag:?} is not a valid tag"))?]),
        _ => Ok(Vec::new()),
    }
}
