use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::{proxy::ProxyMetrics, reason::Reason};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    get_with(addr, path, "").await
}

async fn get_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n{extra}\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head[9..12].parse().expect("status code");
    (status, head.to_owned(), body.to_owned())
}

struct Admin {
    addr: std::net::SocketAddr,
    ready: Ready,
    keys_ok: Arc<AtomicBool>,
    shutdown: Shutdown,
    served: tokio::task::JoinHandle<()>,
}

async fn start() -> Admin {
    let mut proxy_metrics = None;
    let metrics = Arc::new(Metrics::new(|r| proxy_metrics = Some(ProxyMetrics::new(r))));
    let pm = proxy_metrics.expect("registered");
    pm.request(Reason::Allowed);
    pm.request(Reason::Expired);
    pm.upstream_duration(0.003);
    let ready = Ready::new();
    let keys_ok = Arc::new(AtomicBool::new(true));
    let k = keys_ok.clone();
    let check: LiveCheck =
        Arc::new(move || if k.load(Ordering::SeqCst) { Ok(()) } else { Err("issuer https://idp: no keys".into()) });
    let dump: ConfigDump = Arc::new(
        || json!({"issuers": [{"issuer": "https://idp", "jwksUri": "https://user:pw@idp/jwks?client_secret=s3", "clientSecret": "s3"}]}),
    );
    let state = AdminState { metrics, ready: ready.clone(), checks: vec![("keys".into(), check)], config_dump: dump };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = listener.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let served = tokio::spawn(serve(listener, state, shutdown.clone()));
    Admin { addr, ready, keys_ok, shutdown, served }
}

#[tokio::test]
async fn health_readiness_and_config_dump() {
    let admin = start().await;
    assert_eq!(get(admin.addr, "/healthz").await.0, 200);

    let guard = admin.ready.register("listeners");
    let (status, _, body) = get(admin.addr, "/readyz").await;
    assert_eq!(status, 503);
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["pending"], json!(["listeners"]));
    drop(guard);
    assert_eq!(get(admin.addr, "/readyz").await.0, 200);
    admin.keys_ok.store(false, Ordering::SeqCst);
    let (status, _, body) = get(admin.addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("no keys"), "{body}");

    let (status, _, body) = get(admin.addr, "/config_dump").await;
    assert_eq!(status, 200);
    assert!(!body.contains("s3") && !body.contains("pw"), "secrets leaked: {body}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["issuers"][0]["jwksUri"], "https://<redacted>@idp/jwks?client_secret=<redacted>");
    assert_eq!(doc["issuers"][0]["issuer"], "https://idp");

    assert_eq!(get(admin.addr, "/nope").await.0, 404);
    admin.shutdown.trigger();
    admin.served.await.expect("admin stops on shutdown");
}

/// `promtool check metrics` must accept `/metrics`. Required when CI=true; skipped with a
/// message when promtool is not installed elsewhere.
#[tokio::test]
async fn metrics_pass_promtool() {
    let admin = start().await;
    let (status, head, body) = get(admin.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains(&format!("content-type: {PROMETHEUS_TEXT}")), "{head}");
    let (_, om_head, om_body) =
        get_with(admin.addr, "/metrics", "accept: application/openmetrics-text; version=1.0.0\r\n").await;
    assert!(om_head.to_ascii_lowercase().contains(&format!("content-type: {OPENMETRICS}")), "{om_head}");
    assert!(om_body.ends_with("# EOF\n"), "{om_body}");
    assert!(body.contains("ward_requests_total{decision=\"unauthenticated\",reason=\"expired\"} 1"), "{body}");
    let promtool = match Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status()
    {
        Ok(_) => "promtool",
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required in CI (apt-get install prometheus): {e}"
            );
            eprintln!("skipping the promtool check: promtool not found ({e})");
            return;
        }
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n--- metrics ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redaction_by_name_and_url_shape() {
    let doc = json!({
        "issuer": "https://idp.example/realms/x",
        "discoveryUri": "https://a:b@idp/.well-known?x=1#f",
        "forwardOriginalToken": false,
        "maxTokenBytes": 8192,
        "password": "hunter2",
        "nested": [{"apiKey": "k"}],
    });
    let r = redact(doc);
    assert_eq!(r["issuer"], "https://idp.example/realms/x");
    assert_eq!(r["discoveryUri"], "https://<redacted>@idp/.well-known?x=<redacted>#f");
    assert_eq!(r["forwardOriginalToken"], false);
    assert_eq!(r["maxTokenBytes"], 8192);
    assert_eq!(r["password"], "<redacted>");
    assert_eq!(r["nested"][0]["apiKey"], "<redacted>");
}
