//! The HTTP/1 server on the unix socket: one task per connection, upgrades enabled (attach,
//! exec), the route table, and the headers every Docker Engine response carries.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::api::{Ctx, Query, Response, API_VERSION};
use crate::router::{strip_version, Router};

pub struct Server {
    pub engine: Arc<berth_engine::Engine>,
    pub router: Router,
}

impl Server {
    pub fn new(engine: Arc<berth_engine::Engine>) -> Server {
        Server {
            engine,
            router: Router::new(crate::routes::all()),
        }
    }

    /// Accept connections until `shutdown` resolves. Connections already being served
    /// keep their tasks; the caller decides how long to let them run.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let server = self.clone();
                        tokio::spawn(async move { server.connection(stream).await });
                    }
                    Err(e) => {
                        eprintln!("berthd: accept: {e}");
                        // EMFILE and friends: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::UnixStream) {
        let service = service_fn(move |req| {
            let server = self.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        let conn = http1::Builder::new()
            // Go canonicalizes header names anyway; some clients compare them verbatim.
            .title_case_headers(true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            if !e.is_incomplete_message() {
                eprintln!("berthd: connection: {e}");
            }
        }
    }

    async fn handle(&self, req: hyper::Request<Incoming>) -> Response {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let result = match self.dispatch(req).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.status.is_server_error() {
                    eprintln!("berthd: {method} {path}: {}", e.message);
                }
                e.into_response()
            }
        };
        with_standard_headers(result)
    }

    async fn dispatch(&self, req: hyper::Request<Incoming>) -> crate::api::ApiResult {
        let (api_version, path) = strip_version(req.uri().path())?;
        let matched = self.router.find(req.method(), path)?;
        let ctx = Ctx {
            engine: self.engine.clone(),
            params: matched.params,
            query: Query::parse(req.uri().query()),
            req,
            api_version,
        };
        (matched.handler)(ctx).await
    }
}

/// Headers on every response, as dockerd sends them.
fn with_standard_headers(mut resp: Response) -> Response {
    let version = format!("{}.{}", API_VERSION.0, API_VERSION.1);
    let server = format!("berth/{}", env!("CARGO_PKG_VERSION"));
    let headers = resp.headers_mut();
    for (name, value) in [
        ("api-version", version.as_str()),
        ("ostype", "linux"),
        ("server", server.as_str()),
        ("docker-experimental", "false"),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    resp
}
