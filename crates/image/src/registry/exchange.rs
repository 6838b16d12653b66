//! One API request: credentials from the cache, one retry after a 401 challenge, redirects
//! followed by hand (the `Authorization` header only ever goes to the registry's own
//! origin), and error responses turned into [`RegistryError`]s.

use std::io::{ErrorKind, Read};

use ureq::http::{header, HeaderName, Method, Request, Response, StatusCode};
use ureq::{AsSendBody, Body, SendBody};
use url::Url;

use super::auth::{parse_challenge, parse_token, realm_gets_credentials, token_url, Challenge};
use super::endpoint::{credential_keys, same_origin, Repository};
use super::error::parse_error_body;
use super::{Credentials, RegistryClient, RegistryError};
use crate::digest::Digest;

/// Redirects followed for one GET or HEAD before giving up.
const MAX_REDIRECTS: usize = 10;
/// How much of an error body is read to find its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// Token server answers are small JSON documents.
const TOKEN_BODY_LIMIT: u64 = 1024 * 1024;

/// What a request is about, to name the right "not found" error.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Manifest(String),
    Blob(Digest),
    /// The repository as a whole: its tag list, an upload.
    Repository,
}

/// A request to a repository's API, with what is needed to authorize and explain it.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub repo: &'a Repository,
    /// The registry API's origin: credentials go nowhere else.
    pub base: Url,
    /// The token scope, e.g. `repository:library/busybox:pull`.
    pub scope: String,
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, String)>,
    pub subject: Subject,
}

/// Which response statuses a request is allowed to redirect on.
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The `Authorization` header for a hop to `target`: the registry's own, only if `target`
/// is the registry's origin; every other host gets none.
pub(crate) fn authorization_for(
    target: &Url,
    registry: &Url,
    authorization: Option<String>,
) -> Option<String> {
    authorization.filter(|_| same_origin(target, registry))
}

/// The next URL of a redirect: `Location` resolved against the URL that answered.
pub(crate) fn redirect_target(from: &Url, location: Option<&str>) -> Result<Url, RegistryError> {
    let bad = |reason: String| RegistryError::BadResponse {
        url: from.to_string(),
        reason,
    };
    let location = location.ok_or_else(|| bad("redirect without a Location header".into()))?;
    let target = from
        .join(location)
        .map_err(|e| bad(format!("invalid redirect Location {location:?}: {e}")))?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(bad(format!("redirect to a non-HTTP URL {target}")));
    }
    Ok(target)
}

