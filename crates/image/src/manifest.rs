//! Image manifests and indexes: Docker schema2 manifests and manifest lists, OCI manifests
//! and indexes, as serde types; platform selection from an index; layer compression from a
//! layer's media type.
//!
//! A manifest's digest is the digest of the bytes it came as, never of a re-serialization:
//! [`parse_any`] keeps the original bytes beside the parsed value ([`Document`]). Fields these
//! types don't model are kept in `extra` maps, so documents berth writes itself (an OCI
//! layout's `index.json` it adds to, say) keep what other tools put there.

use crate::layer::Compression;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;

/// Media types of manifests, indexes, configs and layers.
pub mod media_type {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1_MANIFEST: &str =
        "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED_MANIFEST: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_NONDISTRIBUTABLE_LAYER: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_NONDISTRIBUTABLE_LAYER_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_NONDISTRIBUTABLE_LAYER_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

    /// Every manifest and index type berth reads, for a registry request's `Accept` header.
    pub const ACCEPTED_MANIFESTS: [&str; 4] = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ];
}

/// What went wrong reading an image format document.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// `path` names the field at fault (`layers[0].digest`), when there is one.
    #[error("invalid {what}: {}{message}", at(.path))]
    Json {
        what: &'static str,
        path: Option<String>,
        message: String,
    },
    /// Holds what gave it away: the media type, or `schemaVersion 1`.
    #[error(
        "schema1 manifests are not supported ({0}); \
         the image must be pushed again by a current client"
    )]
    Schema1(String),
    #[error("unsupported manifest schemaVersion {0}: want 2")]
    SchemaVersion(String),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// `header`: the type the document was announced as (Content-Type, a descriptor).
    #[error("the manifest was announced as {header} but its own mediaType is {document}")]
    MediaTypeMismatch { header: String, document: String },
    #[error(
        "cannot tell what kind of document this is: it has no mediaType, and not exactly \
         one of \"manifests\" (an index) and \"config\" (a manifest)"
    )]
    UnknownKind,
    #[error("no manifest in the index matches platform {want}; it offers {}", offered_list(.offered))]
    NoMatchingPlatform { want: String, offered: Vec<String> },
    #[error("invalid platform {0:?}: want os/arch[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform(String),
    #[error("unsupported layer media type {0:?}: cannot tell how the layer is compressed")]
    UnknownLayerType(String),
    #[error("image config has rootfs type {0:?}: want \"layers\"")]
    RootfsType(String),
    #[error("image config lists {diff_ids} layer diff_ids but the manifest has {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
}

fn at(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default()
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "no platforms at all".to_string()
    } else {
        offered.join(", ")
    }
}

/// Parses JSON `bytes` as `T`, naming the field at fault (`layers[0].digest: ...`) on error.
pub(crate) fn from_json<'de, T: Deserialize<'de>>(
    what: &'static str,
    bytes: &'de [u8],
) -> Result<T, FormatError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        FormatError::Json {
            what,
            path: (path != "." && path != "?").then_some(path),
            message: e.inner().to_string(),
        }
    })?;
    de.end().map_err(|e| FormatError::Json {
        what,
        path: None,
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Reads `null` as the type's default (Docker writes `"Env": null` and the like).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Descriptors and platforms
// ---------------------------------------------------------------------------------------------

/// A reference to a blob: its media type, digest and size, and where it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Fields not modelled above (`artifactType`, `data`, ...), kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An operating system and CPU a manifest is built for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// The machine berth runs on, in OCI's terms (`linux/amd64`, `linux/arm64`, ...).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None).normalized()
    }

    /// Docker's (containerd's) normal form: `x86_64` → `amd64`, `aarch64` → `arm64` with
    /// variant `v8` left implicit, `arm` with variant `v7` made explicit, ...
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let variant = self.variant.as_deref().unwrap_or("");
        let arch = self.architecture.to_ascii_lowercase();
        let (arch, variant) = normalize_arch(&arch, variant);
        Platform {
            os,
            architecture: arch.to_string(),
            variant: (!variant.is_empty()).then(|| variant.to_string()),
            ..self.clone()
        }
    }

    /// The (architecture, variant) pairs this (normalized) platform runs, best first, as
    /// Docker picks from a manifest list: the exact platform, then older variants of it, then
    /// the 32-bit platforms it also runs (`amd64` → `386`, `arm64` → `arm/v8` ... `arm/v5`).
    fn compatible(&self) -> Vec<(String, String)> {
        let variant = self.variant.as_deref().unwrap_or("");
        let arch = self.architecture.as_str();
        let mut all = vec![(arch.to_string(), variant.to_string())];
        match arch {
            "amd64" => {
                all.extend(older_variants(arch, variant, 2));
                all.push((arch.to_string(), String::new()));
                all.push(("386".to_string(), String::new()));
            }
            "arm64" => {
                all.push((arch.to_string(), String::new()));
                all.push(("arm".to_string(), "v8".to_string()));
                all.extend(older_variants("arm", "v8", 5));
            }
            "arm" => all.extend(older_variants(arch, variant, 5)),
            _ => {}
        }
        all.dedup();
        all
    }

    fn matches(&self, os: &str, arch: &str, variant: &str) -> bool {
        self.os == os
            && self.architecture == arch
            && self.variant.as_deref().unwrap_or("") == variant
    }
}

