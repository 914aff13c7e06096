//! A load client for fault tests and the soak: a pool of tokio tasks, each on its own
//! keep-alive HTTP/1.1 connection, issuing requests drawn from a caller-supplied plan until
//! stopped (or a request budget is spent). Every outcome is recorded with its label, so a
//! test can say "no *valid* request failed" while invalid ones are mixed in.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What the test calls this request (e.g. "valid", "expired").
    pub label: &'static str,
    pub path: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: &'static str,
    /// `None`: connect or transport error (no HTTP status).
    pub status: Option<u16>,
    /// When the request was sent, from the start of the run.
    pub sent: Duration,
    pub latency: Duration,
    /// Worker number and per-worker sequence number (the `x-load-id` header: `w<n>-<seq>`),
    /// so a test can match outcomes with what the upstream logged.
    pub id: String,
}

type Plan = Arc<dyn Fn(u64) -> Planned + Send + Sync>;

/// A running load; [`Load::stop`] ends it and returns the outcomes.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Start `workers` tasks against `addr`; request `n` (counted across workers) is
    /// `plan(n)`. At most `budget` requests are sent in total.
    pub fn start(
        addr: SocketAddr,
        workers: usize,
        budget: u64,
        plan: impl Fn(u64) -> Planned + Send + Sync + 'static,
    ) -> Self {
        let plan: Plan = Arc::new(plan);
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers = (0..workers)
            .map(|w| {
                let (plan, stop, outcomes, counter) = (plan.clone(), stop.clone(), outcomes.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if n >= budget {
                            break;
                        }
                        let planned = plan(n);
                        let id = format!("w{w}-{seq}");
                        seq += 1;
                        let sent = started.elapsed();
                        let t0 = Instant::now();
                        let status = send(addr, &mut conn, &planned, &id).await;
                        let outcome = Outcome { label: planned.label, status, sent, latency: t0.elapsed(), id };
                        outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
                        if status.is_none() {
                            // Do not spin on a refused connection.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        Self { stop, started, outcomes, workers }
    }

    /// Outcomes so far (the load keeps running).
    pub fn snapshot(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Time since the load started (the clock `Outcome::sent` uses).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stop sending, wait for in-flight requests, return every outcome.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        Arc::try_unwrap(self.outcomes).map_or_else(
            |a| a.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            |m| m.into_inner().unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Wait until the request budget is spent, then return every outcome.
    pub async fn finish(self) -> Vec<Outcome> {
        for w in self.workers {
            let _ = w.await;
        }
        Arc::try_unwrap(self.outcomes).map_or_else(
            |a| a.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            |m| m.into_inner().unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Per-request guard against a hung connection (a hang guard, not a latency assertion).
const REQUEST_GUARD: Duration = Duration::from_secs(30);

async fn send(
    addr: SocketAddr,
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    planned: &Planned,
    id: &str,
) -> Option<u16> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = connect(addr).await;
    }
    let sender = conn.as_mut()?;
    if sender.ready().await.is_err() {
        *conn = None;
        return None;
    }
    let mut req = http::Request::get(planned.path.as_str()).header("host", "api").header("x-load-id", id);
    if let Some(token) = &planned.token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Empty::<Bytes>::new()).expect("load request");
    let result = tokio::time::timeout(REQUEST_GUARD, async {
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    })
    .await
    .ok()
    .flatten();
    if result.is_none() {
        *conn = None;
    }
    result
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// Counts by (label, status) for failure messages.
pub fn summary(outcomes: &[Outcome]) -> String {
    let mut counts = std::collections::BTreeMap::<(&str, Option<u16>), usize>::new();
    for o in outcomes {
        *counts.entry((o.label, o.status)).or_default() += 1;
    }
    counts
        .iter()
        .map(|((label, status), n)| {
            format!("{label}/{}: {n}", status.map_or("transport-error".to_owned(), |s| s.to_string()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `q`-quantile (0..=1) of the latencies of `outcomes`.
pub fn quantile(outcomes: &[Outcome], q: f64) -> Duration {
    let mut l: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l.sort();
    let idx = ((l.len() - 1) as f64 * q).round() as usize;
    l[idx.min(l.len() - 1)]
}