pub(crate) fn header_str<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl RegistryClient {
    /// The credentials the caller gave for the registry of `repo`, if any.
    fn credentials(&self, repo: &Repository) -> Option<&Credentials> {
        credential_keys(repo.registry())
            .into_iter()
            .find_map(|key| self.options.credentials.get(key))
    }

    /// The `Authorization` header the cache holds for `call`, if any.
    fn cached_authorization(&self, call: &Call) -> Option<String> {
        let registry = call.repo.registry();
        if let Some(token) = self.auth.token(registry, &call.scope) {
            return Some(format!("Bearer {token}"));
        }
        let creds = self.credentials(call.repo)?;
        self.auth.uses_basic(registry).then(|| creds.basic_header())
    }

    /// Sends `call` to `url` once, with the cached `Authorization` only if `url` is the
    /// registry's origin.
    pub(crate) fn send_once(
        &self,
        call: &Call,
        url: &Url,
        body: impl AsSendBody,
    ) -> Result<Response<Body>, RegistryError> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(url.as_str());
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(auth) = authorization_for(url, &call.base, self.cached_authorization(call)) {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(body).map_err(|e| RegistryError::BadResponse {
            url: url.to_string(),
            reason: format!("cannot build request: {e}"),
        })?;
        self.agent.run(request).map_err(|e| transport_error(url, e))
    }

    /// Runs a replayable `call` (no body, or a byte body): authenticates on a 401 and retries
    /// once, follows redirects of GET and HEAD, and fails on any non-2xx answer.
    pub(crate) fn execute(
        &self,
        call: &Call,
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut resp = self.attempt(call, body)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.authenticate(call, &resp)?;
            resp = self.attempt(call, body)?;
        }
        if matches!(call.method, Method::GET | Method::HEAD) {
            resp = self.follow_redirects(call, resp)?;
        }
        check(call, resp)
    }

    fn attempt(&self, call: &Call, body: Option<&[u8]>) -> Result<Response<Body>, RegistryError> {
        match body {
            Some(bytes) => self.send_once(call, &call.url, bytes),
            None => self.send_once(call, &call.url, SendBody::none()),
        }
    }

    fn follow_redirects(
        &self,
        call: &Call,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut url = call.url.clone();
        for _ in 0..MAX_REDIRECTS {
            if !is_redirect(resp.status()) {
                return Ok(resp);
            }
            url = redirect_target(&url, header_str(&resp, "location"))?;
            resp = self.send_once(call, &url, SendBody::none())?;
        }
        Err(RegistryError::BadResponse {
            url: call.url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Answers a 401: buys a bearer token or switches the registry to Basic auth.
    fn authenticate(&self, call: &Call, resp: &Response<Body>) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }));
        match bearer.or(challenges.first()) {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => self.fetch_token(call, realm, service.as_deref(), scope.as_deref()),
            Some(Challenge::Basic) => self.use_basic(call),
            None => Err(unauthorized(
                call,
                "the registry demands authentication but sent no Bearer or Basic challenge",
            )),
        }
    }

    fn use_basic(&self, call: &Call) -> Result<(), RegistryError> {
        if self.credentials(call.repo).is_none() {
            let registry = call.repo.registry();
            let msg = format!("{registry} requires a username and password and none were given");
            return Err(unauthorized(call, &msg));
        }
        self.auth.mark_basic(call.repo.registry());
        Ok(())
    }

    /// Gets a token for `call`'s scope (and the challenge's, if it names another) from the
    /// realm and caches it under `call`'s scope.
    fn fetch_token(
        &self,
        call: &Call,
        realm: &str,
        service: Option<&str>,
        challenged: Option<&str>,
    ) -> Result<(), RegistryError> {
        let mut scopes = vec![call.scope.as_str()];
        scopes.extend(challenged.filter(|s| *s != call.scope));
        let url = token_url(realm, service, &scopes).map_err(|msg| unauthorized(call, &msg))?;
        let insecure = &self.options.insecure_registries;
        let creds = self
            .credentials(call.repo)
            .filter(|_| realm_gets_credentials(&url, &call.base, insecure));
        let mut request = Request::get(url.as_str());
        if let Some(creds) = creds {
            request = request.header(header::AUTHORIZATION, creds.basic_header());
        }
        let body = self.token_body(call, &url, request.body(()))?;
        let (token, lifetime) = parse_token(&body).map_err(|msg| unauthorized(call, &msg))?;
        let registry = call.repo.registry();
        self.auth
            .store_token(registry, &call.scope, token, lifetime);
        Ok(())
    }

    fn token_body(
        &self,
        call: &Call,
        url: &Url,
        request: Result<Request<()>, ureq::http::Error>,
    ) -> Result<Vec<u8>, RegistryError> {
        let request = request.map_err(|e| unauthorized(call, &format!("bad token realm: {e}")))?;
        let mut resp = self
            .agent
            .run(request)
            .map_err(|e| transport_error(url, e))?;
        let body = read_limited(url, &mut resp, TOKEN_BODY_LIMIT)?;
        if resp.status().is_success() {
            return Ok(body);
        }
        let report = parse_error_body(&body);
        let host = url.host_str().unwrap_or("?");
        let status = resp.status().as_u16();
        let msg = format!("token server {host} answered {status}: {}", report.message);
        Err(unauthorized(call, &msg))
    }
}

/// Passes 2xx answers through; turns every other one into the error it stands for.
pub(crate) fn check(
    call: &Call,
    mut resp: Response<Body>,
) -> Result<Response<Body>, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut reader = resp.body_mut().as_reader().take(ERROR_BODY_LIMIT);
    // The body only explains the failure: a broken one still leaves the status.
    reader.read_to_end(&mut body).ok();
    Err(classify(call, status, &body))
}

fn unauthorized(call: &Call, message: &str) -> RegistryError {
    RegistryError::Unauthorized {
        registry: call.repo.registry().to_string(),
        message: message.to_string(),
    }
}

/// A failed request, named by its cause; refusals name the URL that refused.
pub(crate) fn transport_error(url: &Url, error: ureq::Error) -> RegistryError {
    let refused = match &error {
        ureq::Error::Io(e) => e.kind() == ErrorKind::ConnectionRefused,
        ureq::Error::ConnectionFailed => true,
        _ => false,
    };
    if refused {
        return RegistryError::ConnectionRefused {
            url: url.to_string(),
        };
    }
    RegistryError::Transport {
        url: url.to_string(),
        source: error,
    }
}

