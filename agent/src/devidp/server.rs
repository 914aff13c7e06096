//! The dev IdP's HTTP endpoints.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::{
    DevIdpError, DevIdpOptions,
    mint::{self, KidHeader, SigningKey},
};
use crate::{jwt::Algorithm, time::now_unix};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How discovery and JWKS requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// 503 with `Retry-After`.
    Down,
    /// Wait, then answer normally.
    Slow(Duration),
    /// Send the headers at once, the body after the delay.
    Stall(Duration),
    /// A never-ending-looking JSON body of this many bytes, chunked (no Content-Length).
    Huge(usize),
    /// 200, `application/json`, not JSON.
    Garbage,
    /// 500.
    ServerError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FaultRequest {
    mode: String,
    #[serde(default)]
    delay_millis: Option<u64>,
    #[serde(default)]
    size_bytes: Option<usize>,
}

impl FaultRequest {
    fn into_fault(self) -> Result<Fault, String> {
        let delay = Duration::from_millis(self.delay_millis.unwrap_or(10_000));
        Ok(match self.mode.as_str() {
            "none" => Fault::None,
            "down" => Fault::Down,
            "slow" => Fault::Slow(delay),
            "stall" => Fault::Stall(delay),
            "huge" => Fault::Huge(self.size_bytes.unwrap_or(16 << 20)),
            "garbage" => Fault::Garbage,
            "5xx" => Fault::ServerError,
            other => return Err(format!("unknown mode {other:?}: none, down, slow, stall, huge, garbage, 5xx")),
        })
    }
}

#[derive(Debug)]
struct Keys {
    /// Published keys, oldest first; the last is current.
    published: Vec<Arc<SigningKey>>,
}

impl Keys {
    fn current(&self) -> &Arc<SigningKey> {
        // `published` is never empty: built from at least one key, and retire-old keeps one.
        &self.published[self.published.len() - 1]
    }
}

#[derive(Debug)]
struct State {
    issuer: String,
    opts: DevIdpOptions,
    keys: Mutex<Keys>,
    fault: Mutex<Fault>,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
    minted: AtomicU64,
}

/// Serve until the listener fails. Prints `listening on http://ADDR issuer=ISSUER` on stdout
/// once it accepts connections (test harnesses and the quick-start read it).
pub async fn serve(listener: TcpListener, opts: DevIdpOptions) -> Result<(), DevIdpError> {
    let addr = listener.local_addr().map_err(DevIdpError::Listener)?;
    let issuer = opts.issuer.clone().unwrap_or_else(|| format!("http://{addr}"));
    let mut published = Vec::with_capacity(opts.algorithms.len());
    // The first --alg is the current key, i.e. the last one published.
    for alg in opts.algorithms.iter().rev() {
        published.push(Arc::new(SigningKey::generate(*alg)?));
    }
    if published.is_empty() {
        return Err(DevIdpError::NoAlgorithm);
    }
    let state = Arc::new(State {
        issuer,
        opts,
        keys: Mutex::new(Keys { published }),
        fault: Mutex::new(Fault::None),
        discovery_fetches: AtomicU64::new(0),
        jwks_fetches: AtomicU64::new(0),
        minted: AtomicU64::new(0),
    });
    announce(&addr, &state.issuer);
    tracing::warn!(issuer = %state.issuer, "dev IdP running: it mints any token asked for; for demos and tests only, never production");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: transient, do not spin.
            Err(e) => {
                tracing::warn!(error = %e, "dev IdP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(state.handle(req).await) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "dev IdP connection ended with an error");
            }
        });
    }
}

