//! Images as the Docker Engine API shows them: list, inspect, history, tag, remove, prune,
//! pull, push, import, save and load, on top of `berth_image::images::ImageStore`.
//!
//! The work is done by free functions taking the store and, where containers matter, what
//! the containers use ([`ContainerUse`]), so they can be tested on a bare store; the
//! `impl Engine` block at the end wraps them with the engine's containers and events. All
//! of it is blocking: berthd calls it on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use berth_image::archive::{ImportOptions, LoadedImage};
use berth_image::config::{chain_ids, ContainerConfig, ImageConfig};
use berth_image::digest::Digest;
use berth_image::gc::{is_id_prefix, is_single_reference, RemoveError, Removed};
use berth_image::images::{ImageStore, Phase, Progress};
use berth_image::manifest::{parse_any, Parsed, Platform};
use berth_image::reference::{Reference, ReferenceError};
use berth_image::registry::{ClientOptions, Credentials, RegistryClient, RegistryError};
use berth_image::store::ImageError;
use bollard_stubs::models::{
    DriverData, HistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImageInspectMetadata,
    ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::Engine;

/// A container as image removal sees it: the image it was made from, and whether it has a
/// process (running, paused, restarting).
#[derive(Debug, Clone)]
pub struct ContainerUse {
    pub id: String,
    /// `sha256:<hex>`.
    pub image_id: String,
    pub running: bool,
}

/// Docker's 12-hex-digit short form of an id, with or without `sha256:`.
fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// What a berth-image error means to the API: the typed errors keep Docker's messages and
/// get their status; everything else is a 500 with its context.
pub fn image_error(e: anyhow::Error) -> Error {
    let e = match e.downcast::<Error>() {
        Ok(engine) => return engine,
        Err(e) => e,
    };
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<ImageError>() {
            return match err {
                ImageError::NotFound(_) => Error::NotFound(err.to_string()),
                ImageError::Ambiguous(_) => Error::InvalidParameter(err.to_string()),
            };
        }
        if let Some(err) = cause.downcast_ref::<ReferenceError>() {
            return Error::InvalidParameter(err.to_string());
        }
        if let Some(err) = cause.downcast_ref::<RemoveError>() {
            return Error::Conflict(err.to_string());
        }
    }
    Error::Internal(e)
}

