//! The proxy over real loopback sockets: a real enforcer (static keys, real tokens), a real
//! upstream that records what reaches it, and raw or hyper clients.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

use super::*;
use crate::{
    authn::{Authenticator, StaticKeys, metrics::AuthnMetrics},
    jwt::{Algorithm, key::KeySet, testkeys::TestKey},
};

const ISSUER: &str = "https://idp.test";

/// What the upstream saw, one entry per request: method, URI, version, headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

impl Seen {
    fn all(&self) -> Vec<Value> {
        self.0.lock().expect("lock").clone()
    }
}

/// An HTTP/1.1 + HTTP/2 upstream answering every request with a JSON echo of its head.
/// `/hang` never answers; `/wait` answers once `release` is notified.
async fn upstream(seen: Seen, release: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (seen, release) = (seen.clone(), release.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, release) = (seen.clone(), release.clone());
                    async move {
                        let mut headers = serde_json::Map::new();
                        for (k, v) in req.headers() {
                            let list = headers.entry(k.as_str()).or_insert_with(|| json!([]));
                            list.as_array_mut().expect("array").push(json!(v.to_str().unwrap_or("<binary>")));
                        }
                        let head = json!({
                            "method": req.method().as_str(),
                            "uri": req.uri().to_string(),
                            "version": format!("{:?}", req.version()),
                            "headers": headers,
                        });
                        seen.0.lock().expect("lock").push(head.clone());
                        match req.uri().path() {
                            "/hang" => std::future::pending::<()>().await,
                            "/wait" => release.notified().await,
                            _ => {}
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(head.to_string()))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Harness {
    addr: SocketAddr,
    seen: Seen,
    release: Arc<Notify>,
    key: TestKey,
    registry: Arc<Mutex<Registry>>,
    shutdown: Shutdown,
    served: tokio::task::JoinHandle<Result<(), ProxyError>>,
}

const CONFIG: &str = r#"
issuers:
- issuer: https://idp.test
  audiences: [api]
  jwksUri: https://idp.test/jwks
  outputClaimToHeaders:
  - {header: x-user, claim: sub}
  - {header: x-roles, claim: realm_access.roles}
  forwardOriginalToken: false
policies:
- name: deny-admin
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
- name: authenticated
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
proxy:
  headerReadTimeoutMillis: 300
  upstreamResponseTimeoutMillis: 1000
  upstreamConnectTimeoutMillis: 200
  maxConnections: 3
  shutdownGraceSeconds: 30
"#;

impl Harness {
    async fn start(extra_yaml: &str, keys_loaded: bool) -> Self {
        let (seen, release) = (Seen::default(), Arc::new(Notify::new()));
        let upstream_addr = upstream(seen.clone(), release.clone()).await;
        Self::start_with(extra_yaml, keys_loaded, upstream_addr, seen, release).await
    }

    async fn start_with(
        extra_yaml: &str,
        keys_loaded: bool,
        upstream_addr: SocketAddr,
        seen: Seen,
        release: Arc<Notify>,
    ) -> Self {
        let config = crate::config::parse_str(&format!("{CONFIG}{extra_yaml}"), "test").expect("test config is valid");
        let key = TestKey::p256();
        let mut sets = HashMap::new();
        if keys_loaded {
            let doc = json!({"keys": [key.jwk(Some("k1"), Some("ES256"))]}).to_string();
            sets.insert(ISSUER.to_owned(), KeySet::parse(doc.as_bytes()).expect("test key set"));
        }
        let authn =
            Authenticator::new(Arc::new(StaticKeys(sets)), &config.cache, Arc::new(AuthnMetrics::unregistered()));
        let enforcer = Arc::new(Enforcer::new(authn, Arc::new(config)));
        let mut registry = Registry::with_prefix("ward");
        let metrics = Arc::new(ProxyMetrics::new(&mut registry));
        let proxy = Proxy::new(enforcer, metrics, Arc::new(AuditLog::disabled()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shutdown = Shutdown::new();
        let route = Route::Fixed { name: "test".into(), upstream: upstream_addr, enforce: true };
        let served = tokio::spawn(proxy.serve(listener, route, shutdown.clone()));
        Self { addr, seen, release, key, registry: Arc::new(Mutex::new(registry)), shutdown, served }
    }

    fn token(&self, claims: Value) -> String {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
        let mut payload = json!({"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now + 600, "iat": now});
        for (k, v) in claims.as_object().expect("claims object") {
            payload[k] = v.clone();
        }
        self.key.sign_raw(Algorithm::ES256, &json!({"alg": "ES256", "kid": "k1"}).to_string(), &payload.to_string())
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().expect("lock")).expect("encode");
        text
    }

    async fn h1(&self) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        let stream = TcpStream::connect(self.addr).await.expect("connect to proxy");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
        tokio::spawn(conn);
        sender
    }
}

fn get(path: &str, auth: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::get(path).header("host", "api.test");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Empty::new()).expect("request")
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    sender.ready().await.expect("connection still usable");
    let resp = sender.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

fn www_auth(h: &http::HeaderMap) -> &str {
    h.get("www-authenticate").map(|v| v.to_str().expect("ascii")).unwrap_or("")
}

/// Reads until EOF or error; what the proxy sent before closing.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

#[tokio::test]
async fn every_request_on_a_keep_alive_connection_is_checked() {
    let h = Harness::start("", true).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let forged = format!(
        "Bearer {}",
        TestKey::p256().sign_raw(Algorithm::ES256, r#"{"alg":"ES256","kid":"k1"}"#, r#"{"iss":"https://idp.test"}"#)
    );
    let mut conn = h.h1().await;

    let (s, _, _) = send(&mut conn, get("/a", Some(&good))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, hd, body) = send(&mut conn, get("/b", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(www_auth(&hd), "Bearer realm=\"ward\"");
    let body: Value = serde_json::from_slice(&body).expect("JSON refusal body");
    assert_eq!(body["reason"], "missing_token");
    let (s, hd, _) = send(&mut conn, get("/c", Some(&forged))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www_auth(&hd).contains("error=\"invalid_token\""), "{}", www_auth(&hd));
    let (s, hd, _) = send(&mut conn, get("/d", Some("Bearer a b"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www_auth(&hd).contains("Authorization header is not"), "{}", www_auth(&hd));
    let (s, hd, _) = send(&mut conn, get("/admin/x", Some(&good))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(www_auth(&hd).contains("error=\"insufficient_scope\""), "{}", www_auth(&hd));
    let (s, _, _) = send(&mut conn, get("/e", Some(&good))).await;
    assert_eq!(s, StatusCode::OK);

    let uris: Vec<String> = h.seen.all().iter().map(|v| v["uri"].as_str().expect("uri").to_owned()).collect();
    assert_eq!(uris, vec!["/a", "/e"], "only the authorized requests reached the upstream");
    let m = h.metrics();
    for want in [
        "ward_requests_total{decision=\"allow\",reason=\"allowed\"} 2",
        "ward_requests_total{decision=\"unauthenticated\",reason=\"missing_token\"} 1",
        "ward_requests_total{decision=\"forbidden\",reason=\"denied_by_policy\"} 1",
        "ward_connections_total 1",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
}

#[tokio::test]
async fn upstream_sees_the_normalized_path_and_verified_identity_only() {
    let h = Harness::start("", true).await;
    let token = h.token(json!({"realm_access": {"roles": ["dev", "ops"]}}));
    let mut conn = h.h1().await;
    let req = Request::get("/public/%2e%2e/x//y?q=1")
        .header("host", "api.test")
        .header("authorization", format!("Bearer {token}"))
        .header("x-user", "mallory")
        .header("x-ward-role", "admin")
        .header("x-forwarded-for", "192.0.2.7")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .body(Empty::new())
        .expect("request");
    let (s, _, body) = send(&mut conn, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let seen: Value = serde_json::from_slice(&body).expect("echo");
    assert_eq!(seen["uri"], "/x/y?q=1");
    let hd = &seen["headers"];
    assert_eq!(hd["x-user"], json!(["alice"]));
    assert_eq!(hd["x-roles"], json!(["dev,ops"]));
    assert_eq!(hd["x-ward-role"], Value::Null);
    assert_eq!(hd["authorization"], Value::Null, "forwardOriginalToken: false removes the token");
    assert_eq!(hd["x-forwarded-for"], json!(["192.0.2.7, 127.0.0.1"]));
    assert_eq!(hd["x-forwarded-proto"], json!(["http"]));
    assert_eq!(hd["x-drop-me"], Value::Null);
    assert_eq!(hd["host"], json!(["api.test"]));

    // An encoded slash is refused before any decision and never forwarded.
    let (s, _, _) = send(&mut conn, get("/a%2Fb", Some(&format!("Bearer {token}")))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(h.seen.all().len(), 1);
}

#[tokio::test]
async fn http2_goes_upstream_as_http2() {
    let h = Harness::start("", true).await;
    let token = h.token(json!({}));
    let stream = TcpStream::connect(h.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(conn);
    for (auth, want) in [(Some(format!("Bearer {token}")), StatusCode::OK), (None, StatusCode::UNAUTHORIZED)] {
        let mut b =
            Request::get("http://api.test/grpc.health.v1.Health/Check").header("content-type", "application/grpc");
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        let resp = sender.send_request(b.body(Empty::<Bytes>::new()).expect("req")).await.expect("h2 response");
        assert_eq!(resp.status(), want);
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(resp.headers()["grpc-status"], "16");
        } else {
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let seen: Value = serde_json::from_slice(&body).expect("echo");
            assert_eq!(seen["version"], "HTTP/2.0");
            assert_eq!(seen["headers"]["host"], json!(["api.test"]));
        }
    }
    assert_eq!(h.seen.all().len(), 1);
}

#[tokio::test]
async fn non_http_bytes_are_closed_and_counted() {
    let h = Harness::start("", true).await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03").await.expect("write");
    assert!(read_to_close(&mut s).await.is_empty(), "nothing is answered to a non-HTTP stream");
    assert!(h.metrics().contains("ward_proxy_rejected_connections_total{reason=\"not_http\"} 1"), "{}", h.metrics());
    assert!(h.seen.all().is_empty());
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let h = Harness::start("  maxHeaderBytes: 16384\n", true).await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let big = "a".repeat(20_000);
    s.write_all(format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes()).await.expect("write");
    let answer = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(h.seen.all().is_empty());
}

#[tokio::test]
async fn slow_request_head_gets_408() {
    let h = Harness::start("", true).await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    // The head is never completed; the proxy answers once headerReadTimeoutMillis passes.
    let answer = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("header_timeout"), "{answer}");
    assert!(h.seen.all().is_empty());
}

#[tokio::test]
async fn idle_keep_alive_connection_outlives_the_header_timeout() {
    // headerReadTimeoutMillis (300 ms) runs only while a request head is arriving, not while
    // a keep-alive connection waits between requests.
    let h = Harness::start("", true).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut conn = h.h1().await;
    assert_eq!(send(&mut conn, get("/one", Some(&good))).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(send(&mut conn, get("/two", Some(&good))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let h = Harness::start("", true).await;
    let good = format!("Bearer {}", h.token(json!({})));
    // maxConnections: 3. Each held connection has completed a request, so it holds a permit.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = h.h1().await;
        assert_eq!(send(&mut c, get("/", Some(&good))).await.0, StatusCode::OK);
        held.push(c);
    }
    let mut over = TcpStream::connect(h.addr).await.expect("the kernel still accepts");
    let _ = over.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(read_to_close(&mut over).await.is_empty(), "closed without an answer");
    assert!(
        h.metrics().contains("ward_proxy_rejected_connections_total{reason=\"max_connections\"} 1"),
        "{}",
        h.metrics()
    );
    assert!(h.metrics().contains("ward_active_connections 3"), "{}", h.metrics());
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    // A port with nothing listening: bind, note the port, close.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let h = Harness::start_with("", true, dead, Seen::default(), Arc::new(Notify::new())).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut conn = h.h1().await;
    let (s, _, body) = send(&mut conn, get("/", Some(&good))).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("upstream_unreachable"));

    let h = Harness::start("", true).await;
    let mut conn = h.h1().await;
    let good = format!("Bearer {}", h.token(json!({})));
    let (s, _, body) = send(&mut conn, get("/hang", Some(&good))).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(String::from_utf8_lossy(&body).contains("upstream_timeout"));
}

#[tokio::test]
async fn keys_unavailable_is_503() {
    let h = Harness::start("", false).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut conn = h.h1().await;
    let (s, _, body) = send(&mut conn, get("/", Some(&good))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("keys_unavailable"));
    assert!(h.seen.all().is_empty());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_in_flight_requests_finish() {
    let h = Harness::start("", true).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut conn = h.h1().await;
    let in_flight = tokio::spawn(async move {
        let r = send(&mut conn, get("/wait", Some(&good))).await;
        (r, conn)
    });
    // Wait until the request is at the upstream, then shut down.
    while h.seen.all().is_empty() {
        tokio::task::yield_now().await;
    }
    h.shutdown.trigger();
    // The listener closes: new connections are refused (retry until the accept loop saw it).
    loop {
        match TcpStream::connect(h.addr).await {
            Err(_) => break,
            Ok(mut s) => {
                drop(s.write_all(b"GET / HTTP/1.1\r\n\r\n").await);
                let _ = read_to_close(&mut s).await;
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(!h.served.is_finished(), "serve waits for the request in flight");
    h.release.notify_one();
    let ((status, _, _), _conn) = in_flight.await.expect("request task");
    assert_eq!(status, StatusCode::OK, "the in-flight request completed");
    h.served.await.expect("serve task").expect("serve returns Ok after draining");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let h = Harness::start("  idleTimeoutSeconds: 1\n", true).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(format!("GET /one HTTP/1.1\r\nhost: api\r\nauthorization: {good}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    // The answer arrives, then, with nothing more sent, the connection is closed by ward.
    let answer = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("408"), "an idle connection is closed silently: {answer}");
}

#[tokio::test]
async fn upstream_connect_timeout_holds() {
    // An upstream whose accept queue is full: the kernel drops further SYNs, so a connect
    // hangs. With a connect timeout below the response timeout the answer is 502, not 504.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let full = socket.listen(0).expect("listen with backlog 0");
    let addr = full.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(c)) = tokio::time::timeout(std::time::Duration::from_millis(200), TcpStream::connect(addr)).await {
            fillers.push(c);
        }
    }
    // The harness config: upstreamConnectTimeoutMillis 200, upstreamResponseTimeoutMillis 1000.
    let h = Harness::start_with("", true, addr, Seen::default(), Arc::new(Notify::new())).await;
    let good = format!("Bearer {}", h.token(json!({})));
    let mut conn = h.h1().await;
    let (s, _, body) = send(&mut conn, get("/", Some(&good))).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{}", String::from_utf8_lossy(&body));
    drop((full, fillers));
}
