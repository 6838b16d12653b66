//! The public client: manifests and blobs of one repository, pulled and pushed.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use ureq::http::{header, Method, Response};
use ureq::{Agent, Body, SendBody};

use super::auth::AuthCache;
use super::endpoint::{api_base, Reference, Repository};
use super::exchange::{check, header_str, read_limited, Call, Subject};
use super::{BlobReader, Credentials, RegistryError};
use crate::digest::{Digest, DigestReader};
use crate::manifest::media_type::ACCEPTED_MANIFESTS;

/// Manifests larger than this are refused (the distribution registry's own limit).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const CONTENT_DIGEST: &str = "docker-content-digest";

/// How a [`RegistryClient`] reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host:port`, as written in references) that may be reached over plain
    /// HTTP; loopback hosts always may.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry, keyed as `docker login` keys them (`docker.io` or
    /// `index.docker.io` for Docker Hub, `host:port` otherwise).
    pub credentials: HashMap<String, Credentials>,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure_registries: Vec::new(),
            credentials: HashMap::new(),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A manifest as the registry served it, with the digest of exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestResponse {
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry sent (parameters stripped), or the manifest's own
    /// `mediaType` field when it sent none.
    pub media_type: String,
    pub digest: Digest,
}

/// What a HEAD of a manifest tells without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, or the reference itself when that is a digest.
    pub digest: Option<Digest>,
    pub media_type: String,
    pub size: Option<u64>,
}

/// A client of the OCI distribution API. It is `Send + Sync`: share one between the threads
/// pulling layers, so they share connections and tokens.
#[derive(Debug)]
pub struct RegistryClient {
    pub(crate) agent: Agent,
    pub(crate) options: ClientOptions,
    pub(crate) auth: AuthCache,
}

#[derive(Clone, Copy)]
enum Action {
    Pull,
    Push,
}

impl RegistryClient {
    pub fn new(options: ClientOptions) -> RegistryClient {
        let agent = Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(options.user_agent.as_str())
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        RegistryClient {
            agent,
            options,
            auth: AuthCache::default(),
        }
    }

