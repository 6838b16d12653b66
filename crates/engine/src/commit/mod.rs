//! `docker commit`: a container's rw layer as one new layer on top of its image.
//!
//! Only the overlay upper dir becomes the layer (`write_layer_diff`: overlay whiteouts back
//! into `.wh.` entries), stored uncompressed in the content store (its digest is then its
//! diff_id) and unpacked into the layer store at once, so the new image runs without a
//! pull. The config is the parent's with the container's config (plus `--change`
//! instructions and the request's config, merged as Docker merges them), a history entry,
//! the new diff_id and Docker's `container`/`container_config` fields; the manifest lists
//! the parent's layers plus the new one. All of it under the image store's writers' lock,
//! so a concurrent `image prune` cannot collect blobs before the index names the image.

pub mod instructions;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use berth_image::config::{chain_ids, ContainerConfig, History, ImageConfig};
use berth_image::digest::Digest;
use berth_image::images::ImageStore;
use berth_image::layer::{apply_layer, write_layer_diff};
use berth_image::manifest::{media_type, parse_any, Descriptor, Manifest, Parsed};
use berth_image::reference::Reference;
use berth_image::store::ImageRecord;
use serde_json::{Map, Value};

use crate::container::Status;
use crate::error::{Error, Result};
use crate::Engine;

/// `POST /commit`'s parameters.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    /// Pause a running container while its layer is read (default true).
    pub pause: bool,
    /// `changes=` values: Dockerfile instructions.
    pub changes: Vec<String>,
    /// The request body: a container config to start from instead of the container's.
    pub config: Option<bollard_stubs::models::ContainerConfig>,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            repo: String::new(),
            tag: String::new(),
            comment: String::new(),
            author: String::new(),
            pause: true,
            changes: Vec::new(),
            config: None,
        }
    }
}

/// What the new image is made of, besides the rw layer.
#[derive(Debug, Clone)]
pub struct ImageCommit {
    /// The image the container runs (its id).
    pub parent: Digest,
    /// The new image's `config`.
    pub config: ContainerConfig,
    pub container_id: String,
    /// The container's config as the API shows it (Docker's `container_config`).
    pub container_config: Value,
    pub comment: String,
    pub author: String,
    /// The history entry's `created_by`: the container's command.
    pub created_by: String,
    /// `repo:tag` to point at the image; untagged when `None`.
    pub reference: Option<Reference>,
}

/// Makes the image: layer from `upper`, config, manifest, index entry. Returns its id.
pub fn commit_image(
    images: &ImageStore,
    upper: &Path,
    commit: &ImageCommit,
) -> anyhow::Result<Digest> {
    let _writing = images.writer_lock()?;
    let parent_config =
        ImageConfig::parse(&images.content.read(&commit.parent).with_context(|| {
            format!("the config of image {} is not in the store", commit.parent)
        })?)?;
    let parent_manifest = stored_manifest(images, &commit.parent)?;

    let mut writer = images.content.writer()?;
    let diff_id = write_layer_diff(upper, &mut writer)
        .with_context(|| format!("cannot archive the container's layer {}", upper.display()))?;
    let (blob, size) = writer.commit(Some(&diff_id))?;

    let mut diff_ids = parent_config.rootfs.diff_ids.clone();
    diff_ids.push(diff_id.clone());
    let chain = chain_ids(&diff_ids);
    let parent_chain = chain.len().checked_sub(2).map(|i| chain[i].clone());
    images
        .layers
        .create(
            chain.last().expect("one layer at least"),
            parent_chain.as_ref(),
            |dir| Ok(apply_layer(images.content.open_blob(&blob)?, dir)?),
        )
        .context("cannot unpack the new layer")?;

    let config = child_config(parent_config, commit, diff_ids);
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = images.content.put_bytes(&config_bytes)?;
    let manifest = child_manifest(
        parent_manifest,
        &config_digest,
        config_bytes.len(),
        &blob,
        size,
    );
    let manifest_digest = images.content.put_bytes(&serde_json::to_vec(&manifest)?)?;
    let record = ImageRecord {
        manifest: manifest_digest,
        index: None,
    };
    let refs: Vec<Reference> = commit.reference.iter().cloned().collect();
    images.index.add(&config_digest, &record, &refs)?;
    Ok(config_digest)
}

