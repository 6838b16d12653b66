//! What a route handler sees: the request context (`Ctx`), response builders, streaming
//! bodies fed from blocking code, and the hijack used by attach and exec start.
//! Every routes module codes against this file.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, StatusCode};
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Body = http_body_util::combinators::BoxBody<Bytes, io::Error>;
pub type Response = hyper::Response<Body>;
pub type ApiResult = Result<Response, ApiError>;
/// The largest request body read into memory (a container config, a commit's changes).
const MAX_BODY: usize = 16 << 20;

pub type Handler = fn(Ctx) -> BoxFuture<'static, ApiResult>;

/// The newest and oldest Engine API versions berthd speaks.
pub const API_VERSION: (u32, u32) = (1, 44);
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// An error answered as `{"message": ...}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The error as a response. 304 has no body (HTTP forbids one).
    pub fn into_response(self) -> Response {
        if self.status == StatusCode::NOT_MODIFIED {
            return with_body(self.status, None, empty_body());
        }
        let body = serde_json::json!({ "message": self.message });
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.push(b'\n');
        with_body(self.status, Some("application/json"), full(bytes))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<berth_engine::Error> for ApiError {
    fn from(e: berth_engine::Error) -> ApiError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.message())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        // An engine error wrapped in context keeps its status.
        match e.downcast::<berth_engine::Error>() {
            Ok(engine) => engine.into(),
            Err(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

impl From<io::Error> for ApiError {
    fn from(e: io::Error) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("task failed: {e}"))
    }
}

/// Run blocking engine work on the blocking pool; its error becomes the API error.
pub async fn blocking<T, E, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?.map_err(Into::into)
}

/// The query string, decoded. Repeated keys keep every value (`get` returns the first).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let pairs = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key (`?t=a&t=b`).
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Docker's BoolValue: absent, "", "0", "no", "false" and "none" are false, anything
    /// else is true.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
        })
    }

    /// Docker's BoolValueOrDefault: the default when the key is absent or empty.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None | Some("") => default,
            Some(_) => self.bool(key),
        }
    }

    /// A number; absent or empty is `None`, anything unparsable is a 400.
    pub fn int<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not a number"))
            }),
        }
    }

    /// `filters` in either of Docker's JSON shapes: `{"k":{"v":true}}` or the old `{"k":["v"]}`.
    pub fn filters(&self) -> Result<HashMap<String, Vec<String>>, ApiError> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