/// A reference as the API takes it (`busybox`, `host:5000/x:1`); 400 when it is not one.
fn parse_reference(name: &str) -> Result<Reference> {
    Reference::parse_normalized(name).map_err(|e| Error::InvalidParameter(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// What an image is, for list, inspect and history
// ---------------------------------------------------------------------------------------------

/// One image with what the API reports about it.
struct ImageView {
    id: Digest,
    config: ImageConfig,
    refs: Vec<Reference>,
    /// Uncompressed size of all its layers.
    size: i64,
}

impl ImageView {
    fn load(store: &ImageStore, id: &Digest) -> Result<ImageView> {
        let config = read_config(store, id)?;
        let size = chain_ids(&config.rootfs.diff_ids)
            .iter()
            .map(|c| layer_size(store, c))
            .sum();
        Ok(ImageView {
            id: id.clone(),
            refs: store.index.references_of(id).map_err(image_error)?,
            config,
            size,
        })
    }

    /// `busybox:latest`, ... (Docker's `RepoTags`).
    fn repo_tags(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter(|r| r.digest.is_none())
            .map(Reference::familiar)
            .collect()
    }

    /// `busybox@sha256:...` (Docker's `RepoDigests`).
    fn repo_digests(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter(|r| r.digest.is_some())
            .map(|r| {
                format!(
                    "{}@{}",
                    r.familiar_name(),
                    r.digest.as_ref().expect("filtered")
                )
            })
            .collect()
    }

    fn created(&self) -> i64 {
        unix_secs(self.config.created.as_deref())
    }

    fn dangling(&self) -> bool {
        self.refs.is_empty()
    }

    fn labels(&self) -> HashMap<String, String> {
        self.config.config.labels.clone().into_iter().collect()
    }
}

fn read_config(store: &ImageStore, id: &Digest) -> Result<ImageConfig> {
    let bytes = store.content.read(id).map_err(image_error)?;
    ImageConfig::parse(&bytes)
        .with_context(|| format!("image config {id}"))
        .map_err(Error::Internal)
}

/// An unpacked layer's size (0 if it is not unpacked: nothing on disk).
fn layer_size(store: &ImageStore, chain_id: &Digest) -> i64 {
    store
        .layers
        .meta(chain_id)
        .map(|m| i64::try_from(m.content_size.unwrap_or(m.size)).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds of an RFC 3339 time (0 when absent or unreadable, as Docker's zero time).
fn unix_secs(time: Option<&str>) -> i64 {
    time.and_then(crate::time::parse_timestamp)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Every indexed image that can be read; a broken one is reported and skipped.
fn all_images(store: &ImageStore) -> Result<Vec<ImageView>> {
    let mut views = Vec::new();
    for id in store.index.images().map_err(image_error)? {
        match ImageView::load(store, &id) {
            Ok(view) => views.push(view),
            Err(e) => eprintln!("berthd: skipping image {id}: {}", e.message()),
        }
    }
    Ok(views)
}

// ---------------------------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------------------------

/// The filters `GET /images/json` and `POST /images/prune` take, checked.
struct ImageFilter {
    dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<String>,
    before: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
}

impl ImageFilter {
    fn parse(
        store: &ImageStore,
        filters: &HashMap<String, Vec<String>>,
        allowed: &[&str],
    ) -> Result<ImageFilter> {
        if let Some(bad) = filters.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Error::InvalidParameter(format!("invalid filter '{bad}'")));
        }
        let get = |k: &str| filters.get(k).cloned().unwrap_or_default();
        let dangling = match get("dangling").as_slice() {
            [] => None,
            [v] if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
            [v] if v.eq_ignore_ascii_case("false") || v == "0" => Some(false),
            other => {
                return Err(Error::InvalidParameter(format!(
                    "invalid filter 'dangling={}'",
                    other.join(",")
                )))
            }
        };
        let created_of = |key: &str| -> Result<Option<i64>> {
            match get(key).first() {
                None => Ok(None),
                Some(name) => {
                    let id = store.index.resolve(name).map_err(image_error)?;
                    Ok(Some(ImageView::load(store, &id)?.created()))
                }
            }
        };
        let until = match get("until").first() {
            None => None,
            Some(t) => Some(unix_secs(Some(t.as_str())).max(1))
                .filter(|_| crate::time::parse_timestamp(t).is_some()),
        };
        if filters.contains_key("until") && until.is_none() {
            return Err(Error::InvalidParameter(format!(
                "invalid filter 'until={}'",
                get("until").join(",")
            )));
        }
        Ok(ImageFilter {
            dangling,
            references: get("reference"),
            labels: get("label"),
            before: created_of("before")?,
            since: created_of("since")?,
            until,
        })
    }

    fn matches(&self, view: &ImageView) -> bool {
        let created = view.created();
        self.dangling.is_none_or(|d| d == view.dangling())
            && self.before.is_none_or(|b| created < b)
            && self.since.is_none_or(|s| created > s)
            && self.until.is_none_or(|u| created < u)
            && self.labels.iter().all(|l| label_matches(&view.labels(), l))
            && (self.references.is_empty()
                || self
                    .references
                    .iter()
                    .any(|p| view.refs.iter().any(|r| reference_matches(p, r))))
    }
}

/// `label=key` or `label=key=value`.
fn label_matches(labels: &HashMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// Docker's `reference` filter: a glob against the familiar reference or its name.
fn reference_matches(pattern: &str, reference: &Reference) -> bool {
    glob(pattern, &reference.familiar()) || glob(pattern, &reference.familiar_name())
}

/// Go's `path.Match` for `*` and `?` (neither crosses a `/`).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|&c| c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(&p, &t)
}

/// `GET /images/json`: newest first. Every image is a top-level one (berth keeps no
/// intermediate parents), so `all` changes nothing.
pub fn list(
    store: &ImageStore,
    _all: bool,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<ImageSummary>> {
    let allowed = ["dangling", "reference", "label", "before", "since", "until"];
    let filter = ImageFilter::parse(store, filters, &allowed)?;
    let mut views: Vec<ImageView> = all_images(store)?
        .into_iter()
        .filter(|v| filter.matches(v))
        .collect();
    views.sort_by_key(|v| std::cmp::Reverse(v.created()));
    Ok(views.iter().map(summary).collect())
}

fn summary(view: &ImageView) -> ImageSummary {
    let (mut tags, mut digests) = (view.repo_tags(), view.repo_digests());
    if tags.is_empty() && digests.is_empty() {
        // Docker's placeholders for an image without a name.
        tags.push("<none>:<none>".to_string());
        digests.push("<none>@<none>".to_string());
    }
    ImageSummary {
        id: view.id.to_string(),
        parent_id: String::new(),
        repo_tags: tags,
        repo_digests: digests,
        created: view.created(),
        size: view.size,
        shared_size: -1,
        virtual_size: Some(view.size),
        labels: view.labels(),
        containers: -1,
        manifests: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Inspect and history
// ---------------------------------------------------------------------------------------------

/// `GET /images/{name}/json`: bollard's `ImageInspect` (API 1.47, which dropped these)
/// plus the image's container config under `Config` in Docker's shape and
/// `ContainerConfig`, which docker-compose 1.29 reads.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    #[serde(flatten)]
    pub inspect: ImageInspect,
    #[serde(rename = "Config")]
    pub config: Value,
    #[serde(rename = "ContainerConfig")]
    pub container_config: Value,
}

/// What Docker shows as `ContainerConfig` for an image not built by its legacy builder.
fn empty_container_config() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null
    })
}

pub fn inspect(store: &ImageStore, name: &str) -> Result<ImageDetails> {
    let id = store.index.resolve(name).map_err(image_error)?;
    let view = ImageView::load(store, &id)?;
    let config = &view.config;
    let chain = chain_ids(&config.rootfs.diff_ids);
    let text = |key: &str| {
        config
            .extra
            .get(key)
            .and_then(Value::as_str)
            .map(String::from)
    };
    let inspect = ImageInspect {
        id: Some(id.to_string()),
        repo_tags: Some(view.repo_tags()),
        repo_digests: Some(view.repo_digests()),
        parent: Some(String::new()),
        comment: Some(text("comment").unwrap_or_default()),
        created: config.created.clone(),
        docker_version: Some(text("docker_version").unwrap_or_default()),
        author: Some(config.author.clone().unwrap_or_default()),
        config: None,
        architecture: Some(config.architecture.clone()),
        variant: config.variant.clone(),
        os: Some(config.os.clone()),
        os_version: text("os.version"),
        size: Some(view.size),
        virtual_size: Some(view.size),
        graph_driver: Some(graph_driver(store, &chain)),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_string(),
            layers: Some(
                config
                    .rootfs
                    .diff_ids
                    .iter()
                    .map(|d| d.to_string())
                    .collect(),
            ),
        }),
        metadata: Some(ImageInspectMetadata {
            last_tag_time: Some(crate::time::ZERO_TIME.to_string()),
        }),
    };
    Ok(ImageDetails {
        inspect,
        config: docker_config(&config.config),
        container_config: config
            .extra
            .get("container_config")
            .cloned()
            .unwrap_or_else(empty_container_config),
    })
}

/// The image's container config with every key Docker always writes present.
fn docker_config(config: &ContainerConfig) -> Value {
    let mut value = empty_container_config();
    if let (Value::Object(all), Ok(Value::Object(set))) = (&mut value, serde_json::to_value(config))
    {
        all.extend(set);
    }
    value
}

/// overlay2's view of the image: its top layer's diff as `UpperDir`, the ones below as
/// `LowerDir` (top first).
fn graph_driver(store: &ImageStore, chain: &[Digest]) -> DriverData {
    let dir = |c: &Digest| store.layers.diff_dir(c).display().to_string();
    let mut data = HashMap::new();
    if let Some((top, below)) = chain.split_last() {
        let top_dir = store.layers.diff_dir(top);
        let parent = top_dir.parent().unwrap_or(Path::new("/"));
        data.insert("UpperDir".to_string(), dir(top));
        data.insert(
            "MergedDir".to_string(),
            parent.join("merged").display().to_string(),
        );
        data.insert(
            "WorkDir".to_string(),
            parent.join("work").display().to_string(),
        );
        if !below.is_empty() {
            let lower: Vec<String> = below.iter().rev().map(dir).collect();
            data.insert("LowerDir".to_string(), lower.join(":"));
        }
    }
    DriverData {
        name: "overlay2".to_string(),
        data,
    }
}

/// `GET /images/{name}/history`: the config's history, newest first. Entries that made a
/// layer carry its size; the newest carries the image id and tags, the rest `<missing>`
/// (Docker knows no ids for the steps of a pulled image either).
pub fn history(store: &ImageStore, name: &str) -> Result<Vec<HistoryResponseItem>> {
    let id = store.index.resolve(name).map_err(image_error)?;
    let view = ImageView::load(store, &id)?;
    let config = &view.config;
    let mut sizes = chain_ids(&config.rootfs.diff_ids)
        .into_iter()
        .map(|c| layer_size(store, &c));
    let mut items: Vec<HistoryResponseItem> = if config.history.is_empty() {
        // No history recorded: one entry per layer, as Docker shows it.
        sizes
            .map(|size| HistoryResponseItem {
                id: "<missing>".to_string(),
                created: view.created(),
                size,
                ..Default::default()
            })
            .collect()
    } else {
        config
            .history
            .iter()
            .map(|h| HistoryResponseItem {
                id: "<missing>".to_string(),
                created: unix_secs(h.created.as_deref()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: if h.empty_layer {
                    0
                } else {
                    sizes.next().unwrap_or(0)
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect()
    };
    items.reverse();
    if let Some(top) = items.first_mut() {
        top.id = id.to_string();
        top.tags = view.repo_tags();
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// Tag, remove, prune
// ---------------------------------------------------------------------------------------------

/// `POST /images/{name}/tag?repo=&tag=`: `repo` (which may carry a tag itself when `tag` is
/// empty) normalized as Docker does; returns the new reference and the image id.
pub fn tag(store: &ImageStore, name: &str, repo: &str, tag: &str) -> Result<(Reference, Digest)> {
    if repo.is_empty() {
        return Err(Error::InvalidParameter(
            "repository name must have at least one component".to_string(),
        ));
    }
    let mut target = parse_reference(repo)?;
    if target.digest.is_some() {
        return Err(Error::InvalidParameter(
            "refusing to create a tag with a digest reference".to_string(),
        ));
    }
    if !tag.is_empty() {
        target = target
            .with_tag(tag)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
    }
    let id = store.tag(name, &target).map_err(image_error)?;
    Ok((target, id))
}

/// The chain ids of the layers containers use: those of their images (when the image's
/// config is still there) and those an overlay mounted on this host stacks (which covers
/// containers whose image was removed with force).
pub fn layers_in_use(store: &ImageStore, containers: &[ContainerUse]) -> HashSet<Digest> {
    let mut used: HashSet<Digest> = containers
        .iter()
        .filter_map(|c| c.image_id.parse::<Digest>().ok())
        .filter_map(|id| read_config(store, &id).ok())
        .flat_map(|config| chain_ids(&config.rootfs.diff_ids))
        .collect();
    used.extend(mounted_layers(store));
    used
}

/// Layers of this store in the lowerdir of a mounted overlay (`/proc/self/mountinfo`).
fn mounted_layers(store: &ImageStore) -> Vec<Digest> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    mountinfo
        .lines()
        .filter_map(|line| line.split_once(" - ").map(|(_, fs)| fs))
        .filter(|fs| fs.starts_with("overlay "))
        .filter_map(|fs| fs.split(' ').nth(2))
        .flat_map(|options| options.split(','))
        .filter_map(|opt| opt.strip_prefix("lowerdir="))
        .flat_map(|lowers| lowers.split(':'))
        .filter_map(|lower| {
            store
                .layers
                .layer_of_lower(Path::new(&unescape_mountinfo(lower)))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        match octal.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Docker's report lines as API items.
fn delete_items(removed: &Removed) -> Vec<ImageDeleteResponseItem> {
    let untagged = removed.untagged.iter().map(|r| ImageDeleteResponseItem {
        untagged: Some(r.familiar()),
        deleted: None,
    });
    let deleted = removed
        .deleted
        .iter()
        .chain(&removed.collected.layers)
        .map(|d| ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(d.to_string()),
        });
    untagged.chain(deleted).collect()
}

/// `DELETE /images/{name}?force=`, with Docker's rules for images containers use:
/// - by name, the image's only name, a container (in any state) using it: 409 unless forced;
/// - by id: a running container's image is never deleted, a stopped one's only forced;
/// - by name and forced, a running container's image loses the name but stays.
///
/// The layers containers use stay whatever happens to their image.
pub fn remove(
    store: &ImageStore,
    containers: &[ContainerUse],
    name: &str,
    force: bool,
) -> Result<Removed> {
    let id = store.index.resolve(name).map_err(image_error)?;
    let users: Vec<&ContainerUse> = containers
        .iter()
        .filter(|c| c.image_id == id.to_string())
        .collect();
    let running = users.iter().find(|c| c.running);
    let refs = store.index.references_of(&id).map_err(image_error)?;
    if is_id_prefix(&id, name) {
        if let Some(c) = running {
            return Err(delete_conflict(&id, "cannot be forced", "running", &c.id));
        }
        if let (Some(c), false) = (users.first(), force) {
            return Err(delete_conflict(&id, "must be forced", "stopped", &c.id));
        }
    } else if let Some(c) = users.first() {
        if !force && is_single_reference(&refs) {
            return Err(Error::Conflict(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - \
                 container {} is using its referenced image {}",
                short(&c.id),
                short(id.hex())
            )));
        }
        let last_tag = refs.iter().filter(|r| r.digest.is_none()).count() <= 1;
        if running.is_some() && last_tag {
            // Forced: the name goes, the image stays for its running container.
            return store.untag_only(name).map_err(image_error);
        }
    }
    let in_use = layers_in_use(store, containers);
    store
        .remove_image_with(name, force, &|c| in_use.contains(c))
        .map_err(image_error)
}

fn delete_conflict(id: &Digest, how: &str, state: &str, container: &str) -> Error {
    Error::Conflict(format!(
        "conflict: unable to delete {} ({how}) - image is being used by {state} container {}",
        short(id.hex()),
        short(container)
    ))
}

/// `POST /images/prune`: dangling images (`dangling=false`: every image) that no container
/// uses, created before `until`, with the labels asked for.
pub fn prune(
    store: &ImageStore,
    containers: &[ContainerUse],
    filters: &HashMap<String, Vec<String>>,
) -> Result<(ImagePruneResponse, Vec<Removed>)> {
    let mut filter = ImageFilter::parse(store, filters, &["dangling", "until", "label"])?;
    // Only dangling images unless told otherwise; `dangling=false` means all of them.
    filter.dangling = match filter.dangling {
        None | Some(true) => Some(true),
        Some(false) => None,
    };
    let used: HashSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let sizes: HashMap<Digest, i64> = store
        .layers
        .list()
        .map_err(image_error)?
        .into_iter()
        .map(|c| (c.clone(), layer_size(store, &c)))
        .collect();
    let in_use = layers_in_use(store, containers);
    let mut report = Vec::new();
    for view in all_images(store)? {
        if !filter.matches(&view) || used.contains(view.id.to_string().as_str()) {
            continue;
        }
        match store.remove_image_with(&view.id.to_string(), true, &|c| in_use.contains(c)) {
            Ok(removed) => report.push(removed),
            Err(e) => match image_error(e) {
                // Removed meanwhile (another prune, an rmi): nothing to do.
                Error::NotFound(_) => {}
                other => return Err(other),
            },
        }
    }
    // Layers left behind by containers removed since their image was: reclaimed too.
    let leftovers = store
        .collect(&|c| in_use.contains(c))
        .map_err(image_error)?;
    if !leftovers.layers.is_empty() {
        report.push(Removed {
            collected: leftovers,
            ..Removed::default()
        });
    }
    let reclaimed = report
        .iter()
        .flat_map(|r| &r.collected.layers)
        .map(|c| sizes.get(c).copied().unwrap_or(0))
        .sum();
    let deleted: Vec<ImageDeleteResponseItem> = report.iter().flat_map(delete_items).collect();
    let response = ImagePruneResponse {
        images_deleted: Some(deleted),
        space_reclaimed: Some(reclaimed),
    };
    Ok((response, report))
}

// ---------------------------------------------------------------------------------------------
// Pull and push
// ---------------------------------------------------------------------------------------------

/// Where `fromImage` and `tag` of `POST /images/create` point: `tag` may be a tag or a
/// digest; without either, `latest`.
pub fn pull_reference(from_image: &str, tag: &str) -> Result<Reference> {
    let reference = parse_reference(from_image)?;
    if tag.is_empty() {
        return Ok(reference);
    }
    if tag.contains(':') {
        let digest: Digest = tag
            .parse()
            .map_err(|e| Error::InvalidParameter(format!("invalid digest {tag:?}: {e}")))?;
        return Ok(reference.with_digest(&digest));
    }
    reference
        .with_tag(tag)
        .map_err(|e| Error::InvalidParameter(e.to_string()))
}

/// `linux/amd64[/v8]` as a platform; empty is the host's.
pub fn parse_platform(text: &str) -> Result<Platform> {
    if text.is_empty() {
        return Ok(Platform::host());
    }
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] => Ok(Platform::new(os, arch, None).normalized()),
        [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant)).normalized()),
        _ => Err(Error::InvalidParameter(format!(
            "invalid platform {text:?}: want os/arch[/variant]"
        ))),
    }
}

/// A registry client with `auth` (from `X-Registry-Auth`) for `reference`'s registry.
pub fn registry_client(reference: &Reference, auth: Option<Credentials>) -> RegistryClient {
    let mut options = ClientOptions::default();
    if let Some(credentials) = auth {
        options
            .credentials
            .insert(reference.domain.clone(), credentials);
    }
    RegistryClient::new(options)
}

/// A registry's refusal in Docker's words, with the status Docker gives it.
fn registry_failure(e: anyhow::Error, reference: &Reference) -> Error {
    let Some(err) = e.chain().find_map(|c| c.downcast_ref::<RegistryError>()) else {
        return image_error(e);
    };
    match err {
        RegistryError::ManifestUnknown { message, .. } => Error::NotFound(format!(
            "manifest for {} not found: manifest unknown: {message}",
            reference.familiar()
        )),
        RegistryError::NameUnknown { .. }
        | RegistryError::Unauthorized { .. }
        | RegistryError::Denied { .. } => Error::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require \
             'docker login': {err}",
            reference.familiar_name()
        )),
        _ => Error::Internal(e),
    }
}

/// Docker's progress bar (`jsonmessage.JSONProgress`): 50 columns and human sizes.
fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let done = ((current.min(total) as f64 / total as f64) * 100.0) as usize / 2;
    let (bar, head) = match done {
        50 => ("=".repeat(50), ""),
        n => ("=".repeat(n), ">"),
    };
    let pad = " ".repeat(50usize.saturating_sub(bar.len() + head.len()));
    format!(
        "[{bar}{head}{pad}] {:>8}/{}",
        human_size(current),
        human_size(total)
    )
}

/// go-units' `HumanSize`: decimal units, four significant digits.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // `%.4g`: four significant digits, trailing zeros dropped.
    let digits = match size {
        s if s >= 100.0 => 1,
        s if s >= 10.0 => 2,
        _ => 3,
    };
    let rounded = format!("{size:.digits$}");
    let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}{}", UNITS[unit])
}

