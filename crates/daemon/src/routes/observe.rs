//! Looking at a container from outside: `logs`, `stats` and `top`.

use berth_engine::logs::LogOptions;
use hyper::{Method, StatusCode};

use crate::api::{
    blocking, blocking_stream, json, route, ApiError, ApiResult, BoxFuture, Ctx, Route,
    MULTIPLEXED_STREAM, RAW_STREAM,
};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/containers/{id}/logs", logs),
        route(Method::GET, "/containers/{id}/stats", stats),
        route(Method::GET, "/containers/{id}/top", top),
    ]
}

/// `since`/`until`: Unix seconds with an optional fraction (what the CLI sends) or RFC 3339;
/// absent, empty or "0" mean no bound.
fn time_bound(ctx: &Ctx, key: &str) -> Result<Option<std::time::SystemTime>, ApiError> {
    match ctx.query.get(key).map(str::trim) {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => berth_engine::time::parse_timestamp(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
    }
}

fn log_options(ctx: &Ctx) -> Result<LogOptions, ApiError> {
    let opts = LogOptions {
        stdout: ctx.query.bool("stdout"),
        stderr: ctx.query.bool("stderr"),
        follow: ctx.query.bool("follow"),
        // Docker: "all", a negative or an unparsable number all mean every line.
        tail: ctx
            .query
            .get("tail")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|n| usize::try_from(n).ok()),
        since: time_bound(ctx, "since")?,
        until: time_bound(ctx, "until")?,
        timestamps: ctx.query.bool("timestamps"),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    Ok(opts)
}

/// `GET /containers/{id}/logs`: a 404 comes before any header; then the log streams (raw
/// for a tty container, multiplexed frames otherwise).
fn logs(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let opts = log_options(&ctx)?;
        let id = ctx.param("id").to_string();
        let engine = ctx.engine.clone();
        let stream = blocking(move || engine.container_logs(&id, opts)).await?;
        let content_type = if stream.tty || !ctx.version_at_least((1, 42)) {
            RAW_STREAM
        } else {
            MULTIPLEXED_STREAM
        };
        Ok(blocking_stream(content_type, move |out| {
            stream.copy_to(out)
        }))
    })
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one JSON per second, or one reading.
fn stats(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let stream = ctx.query.bool_or("stream", true);
        let one_shot = ctx.query.bool("one-shot");
        if one_shot && stream {
            return Err(ApiError::bad_request(
                "cannot have stream=true and one-shot=true",
            ));
        }
        let id = ctx.param("id").to_string();
        let engine = ctx.engine.clone();
        let mut reader = blocking(move || engine.container_stats(&id)).await?;
        if stream {
            return Ok(blocking_stream("application/json", move |out| {
                reader.stream_to(out)
            }));
        }
        let id = ctx.param("id").to_string();
        let reading = blocking(move || {
            reader
                .single(one_shot)
                .ok_or_else(|| berth_engine::Error::no_such_container(id))
        })
        .await?;
        json(StatusCode::OK, &reading)
    })
}

/// `GET /containers/{id}/top?ps_args=`: `ps -ef` (or `aux`) columns of its processes.
fn top(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let id = ctx.param("id").to_string();
        let ps_args = ctx.query.get("ps_args").unwrap_or("").to_string();
        let engine = ctx.engine.clone();
        let table = blocking(move || engine.container_top(&id, &ps_args)).await?;
        json(StatusCode::OK, &table)
    })
}
