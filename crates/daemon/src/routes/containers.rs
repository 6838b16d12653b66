//! Container lifecycle routes: create, start/stop/restart/kill/pause/unpause, wait, rm,
//! rename, list, inspect, attach, resize.

use berth_engine::container::lifecycle::{
    AttachOptions, CreateRequest, ListOptions, WaitCondition,
};
use berth_engine::logs::LogOptions;
use hyper::{Method, StatusCode};

use crate::api::{
    blocking, channel_response, empty, hijack_with, json, route, ApiError, ApiResult, BoxFuture,
    Ctx, Hijack, Replay, Route,
};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/containers/create", create),
        route(Method::GET, "/containers/json", list),
        route(Method::GET, "/containers/{id}/json", inspect),
        route(Method::POST, "/containers/{id}/start", start),
        route(Method::POST, "/containers/{id}/stop", stop),
        route(Method::POST, "/containers/{id}/restart", restart),
        route(Method::POST, "/containers/{id}/kill", kill),
        route(Method::POST, "/containers/{id}/pause", pause),
        route(Method::POST, "/containers/{id}/unpause", unpause),
        route(Method::POST, "/containers/{id}/wait", wait),
        route(Method::DELETE, "/containers/{id}", remove),
        route(Method::POST, "/containers/{id}/rename", rename),
        route(Method::POST, "/containers/{id}/attach", attach),
        route(Method::POST, "/containers/{id}/resize", resize),
    ]
}

fn create(mut ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let name = ctx
            .query
            .get("name")
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let req: CreateRequest = ctx.json().await?;
        let engine = ctx.engine.clone();
        let (id, warnings) =
            blocking(move || engine.create_container(name.as_deref(), req)).await?;
        json(
            StatusCode::CREATED,
            &serde_json::json!({ "Id": id, "Warnings": warnings }),
        )
    })
}

/// The container's id as the route named it.
fn id(ctx: &Ctx) -> String {
    ctx.param("id").to_string()
}

fn start(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.start_container(&id)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

/// `signal` and `t` of stop and restart (`t` may be -1: wait forever).
fn stop_options(ctx: &Ctx) -> Result<(Option<String>, Option<i64>), ApiError> {
    let signal = ctx
        .query
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((signal, ctx.query.int::<i64>("t")?))
}

fn stop(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (signal, timeout) = stop_options(&ctx)?;
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.stop_container(&id, signal.as_deref(), timeout)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn restart(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (signal, timeout) = stop_options(&ctx)?;
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.restart_container(&id, signal.as_deref(), timeout)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn kill(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let signal = ctx
            .query
            .get("signal")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.kill_container(&id, signal.as_deref())).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn pause(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.pause_container(&id)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn unpause(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.unpause_container(&id)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

/// The container is looked up first (404 is an ordinary error response); then the 200
/// headers go out at once — the CLI starts the container only after they arrive — and the
/// body follows when the condition holds.
fn wait(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let condition = WaitCondition::parse(ctx.query.get("condition").unwrap_or(""))?;
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        let waiter = blocking(move || engine.waiter(&id, condition)).await?;
        let (sender, resp) = channel_response(StatusCode::OK, "application/json");
        tokio::spawn(async move {
            // A client that went away stops the wait too.
            let result = tokio::select! {
                r = waiter.wait() => r,
                _ = sender.closed() => return,
            };
            let body = match result {
                Ok(code) => serde_json::json!({ "StatusCode": code, "Error": null }),
                Err(e) => serde_json::json!({
                    "StatusCode": -1,
                    "Error": { "Message": e.message() },
                }),
            };
            let mut line = serde_json::to_vec(&body).unwrap_or_default();
            line.push(b'\n');
            sender.send(line).await;
        });
        Ok(resp)
    })
}

fn remove(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (force, volumes) = (ctx.query.bool("force"), ctx.query.bool("v"));
        if ctx.query.bool("link") {
            return Err(ApiError::bad_request("links are not supported"));
        }
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.remove_container(&id, force, volumes)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn rename(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let name = ctx.query.get("name").unwrap_or("").to_string();
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.rename_container(&id, &name)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

fn list(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let opts = ListOptions {
            all: ctx.query.bool("all"),
            // Docker treats limit <= 0 as no limit.
            limit: ctx
                .query
                .int::<i64>("limit")?
                .filter(|l| *l > 0)
                .map(|l| l as usize),
            size: ctx.query.bool("size"),
            filters: ctx.query.filters()?,
        };
        let engine = ctx.engine.clone();
        let list = blocking(move || engine.list_containers(&opts)).await?;
        json(StatusCode::OK, &list)
    })
}

fn inspect(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let size = ctx.query.bool("size");
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        let info = blocking(move || engine.inspect_container(&id, size)).await?;
        json(StatusCode::OK, &info)
    })
}

/// Hijack the connection: with `logs`, the log so far first; with `stream`, then the
/// container's live stdio. (The attach is made before the log is read: a line written in
/// between may show twice, never not at all.)
fn attach(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let q = &ctx.query;
        let (logs, stream) = (q.bool("logs"), q.bool("stream"));
        let opts = AttachOptions {
            stdin: q.bool("stdin"),
            stdout: q.bool("stdout"),
            stderr: q.bool("stderr"),
        };
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        let hijack = blocking(move || -> Result<Hijack, berth_engine::Error> {
            let handle = engine.containers.get(&id)?;
            let attached = match stream {
                true => Some(engine.attach_container(&handle.id, opts)?),
                false => None,
            };
            let replay = match logs {
                true => {
                    let log_opts = LogOptions {
                        stdout: opts.stdout,
                        stderr: opts.stderr,
                        ..LogOptions::default()
                    };
                    let mut log = engine.container_logs(&handle.id, log_opts)?;
                    Some(Box::new(move || log.next_chunk()) as Replay)
                }
                false => None,
            };
            let tty = match &attached {
                Some(a) => a.tty,
                None => handle.get().config.tty.unwrap_or(false),
            };
            Ok(Hijack {
                tty,
                stream: attached.map(|a| a.stream),
                replay,
                before_close: Box::pin(async {}),
            })
        })
        .await?;
        hijack_with(ctx, hijack).await
    })
}

/// `h` and `w` of a resize (both required, like Docker).
pub fn terminal_size(ctx: &Ctx) -> Result<(u16, u16), ApiError> {
    let h = ctx.query.int::<u16>("h")?;
    let w = ctx.query.int::<u16>("w")?;
    match (h, w) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(ApiError::bad_request("resize needs both h and w")),
    }
}

fn resize(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (h, w) = terminal_size(&ctx)?;
        let (engine, id) = (ctx.engine.clone(), id(&ctx));
        blocking(move || engine.resize_container(&id, h, w)).await?;
        empty(StatusCode::OK)
    })
}