fn status(status: &str, id: &str) -> Value {
    json!({ "status": status, "progressDetail": {}, "id": id })
}

fn progress(status: &str, id: &str, current: u64, total: u64) -> Value {
    json!({
        "status": status,
        "progressDetail": { "current": current, "total": total },
        "progress": progress_bar(current, total),
        "id": id,
    })
}

/// Turns berth-image's per-layer progress into Docker's pull messages, each layer's
/// download throttled to about 2% steps.
struct PullReporter<'a> {
    emit: &'a (dyn Fn(Value) + Sync),
    reference: &'a Reference,
    /// Bytes last reported per layer; whether "Pulling from" went out.
    state: Mutex<(HashMap<Digest, u64>, bool)>,
}

impl PullReporter<'_> {
    fn header(&self, started: &mut bool) {
        if !*started {
            *started = true;
            let id = match &self.reference.digest {
                Some(d) => d.to_string(),
                None => self.reference.tag.clone().unwrap_or_default(),
            };
            (self.emit)(json!({
                "status": format!("Pulling from {}", self.reference.path),
                "id": id,
            }));
        }
    }

    fn report(&self, p: Progress) {
        let id = short(p.blob.hex());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, started) = &mut *state;
        self.header(started);
        match p.phase {
            Phase::Waiting => (self.emit)(status("Pulling fs layer", id)),
            Phase::Downloading => {
                let before = last.get(&p.blob).copied().unwrap_or(0);
                let step = (p.total / 50).max(64 << 10);
                if before == 0 || p.current >= before + step || p.current == p.total {
                    last.insert(p.blob.clone(), p.current.max(1));
                    (self.emit)(progress("Downloading", id, p.current, p.total));
                }
            }
            Phase::Exists => (self.emit)(status("Already exists", id)),
            Phase::Done => {
                // berth unpacks while it downloads: extraction is over when the download is.
                (self.emit)(status("Verifying Checksum", id));
                (self.emit)(status("Download complete", id));
                (self.emit)(progress("Extracting", id, p.total, p.total));
                (self.emit)(status("Pull complete", id));
            }
            Phase::Uploading => {}
        }
    }

    fn ensure_header(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.header(&mut state.1);
    }
}

