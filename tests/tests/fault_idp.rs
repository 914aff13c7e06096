//! IdP faults through the real `ward` binary, under load from a real client: the IdP
//! unreachable at start, down after warm-up (staleness window), slow / stalled / huge /
//! 5xx / garbage key-set answers, and a flood of unknown kids.

use std::{collections::HashSet, sync::Arc};

use serde_json::json;
use ward_e2e::{
    fault::{FaultStack, StackOptions, unix_now, wait_for},
    load::{Load, Planned, summary},
};

/// Valid requests round-robin over `tokens`.
fn valid_load(stack: &FaultStack, tokens: Vec<String>, workers: usize) -> Load {
    let tokens = Arc::new(tokens);
    Load::start(stack.addr, workers, u64::MAX, move |n| Planned {
        label: "valid",
        path: format!("/items/{n}"),
        token: Some(tokens[n as usize % tokens.len()].clone()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idp_unreachable_at_start_gives_503_then_recovers_by_itself() {
    let mut stack = FaultStack::start(StackOptions::default(), false).await;
    // Signed by the IdP's key before it went away: well-formed, but ward has no keys yet.
    let early = stack.minted_before_start.clone().expect("token minted before the IdP stopped");

    let (status, body) = stack.readyz().await;
    assert_eq!(status, 503, "/readyz must not be ready while no keys are loaded: {body}");
    assert!(body.contains("keys"), "/readyz should say keys are missing: {body}");

    let load = Load::start(stack.addr, 4, 400, {
        let early = early.clone();
        move |n| Planned { label: "unverifiable", path: format!("/x/{n}"), token: Some(early.clone()) }
    });
    let outcomes = load.finish().await;
    assert_eq!(outcomes.len(), 400);
    assert!(
        outcomes.iter().all(|o| o.status == Some(503)),
        "with the IdP unreachable every protected request gets 503, never 401 or a forward: {}",
        summary(&outcomes)
    );
    assert!(stack.upstream.requests().is_empty(), "nothing may reach the upstream without verified keys");
    let m = stack.scrape().await;
    let issuer = stack.idp.issuer.clone();
    assert_eq!(m.sum("ward_requests_total", &[("reason", "keys_unavailable")]), 400.0, "{}", m.text);
    assert_eq!(m.get("ward_jwks_available", &[("issuer", &issuer)]), 0.0);
    assert!(m.sum("ward_jwks_fetches_total", &[("issuer", &issuer), ("result", "connect_error")]) >= 1.0, "{}", m.text);

    // The IdP comes back (same address, new keys): ward recovers without any help.
    tokio::task::block_in_place(|| stack.idp.restart());
    stack.wait_ready().await;
    let fresh = stack.token("fresh").await;
    assert_eq!(stack.status("/after", Some(&fresh)).await, Some(200));
    assert_eq!(
        stack.status("/early", Some(&early)).await,
        Some(401),
        "a token signed by a key the IdP no longer publishes is refused once keys load"
    );
    let seen = stack.upstream.uris();
    assert_eq!(seen, vec!["/after".to_owned()], "only the verified request reached the upstream");
    let m = stack.scrape().await;
    assert_eq!(m.get("ward_jwks_available", &[("issuer", &issuer)]), 1.0);
    assert_eq!(m.get("ward_jwks_stale", &[("issuer", &issuer)]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idp_down_after_warmup_serves_until_max_staleness_then_503() {
    const STALENESS: f64 = 4.0;
    let opts = StackOptions {
        jwks: format!(
            "{{minRefreshSeconds: 1, maxRefreshSeconds: 1, maxStalenessSeconds: {STALENESS}, unknownKidCooldownSeconds: 1, fetchTimeoutMillis: 500}}"
        ),
        ..StackOptions::default()
    };
    let mut stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    // Many distinct tokens: most requests during the outage are cache misses that need the
    // (stale) keys, not verified-cache hits.
    let mut tokens = Vec::new();
    for i in 0..300 {
        tokens.push(stack.token(&format!("user-{i}")).await);
    }
    let valid: HashSet<String> = tokens.iter().cloned().collect();
    let load = valid_load(&stack, tokens, 6);
    wait_for("warm-up traffic", || async {
        let n = load.snapshot().len();
        if n >= 300 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;

    stack.idp.stop();
    let down_at = unix_now();
    // The last successful fetch, as ward recorded it (whole seconds, truncated).
    let issuer = stack.idp.issuer.clone();
    let last_ok = stack.scrape().await.get("ward_jwks_last_success_timestamp_seconds", &[("issuer", &issuer)]);
    // Run well past the latest possible end of the staleness window (see below).
    let past_window = last_ok + STALENESS + 3.0;
    wait_for("503s after the staleness limit", || async {
        let n503 = load.snapshot().iter().filter(|o| o.status == Some(503)).count();
        if n503 >= 50 && unix_now() > past_window {
            Ok(())
        } else {
            Err(format!("{n503} 503s, {}", summary(&load.snapshot())))
        }
    })
    .await;
    let m_during = stack.scrape().await;
    let run_start = unix_now() - load.elapsed().as_secs_f64();
    let outcomes = load.stop().await;

    // Window end: last success + maxStaleness; `last_ok` is truncated, so the true end lies
    // in [last_ok + S, last_ok + S + 1). Requests completed before the earliest possible end
    // were decided inside the window; requests sent after the latest end, outside it.
    let (window_lo, window_hi) = (last_ok + STALENESS, last_ok + STALENESS + 1.0);
    assert!(
        window_lo > down_at - 1.5,
        "the last success ({last_ok}) must be within a refresh interval of the outage ({down_at})"
    );
    let mut inside = 0;
    let mut after = 0;
    for o in &outcomes {
        let sent = run_start + o.sent.as_secs_f64();
        let done = sent + o.latency.as_secs_f64();
        assert!(o.status.is_some(), "transport error on a valid request: {o:?}");
        assert_ne!(o.status, Some(401), "a valid token was refused as unauthenticated: {o:?}");
        if done < window_lo {
            inside += 1;
            assert_eq!(
                o.status,
                Some(200),
                "valid request refused inside the staleness window: {o:?} (down at {down_at}, last ok {last_ok})"
            );
        } else if sent > window_hi + 0.5 {
            after += 1;
            assert_eq!(o.status, Some(503), "request after maxStalenessSeconds was not refused with 503: {o:?}");
        }
    }
    let during_outage =
        outcomes.iter().filter(|o| run_start + o.sent.as_secs_f64() > down_at && o.status == Some(200)).count();
    assert!(during_outage > 0, "no request was served from the stale keys during the outage: {}", summary(&outcomes));
    assert!(inside > 0 && after > 0, "the run must cover both sides of the limit ({inside} inside, {after} after)");
    assert_eq!(m_during.get("ward_jwks_available", &[("issuer", &issuer)]), 0.0, "{}", m_during.text);
    assert_eq!(m_during.get("ward_jwks_stale", &[("issuer", &issuer)]), 1.0);
    assert!(
        m_during.sum("ward_jwks_fetches_total", &[("issuer", &issuer), ("result", "connect_error")]) >= 2.0,
        "{}",
        m_during.text
    );
    assert!(m_during.sum("ward_requests_total", &[("reason", "keys_unavailable")]) >= 50.0);
    assert!(
        stack.unverified_upstream_requests(&valid).is_empty(),
        "the upstream received a request without a valid token"
    );
}

/// Each broken answer in turn: the fetch fails (timeout or size cap or parse error), the
/// last good keys stay in use, and valid traffic never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_key_set_answers_keep_the_last_good_keys() {
    let opts = StackOptions {
        jwks: "{minRefreshSeconds: 1, maxRefreshSeconds: 1, unknownKidCooldownSeconds: 1, fetchTimeoutMillis: 500, maxResponseBytes: 65536}"
            .to_owned(),
        ..StackOptions::default()
    };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let issuer = stack.idp.issuer.clone();
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(stack.token(&format!("user-{i}")).await);
    }
    let load = valid_load(&stack, tokens, 4);
    // The fetch result each fault must produce (a failed refresh rediscovers, so garbage
    // shows up on the discovery document as well as on the key set).
    let faults: [(serde_json::Value, &[&str]); 6] = [
        (json!({"mode": "slow", "delayMillis": 30_000}), &["timeout"]),
        (json!({"mode": "stall", "delayMillis": 30_000}), &["timeout"]),
        (json!({"mode": "huge", "sizeBytes": 64 << 20}), &["too_large"]),
        (json!({"mode": "5xx"}), &["http_status"]),
        (json!({"mode": "down"}), &["http_status"]),
        (json!({"mode": "garbage"}), &["bad_jwks", "bad_discovery"]),
    ];
    let mut peak_rss = 0;
    let failed = |m: &ward_e2e::fault::Scrape, results: &[&str]| -> f64 {
        results.iter().map(|r| m.sum("ward_jwks_fetches_total", &[("issuer", &issuer), ("result", r)])).sum()
    };
    for (fault, results) in faults {
        let before = failed(&stack.scrape().await, results);
        stack.idp.fault(fault.clone()).await;
        wait_for(&format!("two failed fetches ({results:?}) under {fault}"), || async {
            let m = stack.scrape().await;
            let now = failed(&m, results);
            let all: Vec<_> = m.series.iter().filter(|(k, _)| k.starts_with("ward_jwks_fetches_total")).collect();
            if now >= before + 2.0 { Ok(()) } else { Err(format!("{now} (was {before}); {all:?}")) }
        })
        .await;
        let m = stack.scrape().await;
        assert_eq!(m.get("ward_jwks_available", &[("issuer", &issuer)]), 1.0, "keys must stay available under {fault}");
        assert_eq!(
            m.get("ward_jwks_stale", &[("issuer", &issuer)]),
            1.0,
            "a failing refresh must show as stale under {fault}"
        );
        assert_eq!(
            m.get("ward_jwks_keys", &[("issuer", &issuer)]),
            1.0,
            "the last good key set stays loaded under {fault}"
        );
        peak_rss = peak_rss.max(ward_e2e::fault::rss_kib(stack.ward.pid()));
        stack.idp.fault(json!({"mode": "none"})).await;
        wait_for("recovery from the fault", || async {
            let m = stack.scrape().await;
            let stale = m.get("ward_jwks_stale", &[("issuer", &issuer)]);
            if stale == 0.0 { Ok(()) } else { Err(format!("stale {stale}")) }
        })
        .await;
    }
    let outcomes = load.stop().await;
    assert!(!outcomes.is_empty());
    assert!(
        outcomes.iter().all(|o| o.status == Some(200)),
        "every valid request is served while the IdP misbehaves: {}",
        summary(&outcomes)
    );
    // A 64 MiB answer against a 64 KiB cap: the cap holds, the body is never buffered whole.
    assert!(peak_rss < 200 * 1024, "ward RSS {peak_rss} KiB after huge answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_kid_flood_through_ward_stays_within_the_cooldown() {
    const COOLDOWN: f64 = 1.0;
    // Scheduled refreshes far apart, so every fetch in the window is an unknown-kid refetch.
    let opts = StackOptions {
        jwks: format!("{{minRefreshSeconds: 300, maxRefreshSeconds: 300, unknownKidCooldownSeconds: {COOLDOWN}}}"),
        ..StackOptions::default()
    };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let mut valid = Vec::new();
    for i in 0..50 {
        valid.push(stack.token(&format!("user-{i}")).await);
    }
    let mut flood = Vec::new();
    for i in 0..2000 {
        flood.push(
            stack
                .idp
                .mint_with(json!({"sub": format!("f{i}"), "aud": "api"}), &format!("kid=random-{i}-{}", rand_suffix(i)))
                .await,
        );
    }
    let valid_set: HashSet<String> = valid.iter().cloned().collect();
    let before = stack.idp.stats().await;
    let t0 = std::time::Instant::now();
    let (valid, flood) = (Arc::new(valid), Arc::new(flood));
    let load = Load::start(stack.addr, 8, 6000, move |n| {
        if n % 3 == 0 {
            Planned { label: "valid", path: "/ok".to_owned(), token: Some(valid[n as usize % valid.len()].clone()) }
        } else {
            Planned {
                label: "flood",
                path: "/flood".to_owned(),
                token: Some(flood[(n as usize / 3 * 2 + n as usize % 3) % flood.len()].clone()),
            }
        }
    });
    let outcomes = load.finish().await;
    let elapsed = t0.elapsed().as_secs_f64();
    let after = stack.idp.stats().await;
    let fetches = (after.jwks - before.jwks) + (after.discovery - before.discovery);
    let bound = (elapsed / COOLDOWN).floor() as u64 + 2;
    assert!(
        fetches <= bound,
        "{fetches} key-set fetches during {elapsed:.1}s of unknown-kid flood; the cooldown allows at most {bound}"
    );
    for o in &outcomes {
        match o.label {
            "valid" => assert_eq!(o.status, Some(200), "valid request during the flood: {o:?}"),
            _ => assert_eq!(o.status, Some(401), "unknown-kid token: {o:?}"),
        }
    }
    let m = stack.scrape().await;
    assert!(
        m.sum("ward_jwks_unknown_kid_refetches_suppressed_total", &[]) > 0.0,
        "suppressed refetches are counted:\n{}",
        m.text
    );
    assert!(stack.unverified_upstream_requests(&valid_set).is_empty(), "a flood token reached the upstream");
    assert!(summary(&outcomes).contains("flood/401"));
}

fn rand_suffix(i: usize) -> u64 {
    // Distinct, unpredictable-looking kids without a dependency.
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
}
