//! Registry authentication: `WWW-Authenticate` challenges, credentials, token responses and
//! the token cache shared by every thread using one client.
//!
//! Where credentials go: the registry's own origin gets them (as Basic auth when it asks for
//! Basic, otherwise only as the bearer token bought with them). A bearer challenge's token
//! realm gets them as Basic auth too, but only when the realm is `https`, is the registry's own
//! origin, or is a host that plain HTTP is allowed to anyway (loopback or the insecure list).
//! Docker sends them to any realm; we refuse to send them in cleartext to a host the user did
//! not vouch for. A realm on another host over TLS (Docker Hub's `auth.docker.io`) does get
//! them: it is named by the registry the user chose to log in to, which could equally ask for
//! the credentials directly with a Basic challenge, so this exposes nothing new.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use super::endpoint::{plain_http_allowed, same_origin};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }

    /// The value of an `Authorization` header sending these credentials as Basic auth.
    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses one `WWW-Authenticate` value (`Bearer realm="…",service="…",scope="…"` or
/// `Basic realm="…"`). Unknown schemes and malformed parameters give `None`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let params = parse_params(rest)?;
    let param = |name: &str| params.get(name).cloned();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: param("realm")?,
            service: param("service"),
            scope: param("scope"),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `key=value` or `key="quoted, value"` pairs separated by commas; keys are lowercased.
fn parse_params(mut rest: &str) -> Option<HashMap<String, String>> {
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return Some(params);
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            return None;
        }
        let (value, after) = parse_value(after.trim_start())?;
        params.insert(key.to_ascii_lowercase(), value);
        rest = after;
    }
}

fn parse_value(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        return parse_quoted(quoted);
    }
    let end = s
        .find(|c: char| c == ',' || c.is_whitespace())
        .unwrap_or(s.len());
    Some((s[..end].to_string(), &s[end..]))
}

/// The rest of a quoted string (after its opening quote), with `\` escapes resolved.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// The token server's URL for a challenge: the realm with `service` and each scope as query
/// parameters. Only `http` and `https` realms are accepted.
pub(crate) fn token_url(
    realm: &str,
    service: Option<&str>,
    scopes: &[&str],
) -> Result<Url, String> {
    let mut url = Url::parse(realm).map_err(|e| format!("invalid token realm {realm:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("token realm {realm:?} is not an http(s) URL"));
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    Ok(url)
}

/// Whether the token realm may receive the registry's credentials (see the module docs).
pub(crate) fn realm_gets_credentials(realm: &Url, registry: &Url, insecure: &[String]) -> bool {
    if realm.scheme() == "https" || same_origin(realm, registry) {
        return true;
    }
    let authority = match (realm.host_str(), realm.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return false,
    };
    plain_http_allowed(&authority, insecure)
}

/// The token server's answer; Docker Hub sends `token`, OAuth2 servers `access_token`.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Tokens are kept at least this long, as Docker does, whatever `expires_in` says.
const MIN_TOKEN_LIFETIME: u64 = 60;
/// Tokens are dropped this much before they expire, to not race their expiry.
const TOKEN_EXPIRY_MARGIN: u64 = 5;

/// The token and how long it may be used, from a token server's JSON body.
pub(crate) fn parse_token(body: &[u8]) -> Result<(String, Duration), String> {
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| format!("token server answered with invalid JSON: {e}"))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("token server answered without a token")?;
    let lifetime = parsed.expires_in.unwrap_or(0).max(MIN_TOKEN_LIFETIME) - TOKEN_EXPIRY_MARGIN;
    Ok((token, Duration::from_secs(lifetime)))
}

/// Bearer tokens per (registry, scope) and the registries that asked for Basic auth, shared
/// by all threads of one client.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    state: Mutex<AuthState>,
}

#[derive(Debug, Default)]
struct AuthState {
    tokens: HashMap<(String, String), (String, Instant)>,
    basic: HashSet<String>,
}