/// `POST /images/create?fromImage=`: pull `reference`, sending Docker's progress messages
/// through `emit`. Nothing is sent before the manifest was found, so that a caller can
/// still answer a missing image with a plain 404. The repository's digest reference is
/// recorded (Docker's `RepoDigests`). Returns the image id.
pub fn pull(
    store: &ImageStore,
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
    emit: &(dyn Fn(Value) + Sync),
) -> Result<Digest> {
    let before = store.index.resolve(&reference.to_string()).ok();
    let reporter = PullReporter {
        emit,
        reference,
        state: Mutex::new((HashMap::new(), false)),
    };
    let id = store
        .pull(client, reference, platform, &|p| reporter.report(p))
        .map_err(|e| registry_failure(e, reference))?;
    reporter.ensure_header();
    let record = store
        .index
        .image(&id)
        .map_err(image_error)?
        .with_context(|| format!("image {id} vanished after its pull"))?;
    let digest = record.index.unwrap_or(record.manifest);
    if reference.digest.is_none() {
        store
            .tag(&id.to_string(), &reference.with_digest(&digest))
            .map_err(image_error)?;
    }
    emit(json!({ "status": format!("Digest: {digest}") }));
    let outcome = match before {
        Some(old) if old == id => "Image is up to date for",
        _ => "Downloaded newer image for",
    };
    emit(json!({ "status": format!("Status: {outcome} {}", reference.familiar()) }));
    Ok(id)
}

