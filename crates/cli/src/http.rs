//! A small synchronous HTTP/1.1 client over a unix socket: what the CLI needs from the Docker Engine API
//! (one request per connection, bodies by length, chunked or to EOF, streamed responses, hijacked upgrades).

use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// The API version this client speaks (prefixed to every path as /v1.44); `BERTH_API_VERSION` overrides it
/// (like DOCKER_API_VERSION) to talk to older daemons.
pub const API_VERSION: &str = "1.44";

/// A request body: nothing, bytes with a content type, or a reader sent chunked.
pub enum Body<'a> {
    Empty,
    Json(Vec<u8>),
    Reader(Box<dyn Read + 'a>, &'a str),
}

impl Body<'_> {
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Body<'static>> {
        Ok(Body::Json(
            serde_json::to_vec(value).context("encoding the request")?,
        ))
    }
}

/// Connection to the daemon: a unix socket path.
#[derive(Clone, Debug)]
pub struct Client {
    pub socket: PathBuf,
    pub version: String,
}

/// A parsed response whose body is read on demand (`Read`).
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: BodyReader<BufReader<UnixStream>>,
}

/// An error response from the daemon (status and its `message`).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

/// A query string builder that percent-encodes values.
#[derive(Default)]
pub struct Query(String);

impl Query {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(&encode(key));
        self.0.push('=');
        self.0.push_str(&encode(value.as_ref()));
        self
    }
    pub fn opt(self, key: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(v) => self.add(key, v),
            None => self,
        }
    }
    /// Adds `key=1` when `on`.
    pub fn flag(self, key: &str, on: bool) -> Self {
        if on {
            self.add(key, "1")
        } else {
            self
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes a path segment (a name or id that may contain slashes stays readable for image names).
pub fn encode_path(s: &str) -> String {
    s.split('/').map(encode).collect::<Vec<_>>().join("/")
}

impl Client {
    /// Parses `unix:///path` (or a bare absolute path) into a client.
    pub fn from_host(host: &str) -> Result<Client> {
        let path = if let Some(p) = host.strip_prefix("unix://") {
            p
        } else if host.starts_with('/') {
            host
        } else {
            bail!("unsupported host {host:?}: only unix:// sockets are supported");
        };
        let version = std::env::var("BERTH_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| API_VERSION.to_string());
        Ok(Client {
            socket: PathBuf::from(path),
            version,
        })
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).map_err(|e| {
            anyhow!(
                "Cannot connect to the berth daemon at unix://{}. Is the berth daemon running? ({e})",
                self.socket.display()
            )
        })
    }

    /// Sends a request and reads the response head; the body is left to the caller.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let mut stream = self.connect()?;
        let reader = BufReader::new(stream.try_clone().context("cloning the socket")?);
        if let Err(e) = write_request(&mut stream, &self.version, method, path, body, headers) {
            // The daemon may have answered (an error) before taking the whole body: report its answer.
            return match read_response(reader, method == "HEAD") {
                Ok(resp) if resp.status >= 400 => resp.ok(),
                _ => Err(e),
            };
        }
        read_response(reader, method == "HEAD")
    }

    /// Like `send`, but turns a non-2xx status into an `ApiError`.
    pub fn call(&self, method: &str, path: &str, body: Body) -> Result<Response> {
        self.send(method, path, body, &[])?.ok()
    }

    /// A request whose JSON response is decoded.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Body,
    ) -> Result<T> {
        self.call(method, path, body)?.json()
    }

    /// Sends an upgrade request (attach, exec start) and returns the raw connection after `101`.
    /// The reader half keeps what the server sent right after its response head.
    pub fn hijack(&self, path: &str, body: Body) -> Result<(BufReader<UnixStream>, UnixStream)> {
        let mut stream = self.connect()?;
        let write_half = stream.try_clone().context("cloning the socket")?;
        write_request(
            &mut stream,
            &self.version,
            "POST",
            path,
            body,
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
        )?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader)?;
        if status != 101 {
            let resp = Response {
                status,
                body: body_reader(reader, &headers, false)?,
                headers,
            };
            resp.ok()?;
            bail!("the daemon did not upgrade the connection (status {status})");
        }
        Ok((reader, write_half))
    }
}

