//! The image store as one thing: blobs, unpacked layers and the index of names, and the two
//! ways images travel — pull from and push to a registry (archives: [`crate::archive`]).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

use crate::config::{chain_ids, ImageConfig};
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::layer::{apply_layer_limited, hash_layer_limited, AppliedLayer, DEFAULT_MAX_LAYER_SIZE};
use crate::manifest::{parse_any, Descriptor, Document, Manifest, Parsed, Platform};
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError, Repository};
use crate::snapshot::LayerStore;
use crate::store::{ImageIndex, ImageRecord};

/// Layers downloaded at once, as Docker's default `max-concurrent-downloads` is 3.
const PARALLEL_LAYERS: usize = 3;

/// `<root>/content` (blobs), `<root>/layers` and `<root>/l` (unpacked layers),
/// `<root>/refs.json` (names).
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub content: ContentStore,
    pub layers: LayerStore,
    pub index: ImageIndex,
    /// The most bytes one layer may unpack to ([`DEFAULT_MAX_LAYER_SIZE`] unless set).
    max_layer_size: u64,
}

/// Where a layer (or the config) is in a pull or push, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Downloading,
    Uploading,
    /// The layer was already there: nothing to transfer.
    Exists,
    Done,
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub blob: Digest,
    pub phase: Phase,
    pub current: u64,
    pub total: u64,
}