/// Parse a Docker filters argument (see [`Query::filters`]).
pub fn parse_filters(raw: &str) -> Result<HashMap<String, Vec<String>>, ApiError> {
    if raw.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let bad = |e: String| ApiError::bad_request(format!("invalid filter: {e}"));
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad(format!("{raw:?} is not a JSON object")));
    };
    let mut out = HashMap::new();
    for (key, values) in map {
        let list = match values {
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(true))
                .map(|(k, _)| k)
                .collect(),
            serde_json::Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(bad(format!("filter value {other} is not a string"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(bad(format!("filter {key:?} has value {other}"))),
        };
        out.insert(key, list);
    }
    Ok(out)
}

/// One request, with what the router found out about it.
pub struct Ctx {
    pub engine: Arc<berth_engine::Engine>,
    /// Path parameters by name (percent-decoded), e.g. "id", "name".
    pub params: HashMap<String, String>,
    pub query: Query,
    pub req: hyper::Request<Incoming>,
    /// The version the client asked for in the path (`/v1.41/...`), else the newest.
    pub api_version: (u32, u32),
}

/// A request's context without its body: what `Ctx::blocking_body` leaves to the handler.
/// (Every part is kept, whether or not today's handlers read it.)
#[allow(dead_code)]
pub struct CtxParts {
    pub engine: Arc<berth_engine::Engine>,
    pub params: HashMap<String, String>,
    pub query: Query,
    pub head: hyper::http::request::Parts,
    pub api_version: (u32, u32),
}

impl CtxParts {
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

impl Ctx {
    /// A path parameter ("" when the pattern has none by that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// A request header as a string, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// Is the client's API version at least `v`?
    pub fn version_at_least(&self, v: (u32, u32)) -> bool {
        self.api_version >= v
    }

    /// The whole request body, up to `MAX_BODY` (JSON documents; archives and images are
    /// streamed with `blocking_body`, without a cap).
    pub async fn body_bytes(&mut self) -> Result<Bytes, ApiError> {
        // `&mut Incoming` is a body too: read it in place (Incoming cannot be rebuilt).
        let limited = http_body_util::Limited::new(self.req.body_mut(), MAX_BODY);
        let collected = BodyExt::collect(limited)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        Ok(collected.to_bytes())
    }

    /// The body as JSON: an empty or malformed body is a 400, like Docker's ReadJSON.
    pub async fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let bytes = self.body_bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "invalid JSON: got EOF while reading request body",
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// The body as JSON, or `T::default()` when the body is empty.
    pub async fn json_or_default<T>(&mut self) -> Result<T, ApiError>
    where
        T: serde::de::DeserializeOwned + Default,
    {
        let bytes = self.body_bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// Split off the body as a synchronous reader for blocking code (image load/import,
    /// archive PUT). Read it inside `spawn_blocking`, never on the runtime thread.
    pub fn blocking_body(self) -> (CtxParts, BodyReader) {
        let (head, body) = self.req.into_parts();
        let parts = CtxParts {
            engine: self.engine,
            params: self.params,
            query: self.query,
            head,
            api_version: self.api_version,
        };
        (parts, BodyReader::spawn(body))
    }
}

/// The request body as `std::io::Read`, fed by a task on the runtime through a small
/// bounded channel (so a slow consumer slows the upload instead of buffering it).
pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    fn spawn(mut body: Incoming) -> BodyReader {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue, // trailers
                    },
                    Err(e) => Err(io::Error::other(format!("reading request body: {e}"))),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        BodyReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

// ---- responses ----

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn with_body(status: StatusCode, content_type: Option<&str>, body: Body) -> Response {
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        if let Ok(v) = HeaderValue::from_str(ct) {
            resp.headers_mut().insert(CONTENT_TYPE, v);
        }
    }
    resp
}

/// `value` as JSON with `Content-Type: application/json`.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("cannot encode response: {e}")))?;
    bytes.push(b'\n');
    Ok(with_body(status, Some("application/json"), full(bytes)))
}

/// A status with no body.
pub fn empty(status: StatusCode) -> ApiResult {
    Ok(with_body(status, None, empty_body()))
}

/// A plain-text body (`_ping`'s "OK").
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> ApiResult {
    Ok(with_body(
        status,
        Some("text/plain; charset=utf-8"),
        full(body.into()),
    ))
}

/// A response whose body is fed chunk by chunk from elsewhere (`ChannelSender`); the
/// headers go out at once, the body as chunks arrive.
pub fn channel_response(status: StatusCode, content_type: &str) -> (ChannelSender, Response) {
    let (tx, rx) = mpsc::channel(16);
    let body = ChannelBody::Bounded(rx).boxed();
    (
        ChannelSender { tx },
        with_body(status, Some(content_type), body),
    )
}

/// The sending side of [`channel_response`]; drop it to end the body.
#[derive(Clone)]
pub struct ChannelSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl ChannelSender {
    /// Send a chunk from async code; false when the client went away.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> bool {
        self.tx.send(Ok(chunk.into())).await.is_ok()
    }
    /// Send a chunk from blocking code; false when the client went away.
    pub fn blocking_send(&self, chunk: impl Into<Bytes>) -> bool {
        self.tx.blocking_send(Ok(chunk.into())).is_ok()
    }
    /// Resolves when the client has gone away (the body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

enum ChannelBody {
    Bounded(mpsc::Receiver<io::Result<Bytes>>),
    Unbounded(mpsc::UnboundedReceiver<io::Result<Bytes>>),
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let next = match self.get_mut() {
            ChannelBody::Bounded(rx) => rx.poll_recv(cx),
            ChannelBody::Unbounded(rx) => rx.poll_recv(cx),
        };
        next.map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// Run `f` on the blocking pool and stream what it writes as the body. Every `write`
/// goes out as its own chunk right away (wrap the writer in a `BufWriter` for many tiny
/// writes). The status is always 200: an error from `f` is logged and cuts the chunked
/// body off without its final chunk, so the client sees an incomplete response rather
/// than a clean end.
pub fn blocking_stream<F>(content_type: &str, f: F) -> Response
where
    F: FnOnce(&mut dyn io::Write) -> anyhow::Result<()> + Send + 'static,
{
    let (sender, resp) = channel_response(StatusCode::OK, content_type);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { sender };
        if let Err(e) = f(&mut writer) {
            eprintln!("berthd: streaming response failed: {e:#}");
            let _ = writer
                .sender
                .tx
                .blocking_send(Err(io::Error::other(format!("{e:#}"))));
        }
    });
    resp
}