    /// A request for `/v2/<repo>/<path>`.
    fn call<'a>(
        &self,
        repo: &'a Repository,
        action: Action,
        method: Method,
        path: &str,
        subject: Subject,
    ) -> Result<Call<'a>, RegistryError> {
        let base = api_base(repo.registry(), &self.options.insecure_registries)?;
        let url = base
            .join(&format!("v2/{}/{path}", repo.name()))
            .map_err(|_| RegistryError::InvalidName(repo.name().to_string()))?;
        let actions = match action {
            Action::Pull => "pull",
            Action::Push => "pull,push",
        };
        Ok(Call {
            scope: format!("repository:{}:{actions}", repo.name()),
            repo,
            base,
            method,
            url,
            headers: Vec::new(),
            subject,
        })
    }

    fn manifest_call<'a>(
        &self,
        repo: &'a Repository,
        reference: &Reference,
        method: Method,
        accept: &[&str],
    ) -> Result<Call<'a>, RegistryError> {
        let subject = Subject::Manifest(reference.to_string());
        let path = format!("manifests/{reference}");
        let mut call = self.call(repo, Action::Pull, method, &path, subject)?;
        let accept = if accept.is_empty() {
            &ACCEPTED_MANIFESTS
        } else {
            accept
        };
        call.headers.push((header::ACCEPT, accept.join(", ")));
        Ok(call)
    }

    /// Fetches a manifest by tag or digest. The digest of the bytes is computed; it must
    /// equal the reference when that is a digest, and `Docker-Content-Digest` when the
    /// registry sent one. `accept` lists media types; empty means all four manifest kinds.
    pub fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        accept: &[&str],
    ) -> Result<ManifestResponse, RegistryError> {
        let reference = Reference::parse(reference)?;
        let call = self.manifest_call(repo, &reference, Method::GET, accept)?;
        let mut resp = self.fetch_manifest(&call)?;
        let bytes = read_limited(&call.url, &mut resp, MANIFEST_LIMIT)?;
        let digest = Digest::of(&bytes);
        if let Reference::Digest(expected) = &reference {
            check_digest(expected, &digest)?;
        }
        check_header_digest(&resp, &digest)?;
        let media_type = media_type(&resp).unwrap_or_else(|| embedded_media_type(&bytes));
        Ok(ManifestResponse {
            bytes,
            media_type,
            digest,
        })
    }

    /// Runs a manifest GET or HEAD. Registries answer MANIFEST_UNKNOWN for a tag of a
    /// repository that does not exist; the tag list tells the two apart.
    fn fetch_manifest(&self, call: &Call) -> Result<Response<Body>, RegistryError> {
        match self.execute(call, None) {
            Err(RegistryError::ManifestUnknown { .. }) if self.repository_missing(call.repo) => {
                Err(RegistryError::NameUnknown {
                    repository: call.repo.to_string(),
                    message: "repository name not known to registry".into(),
                })
            }
            other => other,
        }
    }

    /// Whether the registry says the repository does not exist (`GET tags/list` answering
    /// NAME_UNKNOWN); any other answer, even an error, is not proof of that.
    fn repository_missing(&self, repo: &Repository) -> bool {
        let call = self.call(
            repo,
            Action::Pull,
            Method::GET,
            "tags/list?n=1",
            Subject::Repository,
        );
        let answer = call.map(|call| self.execute(&call, None));
        matches!(answer, Ok(Err(RegistryError::NameUnknown { .. })))
    }

    /// Asks for a manifest without its body: whether it exists, its digest and type. Fails
    /// like [`get_manifest`](Self::get_manifest) for unknown repositories and tags.
    pub fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        accept: &[&str],
    ) -> Result<ManifestHead, RegistryError> {
        let reference = Reference::parse(reference)?;
        let call = self.manifest_call(repo, &reference, Method::HEAD, accept)?;
        let resp = self.fetch_manifest(&call)?;
        let announced = header_str(&resp, CONTENT_DIGEST).and_then(|d| d.parse().ok());
        let digest = match reference {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(_) => announced,
        };
        Ok(ManifestHead {
            digest,
            media_type: media_type(&resp).unwrap_or_default(),
            size: content_length(&resp),
        })
    }

    /// Whether the repository holds the blob (a HEAD request; 404 is `false`).
    pub fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
        self.blob_exists_for(repo, digest, Action::Pull)
    }

    fn blob_exists_for(
        &self,
        repo: &Repository,
        digest: &Digest,
        action: Action,
    ) -> Result<bool, RegistryError> {
        let subject = Subject::Blob(digest.clone());
        let path = format!("blobs/{digest}");
        let call = self.call(repo, action, Method::HEAD, &path, subject)?;
        match self.execute(&call, None) {
            Ok(_) => Ok(true),
            Err(RegistryError::BlobUnknown { .. } | RegistryError::NameUnknown { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts downloading a blob; the returned stream verifies its digest at end of stream.
    /// Redirects (to storage on other hosts) are followed without the registry's credentials.
    pub fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<BlobReader, RegistryError> {
        let subject = Subject::Blob(digest.clone());
        let path = format!("blobs/{digest}");
        let call = self.call(repo, Action::Pull, Method::GET, &path, subject)?;
        let resp = self.execute(&call, None)?;
        let length = content_length(&resp);
        let body = Box::new(resp.into_body().into_reader());
        Ok(BlobReader::new(body, digest.clone(), length))
    }

    /// Uploads a blob of `size` bytes read from `content`, unless the repository already has
    /// it. Returns whether it was uploaded. The content is hashed as it is sent: content
    /// that does not match `digest` fails with [`RegistryError::DigestMismatch`].
    pub fn push_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: u64,
        content: impl Read,
    ) -> Result<bool, RegistryError> {
        if self.blob_exists_for(repo, digest, Action::Push)? {
            return Ok(false);
        }
        let mut call = self.start_upload(repo)?;
        call.url
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        call.subject = Subject::Blob(digest.clone());
        call.headers
            .push((header::CONTENT_TYPE, "application/octet-stream".into()));
        call.headers
            .push((header::CONTENT_LENGTH, size.to_string()));
        let mut hashed = DigestReader::new(content.take(size));
        let sent = self.send_once(&call, &call.url, SendBody::from_reader(&mut hashed));
        let (actual, count) = hashed.finish();
        let resp = sent?;
        if count != size {
            return Err(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: count,
            });
        }
        check_digest(digest, &actual)?;
        check(&call, resp)?;
        Ok(true)
    }

    /// `POST /v2/<repo>/blobs/uploads/`: the PUT call to the upload's `Location`.
    fn start_upload<'a>(&self, repo: &'a Repository) -> Result<Call<'a>, RegistryError> {
        let path = "blobs/uploads/";
        let mut call = self.call(repo, Action::Push, Method::POST, path, Subject::Repository)?;
        call.headers.push((header::CONTENT_LENGTH, "0".into()));
        let resp = self.execute(&call, None)?;
        let location = header_str(&resp, "location").ok_or_else(|| RegistryError::BadResponse {
            url: call.url.to_string(),
            reason: "upload started without a Location header".into(),
        })?;
        call.url = call
            .url
            .join(location)
            .map_err(|e| RegistryError::BadResponse {
                url: call.url.to_string(),
                reason: format!("invalid upload Location {location:?}: {e}"),
            })?;
        call.method = Method::PUT;
        call.headers.clear();
        Ok(call)
    }

    /// Uploads a manifest under a tag (or its digest); returns the digest of `bytes`, checked
    /// against the `Docker-Content-Digest` the registry answers with.
    pub fn push_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let reference = Reference::parse(reference)?;
        let digest = Digest::of(bytes);
        if let Reference::Digest(expected) = &reference {
            check_digest(expected, &digest)?;
        }
        let subject = Subject::Manifest(reference.to_string());
        let path = format!("manifests/{reference}");
        let mut call = self.call(repo, Action::Push, Method::PUT, &path, subject)?;
        call.headers
            .push((header::CONTENT_TYPE, media_type.to_string()));
        let resp = self.execute(&call, Some(bytes))?;
        check_header_digest(&resp, &digest)?;
        Ok(digest)
    }
}

