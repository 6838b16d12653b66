//! Layers on disk and the overlay snapshots built from them.
//!
//! `layers/<chain-id>/diff` holds one unpacked layer (an overlay lowerdir) and `meta.json`
//! its diff id, parent and size. Each layer also gets a short name, `l/<id>` → its diff dir,
//! as Docker's overlay2 does, so the lowerdir list of a deep image still fits in the one page
//! that mount(2) accepts as data. `init/` is the init layer every container has above its
//! image's layers. A container's snapshot is `containers/<id>/`: a private upper and work
//! dir, and the mounted `merged` rootfs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layer::AppliedLayer;

/// mount(2) copies at most one page of option data.
const MOUNT_DATA_MAX: usize = 4095;

/// What is known of an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Uncompressed size of the layer's tar.
    pub size: u64,
    /// Bytes of its files, Docker's size of a layer (see [`AppliedLayer::content_size`]);
    /// `None` for layers unpacked before berth counted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
    /// The short name under `l/`.
    pub link: String,
}

/// The unpacked layers under `<root>/layers`, with their short links under `<root>/l`.
pub struct LayerStore {
    root: PathBuf,
}

impl LayerStore {
    /// Open (creating) the store. Leftover staging dirs are swept by the caller, who knows
    /// whether an unpack may be running (`sweep_staging`).
    pub fn open(root: &Path) -> Result<LayerStore> {
        for dir in ["layers", "l", "staging"] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("cannot create {}", root.join(dir).display()))?;
        }
        let store = LayerStore {
            root: root.to_path_buf(),
        };
        store.make_init_layer()?;
        Ok(store)
    }

    /// The init layer, between every container's private upper dir and its image's layers,
    /// as Docker's: empty /etc/hostname, /etc/hosts and /etc/resolv.conf (the engine binds
    /// the container's own over them) and the mount points every container needs. The
    /// same for all containers, so it is one shared read-only lower dir, made once.
    pub fn init_dir(&self) -> PathBuf {
        self.root.join("init")
    }

    /// Make the init layer if it is not there: in staging, then renamed into place.
    fn make_init_layer(&self) -> Result<()> {
        let target = self.init_dir();
        if target.exists() {
            return Ok(());
        }
        let staging = self.private_staging_dir("init");
        let made = (|| -> Result<()> {
            for sub in ["etc", "dev", "proc", "sys"] {
                fs::create_dir_all(staging.join(sub))?;
            }
            for file in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
                fs::write(staging.join(file), "")?;
            }
            sync_tree(&staging)?;
            match fs::rename(&staging, &target) {
                // Another process made it meanwhile: the same empty tree.
                Err(_) if target.exists() => Ok(fs::remove_dir_all(&staging)?),
                renamed => Ok(renamed?),
            }
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        made.with_context(|| format!("cannot make the init layer {}", target.display()))?;
        sync_dir(&self.root)
    }

    /// Remove the staging dirs of unpacks that never finished; only when none is running.
    pub fn sweep_staging(&self) -> Result<()> {
        for entry in fs::read_dir(self.root.join("staging"))? {
            let path = entry?.path();
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layer_dir(chain_id).join("diff")
    }

    pub fn has(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).join("meta.json").exists()
    }

    pub fn meta(&self, chain_id: &Digest) -> Result<LayerMeta> {
        let path = self.layer_dir(chain_id).join("meta.json");
        let text = fs::read(&path).with_context(|| format!("layer {chain_id} is not unpacked"))?;
        serde_json::from_slice(&text).with_context(|| format!("corrupt {}", path.display()))
    }

    /// Unpack a layer: `unpack` fills a staging diff dir and returns what it applied; only then is the layer renamed into place, so a crash or an error never leaves
    /// a half-unpacked layer where a snapshot could use it.
    pub fn create(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        unpack: impl FnOnce(&Path) -> Result<AppliedLayer>,
    ) -> Result<LayerMeta> {
        if self.has(chain_id) {
            let meta = self.meta(chain_id)?;
            // A crash between the rename and the link would otherwise leave it unmountable.
            self.make_link(&meta)?;
            return Ok(meta);
        }
        let staging = self.private_staging_dir(chain_id.hex());
        fs::create_dir_all(staging.join("diff"))?;
        let result = self.fill_staging(&staging, chain_id, parent, unpack);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    /// A staging dir no other unpack (in this process or another) uses.
    fn private_staging_dir(&self, name: &str) -> PathBuf {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("staging")
            .join(format!("{name}-{}-{seq}", std::process::id()))
    }

    fn fill_staging(
        &self,
        staging: &Path,
        chain_id: &Digest,
        parent: Option<&Digest>,
        unpack: impl FnOnce(&Path) -> Result<AppliedLayer>,
    ) -> Result<LayerMeta> {
        let applied = unpack(&staging.join("diff"))?;
        let meta = LayerMeta {
            chain_id: chain_id.clone(),
            diff_id: applied.diff_id,
            parent: parent.cloned(),
            size: applied.size,
            content_size: applied.content_size,
            link: short_link_name(chain_id),
        };
        fs::write(staging.join("meta.json"), serde_json::to_vec(&meta)?)?;
        sync_tree(staging)?;
        // The link first (dangling until the rename): a visible layer always has its link.
        self.make_link(&meta)?;
        let target = self.layer_dir(chain_id);
        match fs::rename(staging, &target) {
            Ok(()) => {}
            // Another unpack of the same layer won the race: its copy is as good as ours.
            Err(_) if target.join("meta.json").exists() => {
                let _ = fs::remove_dir_all(staging);
                return self.meta(chain_id);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot move layer {chain_id} into place"))
            }
        }
        sync_dir(&self.root.join("layers"))?;
        Ok(meta)
    }

    fn make_link(&self, meta: &LayerMeta) -> Result<()> {
        let link = self.root.join("l").join(&meta.link);
        let target = Path::new("../layers")
            .join(meta.chain_id.hex())
            .join("diff");
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => sync_dir(&self.root.join("l")),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", link.display())),
        }
    }

    /// The short path of a layer's diff dir, for overlay's lowerdir list.
    pub fn short_path(&self, chain_id: &Digest) -> Result<PathBuf> {
        Ok(self.root.join("l").join(self.meta(chain_id)?.link))
    }

    /// Remove a layer and its short link. The layer dir is first renamed into staging in one
    /// step, so a crash never leaves a half-deleted layer that still looks unpacked (the
    /// next open sweeps what is left there).
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        if let Ok(meta) = self.meta(chain_id) {
            let _ = fs::remove_file(self.root.join("l").join(meta.link));
        }
        let trash = self.private_staging_dir(&format!("removed-{}", chain_id.hex()));
        match fs::rename(self.layer_dir(chain_id), &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot remove layer {chain_id}")),
        }
        sync_dir(&self.root.join("layers"))?;
        fs::remove_dir_all(&trash).with_context(|| format!("cannot remove {}", trash.display()))
    }

    /// The layer a path in an overlay's lowerdir list is (its short link `<root>/l/<name>`
    /// or its diff dir), if it is one of this store's.
    pub fn layer_of_lower(&self, lower: &Path) -> Option<Digest> {
        let diff = match lower.strip_prefix(self.root.join("l")) {
            Ok(name) if name.components().count() == 1 => {
                self.root.join("l").join(fs::read_link(lower).ok()?)
            }
            _ => lower.to_path_buf(),
        };
        let layers = self.root.join("layers");
        let rel = diff.strip_prefix(&layers).ok().or_else(|| {
            // `l/<name>` links are relative: `../layers/<hex>/diff`.
            diff.strip_prefix(self.root.join("l").join("..").join("layers"))
                .ok()
        })?;
        let mut parts = rel.components();
        let hex = parts.next()?.as_os_str().to_str()?;
        (parts.as_path() == Path::new("diff"))
            .then(|| format!("sha256:{hex}").parse().ok())
            .flatten()
    }

    /// Every unpacked layer.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut all = vec![];
        for entry in fs::read_dir(self.root.join("layers"))? {
            let name = entry?.file_name();
            if let Ok(d) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>() {
                all.push(d);
            }
        }
        Ok(all)
    }
}