/// `std::io::Write` into a channel body, for blocking code.
pub struct ChannelWriter {
    sender: ChannelSender,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.sender.blocking_send(Bytes::copy_from_slice(buf)) {
            Ok(buf.len())
        } else {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ))
        }
    }
    /// Nothing is buffered; but a writer with nothing to write (a quiet `logs -f`) learns
    /// here that the client went away.
    fn flush(&mut self) -> io::Result<()> {
        if self.sender.tx.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        Ok(())
    }
}

/// A stream of JSON messages, one per line (pull/push/load progress). Cheap to clone,
/// usable from async and blocking code alike (sending never blocks).
#[derive(Clone)]
pub struct JsonStream {
    tx: mpsc::UnboundedSender<io::Result<Bytes>>,
}

/// A 200 `application/json` response fed by the returned [`JsonStream`]; the body ends
/// when every clone of the stream is dropped.
pub fn json_stream() -> (JsonStream, Response) {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = ChannelBody::Unbounded(rx).boxed();
    (
        JsonStream { tx },
        with_body(StatusCode::OK, Some("application/json"), body),
    )
}

impl JsonStream {
    /// Send one message; false when the client went away.
    pub fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> bool {
        let Ok(mut line) = serde_json::to_vec(value) else {
            return false;
        };
        line.push(b'\n');
        self.tx.send(Ok(Bytes::from(line))).is_ok()
    }
    /// Docker's in-stream error: `{"errorDetail":{"message":m},"error":m}`.
    pub fn error(&self, message: &str) -> bool {
        self.send(&serde_json::json!({
            "errorDetail": { "message": message },
            "error": message,
        }))
    }
}

/// Output replayed to an attached client before the live stream (attach's `logs=1`):
/// called on the blocking pool until it returns `None`.
pub type Replay = Box<dyn FnMut() -> anyhow::Result<Option<Vec<u8>>> + Send>;

/// What a hijacked connection is handed over to.
pub struct Hijack {
    /// Raw stream (tty) or multiplexed frames: only the Content-Type depends on it.
    pub tty: bool,
    /// The process's stdio; `None` sends the replay only.
    pub stream: Option<std::os::unix::net::UnixStream>,
    /// Sent first.
    pub replay: Option<Replay>,
    /// Awaited after the output ended, before the client connection is closed (exec
    /// start: until the exit code is recorded, which the CLI reads next).
    pub before_close: BoxFuture<'static, ()>,
}

/// Hand the connection over to `stream` (exec start) as [`hijack_with`] does, holding the
/// client connection open after `stream` ended until `before_close`
/// resolves.
pub async fn hijack_then<F>(
    ctx: Ctx,
    tty: bool,
    stream: std::os::unix::net::UnixStream,
    before_close: F,
) -> ApiResult
where
    F: Future<Output = ()> + Send + 'static,
{
    let hijack = Hijack {
        tty,
        stream: Some(stream),
        replay: None,
        before_close: Box::pin(before_close),
    };
    hijack_with(ctx, hijack).await
}

