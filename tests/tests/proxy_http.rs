//! ward's HTTP/1.1 data path end to end: the real binary between real clients and a real
//! upstream over loopback.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use ward_e2e::{
    free_port,
    issuer::TestIdp,
    stack::{self, Stack},
};

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect to ward");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, path: &str, auth: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::get(path).header("host", "api");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    sender.ready().await.expect("connection still open");
    let resp = sender.send_request(b.body(Empty::new()).expect("request")).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

fn challenge(h: &http::HeaderMap) -> String {
    h.get("www-authenticate").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

/// Send raw bytes, read until ward closes the connection.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to ward");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn keep_alive_connection_checks_every_request() {
    let stack = Stack::start(|iss, listen, up| stack::config(iss, listen, up, "")).await;
    let good = format!("Bearer {}", stack.idp.mint("alice", "api", json!({})));
    let wrong_aud = format!("Bearer {}", stack.idp.mint("alice", "other", json!({})));
    let mut conn = connect(stack.addr).await;

    let (s, _, body) = send(&mut conn, "/one", Some(&good)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let echoed: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echoed["headers"]["x-user"], json!(["alice"]));

    let (s, h, body) = send(&mut conn, "/two", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&h), "Bearer realm=\"ward\"");
    assert!(body.contains("missing_token"), "{body}");

    let (s, h, _) = send(&mut conn, "/three", Some(&wrong_aud)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&h),
        "Bearer realm=\"ward\", error=\"invalid_token\", error_description=\"audience not accepted\""
    );

    let (s, h, _) = send(&mut conn, "/admin/users", Some(&good)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(challenge(&h).contains("error=\"insufficient_scope\""), "{}", challenge(&h));

    // Same path as the refused one, after normalization: still refused.
    let (s, _, _) = send(&mut conn, "/x/../admin/users", Some(&good)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _, _) = send(&mut conn, "/four", Some(&good)).await;
    assert_eq!(s, StatusCode::OK);

    let uris = stack.upstream.uris();
    let uris: Vec<&str> = uris.iter().map(String::as_str).filter(|u| *u != "/__ward_probe").collect();
    assert_eq!(uris, vec!["/one", "/four"], "refused requests never reached the upstream");

    // The audit log names the reasons and never contains a token.
    let audit = stack.ward.stdout();
    let token = good.trim_start_matches("Bearer ");
    assert!(
        !audit.contains(token) && !audit.contains(wrong_aud.trim_start_matches("Bearer ")),
        "a token leaked into the audit log"
    );
    assert!(!stack.ward.stderr().contains(token), "a token leaked into the log");
    for reason in ["missing_token", "bad_audience", "denied_by_policy", "allowed"] {
        assert!(
            audit.lines().any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["reason"] == reason)),
            "no audit line with reason {reason}:\n{audit}"
        );
    }
}

#[tokio::test]
async fn refusals_and_proxy_errors_have_their_status_codes() {
    let dead_port = free_port();
    let dead_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    // A second issuer whose keys never load: its tokens get 503.
    let down = TestIdp::start().await;
    down.set_serving(false);
    let down_issuer = down.issuer.clone();
    let stack = Stack::start(|iss, listen, up| {
        let extra = format!(
            "- {{name: dead, listen: \"{dead_listen}\", upstream: \"127.0.0.1:{dead_port}\"}}\n\
             proxy: {{headerReadTimeoutMillis: 500, upstreamResponseTimeoutMillis: 1000, maxHeaderBytes: 16384}}\n"
        );
        stack::config(iss, listen, up, &extra).replacen(
            "issuers:\n",
            &format!("issuers:\n- {{issuer: \"{down_issuer}\", audiences: [api]}}\n"),
            1,
        )
    })
    .await;
    let good = format!("Bearer {}", stack.idp.mint("alice", "api", json!({})));

    let mut conn = connect(stack.addr).await;
    let unavailable = format!("Bearer {}", down.mint("alice", "api", json!({})));
    let (s, _, body) = send(&mut conn, "/k", Some(&unavailable)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("keys_unavailable"), "{body}");

    let (s, _, body) = send(&mut conn, "/hang", Some(&good)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");

    let mut dead = connect(dead_listen).await;
    let (s, _, body) = send(&mut dead, "/", Some(&good)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");

    let mut conn = connect(stack.addr).await;
    let (s, _, _) = send(&mut conn, "/a%2Fb", Some(&good)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let answer = raw(stack.addr, b"GET /slow HTTP/1.1\r\nhost: api\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let big = format!("GET / HTTP/1.1\r\nhost: api\r\nx-big: {}\r\n\r\n", "b".repeat(20_000));
    let answer = raw(stack.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let uris = stack.upstream.uris();
    assert!(
        uris.iter().all(|u| u == "/__ward_probe" || u == "/hang"),
        "only the timed-out request reached the upstream: {uris:?}"
    );
}

#[tokio::test]
async fn non_http_streams_are_closed_and_counted() {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let stack =
        Stack::start(|iss, listen, up| stack::config(iss, listen, up, &format!("admin: {{listen: \"{admin}\"}}\n")))
            .await;
    // A TLS ClientHello start, then an SSH banner.
    assert_eq!(raw(stack.addr, b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03").await, "");
    assert_eq!(raw(stack.addr, b"SSH-2.0-OpenSSH_9.2p1\r\n").await, "");
    assert!(stack.upstream.uris().iter().all(|u| u == "/__ward_probe"));

    let metrics = ward_e2e::http::get(&format!("http://{admin}/metrics")).await.ok().body;
    assert!(metrics.contains("ward_proxy_rejected_connections_total{reason=\"not_http\"} 2"), "{metrics}");
    promtool_accepts(&metrics);
}

/// The whole agent's `/metrics` (every subsystem registered) passes `promtool check metrics`.
/// promtool is required when CI=true; elsewhere a missing promtool skips with a message.
fn promtool_accepts(metrics: &str) {
    use std::{
        io::Write,
        process::{Command, Stdio},
    };
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(!ward_e2e::in_ci(), "promtool is required in CI (apt-get install prometheus): {e}");
            eprintln!("skipping the promtool check: {e}");
            return;
        }
    };
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool rejected ward's /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits() {
    let mut stack =
        Stack::start(|iss, listen, up| stack::config(iss, listen, up, "proxy: {shutdownGraceSeconds: 5}\n")).await;
    let good = format!("Bearer {}", stack.idp.mint("alice", "api", json!({})));
    let mut conn = connect(stack.addr).await;
    assert_eq!(send(&mut conn, "/before", Some(&good)).await.0, StatusCode::OK);
    stack.ward.terminate();
    let status = tokio::task::block_in_place(|| stack.ward.wait_exit(std::time::Duration::from_secs(30)));
    assert!(status.success(), "ward exited with {status}; stderr:\n{}", stack.ward.stderr());
    assert!(TcpStream::connect(stack.addr).await.is_err(), "nothing listens after exit");
}
