//! Hostile clients against the real `ward` binary: slowloris, header bombs, 10k idle
//! connections, pipelined garbage, megabyte tokens and deeply nested claims. Each time ward
//! stays up, its memory stays bounded, nothing unverified reaches the upstream, and a
//! legitimate client is still served.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use ward_e2e::{
    fault::{FaultStack, HANG_GUARD, StackOptions, raise_nofile, rss_kib, wait_for},
    load::{Load, Planned, summary},
};

/// Generous bound on ward's resident memory (a debug build) under any of these attacks.
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// Write `bytes`, then read until ward closes the connection; the whole answer.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    // ward may answer and close before everything is written (e.g. 431 half-way through
    // a header bomb): a failed write is part of the expected outcome.
    let _ = s.write_all(bytes).await;
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "ward never closed the connection; got {:?}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).into_owned()
}

/// Status codes of the responses in `answer`, in order. Responses follow each other with
/// no separator (a body need not end in a newline), so look for `HTTP/1.1 NNN ` anywhere.
fn status_lines(answer: &str) -> Vec<&str> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| {
            let code = answer.get(i + 9..i + 12)?;
            (code.bytes().all(|b| b.is_ascii_digit()) && answer[i + 12..].starts_with(' ')).then_some(code)
        })
        .collect()
}

/// A legitimate client: keep-alive requests with a valid token, all of which must succeed.
fn legit_load(stack: &FaultStack, token: String) -> Load {
    Load::start(stack.addr, 2, u64::MAX, move |n| Planned {
        label: "legit",
        path: format!("/ok/{n}"),
        token: Some(token.clone()),
    })
}