impl ImageStore {
    /// Open (creating) the store. Staging dirs of unpacks that never finished are swept,
    /// but only while no pull, load or build holds the writers' lock: theirs are in use.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            root: root.to_path_buf(),
            content: ContentStore::open(&root.join("content"))?,
            layers: LayerStore::open(root)?,
            index: ImageIndex::open(root)?,
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
        };
        if let Some(_alone) = store.try_collector_lock()? {
            store.layers.sweep_staging()?;
        }
        Ok(store)
    }

    /// Refuse to unpack (pull, load, import) a layer bigger than `bytes` uncompressed: such
    /// an unpack fails with a [`LayerTooLarge`](crate::layer::LayerTooLarge) error and
    /// leaves no layer behind.
    pub fn set_max_layer_size(&mut self, bytes: u64) {
        self.max_layer_size = bytes;
    }

    pub fn max_layer_size(&self) -> u64 {
        self.max_layer_size
    }

    /// Pull `reference` for `platform`: manifest (through an index if the registry has one),
    /// config, then the layers in parallel, each streamed from the registry through digest
    /// checks and decompression straight into its layer directory. Returns the image id.
    pub fn pull(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        platform: &Platform,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Digest> {
        // Held until the index records the image: collection must not take what we add.
        let _writing = self.writer_lock()?;
        let repo = repository(reference)?;
        let (manifest_doc, index_digest) =
            self.fetch_manifest(client, &repo, reference, platform)?;
        let manifest = manifest_doc.value();
        let config_bytes = self.fetch_blob(client, &repo, &manifest.config)?;
        let config = ImageConfig::parse(&config_bytes)?;
        let jobs = layer_jobs(manifest, &config)?;
        for job in &jobs {
            progress(job.progress(Phase::Waiting, 0));
        }
        run_parallel(&jobs, |job| self.pull_layer(client, &repo, job, progress))?;
        let image_id = manifest.config.digest.clone();
        let record = ImageRecord {
            manifest: manifest_doc.digest().clone(),
            index: index_digest,
        };
        self.index
            .add(&image_id, &record, std::slice::from_ref(reference))?;
        Ok(image_id)
    }

    /// The image's manifest, stored; through an index (stored too) when the reference names
    /// one.
    fn fetch_manifest(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(Box<Document<Manifest>>, Option<Digest>)> {
        let wanted = reference
            .digest
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| "latest".to_string());
        let get = |wanted: &str| -> Result<Parsed> {
            let resp = client.get_manifest(repo, wanted, &[])?;
            let doc = parse_any(Some(&resp.media_type), resp.bytes)?;
            self.content.put_bytes(doc.bytes())?;
            Ok(doc)
        };
        choose_manifest(get(&wanted)?, platform, |chosen| {
            get(&chosen.digest.to_string())
        })
    }

    /// A small blob (the config), from the store or the registry.
    fn fetch_blob(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        desc: &Descriptor,
    ) -> Result<Vec<u8>> {
        if !self.content.has(&desc.digest) {
            let reader = client.get_blob(repo, &desc.digest)?;
            self.content
                .put(Some(&desc.digest), reader)
                .map_err(|e| registry_error(e, &desc.digest))?;
        }
        self.content.read(&desc.digest)
    }

    fn pull_layer(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        job: &LayerJob,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<()> {
        if self.layers.has(&job.chain_id) && self.content.has(&job.desc.digest) {
            progress(job.progress(Phase::Exists, job.desc.size));
            return Ok(());
        }
        let blob = client.get_blob(repo, &job.desc.digest)?;
        let mut writer = self.content.writer()?;
        let tee = Tee::new(blob, &mut writer, |done| {
            progress(job.progress(Phase::Downloading, done))
        });
        self.unpack_layer(job, tee)
            .map_err(|e| registry_error(e, &job.desc.digest))?;
        writer.commit(Some(&job.desc.digest))?;
        progress(job.progress(Phase::Done, job.desc.size));
        Ok(())
    }

    /// Unpack one layer of an image from `blob` (its bytes as stored: compressed or not) into
    /// the layer store, checking that it is the layer the image config names. The blob is
    /// read to its end: if the layer is unpacked already, it is only hashed.
    pub(crate) fn unpack_layer(&self, job: &LayerJob, blob: impl Read) -> Result<()> {
        let mut blob = blob;
        let mut unpacked = false;
        self.layers
            .create(&job.chain_id, job.parent.as_ref(), |diff| {
                unpacked = true;
                let applied = apply_layer_limited(&mut blob, diff, self.max_layer_size)?;
                job.check(&applied)?;
                Ok(applied)
            })
            .with_context(|| format!("cannot unpack layer {}", job.desc.digest))?;
        if !unpacked {
            let applied = hash_layer_limited(&mut blob, self.max_layer_size)
                .with_context(|| format!("cannot read layer {}", job.desc.digest))?;
            job.check(&applied)?;
        }
        Ok(())
    }

    /// The manifest an image was pulled, loaded or built with.
    pub(crate) fn stored_manifest(&self, image_id: &Digest) -> Result<Box<Document<Manifest>>> {
        let record = self
            .index
            .image(image_id)?
            .with_context(|| format!("image {image_id} has no manifest"))?;
        let bytes = self.content.read(&record.manifest)?;
        match parse_any(None, bytes)? {
            Parsed::Manifest(doc) => Ok(doc),
            Parsed::Index(_) => bail!("{} is not an image manifest", record.manifest),
        }
    }

    /// Push the image named `reference` (a local name) to its registry: every blob the
    /// registry lacks, then the manifest under the reference's tag.
    pub fn push(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Digest> {
        // A collection in another process must not delete blobs mid-upload.
        let _reading = self.writer_lock()?;
        let repo = repository(reference)?;
        let image_id = self.index.resolve(&reference.to_string())?;
        let doc = self.stored_manifest(&image_id)?;
        let blobs: Vec<&Descriptor> = std::iter::once(&doc.value().config)
            .chain(&doc.value().layers)
            .collect();
        run_parallel(&blobs, |desc| self.push_blob(client, &repo, desc, progress))?;
        let tag = reference.tag.as_deref().unwrap_or("latest");
        Ok(client.push_manifest(&repo, tag, doc.media_type(), doc.bytes())?)
    }

    fn push_blob(
        &self,
        client: &RegistryClient,
        repo: &Repository,
        desc: &Descriptor,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<()> {
        let report = |phase, current| {
            progress(Progress {
                blob: desc.digest.clone(),
                phase,
                current,
                total: desc.size,
            })
        };
        let file = self
            .content
            .open_blob(&desc.digest)
            .with_context(|| format!("blob {} of the image is not in the store", desc.digest))?;
        report(Phase::Uploading, 0);
        let uploaded = client.push_blob(repo, &desc.digest, desc.size, file)?;
        report(
            if uploaded { Phase::Done } else { Phase::Exists },
            desc.size,
        );
        Ok(())
    }
}

/// The image manifest `first` is, or else (`first` being an index) the one it lists for
/// `platform`, which `fetch` gets; with the digest of the index it was chosen from.
pub(crate) fn choose_manifest(
    first: Parsed,
    platform: &Platform,
    fetch: impl FnOnce(&Descriptor) -> Result<Parsed>,
) -> Result<(Box<Document<Manifest>>, Option<Digest>)> {
    match first {
        Parsed::Manifest(doc) => Ok((doc, None)),
        Parsed::Index(index) => match fetch(index.value().select(platform)?)? {
            Parsed::Manifest(doc) => Ok((doc, Some(index.digest().clone()))),
            Parsed::Index(_) => bail!("the index {} points at another index", index.digest()),
        },
    }
}

/// The registry repository of a reference: `docker.io/library/busybox` → docker.io,
/// `library/busybox`.
fn repository(reference: &Reference) -> Result<Repository> {
    Ok(Repository::new(&reference.domain, &reference.path)?)
}

/// A digest mismatch found by the blob stream surfaces as an io error deep inside the
/// unpack: give it back its registry meaning.
fn registry_error(e: anyhow::Error, digest: &Digest) -> anyhow::Error {
    let io = e.chain().find_map(|c| c.downcast_ref::<io::Error>());
    match io
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<RegistryError>())
    {
        Some(typed) => anyhow::anyhow!("{typed}").context(format!("layer {digest}")),
        None => e,
    }
}

/// One layer of an image: its blob, the diff id the config promises for it, and where it
/// goes in the layer store.
pub(crate) struct LayerJob<'a> {
    pub(crate) desc: &'a Descriptor,
    pub(crate) diff_id: Digest,
    pub(crate) chain_id: Digest,
    pub(crate) parent: Option<Digest>,
}

/// The layers of `manifest`, bottom first, after checking that `config` fits it.
pub(crate) fn layer_jobs<'a>(
    manifest: &'a Manifest,
    config: &ImageConfig,
) -> Result<Vec<LayerJob<'a>>> {
    config.validate(manifest)?;
    let diff_ids = &config.rootfs.diff_ids;
    let chain = chain_ids(diff_ids);
    Ok(manifest
        .layers
        .iter()
        .zip(diff_ids.iter().zip(&chain))
        .enumerate()
        .map(|(i, (desc, (diff_id, chain_id)))| LayerJob {
            desc,
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            parent: i.checked_sub(1).map(|p| chain[p].clone()),
        })
        .collect())
}

