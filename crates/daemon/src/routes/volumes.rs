//! `/volumes`: create, list, inspect, remove and prune local volumes.

use bollard_stubs::models::VolumeCreateOptions;
use hyper::{Method, StatusCode};

use crate::api::{blocking, empty, json, route, ApiResult, BoxFuture, Ctx, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/volumes/create", create),
        route(Method::GET, "/volumes", list),
        route(Method::POST, "/volumes/prune", prune),
        route(Method::GET, "/volumes/{name}", inspect),
        route(Method::DELETE, "/volumes/{name}", remove),
    ]
}

/// `POST /volumes/create` with `{Name, Driver, DriverOpts, Labels}`: 201 and the volume.
fn create(mut ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let opts: VolumeCreateOptions = ctx.json_or_default().await?;
        let engine = ctx.engine.clone();
        let volume = blocking(move || {
            engine.create_volume(
                opts.name.as_deref(),
                opts.driver.as_deref(),
                opts.labels.unwrap_or_default(),
                opts.driver_opts.unwrap_or_default(),
            )
        })
        .await?;
        json(StatusCode::CREATED, &volume)
    })
}

fn list(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let filters = ctx.query.filters()?;
        let engine = ctx.engine.clone();
        let list = blocking(move || engine.list_volumes(&filters)).await?;
        json(StatusCode::OK, &list)
    })
}

fn inspect(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let name = ctx.param("name").to_string();
        let engine = ctx.engine.clone();
        let volume = blocking(move || engine.inspect_volume(&name)).await?;
        json(StatusCode::OK, &volume)
    })
}

/// `DELETE /volumes/{name}?force=`: 204; 409 while a container uses it.
fn remove(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let name = ctx.param("name").to_string();
        let force = ctx.query.bool("force");
        let engine = ctx.engine.clone();
        blocking(move || engine.remove_volume(&name, force)).await?;
        empty(StatusCode::NO_CONTENT)
    })
}

/// `POST /volumes/prune?filters=`: unused anonymous volumes (all unused with `all=true`).
fn prune(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let filters = ctx.query.filters()?;
        let engine = ctx.engine.clone();
        let report = blocking(move || engine.prune_volumes(&filters)).await?;
        json(StatusCode::OK, &report)
    })
}