/// With an `Upgrade` request header: 101 Switching Protocols, then the replay, then bytes
/// are pumped both ways; the client closing its write side becomes `shutdown(Write)` on
/// the stream, and the client connection is closed once the stream reaches EOF. Without
/// one (old clients): 200 and the output as the body, no stdin.
pub async fn hijack_with(ctx: Ctx, hijack: Hijack) -> ApiResult {
    let content_type = if hijack.tty {
        RAW_STREAM
    } else {
        MULTIPLEXED_STREAM
    };
    let stream = match hijack.stream {
        Some(s) => {
            s.set_nonblocking(true)?;
            Some(tokio::net::UnixStream::from_std(s)?)
        }
        None => None,
    };
    let replay = hijack.replay.map(spawn_replay);
    let mut req = ctx.req;
    if !req.headers().contains_key(UPGRADE) {
        return Ok(output_only(
            stream,
            replay,
            content_type,
            hijack.before_close,
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let before_close = hijack.before_close;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                type Conn = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
                match upgraded.downcast::<Conn>() {
                    Ok(parts) => {
                        let client = parts.io.into_inner();
                        wait_until_read(&client).await;
                        pump(client, parts.read_buf, stream, replay, before_close).await
                    }
                    // berthd serves unix sockets only: there is nothing else to pump.
                    Err(_) => eprintln!("berthd: upgraded connection of an unknown kind"),
                }
            }
            Err(e) => eprintln!("berthd: upgrade failed: {e}"),
        }
    });
    let mut resp = with_body(
        StatusCode::SWITCHING_PROTOCOLS,
        Some(content_type),
        empty_body(),
    );
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    resp.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

/// Run a replay on the blocking pool, its chunks through a small channel.
fn spawn_replay(mut replay: Replay) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || loop {
        match replay() {
            Ok(Some(chunk)) => {
                if tx.blocking_send(Bytes::from(chunk)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                eprintln!("berthd: replaying output: {e:#}");
                return;
            }
        }
    });
    rx
}

/// Give the client a moment to read the 101 head before any output follows it: docker-py
/// reads the head through a buffered reader and then reads the raw socket, so output that
/// arrived together with the head would be lost. (dockerd starts an exec's process only
/// after the upgrade, so its output always comes later.) Waits until nothing we sent is
/// unread (SIOCOUTQ), at most a moment.
async fn wait_until_read(client: &tokio::net::UnixStream) {
    use std::os::fd::AsRawFd;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (= SIOCOUTQ) stores one c_int through the pointer, which points
        // at a live local; the fd is open for as long as `client` is borrowed.
        let r = unsafe { libc::ioctl(client.as_raw_fd(), libc::TIOCOUTQ, &mut unread) };
        if r != 0 || unread == 0 || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Pump bytes between the upgraded client connection and the process's stream; `early`
/// is what the client sent right after its request (stdin already).
///
/// Ends when the client is gone (so a quiet process keeps no connection of a client that
/// left), or when the output ended and the client left after reading it.
async fn pump(
    client: tokio::net::UnixStream,
    early: Bytes,
    stream: Option<tokio::net::UnixStream>,
    replay: Option<mpsc::Receiver<Bytes>>,
    before_close: BoxFuture<'static, ()>,
) {
    use tokio::io::AsyncWriteExt;
    // Its own registration with the reactor (see `hung_up`).
    let watch = std::os::fd::AsFd::as_fd(&client).try_clone_to_owned();
    let (mut client_rd, mut client_wr) = client.into_split();
    if let Some(mut replay) = replay {
        while let Some(chunk) = replay.recv().await {
            if client_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    }
    let Some(stream) = stream else {
        before_close.await;
        let _ = client_wr.shutdown().await;
        return;
    };
    let (mut proc_rd, mut proc_wr) = stream.into_split();
    let to_process = async move {
        let mut copied = proc_wr.write_all(&early).await;
        if copied.is_ok() {
            copied = tokio::io::copy(&mut client_rd, &mut proc_wr)
                .await
                .map(drop);
        }
        // Client half-close: the process sees stdin EOF.
        let _ = proc_wr.shutdown().await;
        drop(proc_wr);
        if copied.is_err() {
            // The process reads no more (it exited): what the client still sends is
            // dropped here, rather than its connection being reset under it.
            let _ = tokio::io::copy(&mut client_rd, &mut tokio::io::sink()).await;
        }
        // A client that closed only its write side (stdin EOF) still reads the output.
        if let Ok(watch) = watch {
            hung_up(watch).await;
        }
        drop(client_rd);
    };
    let to_client = async move {
        let _ = tokio::io::copy(&mut proc_rd, &mut client_wr).await;
        before_close.await;
        let _ = client_wr.shutdown().await;
    };
    tokio::pin!(to_process, to_client);
    tokio::select! {
        // The client is gone: nobody reads the output any more.
        _ = &mut to_process => {}
        // Output done: the client leaves once it read it (its stdin drained meanwhile).
        _ = &mut to_client => to_process.await,
    }
}

/// Until the peer closed the connection altogether (not just its write side): a unix
/// socket reports that as a hang-up, which tokio shows as "write closed". `sock` is a
/// duplicate of the connection's fd, registered on its own: forgetting its writability
/// (to wait for the next change) must not stall the writes on the connection itself.
async fn hung_up(sock: std::os::fd::OwnedFd) {
    use tokio::io::unix::AsyncFd;
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
    // the AsyncFd's whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::WRITABLE) };
    let Ok(sock) = registered else {
        return std::future::pending().await;
    };
    loop {
        match sock.writable().await {
            Ok(guard) if guard.ready().is_write_closed() => return,
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => return,
        }
    }
}

/// The replay and the process's output as a plain streaming body (no stdin).
fn output_only(
    stream: Option<tokio::net::UnixStream>,
    replay: Option<mpsc::Receiver<Bytes>>,
    content_type: &str,
    before_close: BoxFuture<'static, ()>,
) -> Response {
    use tokio::io::AsyncReadExt;
    let (sender, resp) = channel_response(StatusCode::OK, content_type);
    tokio::spawn(async move {
        if let Some(mut replay) = replay {
            while let Some(chunk) = replay.recv().await {
                if !sender.send(chunk).await {
                    return;
                }
            }
        }
        if let Some(stream) = stream {
            let (mut rd, wr) = stream.into_split();
            drop(wr); // no stdin: EOF at once
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !sender.send(Bytes::copy_from_slice(&buf[..n])).await {
                            return;
                        }
                    }
                }
            }
        }
        before_close.await;
    });
    resp
}

