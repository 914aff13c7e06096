//! Upstream faults through the real `ward` binary: an upstream that refuses connections
//! gets 502, one that never answers gets 504, and neither leaks file descriptors or memory
//! in ward (its `/proc/<pid>/fd` count returns to the baseline).

use std::sync::Arc;

use ward_e2e::{
    fault::{FaultStack, StackOptions, fd_count, free_addr, rss_kib, wait_for},
    load::{Load, Planned, summary},
};

/// Wait until ward's fd count is back at (or below) `baseline`.
async fn fds_back_to(stack: &FaultStack, baseline: usize) {
    let pid = stack.ward.pid();
    wait_for("ward's file descriptors back at the baseline", || async {
        let now = fd_count(pid);
        if now <= baseline { Ok(()) } else { Err(format!("{now} fds, baseline {baseline}")) }
    })
    .await;
}

async fn tokens(stack: &FaultStack, n: usize) -> Arc<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(stack.token(&format!("user-{i}")).await);
    }
    Arc::new(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_upstream_gets_502_without_leaks() {
    // Nothing listens on the upstream address.
    let opts = StackOptions {
        upstream_override: Some(free_addr()),
        proxy: "{upstreamConnectTimeoutMillis: 500}".to_owned(),
        ..StackOptions::default()
    };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let tokens = tokens(&stack, 20).await;
    // Baseline after a first round, so lazily created state (pools, cache) is in place.
    assert_eq!(stack.status("/warm", Some(&tokens[0])).await, Some(502));
    let baseline = fd_count(stack.ward.pid());
    let rss_before = rss_kib(stack.ward.pid());

    let load = {
        let tokens = tokens.clone();
        Load::start(stack.addr, 16, 4000, move |n| Planned {
            label: "valid",
            path: format!("/down/{n}"),
            token: Some(tokens[n as usize % tokens.len()].clone()),
        })
    };
    let outcomes = load.finish().await;
    assert_eq!(outcomes.len(), 4000);
    assert!(outcomes.iter().all(|o| o.status == Some(502)), "an unreachable upstream is a 502: {}", summary(&outcomes));
    let m = stack.scrape().await;
    assert!(m.sum("ward_requests_total", &[("reason", "upstream_unreachable")]) >= 4000.0, "{}", m.text);
    fds_back_to(&stack, baseline).await;
    let rss_after = rss_kib(stack.ward.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB over 4000 failed forwards"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_upstream_gets_504_and_connections_are_released() {
    let opts = StackOptions { proxy: "{upstreamResponseTimeoutMillis: 300}".to_owned(), ..StackOptions::default() };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let tokens = tokens(&stack, 20).await;
    for t in tokens.iter().take(4) {
        assert_eq!(stack.status("/warm", Some(t)).await, Some(200));
    }
    let baseline = fd_count(stack.ward.pid());
    let rss_before = rss_kib(stack.ward.pid());

    // 64 concurrent clients on the upstream's /hang (which never answers), plus normal
    // requests in between: each hung request costs ward an upstream connection until the
    // response timeout, after which it must be closed, not pooled or leaked.
    let load = {
        let tokens = tokens.clone();
        Load::start(stack.addr, 64, 1500, move |n| Planned {
            label: if n % 5 == 0 { "fine" } else { "hang" },
            path: if n % 5 == 0 { format!("/fine/{n}") } else { format!("/hang?{n}") },
            token: Some(tokens[n as usize % tokens.len()].clone()),
        })
    };
    let outcomes = load.finish().await;
    for o in &outcomes {
        let want = if o.label == "fine" { 200 } else { 504 };
        assert_eq!(o.status, Some(want), "{o:?}; all: {}", summary(&outcomes));
    }
    let m = stack.scrape().await;
    assert!(m.sum("ward_requests_total", &[("reason", "upstream_timeout")]) >= 1200.0, "{}", m.text);
    // ward's side of 1200 abandoned upstream connections is gone, and client connections too.
    fds_back_to(&stack, baseline).await;
    wait_for("no client connections left", || async {
        let open = stack.scrape().await.get("ward_active_connections", &[]);
        if open == 0.0 { Ok(()) } else { Err(format!("{open} open")) }
    })
    .await;
    let rss_after = rss_kib(stack.ward.pid());
    assert!(rss_after < rss_before + 64 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
}
