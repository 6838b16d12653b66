//! Matching a request path to a route: the optional `/v1.NN` prefix, then the pattern's
//! segments (`{id}` is one segment, `{name:.*}` one or more, greedily).

use std::collections::HashMap;

use hyper::Method;

use crate::api::{ApiError, Handler, Route, API_VERSION, MIN_API_VERSION};

pub struct Router {
    routes: Vec<(Route, Vec<Segment>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name:.*}`: one or more segments.
    Greedy(String),
}

/// What a path resolved to.
pub struct Matched {
    pub handler: Handler,
    pub params: HashMap<String, String>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let routes = routes
            .into_iter()
            .map(|r| {
                let segments = parse_pattern(r.pattern);
                (r, segments)
            })
            .collect();
        Router { routes }
    }

    /// The route for `method` and `path` (already stripped of its version). HEAD falls back
    /// to GET routes. Unknown paths, and known paths with another method, are 404 like
    /// Docker's "page not found".
    pub fn find(&self, method: &Method, path: &str) -> Result<Matched, ApiError> {
        let segments: Vec<&str> = split_path(path);
        let lookup = |m: &Method| {
            self.routes
                .iter()
                .filter(|(r, _)| r.method == *m)
                .find_map(|(r, pattern)| {
                    let mut params = HashMap::new();
                    match_segments(pattern, &segments, &mut params).then_some(Matched {
                        handler: r.handler,
                        params,
                    })
                })
        };
        lookup(method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| lookup(&Method::GET))
                    .flatten()
            })
            .ok_or_else(|| ApiError::not_found("page not found"))
    }
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    split_path(pattern)
        .into_iter()
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(inner) => match inner.split_once(':') {
                    Some((name, _regex)) => Segment::Greedy(name.to_string()),
                    None => Segment::Param(inner.to_string()),
                },
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn match_segments(
    pattern: &[Segment],
    path: &[&str],
    params: &mut HashMap<String, String>,
) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return path.is_empty();
    };
    match first {
        Segment::Literal(lit) => {
            path.first().is_some_and(|p| p == lit) && match_segments(rest, &path[1..], params)
        }
        Segment::Param(name) => {
            let Some(p) = path.first() else { return false };
            params.insert(name.clone(), decode(p));
            match_segments(rest, &path[1..], params)
        }
        Segment::Greedy(name) => {
            // Longest match first, leaving at least what the rest of the pattern needs.
            for take in (1..=path.len()).rev() {
                if match_segments(rest, &path[take..], params) {
                    params.insert(name.clone(), decode(&path[..take].join("/")));
                    return true;
                }
            }
            false
        }
    }
}

/// Split `/v1.44/containers/json` into the version and the rest. No prefix means the
/// newest version. Versions outside what berthd speaks are refused like Docker does.
pub fn strip_version(path: &str) -> Result<((u32, u32), &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((API_VERSION, path));
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let Some(parsed) = parse_version(version) else {
        // Not a version prefix after all (no route starts with /v, but be exact).
        return Ok((API_VERSION, path));
    };
    if parsed > API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {}.{}",
            API_VERSION.0, API_VERSION.1
        )));
    }
    if parsed < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {}.{}, \
             please upgrade your client to a newer version",
            MIN_API_VERSION.0, MIN_API_VERSION.1
        )));
    }
    Ok((parsed, tail))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{empty, BoxFuture, Ctx};

    fn nothing(_: Ctx) -> BoxFuture<'static, crate::api::ApiResult> {
        Box::pin(async { empty(hyper::StatusCode::OK) })
    }

    fn router() -> Router {
        Router::new(vec![
            crate::api::route(Method::GET, "/containers/{id}/json", nothing),
            crate::api::route(Method::GET, "/containers/json", nothing),
            crate::api::route(Method::GET, "/images/{name:.*}/json", nothing),
            crate::api::route(Method::DELETE, "/images/{name:.*}", nothing),
        ])
    }

    #[test]
    fn params_and_greedy_names() {
        let r = router();
        let m = r.find(&Method::GET, "/containers/abc/json").unwrap();
        assert_eq!(m.params["id"], "abc");
        assert!(r.find(&Method::GET, "/containers/json").is_ok());
        let m = r
            .find(
                &Method::GET,
                "/images/localhost:5000/library/busybox:1/json",
            )
            .unwrap();
        assert_eq!(m.params["name"], "localhost:5000/library/busybox:1");
        let m = r.find(&Method::DELETE, "/images/a/b%3Ac").unwrap();
        assert_eq!(m.params["name"], "a/b:c");
    }

    #[test]
    fn unknown_paths_and_methods_are_not_found() {
        let r = router();
        for (m, p) in [
            (Method::GET, "/nope"),
            (Method::POST, "/containers/json"),
            (Method::GET, "/containers/a/b/json"),
            (Method::GET, "/images/json/extra/x"),
        ] {
            let err = r
                .find(&m, p)
                .err()
                .unwrap_or_else(|| panic!("{m} {p} matched"));
            assert_eq!(err.status, hyper::StatusCode::NOT_FOUND);
            assert_eq!(err.message, "page not found");
        }
        assert!(r.find(&Method::HEAD, "/containers/json").is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(strip_version("/_ping").unwrap(), ((1, 44), "/_ping"));
        assert_eq!(strip_version("/v1.41/info").unwrap(), ((1, 41), "/info"));
        let err = strip_version("/v1.50/info").unwrap_err();
        assert_eq!(
            err.message,
            "client version 1.50 is too new. Maximum supported API version is 1.44"
        );
        assert!(strip_version("/v1.12/info")
            .unwrap_err()
            .message
            .contains("too old"));
    }
}
