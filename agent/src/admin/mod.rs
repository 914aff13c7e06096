//! Admin endpoint: `GET /metrics`, `/healthz`, `/readyz`, `/config_dump`.
//!
//! `/metrics` is OpenMetrics for clients that ask for it and Prometheus text otherwise (see
//! [`exposition`]). Plain HTTP/1.1 on its own listener (keep it off pod-reachable addresses). Every response
//! is small and built in memory; request bodies are never read.

mod exposition;
mod redact;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
pub use redact::redact;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::{metrics::Metrics, proxy::Shutdown, readiness::Ready};

/// A readiness condition checked on every `/readyz` (e.g. "keys loaded", "capture attached").
pub type LiveCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
/// Produces the `/config_dump` document (live config, redacted, with key status).
pub type ConfigDump = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

pub use exposition::{OPENMETRICS, PROMETHEUS_TEXT};

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub ready: Ready,
    pub checks: Vec<(String, LiveCheck)>,
    pub config_dump: ConfigDump,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.ready)
            .field("checks", &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Serve until `shutdown` fires; open admin connections are then closed (their responses
/// are tiny, so nothing worth waiting for is in flight).
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: Shutdown) {
    let state = Arc::new(state);
    let tracker = TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "admin endpoint listening");
    }
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.triggered() => break,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(error = %e, "admin connection error");
                },
                () = shutdown.triggered() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

/// Readiness: pending startup tasks and failing live checks, as a JSON document.
pub fn readiness(state: &AdminState) -> (bool, serde_json::Value) {
    let pending = state.ready.pending();
    let failing: serde_json::Map<String, serde_json::Value> =
        state.checks.iter().filter_map(|(name, check)| check().err().map(|why| (name.clone(), json!(why)))).collect();
    let ready = pending.is_empty() && failing.is_empty();
    (ready, json!({ "ready": ready, "pending": pending, "failing": failing }))
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            if exposition::wants_openmetrics(accept) {
                respond(StatusCode::OK, OPENMETRICS, state.metrics.encode())
            } else {
                respond(StatusCode::OK, PROMETHEUS_TEXT, exposition::to_prometheus_text(&state.metrics.encode()))
            }
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let (ready, doc) = readiness(state);
            json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &doc)
        }
        "/config_dump" => json_response(StatusCode::OK, &redact((state.config_dump)())),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found; try /metrics, /healthz, /readyz, /config_dump\n"),
    }
}

#[cfg(test)]
mod tests;