/// `POST /images/{name}/push?tag=`: push one tag, or with no tag every tag of the
/// repository, with Docker's messages. Returns the references pushed.
pub fn push(
    store: &ImageStore,
    client: &RegistryClient,
    name: &str,
    tag: &str,
    emit: &(dyn Fn(Value) + Sync),
) -> Result<Vec<Reference>> {
    let repo = parse_reference(name)?;
    let targets: Vec<Reference> = if !tag.is_empty() {
        vec![repo
            .with_tag(tag)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?]
    } else if name.contains('@') || name.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        vec![repo.clone()]
    } else {
        let all = store.index.list().map_err(image_error)?;
        all.into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.digest.is_none() && r.name() == repo.name())
            .collect()
    };
    if targets.is_empty() || store.index.resolve(&targets[0].to_string()).is_err() {
        return Err(Error::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            repo.familiar_name()
        )));
    }
    emit(json!({ "status": format!("The push refers to repository [{}]", repo.name()) }));
    for target in &targets {
        push_one(store, client, target, emit)?;
    }
    Ok(targets)
}

fn push_one(
    store: &ImageStore,
    client: &RegistryClient,
    target: &Reference,
    emit: &(dyn Fn(Value) + Sync),
) -> Result<()> {
    let id = store
        .index
        .resolve(&target.to_string())
        .map_err(image_error)?;
    let record = store
        .index
        .image(&id)
        .map_err(image_error)?
        .with_context(|| format!("image {id} has no manifest"))?;
    let layers = match parse_any(
        None,
        store.content.read(&record.manifest).map_err(image_error)?,
    )
    .map_err(|e| Error::Internal(e.into()))?
    {
        Parsed::Manifest(doc) => doc.into_value().layers,
        Parsed::Index(_) => Vec::new(),
    };
    let is_layer = |d: &Digest| layers.iter().any(|l| &l.digest == d);
    for layer in layers.iter().rev() {
        emit(status("Preparing", short(layer.digest.hex())));
    }
    let report = |p: Progress| {
        if !is_layer(&p.blob) {
            return;
        }
        let id = short(p.blob.hex());
        match p.phase {
            Phase::Uploading => emit(progress("Pushing", id, p.current, p.total)),
            Phase::Done => emit(status("Pushed", id)),
            Phase::Exists => emit(status("Layer already exists", id)),
            _ => {}
        }
    };
    let digest = store
        .push(client, target, &report)
        .map_err(|e| registry_failure(e, target))?;
    let size = store.content.size(&record.manifest).unwrap_or(0);
    let tag = target.tag.clone().unwrap_or_else(|| "latest".to_string());
    emit(json!({ "status": format!("{tag}: digest: {digest} size: {size}") }));
    emit(json!({
        "progressDetail": {},
        "aux": { "Tag": tag, "Digest": digest.to_string(), "Size": size },
    }));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Import, save, load
// ---------------------------------------------------------------------------------------------

/// `docker import --change`: the Dockerfile instructions that set config.
pub fn apply_change(config: &mut ContainerConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = || Error::InvalidParameter(format!("{change} is not a valid change command"));
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(exec_form(rest, true)),
        "ENTRYPOINT" => config.entrypoint = Some(exec_form(rest, true)),
        "SHELL" => config.shell = Some(exec_form(rest, false)),
        "USER" => config.user = rest.to_string(),
        "WORKDIR" => config.working_dir = rest.to_string(),
        "STOPSIGNAL" => config.stop_signal = rest.to_string(),
        "ONBUILD" => config.on_build.push(rest.to_string()),
        "ENV" => {
            for (k, v) in pairs(rest).ok_or_else(bad)? {
                config
                    .env
                    .retain(|e| e.split('=').next() != Some(k.as_str()));
                config.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => config.labels.extend(pairs(rest).ok_or_else(bad)?),
        "EXPOSE" => {
            for port in rest.split_whitespace() {
                let port = if port.contains('/') {
                    port.to_string()
                } else {
                    format!("{port}/tcp")
                };
                config.exposed_ports.insert(port);
            }
        }
        "VOLUME" => config.volumes.extend(exec_form(rest, false)),
        _ => return Err(bad()),
    }
    Ok(())
}

/// A JSON array, or else shell form: `sh -c` around the text (`shell`), or the words.
fn exec_form(text: &str, shell: bool) -> Vec<String> {
    if let Ok(list) = serde_json::from_str::<Vec<String>>(text) {
        return list;
    }
    if shell {
        vec!["/bin/sh".to_string(), "-c".to_string(), text.to_string()]
    } else {
        text.split_whitespace().map(String::from).collect()
    }
}

/// `k=v k2="v 2"` pairs, or the legacy `k v` form.
fn pairs(text: &str) -> Option<Vec<(String, String)>> {
    if !text.contains('=') {
        let (k, v) = text.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = next.trim_start();
    }
    Some(out)
}

/// What `POST /images/create?fromSrc=-` takes besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub repo: String,
    pub tag: String,
    pub changes: Vec<String>,
    pub message: String,
    pub platform: String,
}

/// `docker import`: returns the new image's id.
pub fn import(store: &ImageStore, reader: impl Read, request: &ImportRequest) -> Result<Digest> {
    let reference = match request.repo.as_str() {
        "" => None,
        repo => Some(if request.tag.is_empty() {
            parse_reference(repo)?
        } else {
            parse_reference(repo)?
                .with_tag(&request.tag)
                .map_err(|e| Error::InvalidParameter(e.to_string()))?
        }),
    };
    let mut config = ContainerConfig::default();
    for change in &request.changes {
        apply_change(&mut config, change)?;
    }
    let options = ImportOptions {
        config,
        message: Some(request.message.clone()).filter(|m| !m.is_empty()),
        platform: match request.platform.as_str() {
            "" => None,
            p => Some(parse_platform(p)?),
        },
    };
    store
        .import(reader, reference.as_ref(), &options)
        .map_err(image_error)
}

/// Check that every name is an image, before a save starts streaming (a 404 must not come
/// after a 200).
pub fn check_names(store: &ImageStore, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(Error::InvalidParameter("no image names given".to_string()));
    }
    for name in names {
        store.index.resolve(name).map_err(image_error)?;
    }
    Ok(())
}

