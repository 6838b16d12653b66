//! Image references (`[domain/]path[:tag][@digest]`) parsed exactly as Docker does
//! (github.com/distribution/reference: `ParseNormalizedNamed`, then `TagNameOnly`):
//! `busybox` is `docker.io/library/busybox:latest`.
//!
//! The grammar (from distribution's regexp.go), checked by hand rather than by a regex:
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*
//! domain           := host [':' port-number]
//! host             := domain-name | '[' IPv6 hex and colons ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! path-component   := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}/
//! ```

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry of names without a domain (Docker Hub).
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's old name, canonicalized to `DEFAULT_DOMAIN`.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of Docker Hub's official images: `busybox` is `library/busybox`.
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// The longest path (the name without its domain) Docker accepts.
const PATH_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A normalized reference: `domain` is never empty for a name Docker would pull (it can be
/// for odd names such as `foo_bar.com/x`, exactly as in Docker, whose parser does the same).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a string is not a reference; the messages are Docker's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    /// The repository path has uppercase letters (Docker 28 names the path).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// Uppercase elsewhere in the name (in something that cannot be a domain).
    #[error("repository name must be lowercase")]
    UppercaseName,
    #[error("repository name must not be more than {PATH_MAX} characters")]
    NameTooLong,
    /// 64 hex digits are an image id, never a name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    LooksLikeId(String),
    #[error("invalid tag format")]
    InvalidTag,
    /// A digest that fits the grammar but is not a sha256 digest (go-digest's messages).
    #[error("{0}")]
    InvalidDigest(&'static str),
}

/// Whether `s` is a full image id without its `sha256:` (64 lowercase hex digits), which
/// Docker never reads as a name.
pub fn looks_like_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

impl Reference {
    /// Parse as the docker CLI does: fill in `docker.io`, `library/` and, when neither tag
    /// nor digest is given, the `latest` tag.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if looks_like_id(s) {
            return Err(ReferenceError::LooksLikeId(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }
        let mut reference = parse(&format!("{domain}/{remainder}"))?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(reference)
    }

    /// The repository name, without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The repository name as Docker shows it: `busybox`, `user/app`, `myhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            // `library/a/b` keeps its prefix: only single-component names are official.
            Some(official) if !official.contains('/') => official.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it: `busybox:latest`, `myhost:5000/x:1`.
    pub fn familiar(&self) -> String {
        self.familiar_name() + &self.suffix()
    }

    /// `:tag@digest`, each part only if present.
    fn suffix(&self) -> String {
        let tag = self.tag.as_ref().map(|t| format!(":{t}"));
        let digest = self.digest.as_ref().map(|d| format!("@{d}"));
        tag.unwrap_or_default() + &digest.unwrap_or_default()
    }

    /// This repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::InvalidTag);
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// This repository with `digest` and no tag: the `name@sha256:…` form Docker lists as a
    /// repo digest.
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.suffix())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_normalized(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Docker's `splitDockerDomain`: decide whether the first component is a registry, and
/// canonicalize Docker Hub names. Works on the whole input, tag and digest included, as
/// neither can contain a `/`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((first, rest)) = name.split_once('/') else {
        // A single component is always a Docker Hub official image, even `localhost`.
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_PREFIX}{name}"));
    };
    let (domain, remote) = if first == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, rest)
    } else if first == "localhost"
        || first.contains(['.', ':'])
        // Paths are lowercase, so an uppercase first component can only be a host.
        || first.to_lowercase() != first
    {
        (first, rest)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_PREFIX}{remote}"));
    }
    (domain, remote.to_string())
}

/// Docker's `Parse`: the grammar alone, no normalization.
fn parse(s: &str) -> Result<Reference, ReferenceError> {
    let Some(parts) = Parts::split(s) else {
        let lower = s.to_lowercase();
        if lower != s && Parts::split(&lower).is_some() {
            return Err(ReferenceError::UppercaseName);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    if parts.path.len() > PATH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    Ok(Reference {
        domain: parts.domain.to_string(),
        path: parts.path.to_string(),
        tag: parts.tag.map(str::to_string),
        digest: parts.digest.map(parse_digest).transpose()?,
    })
}

/// A string cut along the grammar, each part checked.
struct Parts<'a> {
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn split(s: &'a str) -> Option<Parts<'a>> {
        // Only the digest follows an `@`, and it holds no `@` itself.
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) if is_digest(digest) => (rest, Some(digest)),
            Some(_) => return None,
            None => (s, None),
        };
        // A colon after the last slash cannot belong to a domain: it starts the tag.
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if last_slash.is_none_or(|i| i < name.len()) => (name, Some(tag)),
            _ => (rest, None),
        };
        if tag.is_some_and(|t| !is_tag(t)) {
            return None;
        }
        let (domain, path) = split_name(name)?;
        Some(Parts {
            domain,
            path,
            tag,
            digest,
        })
    }
}