fn stored_manifest(images: &ImageStore, image: &Digest) -> anyhow::Result<Manifest> {
    let record = images
        .index
        .image(image)?
        .with_context(|| format!("image {image} has no manifest in the store"))?;
    match parse_any(None, images.content.read(&record.manifest)?)? {
        Parsed::Manifest(doc) => Ok(doc.into_value()),
        Parsed::Index(_) => bail!("{} is not an image manifest", record.manifest),
    }
}

fn child_config(parent: ImageConfig, commit: &ImageCommit, diff_ids: Vec<Digest>) -> ImageConfig {
    let created = crate::time::now_rfc3339();
    let mut config = parent;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    config.created = Some(created.clone());
    config.author = non_empty(&commit.author);
    config.config = commit.config.clone();
    config.rootfs.diff_ids = diff_ids;
    config.history.push(History {
        created: Some(created),
        created_by: non_empty(&commit.created_by),
        author: non_empty(&commit.author),
        comment: non_empty(&commit.comment),
        ..History::default()
    });
    let extra = &mut config.extra;
    extra.insert(
        "container".into(),
        Value::String(commit.container_id.clone()),
    );
    extra.insert("container_config".into(), commit.container_config.clone());
    match non_empty(&commit.comment) {
        Some(c) => extra.insert("comment".into(), Value::String(c)),
        None => extra.remove("comment"),
    };
    config
}

/// The parent's manifest with the new config and one more layer (uncompressed), in the
/// parent's flavour (Docker schema2 or OCI).
fn child_manifest(
    parent: Manifest,
    config: &Digest,
    config_size: usize,
    layer: &Digest,
    layer_size: u64,
) -> Manifest {
    let oci = parent.media_type.as_deref() == Some(media_type::OCI_MANIFEST)
        || (parent.media_type.is_none() && parent.config.media_type == media_type::OCI_CONFIG);
    let (manifest_type, config_type, layer_type) = if oci {
        (
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER,
        )
    } else {
        (
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER,
        )
    };
    let descriptor = |media: &str, digest: &Digest, size: u64| Descriptor {
        media_type: media.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: Vec::new(),
        annotations: BTreeMap::new(),
        extra: Map::new(),
    };
    let mut layers = parent.layers;
    layers.push(descriptor(layer_type, layer, layer_size));
    Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.to_string()),
        config: descriptor(config_type, config, config_size as u64),
        layers,
        annotations: BTreeMap::new(),
        extra: Map::new(),
    }
}

/// Docker's `merge(userConf, imageConf)`: what the user's config leaves unset comes from the
/// container's.
pub fn merge(user: &mut ContainerConfig, base: &ContainerConfig) {
    if user.user.is_empty() {
        user.user = base.user.clone();
    }
    user.exposed_ports
        .extend(base.exposed_ports.iter().cloned());
    for env in &base.env {
        let key = env.split('=').next().unwrap_or(env);
        if !user.env.iter().any(|e| e.split('=').next() == Some(key)) {
            user.env.push(env.clone());
        }
    }
    for (k, v) in &base.labels {
        user.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if user.entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if user.cmd.as_ref().is_none_or(Vec::is_empty) {
            user.cmd = base.cmd.clone();
        }
        if user.entrypoint.is_none() {
            user.entrypoint = base.entrypoint.clone();
        }
    }
    if user.healthcheck.is_none() {
        user.healthcheck = base.healthcheck.clone();
    }
    if user.working_dir.is_empty() {
        user.working_dir = base.working_dir.clone();
    }
    user.volumes.extend(base.volumes.iter().cloned());
    if user.stop_signal.is_empty() {
        user.stop_signal = base.stop_signal.clone();
    }
}