/// 26 characters derived from the chain id: short, stable and as unique as the digest's
/// first 130 bits.
fn short_link_name(chain_id: &Digest) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = hex::decode(chain_id.hex()).unwrap_or_default();
    let mut bits = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1));
    (0..26)
        .map(|_| {
            let v = (0..5).fold(0u8, |acc, _| (acc << 1) | bits.next().unwrap_or(0));
            ALPHABET[v as usize] as char
        })
        .collect()
}

/// Make a rename or a new entry in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// fsync every file and dir of a freshly unpacked layer before it becomes visible.
fn sync_tree(dir: &Path) -> Result<()> {
    // syncfs flushes the whole filesystem in one call, cheaper than a walk of fsyncs.
    let f = fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    nix::unistd::syncfs(&f).context("syncfs")
}

/// A container's mounted rootfs and the dirs under it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub merged: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Snapshot {
    pub fn at(dir: &Path) -> Snapshot {
        Snapshot {
            merged: dir.join("merged"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// Make the upper and work dirs in `dir` and mount the overlay of the init layer over
    /// `chain` (the image's chain ids, bottom layer first) at `dir/merged`.
    pub fn mount(layers: &LayerStore, dir: &Path, chain: &[Digest]) -> Result<Snapshot> {
        let snap = Snapshot::at(dir);
        for d in [&snap.merged, &snap.upper, &snap.work] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let mut lowers = vec![layers.init_dir()];
        for chain_id in chain.iter().rev() {
            lowers.push(layers.short_path(chain_id)?);
        }
        let data = overlay_data(&lowers, &snap.upper, &snap.work)?;
        mount(
            Some("overlay"),
            &snap.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .with_context(|| format!("cannot mount the overlay at {}", snap.merged.display()))?;
        Ok(snap)
    }

    /// Unmount the rootfs; a snapshot that is not mounted is fine.
    pub fn unmount(dir: &Path) -> Result<()> {
        let merged = Snapshot::at(dir).merged;
        match umount2(&merged, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot unmount {}", merged.display())),
        }
    }

    /// Unmount the rootfs (a snapshot that is not mounted is fine) and remove the dirs.
    pub fn remove(dir: &Path) -> Result<()> {
        Snapshot::unmount(dir)?;
        let snap = Snapshot::at(dir);
        for d in [&snap.merged, &snap.upper, &snap.work] {
            match fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", d.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn overlay_data(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let mut lowerdir = String::new();
    for (i, l) in lowers.iter().enumerate() {
        let text = l.to_str().context("layer path is not UTF-8")?;
        if text.contains([',', ':']) {
            bail!("layer path {text:?} holds a character overlay options cannot carry");
        }
        if i > 0 {
            lowerdir.push(':');
        }
        lowerdir.push_str(text);
    }
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},index=off",
        upper.display(),
        work.display()
    );
    if data.len() > MOUNT_DATA_MAX {
        bail!(
            "the image has too many layers ({}) for one overlay mount",
            lowers.len() - 1
        );
    }
    Ok(data)
}