/// Writes to the daemon's socket with MSG_NOSIGNAL. berth keeps SIGPIPE at its default so
/// `berth ps | head` ends quietly; a daemon that closed its end early (an error answer
/// before the whole upload) must instead give EPIPE here, and then its answer is read.
pub struct SocketWriter<'a>(pub &'a UnixStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the fd is the live socket borrowed in self.0; buf is a valid slice.
            let n = unsafe {
                libc::send(
                    std::os::fd::AsRawFd::as_raw_fd(self.0),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_request(
    stream: &mut UnixStream,
    version: &str,
    method: &str,
    path: &str,
    body: Body,
    headers: &[(&str, &str)],
) -> Result<()> {
    let mut head =
        format!("{method} /v{version}{path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // One request per connection: the daemon may close after answering (bodies framed by EOF end there).
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    let mut w = io::BufWriter::new(SocketWriter(stream));
    match body {
        Body::Empty => {
            if method != "GET" && method != "HEAD" {
                head.push_str("Content-Length: 0\r\n");
            }
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
        }
        Body::Json(bytes) => write_fixed(&mut w, head, &bytes, "application/json")?,
        Body::Reader(mut reader, ctype) => {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ));
            w.write_all(head.as_bytes())?;
            write_chunked(&mut w, &mut reader)?;
        }
    }
    w.flush().context("sending the request")?;
    Ok(())
}

fn write_fixed(w: &mut impl Write, mut head: String, bytes: &[u8], ctype: &str) -> Result<()> {
    head.push_str(&format!(
        "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(bytes)?;
    Ok(())
}

/// Copies `reader` to `w` in HTTP chunked encoding, ending with the zero chunk.
pub fn write_chunked(w: &mut impl Write, reader: &mut dyn Read) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the request body"),
        };
        write!(w, "{n:x}\r\n")?;
        w.write_all(&buf[..n])?;
        w.write_all(b"\r\n")?;
    }
    w.write_all(b"0\r\n\r\n")?;
    Ok(())
}

fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)
        .context("reading the response")?;
    if line.is_empty() {
        bail!("the daemon closed the connection without a response");
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads a status line and headers.
pub fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>)> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("malformed response from the daemon: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body_reader<R: BufRead>(
    r: R,
    headers: &[(String, String)],
    no_body: bool,
) -> Result<BodyReader<R>> {
    let kind = if no_body {
        Framing::Length(0)
    } else if header(headers, "Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(len) = header(headers, "Content-Length") {
        Framing::Length(
            len.parse()
                .with_context(|| format!("bad Content-Length {len:?}"))?,
        )
    } else {
        Framing::Eof
    };
    Ok(BodyReader { inner: r, kind })
}

/// Reads a response head and wraps the body.
pub fn read_response(mut r: BufReader<UnixStream>, head_only: bool) -> Result<Response> {
    let (status, headers) = read_head(&mut r)?;
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    Ok(Response {
        status,
        body: body_reader(r, &headers, no_body)?,
        headers,
    })
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Eof,
}

/// A response body decoder (Content-Length, chunked or until EOF).
pub struct BodyReader<R> {
    inner: R,
    kind: Framing,
}

impl<R: BufRead> BodyReader<R> {
    #[cfg(test)]
    pub fn chunked(inner: R) -> Self {
        BodyReader {
            inner,
            kind: Framing::Chunked {
                left: 0,
                done: false,
            },
        }
    }

    fn next_chunk_size(&mut self) -> io::Result<u64> {
        let mut line = String::new();
        self.inner.read_line(&mut line)?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated chunked body",
            ));
        }
        let size = line.trim().split(';').next().unwrap_or_default();
        u64::from_str_radix(size, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size:?}"),
            )
        })
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.kind {
            Framing::Eof => self.inner.read(buf),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = (*left).min(buf.len() as u64) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated body",
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, .. } if *left > 0 => {
                let want = (*left).min(buf.len() as u64) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated chunk",
                    ));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = String::new();
                    self.inner.read_line(&mut crlf)?;
                }
                Ok(n)
            }
            Framing::Chunked { .. } => {
                let size = self.next_chunk_size()?;
                if size == 0 {
                    // Trailers, then the blank line.
                    loop {
                        let mut line = String::new();
                        if self.inner.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    self.kind = Framing::Chunked {
                        left: 0,
                        done: true,
                    };
                    return Ok(0);
                }
                self.kind = Framing::Chunked {
                    left: size,
                    done: false,
                };
                self.read(buf)
            }
        }
    }
}