/// An API container config as the image config's type (unmodelled fields kept in `extra`).
fn image_side(
    config: &bollard_stubs::models::ContainerConfig,
) -> anyhow::Result<(ContainerConfig, Value)> {
    let value = serde_json::to_value(config)?;
    let parsed: ContainerConfig =
        serde_json::from_value(value.clone()).context("cannot read the container's config")?;
    Ok((parsed, value))
}

/// `repo` and `tag` of `POST /commit` as a reference, as Docker's `RepoTagReference`: no
/// repo is an untagged image (whatever `tag` says), a tag in `repo` is kept unless `tag`
/// replaces it, `latest` by default.
fn commit_reference(repo: &str, tag: &str) -> Result<Option<Reference>> {
    if repo.is_empty() {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| Error::InvalidParameter(e.to_string());
    let named = Reference::parse_normalized(repo).map_err(|e| bad(&e))?;
    if named.digest.is_some() {
        return Err(Error::InvalidParameter(
            "cannot commit to a digest reference".into(),
        ));
    }
    if tag.is_empty() {
        return Ok(Some(named));
    }
    Ok(Some(named.with_tag(tag).map_err(|e| bad(&e))?))
}

impl Engine {
    /// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: returns the
    /// new image's id.
    pub fn commit_container(&self, name_or_id: &str, opts: &CommitOptions) -> Result<Digest> {
        let handle = self.containers.get(name_or_id)?;
        let reference = commit_reference(&opts.repo, &opts.tag)?;
        let record = handle.get();
        let (container_config, container_value) = image_side(&record.config)?;
        let mut config = match &opts.config {
            Some(c) => image_side(c)?.0,
            None => container_config.clone(),
        };
        instructions::apply_changes(&mut config, &opts.changes)?;
        merge(&mut config, &container_config);
        let parent: Digest = record
            .image_id
            .parse()
            .with_context(|| format!("container {} has a bad image id", record.id))?;
        let commit = ImageCommit {
            parent,
            config,
            container_id: record.id.clone(),
            container_config: container_value,
            comment: opts.comment.clone(),
            author: opts.author.clone(),
            created_by: container_config.cmd.clone().unwrap_or_default().join(" "),
            reference: reference.clone(),
        };
        let pause = opts.pause && record.state.status == Status::Running;
        // A container that stopped since is committed as it is, unpaused.
        let paused = match pause.then(|| self.pause_container(&record.id)) {
            Some(Ok(())) => true,
            Some(Err(Error::Conflict(_))) | None => false,
            Some(Err(e)) => return Err(e),
        };
        let made = commit_image(&self.images, &handle.paths.upper(), &commit);
        if paused {
            // The commit's own result matters more than a failed unpause; report both.
            if let Err(e) = self.unpause_container(&record.id) {
                eprintln!(
                    "berthd: cannot unpause {} after commit: {}",
                    record.id,
                    e.message()
                );
            }
        }
        let image_id = made?;
        let image_ref = reference
            .as_ref()
            .map(Reference::familiar)
            .unwrap_or_default();
        self.events.emit(
            "container",
            "commit",
            &record.id,
            &[
                ("name", &record.name),
                ("image", &record.image),
                ("comment", &opts.comment),
                ("imageID", &image_id.to_string()),
                ("imageRef", &image_ref),
            ],
        );
        if let Some(r) = &reference {
            self.events.emit(
                "image",
                "tag",
                &image_id.to_string(),
                &[("name", &r.familiar())],
            );
        }
        Ok(image_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_repo_tag_rules() {
        let r = |repo: &str, tag: &str| commit_reference(repo, tag).unwrap().map(|r| r.familiar());
        assert_eq!(r("", "x"), None);
        assert_eq!(r("img", ""), Some("img:latest".into()));
        assert_eq!(r("img", "v1"), Some("img:v1".into()));
        assert_eq!(r("img:v2", ""), Some("img:v2".into()));
        assert_eq!(
            r("reg.example:5000/a/b", "t"),
            Some("reg.example:5000/a/b:t".into())
        );
        assert!(commit_reference("Upper", "").is_err());
    }
}