#[expect(
    clippy::print_stdout,
    reason = "the bound address is the dev IdP's output: harnesses and the quick-start read it"
)]
fn announce(addr: &std::net::SocketAddr, issuer: &str) {
    println!("listening on http://{addr} issuer={issuer} (dev IdP: for demos and tests only, never production)");
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let query = parse_query(parts.uri.query().unwrap_or(""));
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/.well-known/openid-configuration") => {
                self.discovery_fetches.fetch_add(1, Ordering::Relaxed);
                let algs: Vec<&str> = self.opts.algorithms.iter().map(|a| a.as_str()).collect();
                let doc = json!({
                    "issuer": self.issuer,
                    "jwks_uri": format!("{}/jwks", self.issuer.trim_end_matches('/')),
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": algs,
                });
                self.document(doc, None).await
            }
            (&Method::GET, "/jwks") => {
                self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
                let doc = {
                    let keys = lock(&self.keys);
                    mint::jwks_document(keys.published.iter().map(|k| &**k))
                };
                self.document(doc, Some(self.opts.max_age)).await
            }
            (&Method::POST, "/mint") => match read_json(body).await {
                Ok(Value::Object(claims)) => self.mint(claims, &query),
                Ok(Value::Null) => self.mint(Map::new(), &query),
                Ok(_) => error(StatusCode::BAD_REQUEST, "the body must be a JSON object of claims"),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            (&Method::POST, "/rotate") => {
                let alg = match query_alg(&query) {
                    Ok(alg) => alg.unwrap_or_else(|| lock(&self.keys).current().alg()),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                // RSA key generation takes a moment: not under the lock.
                let key = match SigningKey::generate(alg) {
                    Ok(k) => Arc::new(k),
                    Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                };
                let mut keys = lock(&self.keys);
                keys.published.push(key);
                tracing::info!(kid = keys.current().kid(), "dev IdP rotated its signing key");
                reply(StatusCode::OK, key_listing(&keys))
            }
            (&Method::POST, "/retire-old") => {
                let mut keys = lock(&self.keys);
                let current = Arc::clone(keys.current());
                keys.published = vec![current];
                reply(StatusCode::OK, key_listing(&keys))
            }
            (&Method::POST, "/fault") => {
                let request = match read_json(body)
                    .await
                    .and_then(|v| serde_json::from_value::<FaultRequest>(v).map_err(|e| e.to_string()))
                {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                match request.into_fault() {
                    Ok(fault) => {
                        *lock(&self.fault) = fault;
                        tracing::info!(?fault, "dev IdP fault mode set");
                        reply(StatusCode::OK, json!({"fault": format!("{fault:?}")}))
                    }
                    Err(e) => error(StatusCode::BAD_REQUEST, &e),
                }
            }
            (&Method::GET, "/stats") => reply(
                StatusCode::OK,
                json!({
                    "discovery": self.discovery_fetches.load(Ordering::Relaxed),
                    "jwks": self.jwks_fetches.load(Ordering::Relaxed),
                    "minted": self.minted.load(Ordering::Relaxed),
                }),
            ),
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    fn mint(&self, mut claims: Map<String, Value>, query: &[(String, String)]) -> Response<Body> {
        let alg = match query_alg(query) {
            Ok(alg) => alg,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let key = {
            let keys = lock(&self.keys);
            match (param(query, "key"), alg) {
                (Some(kid), _) => keys.published.iter().find(|k| k.kid() == kid).cloned(),
                // The newest key of the requested algorithm's type.
                (None, Some(alg)) => keys.published.iter().rev().find(|k| k.alg().family() == alg.family()).cloned(),
                (None, None) => Some(Arc::clone(keys.current())),
            }
        };
        let Some(key) = key else {
            return error(StatusCode::BAD_REQUEST, "no published key fits the requested key/alg");
        };
        let kid = match (param(query, "kid"), param(query, "noKid")) {
            (_, Some("true" | "1")) => KidHeader::Omit,
            (Some(v), _) => KidHeader::Value(v.to_owned()),
            _ => KidHeader::Key,
        };
        mint::fill_claims(&mut claims, &self.issuer, self.opts.audience.as_deref(), self.opts.ttl, now_unix());
        match key.mint(alg, &kid, &claims) {
            Ok(token) => {
                self.minted.fetch_add(1, Ordering::Relaxed);
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/jwt")
                    .body(full(token))
                    .unwrap_or_else(|_| internal())
            }
            Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }

    /// Discovery and JWKS answers, through the fault mode.
    async fn document(&self, doc: Value, max_age: Option<u64>) -> Response<Body> {
        let fault = *lock(&self.fault);
        let ok = |body: Body| {
            let mut r = Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
            if let Some(age) = max_age {
                r = r.header(header::CACHE_CONTROL, format!("public, max-age={age}"));
            }
            r.body(body).unwrap_or_else(|_| internal())
        };
        match fault {
            Fault::None => ok(full(doc.to_string())),
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                ok(full(doc.to_string()))
            }
            Fault::Stall(delay) => {
                let body = Bytes::from(doc.to_string());
                let stream = futures_util::stream::once(async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Frame::data(body))
                });
                ok(StreamBody::new(stream).boxed_unsync())
            }
            Fault::Huge(size) => {
                const CHUNK: usize = 64 * 1024;
                let head = Bytes::from_static(br#"{"keys":[],"padding":""#);
                let pad = Bytes::from(vec![b'a'; CHUNK]);
                let chunks = size.div_ceil(CHUNK);
                let frames = std::iter::once(head).chain(std::iter::repeat_n(pad, chunks));
                let stream = futures_util::stream::iter(frames.map(|b| Ok::<_, Infallible>(Frame::data(b))));
                ok(StreamBody::new(stream).boxed_unsync())
            }
            Fault::Garbage => ok(full("\u{1}\u{2}<html>this is not JSON")),
            Fault::Down => Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::RETRY_AFTER, "1")
                .body(full("down (dev IdP fault mode)"))
                .unwrap_or_else(|_| internal()),
            Fault::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error (dev IdP fault mode)"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key_listing(keys: &Keys) -> Value {
    json!({
        "current": keys.current().kid(),
        "published": keys.published.iter().map(|k| k.kid()).collect::<Vec<_>>(),
    })
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn internal() -> Response<Body> {
    let mut r = Response::new(full("internal error"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .unwrap_or_else(|_| internal())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    reply(status, json!({"error": message}))
}

/// A small JSON request body; empty means `null`.
async fn read_json(body: Incoming) -> Result<Value, String> {
    let bytes = Limited::new(body, 64 * 1024).collect().await.map_err(|e| format!("reading the body: {e}"))?.to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the body is not JSON: {e}"))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn query_alg(query: &[(String, String)]) -> Result<Option<Algorithm>, String> {
    param(query, "alg").map(str::parse::<Algorithm>).transpose()
}

/// `application/x-www-form-urlencoded` query pairs.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("alg=ES256&kid=a%2Fb+c&noKid&bad=%zz&tail=%4");
        assert_eq!(param(&q, "alg"), Some("ES256"));
        assert_eq!(param(&q, "kid"), Some("a/b c"));
        assert_eq!(param(&q, "noKid"), Some(""));
        assert_eq!(param(&q, "bad"), Some("%zz"));
        assert_eq!(param(&q, "tail"), Some("%4"));
    }

    #[test]
    fn fault_modes() {
        let f = |v: Value| serde_json::from_value::<FaultRequest>(v).expect("fault request").into_fault();
        assert_eq!(f(json!({"mode": "5xx"})), Ok(Fault::ServerError));
        assert_eq!(f(json!({"mode": "slow", "delayMillis": 50})), Ok(Fault::Slow(Duration::from_millis(50))));
        assert_eq!(f(json!({"mode": "huge", "sizeBytes": 10})), Ok(Fault::Huge(10)));
        assert!(f(json!({"mode": "sideways"})).is_err());
        assert!(serde_json::from_value::<FaultRequest>(json!({"mode": "none", "typo": 1})).is_err());
    }
}
