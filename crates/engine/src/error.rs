//! The engine's errors, by what the Docker API makes of them (status codes).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: "No such container: x", "No such image: x", "No such exec instance: x", ...
    #[error("{0}")]
    NotFound(String),
    /// 409: name in use, removing a running container, image in use, ...
    #[error("{0}")]
    Conflict(String),
    /// 304: starting a running container, stopping a stopped one.
    #[error("{0}")]
    NotModified(String),
    /// 400: bad parameters (a malformed flag value, an invalid name, ...).
    #[error("{0}")]
    InvalidParameter(String),
    /// 500: everything else, with its context chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn no_such_container(name: impl fmt::Display) -> Error {
        Error::NotFound(format!("No such container: {name}"))
    }
    pub fn no_such_image(name: impl fmt::Display) -> Error {
        Error::NotFound(format!("No such image: {name}"))
    }
    /// The HTTP status the Docker API gives this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::NotModified(_) => 304,
            Error::InvalidParameter(_) => 400,
            Error::Internal(_) => 500,
        }
    }
    /// The message for the client: an internal error's whole context chain.
    pub fn message(&self) -> String {
        match self {
            Error::Internal(e) => chain_message(e),
            other => other.to_string(),
        }
    }
}

/// `outer: cause: …`, each cause once: an error whose own text already ends with its cause's
/// (thiserror's `{source}` in a message, ureq's `io: …`) does not repeat it.
fn chain_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if message.ends_with(&cause) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause);
    }
    message
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Internal(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_its_errors_text_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such host");
        let inner = anyhow::Error::new(io).context("io: no such host");
        let e = Error::Internal(inner.context("https://r/v2/"));
        assert_eq!(e.message(), "https://r/v2/: io: no such host");
        let plain = Error::Internal(anyhow::anyhow!("cause").context("outer"));
        assert_eq!(plain.message(), "outer: cause");
    }
}