fn check_digest(expected: &Digest, actual: &Digest) -> Result<(), RegistryError> {
    if expected == actual {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        expected: expected.clone(),
        actual: actual.clone(),
    })
}

/// Compares a sha256 `Docker-Content-Digest` with what was computed; other algorithms, which
/// this client cannot check, are ignored.
fn check_header_digest(resp: &Response<Body>, actual: &Digest) -> Result<(), RegistryError> {
    let announced = header_str(resp, CONTENT_DIGEST).and_then(|d| d.parse::<Digest>().ok());
    match announced {
        Some(expected) => check_digest(&expected, actual),
        None => Ok(()),
    }
}

fn media_type(resp: &Response<Body>) -> Option<String> {
    let value = header_str(resp, header::CONTENT_TYPE.as_str())?;
    let essence = value.split(';').next().unwrap_or(value).trim();
    let generic = [
        "",
        "application/json",
        "text/plain",
        "application/octet-stream",
    ];
    (!generic.contains(&essence)).then(|| essence.to_string())
}

/// The `mediaType` field of a manifest, or "" when it has none.
fn embedded_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct MediaType {
        #[serde(rename = "mediaType", default)]
        media_type: String,
    }
    serde_json::from_slice::<MediaType>(bytes)
        .map(|m| m.media_type)
        .unwrap_or_default()
}

fn content_length(resp: &Response<Body>) -> Option<u64> {
    header_str(resp, "content-length").and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_shareable_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<RegistryClient>();
        fn sendable<T: Send>() {}
        sendable::<BlobReader>();
    }

    #[test]
    fn manifest_media_type_falls_back_to_the_document() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#;
        assert_eq!(
            embedded_media_type(oci),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(embedded_media_type(br#"{"schemaVersion":2}"#), "");
        assert_eq!(embedded_media_type(b"not json"), "");
    }

    #[test]
    fn calls_name_the_repository_path_and_scope() {
        let client = RegistryClient::new(ClientOptions::default());
        let repo = Repository::new("docker.io", "library/busybox").unwrap();
        let call = client
            .call(
                &repo,
                Action::Push,
                Method::GET,
                "tags/list",
                Subject::Repository,
            )
            .unwrap();
        assert_eq!(
            call.url.as_str(),
            "https://registry-1.docker.io/v2/library/busybox/tags/list"
        );
        assert_eq!(call.scope, "repository:library/busybox:pull,push");
    }
}
