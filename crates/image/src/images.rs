//! The image store as one thing: blobs, unpacked layers and the index of names, and the two
//! ways images travel — pull from and push to a registry.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

use crate::config::{chain_ids, ImageConfig};
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::layer::apply_layer;
use crate::manifest::{parse_any, Descriptor, Manifest, Parsed, Platform};
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError, Repository};
use crate::snapshot::LayerStore;
use crate::store::{ImageIndex, ImageRecord};

/// Layers downloaded at once, as Docker's default `max-concurrent-downloads` is 3.
const PARALLEL_LAYERS: usize = 3;

/// `<root>/content` (blobs), `<root>/layers` and `<root>/l` (unpacked layers),
/// `<root>/refs.json` (names).
pub struct ImageStore {
    pub content: ContentStore,
    pub layers: LayerStore,
    pub index: ImageIndex,
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
    pub fn open(root: &Path) -> Result<ImageStore> {
        Ok(ImageStore {
            content: ContentStore::open(&root.join("content"))?,
            layers: LayerStore::open(root)?,
            index: ImageIndex::open(root)?,
        })
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
        let repo = repository(reference)?;
        let (manifest_doc, index_digest) =
            self.fetch_manifest(client, &repo, reference, platform)?;
        let manifest = manifest_doc.value();
        let config_bytes = self.fetch_blob(client, &repo, &manifest.config)?;
        let config = ImageConfig::parse(&config_bytes)?;
        config.validate(manifest)?;
        let chain = chain_ids(&config.rootfs.diff_ids);
        let jobs: Vec<LayerJob> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, desc)| LayerJob {
                desc,
                diff_id: &config.rootfs.diff_ids[i],
                chain_id: &chain[i],
                parent: i.checked_sub(1).map(|p| &chain[p]),
            })
            .collect();
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
    ) -> Result<(Box<crate::manifest::Document<Manifest>>, Option<Digest>)> {
        let wanted = reference
            .digest
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| "latest".to_string());
        let resp = client.get_manifest(repo, &wanted, &[])?;
        match parse_any(Some(&resp.media_type), resp.bytes)? {
            Parsed::Manifest(doc) => {
                self.content.put_bytes(doc.bytes())?;
                Ok((doc, None))
            }
            Parsed::Index(index) => {
                self.content.put_bytes(index.bytes())?;
                let chosen = index.value().select(platform)?;
                let resp = client.get_manifest(repo, &chosen.digest.to_string(), &[])?;
                match parse_any(Some(&resp.media_type), resp.bytes)? {
                    Parsed::Manifest(doc) => {
                        self.content.put_bytes(doc.bytes())?;
                        Ok((doc, Some(index.digest().clone())))
                    }
                    Parsed::Index(_) => {
                        bail!("the index {} points at another index", index.digest())
                    }
                }
            }
        }
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
        if self.layers.has(job.chain_id) && self.content.has(&job.desc.digest) {
            progress(job.progress(Phase::Exists, job.desc.size));
            return Ok(());
        }
        let blob = client.get_blob(repo, &job.desc.digest)?;
        let mut writer = self.content.writer()?;
        let mut tee = Tee {
            inner: blob,
            copy: &mut writer,
            done: 0,
            report: |done| progress(job.progress(Phase::Downloading, done)),
        };
        self.layers
            .create(job.chain_id, job.parent, |diff| {
                let applied = apply_layer(&mut tee, diff)?;
                // The tar may end before the compressed stream does: read on to the end,
                // where the blob's digest is checked.
                io::copy(&mut tee, &mut io::sink())?;
                if &applied.diff_id != job.diff_id {
                    bail!(
                        "layer {} unpacks to {} but the image config says {}",
                        job.desc.digest,
                        applied.diff_id,
                        job.diff_id
                    );
                }
                Ok((applied.diff_id, applied.size))
            })
            .map_err(|e| registry_error(e, &job.desc.digest))?;
        writer.commit(Some(&job.desc.digest))?;
        progress(job.progress(Phase::Done, job.desc.size));
        Ok(())
    }

    /// Push the image named `reference` (a local name) to its registry: every blob the
    /// registry lacks, then the manifest under the reference's tag.
    pub fn push(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Digest> {
        let repo = repository(reference)?;
        let image_id = self.index.resolve(&reference.to_string())?;
        let record = self
            .index
            .image(&image_id)?
            .with_context(|| format!("image {image_id} has no manifest"))?;
        let bytes = self.content.read(&record.manifest)?;
        let Parsed::Manifest(doc) = parse_any(None, bytes.clone())? else {
            bail!("{} is not an image manifest", record.manifest);
        };
        let blobs: Vec<&Descriptor> = std::iter::once(&doc.value().config)
            .chain(&doc.value().layers)
            .collect();
        run_parallel(&blobs, |desc| self.push_blob(client, &repo, desc, progress))?;
        let tag = reference.tag.as_deref().unwrap_or("latest");
        Ok(client.push_manifest(&repo, tag, doc.media_type(), &bytes)?)
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

struct LayerJob<'a> {
    desc: &'a Descriptor,
    diff_id: &'a Digest,
    chain_id: &'a Digest,
    parent: Option<&'a Digest>,
}

impl LayerJob<'_> {
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
fn run_parallel<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
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
struct Tee<'a, R, F> {
    inner: R,
    copy: &'a mut crate::content::Writer,
    done: u64,
    report: F,
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