/// For `variant` `vN`: `arch` with `v{N-1}` down to `v{lowest}`; nothing for other variants.
fn older_variants(arch: &str, variant: &str, lowest: u32) -> Vec<(String, String)> {
    let Some(n) = variant
        .strip_prefix('v')
        .and_then(|n| n.parse::<u32>().ok())
    else {
        return Vec::new();
    };
    (lowest..n)
        .rev()
        .map(|v| (arch.to_string(), format!("v{v}")))
        .collect()
}

/// containerd's `normalizeArch`.
fn normalize_arch<'a>(arch: &'a str, variant: &'a str) -> (&'a str, &'a str) {
    match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// `os/arch[/variant]`, as `--platform` takes it (normalized).
impl FromStr for Platform {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Platform, FormatError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(FormatError::InvalidPlatform(s.to_string()));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()).normalized())
    }
}

/// How a layer blob is compressed, from its media type; types that aren't layers are an
/// error. (Unpacking itself goes by the blob's magic bytes.)
pub fn layer_compression(media_type: &str) -> Result<Compression, FormatError> {
    use media_type::*;
    match media_type {
        DOCKER_LAYER | OCI_LAYER | OCI_NONDISTRIBUTABLE_LAYER => Ok(Compression::None),
        DOCKER_LAYER_GZIP
        | DOCKER_FOREIGN_LAYER_GZIP
        | OCI_LAYER_GZIP
        | OCI_NONDISTRIBUTABLE_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD | OCI_NONDISTRIBUTABLE_LAYER_ZSTD => Ok(Compression::Zstd),
        other => Err(FormatError::UnknownLayerType(other.to_string())),
    }
}

/// Foreign (Docker) and non-distributable (OCI) layers: a push leaves them out.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.foreign.")
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

// ---------------------------------------------------------------------------------------------
// Manifests and indexes
// ---------------------------------------------------------------------------------------------

/// A Docker schema2 or OCI image manifest: one image's config and layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Fields not modelled above (`subject`, `artifactType`, ...), kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Docker manifest list or OCI image index: manifests for several platforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Fields not modelled above, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Index {
    /// The manifest for `want`, chosen as Docker does: platforms compared in normal form
    /// (`x86_64` = `amd64`, `aarch64` = `arm64` = `arm64/v8`, `arm` = `arm/v7`), the exact
    /// match preferred, else the best compatible one (an older variant, or the 32-bit
    /// platform a 64-bit CPU also runs). Entries without a platform are never chosen.
    pub fn select(&self, want: &Platform) -> Result<&Descriptor, FormatError> {
        let want = want.normalized();
        let candidates: Vec<(&Descriptor, Platform)> = self
            .manifests
            .iter()
            .filter_map(|d| Some((d, d.platform.as_ref()?.normalized())))
            .collect();
        want.compatible()
            .iter()
            .find_map(|(arch, variant)| {
                candidates
                    .iter()
                    .find(|(_, p)| p.matches(&want.os, arch, variant))
                    .map(|(d, _)| *d)
            })
            .ok_or_else(|| FormatError::NoMatchingPlatform {
                want: want.to_string(),
                offered: self.platforms(),
            })
    }

    /// The platforms the index offers, as written in it.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
            .collect()
    }
}