/// Split a name into domain and path. The first component is the domain whenever it can
/// be one, as the regexp `^(?:(domain)/)?(path)$` matches leftmost-first: `a/b` is domain
/// `a`, path `b`.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = name.split_once('/') {
        if is_domain(first) && is_path(rest) {
            return Some((first, rest));
        }
    }
    is_path(name).then_some(("", name))
}

fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

pub(crate) fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `[a-z0-9]+` runs joined by one separator each: `.`, `_`, `__` or any number of `-`.
fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let ends_ok = bytes.first().is_some_and(|&b| is_lower_alnum(b))
        && bytes.last().is_some_and(|&b| is_lower_alnum(b));
    ends_ok
        && c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

fn is_domain(domain: &str) -> bool {
    // An IPv6 host has colons of its own; its port follows the closing bracket.
    let host_end = match domain.strip_prefix('[') {
        Some(v6) => v6.find(']').map_or(domain.len(), |i| i + 2),
        None => domain.find(':').unwrap_or(domain.len()),
    };
    let (host, port) = domain.split_at(host_end);
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && is_host(host)
}

fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    host.split('.').all(|c| {
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    })
}

/// `\w` is ASCII in Go's regexps: letters, digits and `_`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= TAG_MAX
        && bytes.first().is_some_and(|&b| word(b))
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// The digest grammar only; whether the algorithm is one we support is `parse_digest`'s.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let component_ok = |c: &str| {
        c.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && algorithm.split(['-', '_', '+', '.']).all(component_ok)
}

