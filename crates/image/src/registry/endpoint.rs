//! Where a registry's API lives, which scheme it is reached with, and the names that are safe
//! to put into its URLs.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::RegistryError;
use crate::digest::Digest;

/// Docker Hub's name in references and in credential stores.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy index name, also used as a credential key by `docker login`.
const DOCKER_HUB_INDEX: &str = "index.docker.io";
/// The host that actually serves Docker Hub's distribution API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A repository on a registry: `registry` as the user names it (`docker.io`, `myreg:5000`,
/// `127.0.0.1:5000`) and the repository path (`library/busybox`), both validated so that
/// neither can change the shape of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    name: String,
}

impl Repository {
    /// `name` is the full path as it appears in the API (`library/busybox` on Docker Hub, not
    /// `busybox`): expanding short names is the reference parser's job.
    pub fn new(registry: &str, name: &str) -> Result<Repository, RegistryError> {
        validate_registry(registry)?;
        if !valid_repository_name(name) {
            return Err(RegistryError::InvalidName(name.to_string()));
        }
        Ok(Repository {
            registry: registry.to_ascii_lowercase(),
            name: name.to_string(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub(crate) fn parse(s: &str) -> Result<Reference, RegistryError> {
        if s.contains(':') {
            let digest = s
                .parse()
                .map_err(|_| RegistryError::InvalidReference(s.to_string()))?;
            return Ok(Reference::Digest(digest));
        }
        if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(RegistryError::InvalidReference(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// Tags as the distribution spec has them: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok && tag.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Path components of lowercase alphanumerics joined by `.`, `_` or `-`, separated by `/`.
fn valid_repository_name(name: &str) -> bool {
    name.len() <= 255 && name.split('/').all(valid_path_component)
}

fn valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b"._-".contains(&b))
        }
        _ => false,
    }
}

fn validate_registry(registry: &str) -> Result<(), RegistryError> {
    let bad = registry.is_empty()
        || registry
            .chars()
            .any(|c| c.is_whitespace() || "/?#@\\".contains(c));
    if bad {
        return Err(RegistryError::InvalidRegistry(registry.to_string()));
    }
    Ok(())
}

/// The host that serves the API of `registry`: Docker Hub's names map to its API host.
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        DOCKER_HUB | DOCKER_HUB_INDEX => DOCKER_HUB_API,
        other => other,
    }
}

/// The keys under which credentials for `registry` may be stored, most specific first. Docker
/// keeps Docker Hub's credentials under `docker.io`, `index.docker.io` or the legacy
/// `https://index.docker.io/v1/`, never under the API host.
pub(crate) fn credential_keys(registry: &str) -> Vec<&str> {
    match registry {
        DOCKER_HUB | DOCKER_HUB_INDEX | DOCKER_HUB_API => {
            vec![DOCKER_HUB, DOCKER_HUB_INDEX, "https://index.docker.io/v1/"]
        }
        other => vec![other],
    }
}

/// The host part of `host[:port]`, `[v6]:port` or a bare IPv6 address.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, _port)) if !host.contains(':') => host,
        _ => authority,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether plain HTTP may be used with `authority` (`host[:port]`): loopback hosts on any
/// port, and the registries the user listed as insecure (matched exactly, as written).
pub(crate) fn plain_http_allowed(authority: &str, insecure: &[String]) -> bool {
    is_loopback(host_of(authority)) || insecure.iter().any(|i| i.eq_ignore_ascii_case(authority))
}

/// The base URL (`scheme://host[:port]/`) of the API serving `registry`.
pub(crate) fn api_base(registry: &str, insecure: &[String]) -> Result<Url, RegistryError> {
    let host = api_host(registry);
    let scheme = if plain_http_allowed(host, insecure) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host}/"))
        .map_err(|_| RegistryError::InvalidRegistry(registry.to_string()))
}

/// Whether `a` and `b` are the same origin (scheme, host and port): the only places the
/// registry's credentials may be sent to.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure() -> Vec<String> {
        vec!["myreg:5000".to_string()]
    }

    fn base(registry: &str) -> String {
        api_base(registry, &insecure()).unwrap().to_string()
    }

    #[test]
    fn loopback_and_insecure_registries_use_http() {
        assert_eq!(base("localhost"), "http://localhost/");
        assert_eq!(base("localhost:5000"), "http://localhost:5000/");
        assert_eq!(base("127.0.0.1:41234"), "http://127.0.0.1:41234/");
        assert_eq!(base("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(base("myreg:5000"), "http://myreg:5000/");
    }

    #[test]
    fn everything_else_uses_https() {
        assert_eq!(base("myreg:5001"), "https://myreg:5001/");
        assert_eq!(base("myreg"), "https://myreg/");
        assert_eq!(base("quay.io"), "https://quay.io/");
        assert_eq!(base("localhost.evil.com"), "https://localhost.evil.com/");
        assert_eq!(base("128.0.0.1:5000"), "https://128.0.0.1:5000/");
    }

    #[test]
    fn docker_hub_maps_to_its_api_host_but_keeps_credential_keys() {
        assert_eq!(base("docker.io"), "https://registry-1.docker.io/");
        assert_eq!(base("index.docker.io"), "https://registry-1.docker.io/");
        assert_eq!(
            credential_keys("docker.io")[..2],
            ["docker.io", "index.docker.io"]
        );
        assert_eq!(credential_keys("myreg:5000"), ["myreg:5000"]);
    }

    #[test]
    fn host_of_handles_ports_and_ipv6() {
        assert_eq!(host_of("a.b:5000"), "a.b");
        assert_eq!(host_of("a.b"), "a.b");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn names_that_could_change_a_url_are_rejected() {
        assert!(Repository::new("r:5000", "library/busybox").is_ok());
        assert!(Repository::new("r:5000", "a.b/c_d/e-f__g").is_ok());
        for bad in ["", "a//b", "../x", "a/../b", "A", "a?b", "a/", "-a", "a b"] {
            assert!(Repository::new("r", bad).is_err(), "{bad:?}");
        }
        for bad in ["", "r/x", "r?x", "user@r", "r x"] {
            assert!(Repository::new(bad, "a").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("v1.2_x-y").unwrap(),
            Reference::Tag("v1.2_x-y".into())
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            Reference::parse(&digest),
            Ok(Reference::Digest(_))
        ));
        for bad in ["", ".x", "a/b", "a?b", "sha256:zz", &"t".repeat(129)] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origin_comparison_covers_scheme_host_and_port() {
        let reg = Url::parse("https://reg.example/v2/x").unwrap();
        let same = Url::parse("https://reg.example:443/other").unwrap();
        for other in [
            "http://reg.example/v2/x",
            "https://reg.example:8443/v2/x",
            "https://storage.example/v2/x",
        ] {
            assert!(!same_origin(&reg, &Url::parse(other).unwrap()), "{other}");
        }
        assert!(same_origin(&reg, &same));
    }
}