impl LayerJob<'_> {
    /// The layer must be the one the image config names.
    fn check(&self, found: &AppliedLayer) -> Result<()> {
        if found.diff_id != self.diff_id {
            bail!(
                "layer {} unpacks to {} but the image config says {}",
                self.desc.digest,
                found.diff_id,
                self.diff_id
            );
        }
        Ok(())
    }

    fn progress(&self, phase: Phase, current: u64) -> Progress {
        Progress {
            blob: self.desc.digest.clone(),
            phase,
            current,
            total: self.desc.size,
        }
    }
}

/// Run `work` over `items` on up to PARALLEL_LAYERS threads; the first error wins.
pub(crate) fn run_parallel<T: Sync>(
    items: &[T],
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_LAYERS.min(items.len()))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                        work(item)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a layer worker panicked")))
            })
            .collect::<Result<Vec<()>>>()
            .map(drop)
    })
}

/// Copies what is read into `copy` (the blob's file in the store) and reports the count.
pub(crate) struct Tee<'a, R, F> {
    inner: R,
    copy: &'a mut crate::content::Writer,
    done: u64,
    report: F,
}

impl<'a, R, F> Tee<'a, R, F> {
    pub(crate) fn new(inner: R, copy: &'a mut crate::content::Writer, report: F) -> Self {
        Tee {
            inner,
            copy,
            done: 0,
            report,
        }
    }
}

impl<R: Read, F: Fn(u64)> Read for Tee<'_, R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}
