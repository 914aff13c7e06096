//! Sending an authorized request upstream over pooled connections: HTTP/1.1 for HTTP/1.x
//! clients, HTTP/2 (prior knowledge) for HTTP/2 clients, so gRPC stays gRPC end to end.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use crate::reason::Reason;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Pooled clients for one connect timeout. The pool is keyed by the destination address
/// (the request URI's authority is always the destination `ip:port`), so connections to
/// different destinations are never mixed up.
#[derive(Debug)]
struct Clients {
    connect_timeout: Duration,
    h1: Client<HttpConnector, Incoming>,
    h2: Client<HttpConnector, Incoming>,
}

impl Clients {
    fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let h1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // The client's own Host header (or :authority) is kept as it came.
            .set_host(false)
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .set_host(false)
            .build(connector);
        Self { connect_timeout, h1, h2 }
    }
}

/// The upstream side of the proxy.
#[derive(Debug)]
pub struct Upstream {
    clients: ArcSwap<Clients>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self { clients: ArcSwap::from_pointee(Clients::new(Duration::from_secs(2))) }
    }
}

impl Upstream {
    /// Clients for this connect timeout. A reload that changes the timeout gets new pools;
    /// requests in flight keep the old ones until they finish.
    fn clients(&self, connect_timeout: Duration) -> Arc<Clients> {
        let current = self.clients.load_full();
        if current.connect_timeout == connect_timeout {
            return current;
        }
        let fresh = Arc::new(Clients::new(connect_timeout));
        self.clients.store(fresh.clone());
        fresh
    }

    /// Send `req` to `destination`; errors are already the reason to answer with.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
        destination: SocketAddr,
        path_and_query: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Response<Incoming>, Reason> {
        let uri: Uri = format!("http://{destination}{path_and_query}").parse().map_err(|_| Reason::BadRequest)?;
        let h2 = req.version() == Version::HTTP_2;
        if h2 {
            // Keep the client's authority visible to the upstream; the URI's authority names
            // the destination for pooling.
            if let Some(authority) = req.uri().authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()) {
                req.headers_mut().entry(http::header::HOST).or_insert(authority);
            }
        } else {
            *req.version_mut() = Version::HTTP_11;
        }
        *req.uri_mut() = uri;
        let clients = self.clients(connect_timeout);
        let fut = if h2 { clients.h2.request(req) } else { clients.h1.request(req) };
        match tokio::time::timeout(response_timeout, fut).await {
            Err(_elapsed) => Err(Reason::UpstreamTimeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                tracing::debug!(%destination, error = %ErrorChain(&e), "upstream request failed");
                Err(Reason::UpstreamUnreachable)
            }
        }
    }
}

/// An error with its sources, for logs.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