/// go-digest's validation, for sha256 (the only algorithm the store knows).
fn parse_digest(digest: &str) -> Result<Digest, ReferenceError> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    if algorithm != "sha256" {
        // go-digest calls an algorithm unsupported only if it is spelled as one could be.
        let spelled_ok = !algorithm.bytes().any(|b| b.is_ascii_uppercase());
        return Err(ReferenceError::InvalidDigest(if spelled_ok {
            "unsupported digest algorithm"
        } else {
            "invalid checksum digest format"
        }));
    }
    if hex.len() != 64 {
        return Err(ReferenceError::InvalidDigest(
            "invalid checksum digest length",
        ));
    }
    digest
        .parse()
        .map_err(|_| ReferenceError::InvalidDigest("invalid checksum digest format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    const ID: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

    fn norm(s: &str) -> Reference {
        Reference::parse_normalized(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> ReferenceError {
        Reference::parse_normalized(s).expect_err(s)
    }

    #[test]
    fn normalizes_like_docker() {
        for (input, full, familiar) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/user/app:v",
                "docker.io/user/app:v",
                "user/app:v",
            ),
            (
                "host:5000/a/b:tag",
                "host:5000/a/b:tag",
                "host:5000/a/b:tag",
            ),
            ("myhost:5000/x:1", "myhost:5000/x:1", "myhost:5000/x:1"),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost",
                "docker.io/library/localhost:latest",
                "localhost:latest",
            ),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000/x:latest",
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest",
                "127.0.0.1:5000/x:latest",
            ),
            (
                "[::1]:5000/repo",
                "[::1]:5000/repo:latest",
                "[::1]:5000/repo:latest",
            ),
            (
                "library/foo/bar",
                "docker.io/library/foo/bar:latest",
                "library/foo/bar:latest",
            ),
            ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
            (
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
                "lowercase:Uppercase",
            ),
            // Docker's parser reads an invalid host as a path: no domain at all.
            (
                "foo_bar.com/x",
                "foo_bar.com/x:latest",
                "foo_bar.com/x:latest",
            ),
        ] {
            let r = norm(input);
            assert_eq!(
                (r.to_string().as_str(), r.familiar().as_str()),
                (full, familiar),
                "{input}"
            );
        }
    }

    #[test]
    fn digests_with_and_without_tags() {
        let r = norm(&format!("busybox@sha256:{HEX}"));
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_ref().map(|d| d.hex())),
            (None, Some(HEX))
        );
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        let short = format!("busybox:latest@sha256:{HEX}");
        let r = norm(&short);
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
        assert_eq!((r.tag.as_deref(), r.familiar()), (Some("latest"), short));
        let r = norm(&format!("[2001:db8::1]:5000/repo:tag@sha256:{HEX}"));
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("[2001:db8::1]:5000", "repo")
        );
        assert_eq!(r.tag.as_deref(), Some("tag"));
    }

    #[test]
    fn accepts_distributions_valid_names() {
        for name in [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "xn--n3h.com/myimage:xn--n3h.com",
            "foo/foo_bar.com:8080",
            "192.168.1.1:5000/repo:5050",
            "[2001:db8::]:5000/repo",
        ] {
            norm(name);
        }
    }

    #[test]
    fn rejects_distributions_invalid_names() {
        let long_namespace = format!("{}/docker", "a_b".repeat(90));
        for name in [
            "",
            ":justtag",
            "https://github.com/docker/docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "dock___er/docker",
            "docker/",
            "/docker",
            "a//b",
            "aa/asdf$$^/aa",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            "busybox@",
            "busybox@sha256:abc",
            "busybox:a@b@sha256:ffffffffffffffffffffffffffffffff",
            "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            &long_namespace,
        ] {
            assert!(
                Reference::parse_normalized(name).is_err(),
                "{name:?} accepted"
            );
        }
    }

    #[test]
    fn errors_say_what_docker_says() {
        assert_eq!(err("").to_string(), "invalid reference format");
        // Docker checks case on everything before the first colon, a digest's algorithm too.
        assert_eq!(
            err(&format!("repo@SHA256:{HEX}")),
            ReferenceError::Uppercase("library/repo@SHA256".into())
        );
        assert_eq!(err("busybox:-x").to_string(), "invalid reference format");
        assert_eq!(err("a//b"), ReferenceError::InvalidFormat);
        assert_eq!(
            err(&format!("busybox:{}", "t".repeat(129))),
            ReferenceError::InvalidFormat
        );
        norm(&format!("busybox:{}", "t".repeat(128)));
        assert_eq!(
            err("Busybox").to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(
            err("docker/Docker"),
            ReferenceError::Uppercase("docker/Docker".into())
        );
        assert_eq!(
            err("test:5000/Uppercase/lowercase:tag"),
            ReferenceError::Uppercase("Uppercase/lowercase".into())
        );
        assert_eq!(
            err("Foo_bar/x").to_string(),
            "repository name must be lowercase"
        );
        let too_long = format!("{}a:tag", "a/".repeat(128));
        assert_eq!(
            err(&too_long).to_string(),
            "repository name must not be more than 255 characters"
        );
        norm(&format!("{}a:tag-puts-this-over-max", "a/".repeat(127)));
        assert_eq!(
            err(ID).to_string(),
            format!("invalid repository name ({ID}), cannot specify 64-byte hexadecimal strings")
        );
        for (digest, message) in [
            (
                format!("sha256:{}", &HEX[..40]),
                "invalid checksum digest length",
            ),
            (
                format!("sha256:{}", HEX.to_uppercase()),
                "invalid checksum digest format",
            ),
            (
                format!("invaliddigest:{HEX}"),
                "unsupported digest algorithm",
            ),
            (format!("SHA256:{HEX}"), "invalid checksum digest format"),
            // Docker accepts sha512; the store holds sha256 blobs only.
            (format!("sha512:{HEX}{HEX}"), "unsupported digest algorithm"),
        ] {
            assert_eq!(err(&format!("repo:t@{digest}")).to_string(), message);
        }
    }

    #[test]
    fn ids_are_not_names() {
        assert!(looks_like_id(ID));
        assert!(!looks_like_id(&ID[..63]));
        assert!(!looks_like_id(&ID.to_uppercase()));
        assert_eq!(err(ID), ReferenceError::LooksLikeId(ID.into()));
        // One digit short, or a prefix, is an ordinary name.
        assert_eq!(
            norm(&ID[..63]).to_string(),
            format!("docker.io/library/{}:latest", &ID[..63])
        );
        assert_eq!(norm("dbcc1").to_string(), "docker.io/library/dbcc1:latest");
    }

    #[test]
    fn repository_info_table() {
        // (path, familiar name, full name, another spelling, domain) from normalize_test.go.
        for (path, familiar, full, other, domain) in [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ] {
            for input in [familiar, full, other]
                .into_iter()
                .filter(|s| !s.is_empty())
            {
                let r = norm(input);
                assert_eq!(
                    (
                        r.path.as_str(),
                        r.familiar_name(),
                        r.name(),
                        r.domain.as_str()
                    ),
                    (path, familiar.to_string(), full.to_string(), domain),
                    "{input}"
                );
            }
        }
    }

    #[test]
    fn split_hostname_table() {
        for (input, domain, path) in [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ] {
            let r = norm(input);
            assert_eq!(
                (r.domain.as_str(), r.path.as_str()),
                (domain, path),
                "{input}"
            );
        }
    }

    #[test]
    fn plain_parse_table() {
        // reference_test.go's TestReferenceParse: (input, domain, name, tag), digests aside.
        let long = format!("{}a", "a/".repeat(127));
        let long_input = format!("{long}:tag-puts-this-over-max");
        for (input, domain, name, tag) in [
            ("test_com", "", "test_com", None),
            ("test.com:tag", "", "test.com", Some("tag")),
            ("test.com:5000", "", "test.com", Some("5000")),
            (
                "test.com/repo:tag",
                "test.com",
                "test.com/repo",
                Some("tag"),
            ),
            ("test:5000/repo", "test:5000", "test:5000/repo", None),
            (
                "test:5000/repo:tag",
                "test:5000",
                "test:5000/repo",
                Some("tag"),
            ),
            (&long_input, "a", &long, Some("tag-puts-this-over-max")),
            ("foo_bar.com:8080", "", "foo_bar.com", Some("8080")),
            (
                "foo/foo_bar.com:8080",
                "foo",
                "foo/foo_bar.com",
                Some("8080"),
            ),
            ("192.168.1.1", "", "192.168.1.1", None),
            ("192.168.1.1:tag", "", "192.168.1.1", Some("tag")),
            ("192.168.1.1:5000", "", "192.168.1.1", Some("5000")),
            ("192.168.1.1/repo", "192.168.1.1", "192.168.1.1/repo", None),
            (
                "[2001:db8::1]/repo",
                "[2001:db8::1]",
                "[2001:db8::1]/repo",
                None,
            ),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
                "[2001:db8:1:2:3:4:5:6]",
                "[2001:db8:1:2:3:4:5:6]/repo",
                Some("tag"),
            ),
            (
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "[2001:db8::1]:5000/repo",
                None,
            ),
        ] {
            let r = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.domain.as_str(), r.name(), r.tag.as_deref()),
                (domain, name.to_string(), tag),
                "{input}"
            );
            assert_eq!(r.to_string(), input);
        }
        let r = parse(&format!("test:5000/repo@sha256:{HEX}")).unwrap();
        assert_eq!(
            (r.tag, r.digest.map(|d| d.to_string())),
            (None, Some(format!("sha256:{HEX}")))
        );
        for (input, error) in [
            ("Uppercase:tag", ReferenceError::UppercaseName),
            (
                "test:5000/Uppercase/lowercase:tag",
                ReferenceError::UppercaseName,
            ),
            ("[2001:db8::1]", ReferenceError::InvalidFormat),
            ("[2001:db8::1]:5000", ReferenceError::InvalidFormat),
            ("[2001:db8::1]:tag", ReferenceError::InvalidFormat),
            ("[fe80::1%eth0]:5000/repo", ReferenceError::InvalidFormat),
            (
                "[fe80::1%@invalidzone]:5000/repo",
                ReferenceError::InvalidFormat,
            ),
        ] {
            assert_eq!(parse(input).expect_err(input), error, "{input}");
        }
    }

    #[test]
    fn familiar_and_full_forms_round_trip() {
        for input in [
            "busybox",
            "user/app:1",
            "library/foo/bar",
            "myhost:5000/x:1",
            "localhost/x@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "[::1]:5000/a/b:c@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "Foo/bar",
            "foo_bar.com/x",
        ] {
            let r = norm(input);
            assert_eq!(norm(&r.familiar()), r, "{input}");
            assert_eq!(norm(&r.to_string()), r, "{input}");
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        }
    }

    #[test]
    fn retagging() {
        let r = norm(&format!("busybox:1@sha256:{HEX}"));
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(
            r.with_tag("2").unwrap().to_string(),
            "docker.io/library/busybox:2"
        );
        assert_eq!(r.with_tag("-2"), Err(ReferenceError::InvalidTag));
        assert_eq!(
            r.with_tag(&"x".repeat(129)),
            Err(ReferenceError::InvalidTag)
        );
        let d = Digest::of(b"manifest");
        assert_eq!(
            norm("busybox").with_digest(&d).familiar(),
            format!("busybox@{d}")
        );
    }
}
