//! `docker import`: a plain rootfs tarball as a one-layer image.

use std::io::Read;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use super::load::Staged;
use super::NewBlobs;
use crate::config::{ContainerConfig, History, ImageConfig, RootFs};
use crate::digest::Digest;
use crate::images::ImageStore;
use crate::layer::hash_layer_limited;
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::store::ImageRecord;

/// What `docker import` takes besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image's container config: `--change` instructions, applied by the caller.
    pub config: ContainerConfig,
    /// `--message`, the history comment; Docker's default is `Imported from <source>`,
    /// `-` standing for stdin.
    pub message: Option<String>,
    /// `--platform`; the host's by default.
    pub platform: Option<Platform>,
}

impl ImageStore {
    /// `docker import`: the tarball `reader` yields (a rootfs; gzip, zstd or plain) becomes
    /// the only layer of a new image, stored as it came and unpacked, with a config made
    /// here. Tagged `reference` if given. Returns the image id.
    pub fn import(
        &self,
        reader: impl Read,
        reference: Option<&Reference>,
        options: &ImportOptions,
    ) -> Result<Digest> {
        if let Some(r) = reference.filter(|r| r.digest.is_some() || r.tag.is_none()) {
            bail!("cannot import as {r}: want a name:tag reference");
        }
        let _lock = self.writer_lock()?;
        let mut blobs = NewBlobs::new(&self.content);
        let (layer, applied) = blobs
            .put_inspected(reader, |r| hash_layer_limited(r, self.max_layer_size()))
            .context("cannot read the tarball to import")?;
        let config = import_config(options, applied.diff_id);
        let config_digest = blobs.put_bytes(&serde_json::to_vec(&config)?)?;
        let (manifest, digest) = self.make_manifest(&config_digest, &[layer], &mut blobs)?;
        let staged = Staged {
            record: ImageRecord {
                manifest: digest,
                index: None,
            },
            manifest,
            config,
            tags: reference.into_iter().cloned().collect(),
        };
        self.install(vec![staged])?;
        Ok(config_digest)
    }
}

/// The config Docker gives an imported image: the platform, now, the one diff_id, and the
/// message as the config's and the history entry's comment.
fn import_config(options: &ImportOptions, diff_id: Digest) -> ImageConfig {
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let message = options
        .message
        .clone()
        .unwrap_or_else(|| "Imported from -".to_string());
    ImageConfig {
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        created: Some(created.clone()),
        config: options.config.clone(),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![diff_id],
            extra: Map::new(),
        },
        history: vec![History {
            created: Some(created),
            comment: Some(message.clone()),
            ..History::default()
        }],
        extra: Map::from_iter([("comment".to_string(), Value::String(message))]),
        ..ImageConfig::default()
    }
}
