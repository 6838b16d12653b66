//! Image routes: list, inspect, history, tag, remove, prune, pull and import
//! (`/images/create`), push, save (`/images/get`, `/images/{name}/get`) and load.
//! Image names carry slashes, so the routes that name one match it greedily, and the
//! literal routes come first.

use std::sync::Arc;

use base64::Engine as _;
use berth_engine::images::ImportRequest;
use berth_image::registry::Credentials;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api::{
    blocking, blocking_stream, empty, json, json_stream, route, ApiError, ApiResult, BoxFuture,
    Ctx, Route,
};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/images/json", list),
        route(Method::POST, "/images/create", create),
        route(Method::POST, "/images/load", load),
        route(Method::GET, "/images/get", save_many),
        route(Method::POST, "/images/prune", prune),
        route(Method::GET, "/images/{name:.*}/json", inspect),
        route(Method::GET, "/images/{name:.*}/history", history),
        route(Method::POST, "/images/{name:.*}/push", push),
        route(Method::POST, "/images/{name:.*}/tag", tag),
        route(Method::GET, "/images/{name:.*}/get", save_one),
        route(Method::DELETE, "/images/{name:.*}", remove),
    ]
}

fn name(ctx: &Ctx) -> String {
    ctx.param("name").to_string()
}

fn list(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let mut filters = ctx.query.filters()?;
        // Clients before API 1.41 name a reference with `filter=`.
        if let Some(reference) = ctx.query.get("filter").filter(|f| !f.is_empty()) {
            filters
                .entry("reference".to_string())
                .or_default()
                .push(reference.to_string());
        }
        let (engine, all) = (ctx.engine.clone(), ctx.query.bool("all"));
        let images = blocking(move || engine.image_list(all, &filters)).await?;
        json(StatusCode::OK, &images)
    })
}

fn inspect(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, name) = (ctx.engine.clone(), name(&ctx));
        let details = blocking(move || engine.image_inspect(&name)).await?;
        json(StatusCode::OK, &details)
    })
}

fn history(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, name) = (ctx.engine.clone(), name(&ctx));
        let items = blocking(move || engine.image_history(&name)).await?;
        json(StatusCode::OK, &items)
    })
}

fn tag(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, name) = (ctx.engine.clone(), name(&ctx));
        let repo = ctx.query.get("repo").unwrap_or("").to_string();
        let tag = ctx.query.get("tag").unwrap_or("").to_string();
        blocking(move || engine.image_tag(&name, &repo, &tag)).await?;
        empty(StatusCode::CREATED)
    })
}

fn remove(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, name) = (ctx.engine.clone(), name(&ctx));
        // `noprune` concerns parent images, which berth does not keep.
        let force = ctx.query.bool("force");
        let items = blocking(move || engine.image_remove(&name, force)).await?;
        json(StatusCode::OK, &items)
    })
}

fn prune(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let filters = ctx.query.filters()?;
        let engine = ctx.engine.clone();
        let report = blocking(move || engine.image_prune(&filters)).await?;
        json(StatusCode::OK, &report)
    })
}

fn registry_auth(ctx: &Ctx) -> Result<Option<Credentials>, ApiError> {
    decode_registry_auth(ctx.header("x-registry-auth").unwrap_or(""))
}

/// `X-Registry-Auth`: base64url JSON `{username, password, serveraddress}` (padding or
/// not, and plain base64 from older clients). Empty, or no user and password: anonymous.
fn decode_registry_auth(header: &str) -> Result<Option<Credentials>, ApiError> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(None);
    }
    let unpadded = header.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(unpadded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    let auth: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    let field = |k: &str| {
        auth.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (username, password) = (field("username"), field("password"));
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

/// Run `work` on the blocking pool with an `emit` for JSON progress messages. If it fails
/// before emitting anything, the answer is a plain error with its status (Docker answers a
/// missing image that way); once a message went out, the answer is a 200 stream and a
/// later failure its last line (`errorDetail`).
async fn progress_stream<F>(work: F) -> ApiResult
where
    F: FnOnce(&(dyn Fn(Value) + Sync)) -> berth_engine::EngineResult<()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let task = tokio::task::spawn_blocking(move || {
        let emit = move |v: Value| {
            let _ = tx.send(v);
        };
        work(&emit)
    });
    let Some(first) = rx.recv().await else {
        // The work ended without a word.
        task.await??;
        return empty(StatusCode::OK);
    };
    let (stream, response) = json_stream();
    tokio::spawn(async move {
        stream.send(&first);
        while let Some(message) = rx.recv().await {
            if !stream.send(&message) {
                break;
            }
        }
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stream.error(&e.message());
            }
            Err(e) => {
                stream.error(&format!("task failed: {e}"));
            }
        }
    });
    Ok(response)
}

