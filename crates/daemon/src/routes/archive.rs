//! Files in and out of containers: `HEAD|GET|PUT /containers/{id}/archive` (`docker cp`),
//! `GET /containers/{id}/export`, `GET /containers/{id}/changes` (`docker diff`) and
//! `POST /commit`.

use base64::Engine as _;
use berth_engine::archive::PathStat;
use berth_engine::commit::CommitOptions;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};

use crate::api::{
    blocking, blocking_stream, empty, json, route, ApiError, ApiResult, BoxFuture, Ctx, Response,
    Route,
};

const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";
const TAR: &str = "application/x-tar";

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::HEAD, "/containers/{id}/archive", stat),
        route(Method::GET, "/containers/{id}/archive", get),
        route(Method::PUT, "/containers/{id}/archive", put),
        route(Method::GET, "/containers/{id}/export", export),
        route(Method::GET, "/containers/{id}/changes", changes),
        route(Method::POST, "/commit", commit),
    ]
}

/// `?path=`, which Docker requires.
fn path_param(ctx: &Ctx) -> Result<String, ApiError> {
    match ctx.query.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path cannot be empty")),
    }
}

/// The stat as Docker sends it: base64 of its JSON.
fn with_stat(mut resp: Response, stat: &PathStat) -> ApiResult {
    let json = serde_json::to_vec(stat)
        .map_err(|e| ApiError::internal(format!("cannot encode the path stat: {e}")))?;
    let value = base64::engine::general_purpose::STANDARD.encode(json);
    let value = HeaderValue::from_str(&value)
        .map_err(|e| ApiError::internal(format!("bad path stat header: {e}")))?;
    resp.headers_mut().insert(PATH_STAT_HEADER, value);
    Ok(resp)
}

fn stat(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let path = path_param(&ctx)?;
        let id = ctx.param("id").to_string();
        let engine = ctx.engine.clone();
        let stat = blocking(move || engine.archive_stat(&id, &path)).await?;
        with_stat(empty(StatusCode::OK)?, &stat)
    })
}

fn get(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let path = path_param(&ctx)?;
        let id = ctx.param("id").to_string();
        let engine = ctx.engine.clone();
        let (source, stat) = blocking(move || engine.archive_get(&id, &path)).await?;
        let resp = blocking_stream(TAR, move |out| source.write_to(out));
        with_stat(resp, &stat)
    })
}

fn put(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let path = path_param(&ctx)?;
        let no_overwrite = ctx.query.bool("noOverwriteDirNonDir");
        let copy_uid_gid = ctx.query.bool("copyUIDGID");
        let (parts, body) = ctx.blocking_body();
        let id = parts.param("id").to_string();
        let engine = parts.engine.clone();
        let body = DrainedOnDrop(body);
        blocking(move || engine.archive_put(&id, &path, body, no_overwrite, copy_uid_gid)).await?;
        empty(StatusCode::OK)
    })
}

fn export(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let id = ctx.param("id").to_string();
        // The container must exist before the 200 goes out.
        let found = ctx.engine.containers.get(&id)?;
        let engine = ctx.engine.clone();
        let id = found.id.clone();
        Ok(blocking_stream(TAR, move |out| {
            engine
                .export_container(&id, out)
                .map_err(|e| anyhow::anyhow!(e.message()))
        }))
    })
}

fn changes(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let id = ctx.param("id").to_string();
        let engine = ctx.engine.clone();
        let list = blocking(move || engine.container_changes(&id)).await?;
        let body: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "Path": c.path.to_string_lossy(),
                    "Kind": c.kind.api_kind(),
                })
            })
            .collect();
        json(StatusCode::OK, &body)
    })
}

fn commit(mut ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let q = &ctx.query;
        let container = q.get("container").unwrap_or("").to_string();
        let mut opts = CommitOptions {
            repo: q.get("repo").unwrap_or("").to_string(),
            tag: q.get("tag").unwrap_or("").to_string(),
            comment: q.get("comment").unwrap_or("").to_string(),
            author: q.get("author").unwrap_or("").to_string(),
            pause: q.bool_or("pause", true),
            changes: q
                .get_all("changes")
                .into_iter()
                .map(str::to_string)
                .collect(),
            config: None,
        };
        // An empty body or `null` means "the container's config" (the CLI sends no config).
        let body = ctx.body_bytes().await?;
        let text = String::from_utf8_lossy(&body);
        if !matches!(text.trim(), "" | "null") {
            opts.config = Some(
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?,
            );
        }
        let engine = ctx.engine.clone();
        let id = blocking(move || engine.commit_container(&container, &opts)).await?;
        json(
            StatusCode::CREATED,
            &serde_json::json!({ "Id": id.to_string() }),
        )
    })
}

/// The request body, read to its end when dropped: a client still uploading when the
/// extraction fails (not a directory, read-only, ...) then gets the error answer instead
/// of a broken pipe.
struct DrainedOnDrop<R: std::io::Read>(R);

impl<R: std::io::Read> std::io::Read for DrainedOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: std::io::Read> Drop for DrainedOnDrop<R> {
    fn drop(&mut self) {
        let _ = std::io::copy(&mut self.0, &mut std::io::sink());
    }
}
