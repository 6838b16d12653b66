//! The registry client's errors, and the mapping of a registry's error responses onto them.

use std::io;

use serde::Deserialize;

use crate::digest::Digest;

/// Everything that can go wrong talking to a registry, each case named so that callers (and
/// users) can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry name {0:?}: want host[:port]")]
    InvalidRegistry(String),
    #[error("invalid repository name {0:?}: want lowercase path components like library/busybox")]
    InvalidName(String),
    #[error("invalid reference {0:?}: want a tag or sha256:<64 hex digits>")]
    InvalidReference(String),
    #[error("repository {repository} not found: {message}")]
    NameUnknown { repository: String, message: String },
    #[error("manifest unknown: {repository}:{reference} not found: {message}")]
    ManifestUnknown {
        repository: String,
        reference: String,
        message: String,
    },
    #[error("blob unknown: {digest} not found in {repository}: {message}")]
    BlobUnknown {
        repository: String,
        digest: Digest,
        message: String,
    },
    #[error("authentication to {registry} failed: {message}")]
    Unauthorized { registry: String, message: String },
    #[error("access to {repository} denied: {message}")]
    Denied { repository: String, message: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, read {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("connection refused: {url}")]
    ConnectionRefused { url: String },
    #[error("{method} {url}: HTTP {status}: {message}")]
    Http {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl RegistryError {
    /// Recovers the typed error from an `io::Error` raised while reading a
    /// [`BlobReader`](super::BlobReader) (a digest or size mismatch found at end of stream);
    /// any other I/O error is kept as [`RegistryError::Io`] with `context`.
    pub fn from_io(error: io::Error, context: &str) -> RegistryError {
        match error.downcast::<RegistryError>() {
            Ok(typed) => typed,
            Err(error) => RegistryError::Io {
                context: context.to_string(),
                source: error,
            },
        }
    }
}

/// The error document of the distribution spec: `{"errors":[{"code":…,"message":…}]}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a failed response said: the first error code of its JSON body (if any) and a
/// one-line message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorReport {
    pub code: Option<String>,
    pub message: String,
}

const EXCERPT_CHARS: usize = 200;

/// Parses a registry error body; bodies that are not the spec's JSON give an excerpt.
pub(crate) fn parse_error_body(body: &[u8]) -> ErrorReport {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    if let Some(first) = parsed.as_ref().and_then(|b| b.errors.first()) {
        let messages: Vec<&str> = parsed
            .iter()
            .flat_map(|b| &b.errors)
            .map(|e| e.message.as_str())
            .filter(|m| !m.is_empty())
            .collect();
        return ErrorReport {
            code: Some(first.code.clone()).filter(|c| !c.is_empty()),
            message: messages.join("; "),
        };
    }
    ErrorReport {
        code: None,
        message: excerpt(body),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if line.is_empty() => "(empty body)".to_string(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_error_bodies_give_code_and_messages() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}},{"code":"X","message":"more"}]}"#;
        let report = parse_error_body(body);
        assert_eq!(report.code.as_deref(), Some("NAME_UNKNOWN"));
        assert_eq!(
            report.message,
            "repository name not known to registry; more"
        );
    }

    #[test]
    fn other_bodies_give_a_one_line_excerpt() {
        let report = parse_error_body(b"<html>\n  <b>bad gateway</b>\n</html>");
        assert_eq!(report.code, None);
        assert_eq!(report.message, "<html> <b>bad gateway</b> </html>");
        assert_eq!(parse_error_body(b"").message, "(empty body)");
        let long = parse_error_body("é".repeat(500).as_bytes()).message;
        assert_eq!(long.chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn typed_errors_survive_a_trip_through_io_error() {
        let expected = Digest::of(b"a");
        let actual = Digest::of(b"b");
        let mismatch = RegistryError::DigestMismatch { expected, actual };
        let io_err = io::Error::new(io::ErrorKind::InvalidData, mismatch);
        assert!(matches!(
            RegistryError::from_io(io_err, "reading"),
            RegistryError::DigestMismatch { .. }
        ));
        let plain = io::Error::new(io::ErrorKind::UnexpectedEof, "short");
        let err = RegistryError::from_io(plain, "reading layer");
        assert_eq!(err.to_string(), "reading layer: short");
    }
}