/// `docker save`: a tarball of `names` into `out`.
pub fn save(store: &ImageStore, names: &[String], out: &mut dyn Write) -> Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    store.save(&names, out).map_err(image_error)
}

/// `docker load`: every image of the tarball, then a collection if no writer is busy (a
/// load leaves the archive's other files, and all of a failed load's, to the collector).
pub fn load(
    store: &ImageStore,
    containers: &[ContainerUse],
    reader: impl Read,
) -> Result<Vec<LoadedImage>> {
    let loaded = store.load(reader).map_err(image_error);
    let in_use = layers_in_use(store, containers);
    if let Err(e) = store.try_collect(&|c| in_use.contains(c)) {
        eprintln!("berthd: collecting after a load: {e:#}");
    }
    loaded
}

/// The `docker load` output lines for what was loaded.
pub fn load_messages(loaded: &[LoadedImage]) -> Vec<Value> {
    loaded
        .iter()
        .flat_map(|image| {
            let lines: Vec<String> = if image.tags.is_empty() {
                vec![format!("Loaded image ID: {}\n", image.id)]
            } else {
                image
                    .tags
                    .iter()
                    .map(|t| format!("Loaded image: {}\n", t.familiar()))
                    .collect()
            };
            lines.into_iter().map(|l| json!({ "stream": l }))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The engine's image operations: the functions above with its containers and events
// ---------------------------------------------------------------------------------------------

impl Engine {
    /// What every container uses, for removal and collection.
    pub fn container_uses(&self) -> Vec<ContainerUse> {
        self.containers
            .list()
            .iter()
            .map(|h| {
                let c = h.get();
                ContainerUse {
                    id: c.id,
                    image_id: c.image_id,
                    running: c.state.status.is_alive(),
                }
            })
            .collect()
    }

    /// The size of image `image_id` (the bytes of its layers' files), 0 when unreadable:
    /// a container's `SizeRootFs` is its rw layer plus this.
    pub(crate) fn image_size(&self, image_id: &str) -> i64 {
        image_id
            .parse()
            .ok()
            .and_then(|id| ImageView::load(&self.images, &id).ok())
            .map_or(0, |view| view.size)
    }

    pub fn image_list(
        &self,
        all: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<ImageSummary>> {
        list(&self.images, all, filters)
    }

    pub fn image_inspect(&self, name: &str) -> Result<ImageDetails> {
        inspect(&self.images, name)
    }

    pub fn image_history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        history(&self.images, name)
    }

    pub fn image_tag(&self, name: &str, repo: &str, tag_name: &str) -> Result<()> {
        let (target, id) = tag(&self.images, name, repo, tag_name)?;
        let target = target.familiar();
        self.events
            .emit("image", "tag", &id.to_string(), &[("name", &target)]);
        Ok(())
    }

    pub fn image_remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>> {
        let id = self.images.index.resolve(name).map_err(image_error)?;
        let removed = remove(&self.images, &self.container_uses(), name, force)?;
        self.removal_events(&id, &removed);
        Ok(delete_items(&removed))
    }

    /// `untag` for each name removed, `delete` if the image `id` went.
    fn removal_events(&self, id: &Digest, removed: &Removed) {
        let id = id.to_string();
        for reference in &removed.untagged {
            let name = reference.familiar();
            self.events.emit("image", "untag", &id, &[("name", &name)]);
        }
        if removed.deleted.is_some() {
            self.events.emit("image", "delete", &id, &[("name", &id)]);
        }
    }

    pub fn image_prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<ImagePruneResponse> {
        let (response, removed) = prune(&self.images, &self.container_uses(), filters)?;
        for r in &removed {
            if let Some(id) = &r.deleted {
                self.removal_events(id, r);
            }
        }
        Ok(response)
    }

    /// Pull `from_image` (`tag`), progress messages through `emit`.
    pub fn image_pull(
        &self,
        from_image: &str,
        tag_name: &str,
        platform: &str,
        auth: Option<Credentials>,
        emit: &(dyn Fn(Value) + Sync),
    ) -> Result<()> {
        let reference = pull_reference(from_image, tag_name)?;
        let platform = parse_platform(platform)?;
        let client = registry_client(&reference, auth);
        pull(&self.images, &client, &reference, &platform, emit)?;
        let name = reference.familiar();
        self.events.emit("image", "pull", &name, &[("name", &name)]);
        Ok(())
    }

    pub fn image_push(
        &self,
        name: &str,
        tag_name: &str,
        auth: Option<Credentials>,
        emit: &(dyn Fn(Value) + Sync),
    ) -> Result<()> {
        let client = registry_client(&parse_reference(name)?, auth);
        for pushed in push(&self.images, &client, name, tag_name, emit)? {
            let name = pushed.familiar();
            self.events.emit("image", "push", &name, &[("name", &name)]);
        }
        Ok(())
    }

    pub fn image_import(&self, reader: impl Read, request: &ImportRequest) -> Result<Digest> {
        let result = import(&self.images, reader, request);
        let in_use = layers_in_use(&self.images, &self.container_uses());
        if let Err(e) = self.images.try_collect(&|c| in_use.contains(c)) {
            eprintln!("berthd: collecting after an import: {e:#}");
        }
        let id = result?;
        let id_text = id.to_string();
        self.events
            .emit("image", "import", &id_text, &[("name", &id_text)]);
        Ok(id)
    }

    pub fn image_save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        save(&self.images, names, out)?;
        for name in names {
            if let Ok(id) = self.images.index.resolve(name) {
                self.events
                    .emit("image", "save", &id.to_string(), &[("name", name)]);
            }
        }
        Ok(())
    }

    /// Delete the blobs and layers nothing needs any more, unless a pull, load or build is
    /// at work (then the next collection gets them): for after a container is removed,
    /// whose image may have been removed before it.
    pub fn collect_unused_layers(&self) -> Result<()> {
        let in_use = layers_in_use(&self.images, &self.container_uses());
        self.images
            .try_collect(&|c| in_use.contains(c))
            .map_err(image_error)?;
        Ok(())
    }

    pub fn image_load(&self, reader: impl Read) -> Result<Vec<LoadedImage>> {
        let loaded = load(&self.images, &self.container_uses(), reader)?;
        for image in &loaded {
            let id = image.id.to_string();
            self.events.emit("image", "load", &id, &[("name", &id)]);
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("*", "a/b"));
        assert!(glob("*/*", "a/b"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("bus", "busybox"));
    }

    #[test]
    fn sizes_and_bars_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_215_424), "2.215MB");
        assert_eq!(human_size(12_345), "12.35kB");
        assert_eq!(human_size(100_000), "100kB");
        let bar = progress_bar(1_000_000, 2_000_000);
        assert_eq!(
            bar,
            format!("[{}>{}]      1MB/2MB", "=".repeat(25), " ".repeat(24))
        );
        let full = progress_bar(5, 5);
        assert!(full.starts_with(&format!("[{}]", "=".repeat(50))), "{full}");
    }

    #[test]
    fn changes_set_the_config() {
        let mut c = ContainerConfig::default();
        for change in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/run",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "LABEL x=y",
            "EXPOSE 80 53/udp",
            "WORKDIR /srv",
            "USER nobody",
            "VOLUME /data",
        ] {
            apply_change(&mut c, change).unwrap();
        }
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/run"]);
        assert_eq!(c.env, ["B=two words", "A=3"]);
        assert_eq!(c.labels.get("x").map(String::as_str), Some("y"));
        assert!(c.exposed_ports.contains("80/tcp") && c.exposed_ports.contains("53/udp"));
        assert_eq!(
            (c.working_dir.as_str(), c.user.as_str()),
            ("/srv", "nobody")
        );
        assert!(c.volumes.contains("/data"));
        let err = apply_change(&mut ContainerConfig::default(), "RUN x").unwrap_err();
        assert_eq!(err.message(), "RUN x is not a valid change command");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn pull_references() {
        let r = pull_reference("busybox", "").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = pull_reference("127.0.0.1:5000/x", "1").unwrap();
        assert_eq!(r.familiar(), "127.0.0.1:5000/x:1");
        let d = Digest::of(b"m");
        let r = pull_reference("busybox", &d.to_string()).unwrap();
        assert_eq!(r.digest, Some(d));
        assert!(pull_reference("Busybox", "").is_err());
    }
}
