//! `docker exec`: create an exec instance, start it (hijacked unless detached), resize it,
//! inspect it.

use bollard_stubs::models::ExecConfig;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::api::{blocking, empty, hijack_then, json, route, ApiResult, BoxFuture, Ctx, Route};
use crate::routes::containers::terminal_size;

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/containers/{id}/exec", create),
        route(Method::POST, "/exec/{id}/start", start),
        route(Method::POST, "/exec/{id}/resize", resize),
        route(Method::GET, "/exec/{id}/json", inspect),
    ]
}

fn create(mut ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let config: ExecConfig = ctx.json().await?;
        let (engine, id) = (ctx.engine.clone(), ctx.param("id").to_string());
        let exec_id = blocking(move || engine.create_exec(&id, config)).await?;
        json(StatusCode::CREATED, &serde_json::json!({ "Id": exec_id }))
    })
}

/// The body of `POST /exec/{id}/start`.
#[derive(Debug, Default, Deserialize)]
struct StartBody {
    #[serde(rename = "Detach", default)]
    detach: bool,
    #[serde(rename = "Tty", default)]
    tty: Option<bool>,
    /// `[height, width]` of the client's terminal.
    #[serde(rename = "ConsoleSize", default)]
    console_size: Option<Vec<u16>>,
}

fn start(mut ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let body: StartBody = ctx.json_or_default().await?;
        let (engine, id) = (ctx.engine.clone(), ctx.param("id").to_string());
        let size = match body.console_size.as_deref() {
            Some(&[h, w]) if h > 0 && w > 0 => Some((h, w)),
            _ => None,
        };
        let streamed = !body.detach && ctx.req.headers().contains_key(hyper::header::UPGRADE);
        let tty = body.tty.unwrap_or(false);
        let attached = blocking(move || {
            let attached = engine.start_exec(&id, body.detach, body.tty)?;
            if let Some((h, w)) = size {
                // Best effort, as the client resizes again right after.
                let _ = engine.resize_exec(&id, h, w);
            }
            Ok::<_, berth_engine::Error>(attached)
        })
        .await;
        let attached = match attached {
            Err(e) if streamed && e.status != StatusCode::NOT_FOUND => {
                return failed_start(ctx, tty, &e.message).await
            }
            attached => attached?,
        };
        match attached {
            Some(a) => {
                let done = exited(ctx.engine.clone(), ctx.param("id").to_string());
                hijack_then(ctx, a.tty, a.stream, done).await
            }
            None => empty(StatusCode::OK),
        }
    })
}

/// A start that failed, told as dockerd tells it to a client that asked for the stream: the
/// connection is upgraded and the error is the process's output, after which the client
/// reads the exit code (126 or 127) from the exec's inspect.
async fn failed_start(ctx: Ctx, tty: bool, message: &str) -> ApiResult {
    use std::io::Write;
    let (stream, mut output) = std::os::unix::net::UnixStream::pair()?;
    let text = format!("{message}\r\n");
    if !tty {
        // A stdout frame of the multiplexed stream.
        let mut header = [1u8, 0, 0, 0, 0, 0, 0, 0];
        header[4..].copy_from_slice(&(text.len() as u32).to_be_bytes());
        output.write_all(&header)?;
    }
    // Fits the socket's buffer: written before anything reads it.
    output.write_all(text.as_bytes())?;
    drop(output);
    hijack_then(ctx, tty, stream, async {}).await
}

/// Resolves once exec `id` is no longer running (or after a bound), so the client that
/// reads the exit code right after the stream ends sees it. The stream ends when the
/// process's output is drained, a moment before the engine records its exit.
async fn exited(engine: std::sync::Arc<berth_engine::Engine>, id: String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match engine.inspect_exec(&id) {
            Ok(info) if info.running == Some(true) => {}
            _ => return,
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn resize(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (h, w) = terminal_size(&ctx)?;
        let (engine, id) = (ctx.engine.clone(), ctx.param("id").to_string());
        blocking(move || engine.resize_exec(&id, h, w)).await?;
        empty(StatusCode::OK)
    })
}

fn inspect(ctx: Ctx) -> BoxFuture<'static, ApiResult> {
    Box::pin(async move {
        let (engine, id) = (ctx.engine.clone(), ctx.param("id").to_string());
        let info = blocking(move || engine.inspect_exec(&id)).await?;
        json(StatusCode::OK, &info)
    })
}
