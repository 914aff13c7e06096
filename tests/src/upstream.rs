//! The upstream behind ward in end-to-end tests: HTTP/1.1 and HTTP/2 (prior knowledge) on
//! one loopback port, logging every request it receives.
//!
//! - `GET /stream/<bytes>`: a body of that many bytes, generated in 64 KiB chunks;
//! - `POST /sink`: reads the request body as it streams and answers `{"bytes": n}`;
//! - `/hang`: never answers;
//! - `/small` (unlogged benchmark upstreams only): `ok`;
//! - `/ws` with `Upgrade: websocket`: a WebSocket echo server;
//! - anything else: a JSON echo of the request head (method, uri, version, headers).

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::Role};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// `None` for benchmarks: millions of logged requests would only measure the log.
    log: Option<Arc<Mutex<Vec<Seen>>>>,
}

type ResBody = BoxBody<Bytes, Infallible>;

impl Upstream {
    /// Start on 127.0.0.1 (on the current tokio runtime), logging every request.
    pub async fn start() -> Self {
        Self::bind("127.0.0.1:0".parse().expect("addr"), true).await
    }

    /// Start on `addr`; with `log: false` nothing is recorded (benchmarks).
    pub async fn bind(addr: SocketAddr, log: bool) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let upstream = Self { addr, log: log.then(|| Arc::new(Mutex::new(Vec::new()))) };
        let serving = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let serving = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let serving = serving.clone();
                        async move { Ok::<_, Infallible>(serving.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.as_ref().map(|l| l.lock().expect("upstream log").clone()).unwrap_or_default()
    }

    /// URIs of every request received so far.
    pub fn uris(&self) -> Vec<String> {
        self.requests().into_iter().map(|s| s.uri).collect()
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<ResBody> {
        if req.uri().path() == "/small" && self.log.is_none() {
            return Response::new(BoxBody::new(Full::new(Bytes::from_static(b"ok"))));
        }
        let seen = Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            version: req.version(),
            headers: req.headers().clone(),
        };
        if let Some(log) = &self.log {
            log.lock().expect("upstream log").push(seen.clone());
        }
        let path = req.uri().path().to_owned();
        if path == "/ws" && req.headers().contains_key(http::header::UPGRADE) {
            return websocket(&mut req);
        }
        if let Some(n) = path.strip_prefix("/stream/") {
            let n: u64 = n.parse().expect("/stream/<bytes>");
            return Response::new(BoxBody::new(Generated::new(n)));
        }
        match path.as_str() {
            "/sink" => {
                let mut body = req.into_body();
                let mut total = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => total += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(_) => return text(StatusCode::BAD_REQUEST, json!({"error": "body", "bytes": total})),
                    }
                }
                text(StatusCode::OK, json!({"bytes": total}))
            }
            "/hang" => std::future::pending().await,
            _ => text(StatusCode::OK, echo(&seen)),
        }
    }
}

/// The JSON echo of a request head.
pub fn echo(seen: &Seen) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &seen.headers {
        let list = headers.entry(k.as_str()).or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(json!(String::from_utf8_lossy(v.as_bytes())));
        }
    }
    json!({"method": seen.method, "uri": seen.uri, "version": format!("{:?}", seen.version), "headers": headers})
}

fn text(status: StatusCode, v: Value) -> Response<ResBody> {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(v.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

fn websocket(req: &mut Request<Incoming>) -> Response<ResBody> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return text(StatusCode::BAD_REQUEST, json!({"error": "no sec-websocket-key"}));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-accept", accept)
        .body(BoxBody::new(Full::new(Bytes::new())))
        .expect("101 response")
}

/// A generated body of `n` bytes, 64 KiB per frame, never held in memory as a whole.
/// Its length is not announced, so HTTP/1.1 sends it chunked.
#[derive(Debug)]
pub struct Generated {
    left: u64,
}

impl Generated {
    pub fn new(n: u64) -> Self {
        Self { left: n }
    }
}

const CHUNK: Bytes = Bytes::from_static(&[b'w'; 64 * 1024]);

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(CHUNK.slice(..usize::try_from(n).unwrap_or(CHUNK.len()))))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}