/// Let the legitimate client make at least 20 requests, stop it, check all were served.
async fn assert_legit_served(legit: Load) {
    wait_for("legitimate requests", || async {
        let n = legit.snapshot().len();
        if n >= 20 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;
    let outcomes = legit.stop().await;
    assert!(
        outcomes.iter().all(|o| o.status == Some(200)),
        "legitimate requests must be served: {}",
        summary(&outcomes)
    );
}

fn hostile_opts(proxy: &str) -> StackOptions {
    StackOptions { proxy: proxy.to_owned(), ..StackOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_connections_are_cut_at_the_header_timeout() {
    let stack = FaultStack::start(hostile_opts("{headerReadTimeoutMillis: 1000}"), true).await;
    stack.wait_ready().await;
    let legit = legit_load(&stack, stack.token("legit").await);
    let addr = stack.addr;
    let mut attackers = Vec::new();
    for i in 0..300 {
        attackers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            let (mut r, mut w) = s.split();
            let trickle = async {
                let _ = w.write_all(b"GET / HTTP/1.1\r\nHost: api\r\n").await;
                for k in 0u64.. {
                    // One header line every 200 ms: never a complete head.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if w.write_all(format!("X-Slow-{i}-{k}: x\r\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            };
            let mut answer = Vec::new();
            let closed = async {
                let _ = tokio::time::timeout(HANG_GUARD, r.read_to_end(&mut answer)).await;
            };
            tokio::select! {
                () = closed => {}
                () = trickle => {}
            }
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    for a in attackers {
        let answer = a.await.expect("slowloris task");
        let statuses = status_lines(&answer);
        assert!(statuses.is_empty() || statuses == ["408"], "a slowloris connection got {answer:?}");
    }
    let m = stack.scrape().await;
    assert!(
        m.sum("ward_requests_total", &[("reason", "header_timeout")])
            + m.sum("ward_proxy_rejected_connections_total", &[])
            >= 1.0,
        "{}",
        m.text
    );
    assert_legit_served(legit).await;
    assert!(stack.upstream.uris().iter().all(|u| u.starts_with("/ok/")), "only legitimate requests reach the upstream");
    assert!(rss_kib(stack.ward.pid()) < RSS_LIMIT_KIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_bombs_get_431() {
    let stack = FaultStack::start(hostile_opts("{maxHeaderBytes: 65536}"), true).await;
    stack.wait_ready().await;
    let token = stack.token("legit").await;
    let legit = legit_load(&stack, token.clone());
    let big_value = format!(
        "GET /bomb HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let mut many = format!("GET /bomb HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n");
    for i in 0..20_000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: api\r\n\r\n", "p".repeat(1 << 20));
    let mut tasks = Vec::new();
    for round in 0..20 {
        for bomb in [&big_value, &many, &long_uri] {
            let (bomb, addr) = (bomb.clone(), stack.addr);
            tasks.push(tokio::spawn(async move { (round, exchange(addr, bomb.as_bytes()).await) }));
        }
    }
    for t in tasks {
        let (round, answer) = t.await.expect("bomb task");
        let statuses = status_lines(&answer);
        // 431 when ward reads far enough to answer; a reset mid-write is also a refusal.
        assert!(
            statuses.is_empty() || statuses == ["431"] || statuses == ["414"],
            "round {round}: a header bomb got {:.200}",
            answer
        );
    }
    let m = stack.scrape().await;
    assert!(m.sum("ward_requests_total", &[("reason", "headers_too_large")]) >= 1.0, "{}", m.text);
    assert_legit_served(legit).await;
    assert!(stack.upstream.uris().iter().all(|u| u.starts_with("/ok/")), "no bomb may reach the upstream");
    assert!(rss_kib(stack.ward.pid()) < RSS_LIMIT_KIB, "RSS after header bombs: {} KiB", rss_kib(stack.ward.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_idle_connections_are_bounded_and_expire() {
    const IDLE: usize = 10_000;
    // ward inherits this limit: both ends of 10k connections live on this machine.
    let nofile = raise_nofile(2 * IDLE as u64 + 1024);
    assert!(nofile >= IDLE as u64 + 512, "RLIMIT_NOFILE {nofile} is too low for {IDLE} connections");
    let stack = FaultStack::start(
        hostile_opts("{maxConnections: 2000, headerReadTimeoutMillis: 2000, idleTimeoutSeconds: 2}"),
        true,
    )
    .await;
    stack.wait_ready().await;
    let token = stack.token("legit").await;

    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        match TcpStream::connect(stack.addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {i} of {IDLE} failed: {e}"),
        }
    }
    let peak = rss_kib(stack.ward.pid());
    let open = stack.scrape().await.get("ward_active_connections", &[]);
    assert!(open <= 2000.0, "maxConnections 2000 but {open} open");

    // A legitimate client gets through once slots free up (over-limit connections are
    // closed at once, idle ones at the header timeout). Retries are the client's job.
    let served = wait_for("a legitimate request through the idle flood", || async {
        match ward_e2e::fault::one_request(stack.addr, "/ok/through", Some(&token)).await {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    served.await;

    // Every idle connection is closed by ward: over the limit at once, the rest at the
    // header read timeout. (A read returns EOF or a reset.)
    let mut closed = 0;
    for mut s in idle {
        let mut b = [0u8; 1024];
        let r = tokio::time::timeout(HANG_GUARD, s.read(&mut b)).await;
        assert!(r.is_ok(), "an idle connection was never closed by ward");
        closed += 1;
    }
    assert_eq!(closed, IDLE);
    let m = stack.scrape().await;
    assert!(m.sum("ward_proxy_rejected_connections_total", &[("reason", "max_connections")]) >= 1.0, "{}", m.text);
    wait_for("no connections left open in ward", || async {
        let open = stack.scrape().await.get("ward_active_connections", &[]);
        if open == 0.0 { Ok(()) } else { Err(format!("{open} open")) }
    })
    .await;
    assert!(peak < RSS_LIMIT_KIB, "ward RSS {peak} KiB with {IDLE} idle connections");
    assert_eq!(ward_e2e::fault::one_request(stack.addr, "/ok/after", Some(&token)).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_garbage_is_refused_and_nothing_unverified_is_forwarded() {
    let stack = FaultStack::start(StackOptions::default(), true).await;
    stack.wait_ready().await;
    let token = stack.token("legit").await;
    let legit = legit_load(&stack, token.clone());

    // Three good requests, one without a token, then garbage, on one connection.
    let mut bytes = Vec::new();
    for i in 0..3 {
        bytes.extend_from_slice(
            format!("GET /pipe/{i} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
        );
    }
    bytes.extend_from_slice(b"GET /pipe/no-token HTTP/1.1\r\nHost: api\r\n\r\n");
    bytes.extend_from_slice(
        b"\x00\x01\x02GARBAGE / HTTP/9.9\r\n\xff\xfe: \r\n\r\nGET /pipe/after-garbage HTTP/1.1\r\nHost: api\r\n\r\n",
    );
    let answer = exchange(stack.addr, &bytes).await;
    assert_eq!(status_lines(&answer), ["200", "200", "200", "401", "400"], "pipelined answers (status lines)");

    // Random binary on many connections: closed (with a 400 at most), never forwarded.
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    for _ in 0..100 {
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let answer = exchange(stack.addr, &junk).await;
        let statuses = status_lines(&answer);
        assert!(statuses.is_empty() || statuses == ["400"], "junk got {answer:.200}");
    }
    // Request smuggling shapes: both framings at once, and an obfuscated chunked.
    for smuggle in [
        format!(
            "POST /smuggle HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api\r\n\r\n"
        ),
        format!(
            "POST /smuggle HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
        ),
    ] {
        let _ = exchange(stack.addr, smuggle.as_bytes()).await;
    }
    assert_legit_served(legit).await;
    let uris = stack.upstream.uris();
    assert!(
        !uris.iter().any(|u| u.contains("no-token") || u.contains("after-garbage") || u.contains("smuggled")),
        "unverified request forwarded: {uris:?}"
    );
    let valid = std::collections::HashSet::from([token]);
    assert!(
        stack.unverified_upstream_requests(&valid).is_empty(),
        "a request without the valid token reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn megabyte_tokens_and_deeply_nested_claims_are_refused_with_bounded_memory() {
    let opts = StackOptions {
        proxy: "{maxHeaderBytes: 1572864}".to_owned(),
        issuer_extra: "  maxTokenBytes: 1048576\n".to_owned(),
        ..StackOptions::default()
    };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let issuer = stack.idp.issuer.clone();
    let token = stack.token("legit").await;
    let legit = legit_load(&stack, token.clone());
    let kid = {
        let header = token.split('.').next().expect("header");
        let h: serde_json::Value =
            serde_json::from_slice(&B64.decode(header).expect("b64 header")).expect("json header");
        h["kid"].as_str().expect("kid").to_owned()
    };
    let forge = |payload: &str| {
        let header = B64.encode(json!({"alg": "ES256", "kid": kid}).to_string());
        format!("{header}.{}.{}", B64.encode(payload), B64.encode([7u8; 64]))
    };
    // ~1 MiB payloads: nested 300k deep (the parser stops at its depth limit), wide, and a
    // plain blob. Signatures are bogus: the parser runs first, and nothing may crash it.
    let deep = forge(&format!("{{\"iss\":\"{issuer}\",\"x\":{}{}}}", "[".repeat(300_000), "]".repeat(300_000)));
    let wide = forge(&format!("{{\"iss\":\"{issuer}\",\"x\":[{}0]}}", "0,".repeat(350_000)));
    let blob = forge(&format!("{{\"iss\":\"{issuer}\",\"x\":\"{}\"}}", "z".repeat(700_000)));
    let too_big = format!("{}.{}.{}", "a".repeat(1 << 20), "b".repeat(1 << 20), "c".repeat(100));
    // Signed by the IdP: nesting at and beyond the limit, and a large claim.
    let nest = |depth: usize| {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = json!({"n": v});
        }
        v
    };
    let nested_ok = stack.idp.mint(json!({"sub": "n15", "aud": "api", "x": nest(14)})).await;
    let nested_deep = stack.idp.mint(json!({"sub": "n40", "aud": "api", "x": nest(40)})).await;
    let large_valid = stack.idp.mint(json!({"sub": "large", "aud": "api", "blob": "q".repeat(40_000)})).await;

    let cases: Vec<(&'static str, String, u16)> = vec![
        ("deep", deep, 401),
        ("wide", wide, 401),
        ("blob", blob, 401),
        ("too-big", too_big, 431),
        ("nested-ok", nested_ok, 200),
        ("nested-deep", nested_deep, 401),
        ("large-valid", large_valid, 200),
    ];
    let cases = Arc::new(cases);
    let load = {
        let cases = cases.clone();
        Load::start(stack.addr, 8, 280, move |n| {
            let (label, token, _) = &cases[n as usize % cases.len()];
            Planned { label, path: format!("/big/{label}/{n}"), token: Some(token.clone()) }
        })
    };
    let mut peak = 0;
    let pid = stack.ward.pid();
    let outcomes = loop {
        peak = peak.max(rss_kib(pid));
        if load.snapshot().len() >= 280 {
            break load.finish().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    peak = peak.max(rss_kib(pid));
    for o in &outcomes {
        let want = cases.iter().find(|(l, _, _)| *l == o.label).map(|(_, _, s)| *s).expect("known label");
        assert_eq!(o.status, Some(want), "{o:?}; all: {}", summary(&outcomes));
    }
    let m = stack.scrape().await;
    assert!(
        m.sum("ward_requests_total", &[("reason", "bad_json")]) >= 40.0,
        "deep and nested tokens are bad_json:\n{}",
        m.text
    );
    assert_legit_served(legit).await;
    assert!(peak < RSS_LIMIT_KIB, "ward RSS peaked at {peak} KiB with megabyte tokens");
    let forwarded: Vec<String> = stack.upstream.uris().into_iter().filter(|u| u.starts_with("/big/")).collect();
    assert!(
        forwarded.iter().all(|u| u.starts_with("/big/nested-ok/") || u.starts_with("/big/large-valid/")),
        "only the valid big tokens are forwarded: {:?}",
        forwarded
            .iter()
            .filter(|u| !u.starts_with("/big/nested-ok/") && !u.starts_with("/big/large-valid/"))
            .collect::<Vec<_>>()
    );
}