/// `POST /images/create`: `fromImage` pulls, `fromSrc=-` imports the body.
fn create(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        if let Some(from_image) = ctx.query.get("fromImage").filter(|s| !s.is_empty()) {
            let from_image = from_image.to_string();
            let tag = ctx.query.get("tag").unwrap_or("").to_string();
            let platform = ctx.query.get("platform").unwrap_or("").to_string();
            let auth = registry_auth(&ctx)?;
            let engine = Arc::clone(&ctx.engine);
            return progress_stream(move |emit| {
                engine.image_pull(&from_image, &tag, &platform, auth, emit)
            })
            .await;
        }
        match ctx.query.get("fromSrc") {
            Some("-") => import(ctx).await,
            Some(src) if !src.is_empty() => Err(ApiError::bad_request(format!(
                "importing from {src:?} is not supported: send the tarball as the body \
                 (fromSrc=-)"
            ))),
            _ => Err(ApiError::bad_request(
                "either fromImage or fromSrc must be given",
            )),
        }
    })
}

async fn import(ctx: Ctx) -> ApiResult {
    let query = &ctx.query;
    let request = ImportRequest {
        repo: query.get("repo").unwrap_or("").to_string(),
        tag: query.get("tag").unwrap_or("").to_string(),
        changes: query
            .get_all("changes")
            .into_iter()
            .filter(|c| !c.trim().is_empty())
            .map(String::from)
            .collect(),
        message: query.get("message").unwrap_or("").to_string(),
        platform: query.get("platform").unwrap_or("").to_string(),
    };
    let (parts, body) = ctx.blocking_body();
    let engine = parts.engine;
    progress_stream(move |emit| {
        let mut body = body;
        let id = engine
            .image_import(&mut body, &request)
            .inspect_err(|_| drain(&mut body))?;
        emit(serde_json::json!({ "status": id.to_string() }));
        Ok(())
    })
    .await
}

/// Read what is left of a request body that failed half-way, so that the client, still
/// sending it, reads the answer instead of a broken pipe.
fn drain(body: &mut impl std::io::Read) {
    let _ = std::io::copy(body, &mut std::io::sink());
}

fn push(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, name) = (ctx.engine.clone(), name(&ctx));
        let tag = ctx.query.get("tag").unwrap_or("").to_string();
        let auth = registry_auth(&ctx)?;
        progress_stream(move |emit| engine.image_push(&name, &tag, auth, emit)).await
    })
}

/// `POST /images/load`: the body is the tarball; the answer a JSON stream naming what
/// was loaded (an error as its last line).
fn load(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (parts, body) = ctx.blocking_body();
        let engine = parts.engine;
        let (stream, response) = json_stream();
        let mut body = body;
        tokio::task::spawn_blocking(move || match engine.image_load(&mut body) {
            Ok(loaded) => {
                for message in berth_engine::images::load_messages(&loaded) {
                    stream.send(&message);
                }
            }
            Err(e) => {
                drain(&mut body);
                stream.error(&e.message());
            }
        });
        Ok(response)
    })
}

fn save_many(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let names = ctx
            .query
            .get_all("names")
            .into_iter()
            .flat_map(|n| n.split(','))
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        save(ctx, names).await
    })
}

fn save_one(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let names = vec![name(&ctx)];
        save(ctx, names).await
    })
}

/// A tarball of `names`, streamed; every name is checked first so that a missing image is
/// a 404 rather than a broken stream.
async fn save(ctx: Ctx, names: Vec<String>) -> ApiResult {
    let engine = ctx.engine.clone();
    let checked = names.clone();
    let store = engine.clone();
    blocking(move || berth_engine::images::check_names(&store.images, &checked)).await?;
    Ok(blocking_stream("application/x-tar", move |out| {
        engine.image_save(&names, out).map_err(anyhow::Error::from)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_headers_as_clients_send_them() {
        let encode = |json: &str, engine: &base64::engine::GeneralPurpose| engine.encode(json);
        let json = r#"{"username":"u","password":"p?>>","serveraddress":"127.0.0.1:5000"}"#;
        for engine in [
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &base64::engine::general_purpose::STANDARD,
        ] {
            let creds = decode_registry_auth(&encode(json, engine))
                .unwrap()
                .unwrap();
            assert_eq!(
                (creds.username.as_str(), creds.password.as_str()),
                ("u", "p?>>")
            );
        }
        // The CLI sends `{}` when not logged in.
        assert!(decode_registry_auth("e30=").unwrap().is_none());
        assert!(decode_registry_auth("").unwrap().is_none());
        assert_eq!(decode_registry_auth("!!").unwrap_err().status, 400);
    }
}
