//! Large bodies stream through ward in both directions without being buffered: ward's
//! resident memory stays flat while 200 MB go each way.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use ward_e2e::{
    stack::{self, Stack},
    upstream::Generated,
};

const TOTAL: u64 = 200 * 1024 * 1024;
/// Allowed RSS growth while streaming: far below the body size, above allocator noise.
const MAX_GROWTH_KIB: u64 = 48 * 1024;

/// Samples ward's RSS until stopped; returns the maximum.
fn sample_rss(stack: &Stack, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let pid = stack.ward.pid();
    let max = Arc::new(AtomicU64::new(stack.ward.rss_kib()));
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            }) {
                max.fetch_max(kib, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        max.load(Ordering::SeqCst)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_each_way_with_flat_memory() {
    let stack = Stack::start(|iss, listen, up| stack::config(iss, listen, up, "")).await;
    let auth = format!("Bearer {}", stack.idp.mint("alice", "api", json!({})));
    let stream = TcpStream::connect(stack.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);

    // Warm up (pools, buffers), then take the baseline.
    let warm = Request::get("/stream/1048576").header("host", "api").header("authorization", &auth);
    let resp = sender.send_request(warm.body(body_of(1 << 20)).expect("req")).await.expect("warm-up");
    let _ = resp.into_body().collect().await.expect("warm-up body");
    let baseline = stack.ward.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(&stack, stop.clone());

    // Upload: a chunked request body generated on the fly.
    sender.ready().await.expect("ready");
    let up = Request::post("/sink").header("host", "api").header("authorization", &auth);
    let resp = sender.send_request(up.body(body_of(TOTAL)).expect("req")).await.expect("upload response");
    assert_eq!(resp.status(), 200);
    let answer: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).expect("JSON");
    assert_eq!(answer["bytes"], TOTAL, "the upstream received the whole body");

    // Download: a chunked response body, counted as it arrives.
    sender.ready().await.expect("ready");
    let down = Request::get(format!("/stream/{TOTAL}")).header("host", "api").header("authorization", &auth);
    let resp = sender.send_request(down.body(body_of(0)).expect("req")).await.expect("download response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.expect("frame").data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, TOTAL);

    stop.store(true, Ordering::SeqCst);
    let peak = tokio::task::spawn_blocking(move || sampler.join().expect("sampler")).await.expect("join");
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
        "ward's RSS grew from {baseline} KiB to {peak} KiB while streaming {} MiB each way",
        TOTAL >> 20
    );
}

fn body_of(n: u64) -> Generated {
    Generated::new(n)
}