impl Response {
    /// Bounds every later read of the body (None: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        self.body
            .inner
            .get_ref()
            .set_read_timeout(timeout)
            .context("setting a read timeout")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Turns an error status into an `ApiError` carrying the daemon's message.
    pub fn ok(mut self) -> Result<Response> {
        if self.status < 400 {
            return Ok(self);
        }
        let mut body = Vec::new();
        let _ = self.body.read_to_end(&mut body);
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        let message = if message.is_empty() {
            format!("status {}", self.status)
        } else {
            message
        };
        Err(ApiError {
            status: self.status,
            message,
        }
        .into())
    }

    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body
            .read_to_end(&mut out)
            .context("reading the response body")?;
        Ok(out)
    }

    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "decoding the daemon's response: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        })
    }

    /// The body as a buffered reader, for streams read line by line.
    pub fn lines(self) -> BufReader<Response> {
        BufReader::new(self)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

/// The status of an error produced by a daemon response, if that is what `err` is.
pub fn api_status(err: &anyhow::Error) -> Option<u16> {
    err.downcast_ref::<ApiError>().map(|e| e.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A server that answers one connection with `reply` and hands back the request it read.
    fn serve_once(
        reply: &'static [u8],
    ) -> (Client, tempfile::TempDir, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut req = Vec::new();
            // Read the head, then a body by Content-Length or chunked.
            let (line, headers) = {
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut hs = Vec::new();
                loop {
                    let mut l = String::new();
                    reader.read_line(&mut l).unwrap();
                    if l.trim().is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    hs.push((k.trim().to_string(), v.trim().to_string()));
                }
                (first, hs)
            };
            req.extend_from_slice(line.as_bytes());
            let mut body = body_reader(&mut reader, &headers, false).unwrap();
            if header(&headers, "Content-Length").is_some()
                || header(&headers, "Transfer-Encoding").is_some()
            {
                body.read_to_end(&mut req).unwrap();
            }
            conn.write_all(reply).unwrap();
            req
        });
        (
            Client {
                socket: path,
                version: API_VERSION.into(),
            },
            dir,
            handle,
        )
    }

    #[test]
    fn decodes_chunked_response() {
        let (client, _dir, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
              5\r\n{\"a\":\r\n3;ext=1\r\n 42\r\n1\r\n}\r\n0\r\n\r\n",
        );
        let v: serde_json::Value = client.json("GET", "/x", Body::Empty).unwrap();
        assert_eq!(v["a"], 42);
        assert!(String::from_utf8(server.join().unwrap())
            .unwrap()
            .starts_with("GET /v1.44/x HTTP/1.1"));
    }

    #[test]
    fn sends_chunked_body_and_reads_to_eof() {
        let (client, _dir, server) = serve_once(b"HTTP/1.1 200 OK\r\n\r\nuntil eof");
        let payload = vec![b'x'; 100_000];
        let resp = client
            .call(
                "POST",
                "/load",
                Body::Reader(Box::new(&payload[..]), "application/x-tar"),
            )
            .unwrap();
        assert_eq!(resp.bytes().unwrap(), b"until eof");
        let req = server.join().unwrap();
        assert_eq!(req.len(), "POST /v1.44/load HTTP/1.1\r\n".len() + 100_000);
    }

    #[test]
    fn error_status_carries_daemon_message() {
        let (client, _dir, _server) = serve_once(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n{\"message\":\"No such container: x\"}\n",
        );
        let err = client
            .call("GET", "/containers/x/json", Body::Empty)
            .err()
            .unwrap();
        assert_eq!(api_status(&err), Some(404));
        assert_eq!(
            err.to_string(),
            "Error response from daemon: No such container: x"
        );
    }

    #[test]
    fn hijack_keeps_bytes_after_101() {
        let (client, _dir, _server) = serve_once(
            b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nraw output",
        );
        let (mut reader, _w) = client.hijack("/containers/x/attach", Body::Empty).unwrap();
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "raw output");
    }

    #[test]
    fn chunked_rejects_garbage_size() {
        let mut r = BodyReader::chunked(&b"zz\r\nabc"[..]);
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }

    #[test]
    fn query_encoding() {
        let q = Query::new()
            .add("filters", "{\"a\":[\"b c\"]}")
            .flag("all", true)
            .flag("x", false);
        assert_eq!(
            q.as_str(),
            "?filters=%7B%22a%22%3A%5B%22b%20c%22%5D%7D&all=1"
        );
    }
}