/// The error a failed answer stands for, by status, the registry's error code and the
/// subject of the request.
pub(crate) fn classify(call: &Call, status: u16, body: &[u8]) -> RegistryError {
    let report = parse_error_body(body);
    let message = report.message;
    let repository = call.repo.to_string();
    match (status, report.code.as_deref(), &call.subject) {
        (401, ..) | (_, Some("UNAUTHORIZED"), _) => unauthorized(call, &message),
        (403, ..) | (_, Some("DENIED"), _) => RegistryError::Denied {
            repository,
            message,
        },
        (_, Some("NAME_UNKNOWN"), _) => RegistryError::NameUnknown {
            repository,
            message,
        },
        (404, None, Subject::Manifest(reference))
        | (_, Some("MANIFEST_UNKNOWN"), Subject::Manifest(reference)) => {
            RegistryError::ManifestUnknown {
                repository,
                reference: reference.clone(),
                message,
            }
        }
        (404, None, Subject::Blob(digest)) | (_, Some("BLOB_UNKNOWN"), Subject::Blob(digest)) => {
            RegistryError::BlobUnknown {
                repository,
                digest: digest.clone(),
                message,
            }
        }
        _ => RegistryError::Http {
            method: call.method.to_string(),
            url: call.url.to_string(),
            status,
            message,
        },
    }
}

/// Reads a whole (small) response body, failing beyond `limit` bytes.
pub(crate) fn read_limited(
    url: &Url,
    resp: &mut Response<Body>,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| RegistryError::Io {
            context: format!("reading the answer of {url}"),
            source: e,
        })?;
    if body.len() as u64 > limit {
        return Err(RegistryError::BadResponse {
            url: url.to_string(),
            reason: format!("answer larger than {limit} bytes"),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn authorization_is_stripped_when_a_redirect_leaves_the_registry() {
        let registry = url("https://reg.example/");
        let auth = || Some("Bearer t".to_string());
        let same = url("https://reg.example/v2/a/blobs/sha256:x");
        assert_eq!(authorization_for(&same, &registry, auth()), auth());
        for other in [
            "https://s3.amazonaws.com/bucket/blob?sig=1",
            "http://reg.example/v2/a/blobs/x",
            "https://reg.example:8443/v2/a/blobs/x",
            "https://reg.example.evil.com/x",
        ] {
            assert_eq!(authorization_for(&url(other), &registry, auth()), None);
        }
    }

    #[test]
    fn redirect_targets_resolve_relative_locations() {
        let from = url("http://127.0.0.1:5000/v2/a/blobs/sha256:x");
        let abs = "https://cdn.example/blob?x=1";
        assert_eq!(redirect_target(&from, Some(abs)).unwrap().as_str(), abs);
        assert_eq!(
            redirect_target(&from, Some("/storage/x")).unwrap().as_str(),
            "http://127.0.0.1:5000/storage/x"
        );
        assert_eq!(
            redirect_target(&from, Some("//other:1/y"))
                .unwrap()
                .as_str(),
            "http://other:1/y"
        );
        assert!(redirect_target(&from, None).is_err());
        assert!(redirect_target(&from, Some("file:///etc/passwd")).is_err());
    }

    fn call(repo: &Repository, subject: Subject) -> Call<'_> {
        Call {
            repo,
            base: url("http://r:5000/"),
            scope: "repository:a:pull".into(),
            method: Method::GET,
            url: url("http://r:5000/v2/a/manifests/latest"),
            headers: Vec::new(),
            subject,
        }
    }

    #[test]
    fn error_answers_map_to_distinct_errors() {
        let repo = Repository::new("r:5000", "a").unwrap();
        let manifest = call(&repo, Subject::Manifest("latest".into()));
        let blob = call(&repo, Subject::Blob(Digest::of(b"")));
        let body = |code: &str| format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
        let name_unknown = classify(&manifest, 404, body("NAME_UNKNOWN").as_bytes());
        assert!(matches!(name_unknown, RegistryError::NameUnknown { .. }));
        let tag_unknown = classify(&manifest, 404, body("MANIFEST_UNKNOWN").as_bytes());
        assert!(matches!(tag_unknown, RegistryError::ManifestUnknown { .. }));
        assert!(matches!(
            classify(&manifest, 404, b""),
            RegistryError::ManifestUnknown { .. }
        ));
        assert!(matches!(
            classify(&blob, 404, b""),
            RegistryError::BlobUnknown { .. }
        ));
        assert!(matches!(
            classify(&blob, 401, b""),
            RegistryError::Unauthorized { .. }
        ));
        let denied = classify(&blob, 403, body("DENIED").as_bytes());
        assert!(matches!(denied, RegistryError::Denied { .. }));
        let other = classify(&blob, 500, b"boom");
        assert_eq!(
            other.to_string(),
            "GET http://r:5000/v2/a/manifests/latest: HTTP 500: boom"
        );
    }
}