/// A parsed document with the exact bytes it came as, its digest and its media type.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<T> {
    value: T,
    media_type: String,
    digest: Digest,
    bytes: Vec<u8>,
}

impl<T> Document<T> {
    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn into_value(self) -> T {
        self.value
    }

    /// The media type the document was read as (the registry's, the document's own, or
    /// the OCI one when neither says).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The digest of [`Document::bytes`]: the manifest's name in a registry and the store.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A manifest or an index, whichever the bytes turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Manifest(Box<Document<Manifest>>),
    Index(Box<Document<Index>>),
}

impl Parsed {
    pub fn media_type(&self) -> &str {
        match self {
            Parsed::Manifest(d) => d.media_type(),
            Parsed::Index(d) => d.media_type(),
        }
    }

    pub fn digest(&self) -> &Digest {
        match self {
            Parsed::Manifest(d) => d.digest(),
            Parsed::Index(d) => d.digest(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Parsed::Manifest(d) => d.bytes(),
            Parsed::Index(d) => d.bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// The kind a media type names; `None` for types that say nothing (`application/json`,
/// `text/plain`, ...), an error for schema1 and for other manifest types we can't read.
fn kind_of(media_type: &str) -> Result<Option<Kind>, FormatError> {
    use media_type::*;
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => Ok(Some(Kind::Manifest)),
        DOCKER_MANIFEST_LIST | OCI_INDEX => Ok(Some(Kind::Index)),
        DOCKER_SCHEMA1_MANIFEST | DOCKER_SCHEMA1_SIGNED_MANIFEST => {
            Err(FormatError::Schema1(format!("media type {media_type}")))
        }
        t if t.starts_with("application/vnd.") && t.contains("manifest") => {
            Err(FormatError::UnsupportedMediaType(t.to_string()))
        }
        _ => Ok(None),
    }
}

/// A Content-Type header's media type, without parameters.
fn bare_media_type(header: &str) -> String {
    let bare = header.split(';').next().unwrap_or_default();
    bare.trim().to_ascii_lowercase()
}

/// Parses a manifest or index. The kind comes from `media_type_hint` (a registry's
/// Content-Type) when it names one, else from the document's own `mediaType`, else (OCI
/// documents may omit it) from whether it has `manifests` or `config`. Schema1 manifests
/// are refused.
pub fn parse_any(
    media_type_hint: Option<&str>,
    bytes: impl Into<Vec<u8>>,
) -> Result<Parsed, FormatError> {
    let bytes = bytes.into();
    let fields: Map<String, Value> = from_json("manifest", &bytes)?;
    check_schema_version(&fields)?;
    let document_type = match fields.get("mediaType") {
        Some(Value::String(t)) => Some(t.as_str()),
        _ => None,
    };
    let hint = media_type_hint.map(bare_media_type);
    let (kind, media_type) = resolve_kind(hint.as_deref(), document_type, &fields)?;
    let digest = Digest::of(&bytes);
    Ok(match kind {
        Kind::Manifest => Parsed::Manifest(Box::new(Document {
            value: from_json("image manifest", &bytes)?,
            media_type,
            digest,
            bytes,
        })),
        Kind::Index => Parsed::Index(Box::new(Document {
            value: from_json("image index", &bytes)?,
            media_type,
            digest,
            bytes,
        })),
    })
}

/// Schema1 documents say `"schemaVersion": 1`; schema2 and OCI ones say 2.
fn check_schema_version(fields: &Map<String, Value>) -> Result<(), FormatError> {
    match fields.get("schemaVersion") {
        Some(v) if v == 2 => Ok(()),
        Some(v) if v == 1 => Err(FormatError::Schema1("schemaVersion 1".to_string())),
        Some(v) => Err(FormatError::SchemaVersion(v.to_string())),
        None => Err(FormatError::Json {
            what: "manifest",
            path: None,
            message: "missing field `schemaVersion`".to_string(),
        }),
    }
}

/// The kind and media type of a document: from the header (`hint`) when it names a kind
/// (the document's own `mediaType`, if any, must then agree), else from the document's
/// `mediaType`, else from its shape.
fn resolve_kind(
    hint: Option<&str>,
    document_type: Option<&str>,
    fields: &Map<String, Value>,
) -> Result<(Kind, String), FormatError> {
    let hinted = hint.map(kind_of).transpose()?.flatten();
    if let (Some(kind), Some(header)) = (hinted, hint) {
        if let Some(doc) = document_type.filter(|doc| *doc != header) {
            return Err(FormatError::MediaTypeMismatch {
                header: header.to_string(),
                document: doc.to_string(),
            });
        }
        return Ok((kind, header.to_string()));
    }
    match document_type {
        Some(doc) => match kind_of(doc)? {
            Some(kind) => Ok((kind, doc.to_string())),
            None => Err(FormatError::UnsupportedMediaType(doc.to_string())),
        },
        None => kind_from_shape(fields),
    }
}

/// OCI manifests and indexes may omit `mediaType`: an index has `manifests`, a manifest
/// has `config`.
fn kind_from_shape(fields: &Map<String, Value>) -> Result<(Kind, String), FormatError> {
    match (
        fields.contains_key("manifests"),
        fields.contains_key("config"),
    ) {
        (true, false) => Ok((Kind::Index, media_type::OCI_INDEX.to_string())),
        (false, true) => Ok((Kind::Manifest, media_type::OCI_MANIFEST.to_string())),
        _ => Err(FormatError::UnknownKind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker Hub's busybox manifest list, as `docker manifest inspect` shows it (compacted).
    const BUSYBOX_LIST: &str = r#"{
   "manifests": [
      {"digest": "sha256:6ab28c2eb9a74202d17c03c4440238147a31710a6aa3c5cfc7da3fb4159fb974", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "amd64", "os": "linux"}, "size": 528},
      {"digest": "sha256:aceb3c41ca80d8be77f6341e5906a3f574279abb7f6f2cf552212950cac5f4ed", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "arm", "os": "linux", "variant": "v5"}, "size": 528},
      {"digest": "sha256:29f04295e2d0493680ba83429070fc16a4ffe889d539d412338297895c1b8b12", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}, "size": 528},
      {"digest": "sha256:4037513af765d51219c27dbe51f70af2ecfaedf992a43afcb23885cefe5dca42", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}, "size": 528},
      {"digest": "sha256:7496e6ea9e8ca525c1f7adf5a51f179b776171a35de82babfe3bf39a54d7aeba", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}, "size": 528},
      {"digest": "sha256:748bd200aaeb06eb9a5c101c774b7ac7bc2aa41282d0a969858717243b85b79e", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "386", "os": "linux"}, "size": 528},
      {"digest": "sha256:b39205f2034c985ca461bacd566bf21340db48bc7961108dae56b26c355d1630", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "mips64le", "os": "linux"}, "size": 528},
      {"digest": "sha256:6ac63a3009b716a24a420a2fa904c04eb4b87a75d88b3a54cb50d89667afd3c8", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "ppc64le", "os": "linux"}, "size": 528},
      {"digest": "sha256:fcd555ec506c1dd83da2b12baf0eb7dab5df99aa595b16d9def142af2369bc3d", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "riscv64", "os": "linux"}, "size": 528},
      {"digest": "sha256:88ac936e6c35db5877cd0cc21c4e2eda332b8e3000cf3b3579a6f6847cafa303", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "platform": {"architecture": "s390x", "os": "linux"}, "size": 528}
   ],
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "schemaVersion": 2
}"#;

    /// The linux/amd64 entry's schema2 manifest.
    const BUSYBOX_MANIFEST: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2220094,
         "digest": "sha256:3f4d90098f5b5a6f6a76e9d217da85aa39b2081e30fa1f7d287138d6e7bf0ad7"
      }
   ]
}"#;

    /// An OCI index as Docker Hub serves official images today: each image followed by its
    /// build attestation (platform unknown/unknown).
    const OCI_INDEX_WITH_ATTESTATIONS: &str = r#"{"manifests":[{"annotations":{"com.docker.official-images.bashbrew.arch":"amd64","org.opencontainers.image.base.name":"scratch","org.opencontainers.image.version":"1.37.0-glibc"},"digest":"sha256:6ab28c2eb9a74202d17c03c4440238147a31710a6aa3c5cfc7da3fb4159fb974","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux"},"size":610},{"annotations":{"vnd.docker.reference.digest":"sha256:6ab28c2eb9a74202d17c03c4440238147a31710a6aa3c5cfc7da3fb4159fb974","vnd.docker.reference.type":"attestation-manifest"},"digest":"sha256:b39205f2034c985ca461bacd566bf21340db48bc7961108dae56b26c355d1630","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"unknown","os":"unknown"},"size":839},{"annotations":{"com.docker.official-images.bashbrew.arch":"arm64v8"},"digest":"sha256:7496e6ea9e8ca525c1f7adf5a51f179b776171a35de82babfe3bf39a54d7aeba","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm64","os":"linux","variant":"v8"},"size":610}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;

    /// An OCI manifest without `mediaType` (allowed), with fields we don't model.
    const OCI_MANIFEST_NO_TYPE: &str = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824","size":582},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:3f4d90098f5b5a6f6a76e9d217da85aa39b2081e30fa1f7d287138d6e7bf0ad7","size":1037835,"urls":["https://example.com/layer"],"annotations":{"a":"b"},"artifactType":"application/x-test"}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:7496e6ea9e8ca525c1f7adf5a51f179b776171a35de82babfe3bf39a54d7aeba","size":610},"annotations":{"org.opencontainers.image.created":"2024-09-26T21:31:42Z"}}"#;

    const SCHEMA1: &str = r#"{"schemaVersion":1,"name":"library/busybox","tag":"latest","architecture":"amd64","fsLayers":[{"blobSum":"sha256:3f4d90098f5b5a6f6a76e9d217da85aa39b2081e30fa1f7d287138d6e7bf0ad7"}],"history":[{"v1Compatibility":"{}"}],"signatures":[]}"#;

    fn index(text: &str) -> Document<Index> {
        match parse_any(None, text).unwrap() {
            Parsed::Index(doc) => *doc,
            Parsed::Manifest(_) => panic!("parsed as a manifest: {text}"),
        }
    }

    fn manifest(hint: Option<&str>, text: &str) -> Document<Manifest> {
        match parse_any(hint, text).unwrap() {
            Parsed::Manifest(doc) => *doc,
            Parsed::Index(_) => panic!("parsed as an index: {text}"),
        }
    }

    fn error(hint: Option<&str>, text: &str) -> String {
        match parse_any(hint, text) {
            Ok(parsed) => panic!("parsed {text} as {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn platform(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn selected(index: &Index, want: &str) -> String {
        let d = index.select(&platform(want)).unwrap();
        d.platform.as_ref().unwrap().to_string()
    }

    #[test]
    fn manifest_list_keeps_its_bytes_and_digest() {
        let doc = match parse_any(Some(media_type::DOCKER_MANIFEST_LIST), BUSYBOX_LIST).unwrap() {
            Parsed::Index(doc) => doc,
            other => panic!("{other:?}"),
        };
        assert_eq!(doc.bytes(), BUSYBOX_LIST.as_bytes());
        assert_eq!(doc.digest(), &Digest::of(BUSYBOX_LIST.as_bytes()));
        assert_eq!(doc.media_type(), media_type::DOCKER_MANIFEST_LIST);
        assert_eq!(doc.value().manifests.len(), 10);
        assert_eq!(doc.value().manifests[0].size, 528);
        // Without the header, the document's own mediaType decides.
        assert_eq!(
            index(BUSYBOX_LIST).media_type(),
            media_type::DOCKER_MANIFEST_LIST
        );
    }

    #[test]
    fn schema2_manifest_parses() {
        let doc = manifest(
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
            BUSYBOX_MANIFEST,
        );
        let m = doc.value();
        assert_eq!(doc.media_type(), media_type::DOCKER_MANIFEST);
        assert_eq!(m.schema_version, 2);
        assert_eq!(m.config.media_type, media_type::DOCKER_CONFIG);
        assert_eq!(m.config.size, 1457);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(
            layer_compression(&m.layers[0].media_type).unwrap(),
            Compression::Gzip
        );
    }

    #[test]
    fn oci_documents_without_media_type_are_told_apart_by_shape() {
        let doc = manifest(None, OCI_MANIFEST_NO_TYPE);
        assert_eq!(doc.media_type(), media_type::OCI_MANIFEST);
        assert_eq!(doc.value().layers[0].urls, ["https://example.com/layer"]);
        let untyped_index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(index(untyped_index).media_type(), media_type::OCI_INDEX);
        // A header that says nothing (application/json) leaves it to the document.
        let generic = manifest(Some("application/json"), OCI_MANIFEST_NO_TYPE);
        assert_eq!(generic.media_type(), media_type::OCI_MANIFEST);
        // A header that does say wins over the shape.
        let hinted = manifest(Some(media_type::DOCKER_MANIFEST), OCI_MANIFEST_NO_TYPE);
        assert_eq!(hinted.media_type(), media_type::DOCKER_MANIFEST);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let doc = manifest(None, OCI_MANIFEST_NO_TYPE);
        let m = doc.value();
        assert!(m.extra.contains_key("subject"));
        assert!(m.layers[0].extra.contains_key("artifactType"));
        let original: Value = serde_json::from_str(OCI_MANIFEST_NO_TYPE).unwrap();
        assert_eq!(serde_json::to_value(m).unwrap(), original);
        let list: Value = serde_json::from_str(OCI_INDEX_WITH_ATTESTATIONS).unwrap();
        let again = serde_json::to_value(index(OCI_INDEX_WITH_ATTESTATIONS).value()).unwrap();
        assert_eq!(again, list);
    }

    #[test]
    fn schema1_is_refused_clearly() {
        for (hint, text) in [
            (None, SCHEMA1),
            (Some(media_type::DOCKER_SCHEMA1_SIGNED_MANIFEST), SCHEMA1),
            (Some(media_type::DOCKER_SCHEMA1_MANIFEST), BUSYBOX_MANIFEST),
        ] {
            let e = error(hint, text);
            assert!(e.starts_with("schema1 manifests are not supported"), "{e}");
        }
    }

    #[test]
    fn kinds_that_cannot_be_read_are_named() {
        let mismatch = error(Some(media_type::OCI_INDEX), BUSYBOX_MANIFEST);
        assert!(mismatch.contains(media_type::OCI_INDEX), "{mismatch}");
        assert!(mismatch.contains(media_type::DOCKER_MANIFEST), "{mismatch}");
        let artifact =
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        assert!(error(None, artifact).contains("unsupported manifest media type"));
        let neither = r#"{"schemaVersion":2}"#;
        assert!(error(None, neither).contains("cannot tell what kind of document"));
        let both = r#"{"schemaVersion":2,"manifests":[],"config":{}}"#;
        assert!(error(None, both).contains("cannot tell what kind of document"));
        let v3 = r#"{"schemaVersion":3,"manifests":[]}"#;
        assert!(error(None, v3).contains("schemaVersion 3"));
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let bad_digest = BUSYBOX_MANIFEST.replace("sha256:3f4d", "sha256:XYZ");
        let negative_size = BUSYBOX_MANIFEST.replace("1457", "-1");
        let no_size = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824"},"layers":[]}"#;
        let no_platform_os = BUSYBOX_LIST.replace(
            r#""architecture": "arm", "os": "linux", "variant": "v6""#,
            r#""architecture": "arm""#,
        );
        let cases = [
            (bad_digest.as_str(), "layers[0].digest: invalid digest"),
            (
                negative_size.as_str(),
                "config.size: invalid value: integer `-1`",
            ),
            (no_size, "config: missing field `size`"),
            (
                no_platform_os.as_str(),
                "manifests[2].platform: missing field `os`",
            ),
            (
                r#"{"schemaVersion":2,"manifests":{}}"#,
                "manifests: invalid type: map",
            ),
            (
                "{\"schemaVersion\":2,",
                "invalid manifest: EOF while parsing",
            ),
            ("[2]", "invalid manifest: invalid type: sequence"),
            (
                "{\"schemaVersion\":2,\"manifests\":[]} {}",
                "invalid manifest: trailing characters",
            ),
            (r#"{"manifests":[]}"#, "missing field `schemaVersion`"),
        ];
        for (text, want) in cases {
            let e = error(None, text);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn platforms_are_chosen_as_docker_does() {
        let list = index(BUSYBOX_LIST);
        let list = list.value();
        for (want, chosen) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/arm/5", "linux/arm/v5"),
            ("linux/i386", "linux/386"),
            ("LINUX/S390X", "linux/s390x"),
        ] {
            assert_eq!(selected(list, want), chosen, "for {want}");
        }
        let attested = index(OCI_INDEX_WITH_ATTESTATIONS);
        let chosen = attested.value().select(&platform("linux/amd64")).unwrap();
        assert_eq!(chosen.digest, attested.value().manifests[0].digest);
    }

    #[test]
    fn older_variants_and_32_bit_platforms_are_the_fallback() {
        let text = r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:6ab28c2eb9a74202d17c03c4440238147a31710a6aa3c5cfc7da3fb4159fb974","size":1,"platform":{"architecture":"386","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:29f04295e2d0493680ba83429070fc16a4ffe889d539d412338297895c1b8b12","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v6"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:4037513af765d51219c27dbe51f70af2ecfaedf992a43afcb23885cefe5dca42","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:7496e6ea9e8ca525c1f7adf5a51f179b776171a35de82babfe3bf39a54d7aeba","size":1,"platform":{"architecture":"amd64","os":"linux","variant":"v2"}}]}"#;
        let doc = index(text);
        let idx = doc.value();
        // The exact match wins even when a compatible one comes first.
        assert_eq!(selected(idx, "linux/arm/v6"), "linux/arm/v6");
        assert_eq!(selected(idx, "linux/arm/v8"), "linux/arm/v7");
        assert_eq!(selected(idx, "linux/arm64"), "linux/arm/v7");
        assert_eq!(selected(idx, "linux/amd64/v3"), "linux/amd64/v2");
        // amd64 (v1) cannot run amd64/v2 code, but it runs 386.
        assert_eq!(selected(idx, "linux/amd64"), "linux/386");
    }

    #[test]
    fn no_match_lists_what_the_index_offers() {
        let doc = index(OCI_INDEX_WITH_ATTESTATIONS);
        let e = doc.value().select(&platform("linux/s390x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no manifest in the index matches platform linux/s390x; \
             it offers linux/amd64, unknown/unknown, linux/arm64/v8"
        );
        let empty = index(r#"{"schemaVersion":2,"manifests":[]}"#);
        let e = empty.value().select(&Platform::host()).unwrap_err();
        assert!(
            e.to_string().ends_with("it offers no platforms at all"),
            "{e}"
        );
        let windows = index(BUSYBOX_LIST)
            .value()
            .select(&platform("windows/amd64"))
            .map(|_| ());
        assert!(windows.is_err());
    }

    #[test]
    fn platform_strings() {
        assert_eq!(platform("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(platform("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(platform("linux/x86-64/v1").to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", ""] {
            let e = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid platform {bad:?}")), "{e}");
        }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn host_platform_is_linux_amd64() {
        assert_eq!(Platform::host(), Platform::new("linux", "amd64", None));
    }

    #[test]
    fn layer_compression_from_media_type() {
        use media_type::*;
        for (t, c) in [
            (DOCKER_LAYER, Compression::None),
            (DOCKER_LAYER_GZIP, Compression::Gzip),
            (DOCKER_FOREIGN_LAYER_GZIP, Compression::Gzip),
            (OCI_LAYER, Compression::None),
            (OCI_LAYER_GZIP, Compression::Gzip),
            (OCI_LAYER_ZSTD, Compression::Zstd),
            (OCI_NONDISTRIBUTABLE_LAYER, Compression::None),
            (OCI_NONDISTRIBUTABLE_LAYER_GZIP, Compression::Gzip),
            (OCI_NONDISTRIBUTABLE_LAYER_ZSTD, Compression::Zstd),
        ] {
            assert_eq!(layer_compression(t).unwrap(), c, "{t}");
        }
        let e = layer_compression(OCI_CONFIG).unwrap_err();
        assert!(e.to_string().contains(OCI_CONFIG), "{e}");
        assert!(is_non_distributable(DOCKER_FOREIGN_LAYER_GZIP));
        assert!(is_non_distributable(OCI_NONDISTRIBUTABLE_LAYER_ZSTD));
        assert!(!is_non_distributable(OCI_LAYER_GZIP));
    }
}