/// One entry of the route table.
pub struct Route {
    pub method: Method,
    /// "/containers/{id}/json"; `{name:.*}` matches one or more segments greedily
    /// ("/images/{name:.*}/json" for names with slashes).
    pub pattern: &'static str,
    pub handler: Handler,
}

pub fn route(method: Method, pattern: &'static str, handler: Handler) -> Route {
    Route {
        method,
        pattern,
        handler,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_booleans_follow_docker() {
        let q = Query::parse(Some("a=1&b=0&c=false&d=none&e=&f=yes&g=No&h=%20true"));
        let truthy: Vec<&str> = ["a", "b", "c", "d", "e", "f", "g", "h", "missing"]
            .into_iter()
            .filter(|k| q.bool(k))
            .collect();
        assert_eq!(truthy, ["a", "f", "h"]);
        assert!(q.bool_or("e", true));
        assert!(!q.bool_or("b", true));
    }

    #[test]
    fn query_numbers() {
        let q = Query::parse(Some("t=5&bad=x&empty="));
        assert_eq!(q.int::<i64>("t").unwrap(), Some(5));
        assert_eq!(q.int::<i64>("empty").unwrap(), None);
        assert_eq!(q.int::<i64>("missing").unwrap(), None);
        assert_eq!(
            q.int::<i64>("bad").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn filters_in_both_shapes() {
        let new = parse_filters(r#"{"label":{"a=b":true,"off":false},"name":{"x":true}}"#).unwrap();
        assert_eq!(new["label"], ["a=b"]);
        assert_eq!(new["name"], ["x"]);
        let old = parse_filters(r#"{"label":["a=b","c"]}"#).unwrap();
        assert_eq!(old["label"], ["a=b", "c"]);
        assert!(parse_filters("").unwrap().is_empty());
        for bad in ["{", "[]", r#"{"label":1}"#, r#"{"label":[1]}"#] {
            let err = parse_filters(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn engine_errors_keep_their_status() {
        let e: ApiError = berth_engine::Error::no_such_container("x").into();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (404, "No such container: x")
        );
        let wrapped = anyhow::Error::new(berth_engine::Error::Conflict("busy".into()));
        let e: ApiError = wrapped.into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = anyhow::anyhow!("boom").context("doing it").into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "doing it: boom");
    }
}