impl AuthCache {
    fn lock(&self) -> MutexGuard<'_, AuthState> {
        // The state is a plain cache: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A still valid token for `scope` on `registry`.
    pub(crate) fn token(&self, registry: &str, scope: &str) -> Option<String> {
        let key = (registry.to_string(), scope.to_string());
        let state = self.lock();
        let (token, expires) = state.tokens.get(&key)?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    pub(crate) fn store_token(&self, registry: &str, scope: &str, token: String, life: Duration) {
        let key = (registry.to_string(), scope.to_string());
        self.lock()
            .tokens
            .insert(key, (token, Instant::now() + life));
    }

    pub(crate) fn uses_basic(&self, registry: &str) -> bool {
        self.lock().basic.contains(registry)
    }

    pub(crate) fn mark_basic(&self, registry: &str) {
        self.lock().basic.insert(registry.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let value = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse_challenge(value),
            Some(bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull,push")
            ))
        );
    }

    #[test]
    fn parses_spacing_case_escapes_and_unquoted_values() {
        let value = r#"bearer  Realm = "http://127.0.0.1:9/t\"x" , scope=repository:a:pull"#;
        assert_eq!(
            parse_challenge(value),
            Some(bearer(
                "http://127.0.0.1:9/t\"x",
                None,
                Some("repository:a:pull")
            ))
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Basic realm=basic-realm"),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
    }

    #[test]
    fn rejects_unknown_schemes_and_malformed_challenges() {
        for bad in [
            "",
            "Digest realm=\"x\"",
            "Bearer service=\"x\"",
            "Bearer realm=\"unterminated",
            "Bearer realm",
            "Bearer =x",
            "Bearer realm=\"x\\",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_url_carries_service_and_scopes() {
        let url = token_url(
            "https://auth.example/token?x=1",
            Some("reg ser"),
            &["repository:a/b:pull", "repository:c:pull,push"],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?x=1&service=reg+ser&scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%3Apull%2Cpush"
        );
        assert!(token_url("file:///etc/passwd", None, &[]).is_err());
        assert!(token_url("not a url", None, &[]).is_err());
    }

    #[test]
    fn credentials_go_to_realms_only_over_tls_or_trusted_hosts() {
        let url = |s: &str| Url::parse(s).unwrap();
        let insecure = vec!["auth.lan:8080".to_string()];
        let registry = url("http://myreg:5000/");
        let gets = |realm: &str| realm_gets_credentials(&url(realm), &registry, &insecure);
        assert!(gets("https://auth.docker.io/token"));
        assert!(gets("http://myreg:5000/token"));
        assert!(gets("http://127.0.0.1:4000/token"));
        assert!(gets("http://auth.lan:8080/token"));
        assert!(!gets("http://auth.lan/token"));
        assert!(!gets("http://evil.example/token"));
    }

    #[test]
    fn token_responses_accept_token_or_access_token() {
        let (token, life) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((token.as_str(), life.as_secs()), ("abc", 295));
        let (token, life) = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((token.as_str(), life.as_secs()), ("xyz", 55));
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn cache_keeps_tokens_per_registry_and_scope() {
        let cache = AuthCache::default();
        cache.store_token(
            "r",
            "repository:a:pull",
            "t".into(),
            Duration::from_secs(60),
        );
        cache.store_token("r", "repository:b:pull", "old".into(), Duration::ZERO);
        assert_eq!(cache.token("r", "repository:a:pull").as_deref(), Some("t"));
        assert_eq!(cache.token("r", "repository:a:push"), None);
        assert_eq!(cache.token("other", "repository:a:pull"), None);
        assert_eq!(cache.token("r", "repository:b:pull"), None, "expired");
        assert!(!cache.uses_basic("r"));
        cache.mark_basic("r");
        assert!(cache.uses_basic("r"));
    }

    #[test]
    fn basic_header_encodes_user_and_password_and_debug_hides_it() {
        let creds = Credentials::new("aladdin", "opensesame");
        assert_eq!(creds.basic_header(), "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
        assert!(!format!("{creds:?}").contains("opensesame"));
    }
}
