//! The soak (run by `bench/soak.sh`, ignored in the normal test run): mixed load (valid,
//! invalid and expired tokens) against the real `ward` binary for `SOAK_MINUTES`, with a key
//! rotation and a config reload every minute. ward's RSS and fd count are sampled every two
//! seconds with the error rate and p99 of each window; RSS must plateau and no valid
//! request may fail. Samples go to `$SOAK_OUT/samples.csv`, the summary to stdout.
#![expect(clippy::print_stdout, reason = "the soak reports its figures on stdout")]

use std::{
    collections::HashSet,
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use serde_json::json;
use ward_e2e::{
    fault::{FaultStack, StackOptions, fd_count, rss_kib, wait_for},
    load::{Load, Outcome, Planned, quantile, summary},
};

const SAMPLE: Duration = Duration::from_secs(2);

struct Pool {
    valid: Vec<String>,
    expired: Vec<String>,
    invalid: Vec<String>,
}

async fn mint_pool(stack: &FaultStack, round: usize) -> Pool {
    let mut valid = Vec::new();
    for i in 0..300 {
        valid.push(stack.token(&format!("soak-{round}-{i}")).await);
    }
    let mut expired = Vec::new();
    for i in 0..20 {
        expired.push(
            stack
                .idp
                .mint(json!({"sub": format!("exp-{i}"), "aud": "api", "iat": 1_000_000, "exp": 1_000_600 + i}))
                .await,
        );
    }
    // Tampered signatures and a wrong audience.
    let mut invalid: Vec<String> = valid.iter().take(20).map(|t| tamper(t)).collect();
    invalid.push(stack.idp.mint(json!({"sub": "aud", "aud": "elsewhere"})).await);
    Pool { valid, expired, invalid }
}

async fn counting_upstream(valid: Arc<RwLock<HashSet<String>>>, unverified: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind soak upstream");
    let addr = listener.local_addr().expect("soak upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (valid, unverified) = (valid.clone(), unverified.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let token = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "));
                    if !token.is_some_and(|t| valid.read().unwrap_or_else(|e| e.into_inner()).contains(t)) {
                        unverified.fetch_add(1, Ordering::Relaxed);
                    }
                    async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Change one character in the middle of the signature (the last character would not do:
/// it may carry only padding bits, or already be the replacement).
fn tamper(token: &str) -> String {
    let sig_start = token.rfind('.').expect("compact JWS") + 1;
    let at = sig_start + (token.len() - sig_start) / 2;
    let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
    format!("{}{replacement}{}", &token[..at], &token[at + 1..])
}

fn worker_of(o: &Outcome) -> &str {
    o.id.split('-').next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-running; run with bench/soak.sh"]
async fn soak() {
    let minutes: f64 = std::env::var("SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(10.0);
    let out_dir = std::path::PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| "target/soak".to_owned()));
    std::fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("create {}: {e}", out_dir.display()));
    let workers: usize = std::env::var("SOAK_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(16);

    // A counting upstream (the logging one would hold every request of a long run in memory):
    // it answers 200 and counts requests whose token is not one the soak minted as valid.
    let valid_ever: Arc<RwLock<HashSet<String>>> = Arc::new(RwLock::new(HashSet::new()));
    let unverified = Arc::new(AtomicU64::new(0));
    let upstream = counting_upstream(valid_ever.clone(), unverified.clone()).await;
    let opts = StackOptions { upstream_override: Some(upstream), ..StackOptions::default() };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let pid = stack.ward.pid();
    let pool = Arc::new(RwLock::new(mint_pool(&stack, 0).await));
    valid_ever
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .extend(pool.read().unwrap_or_else(|e| e.into_inner()).valid.iter().cloned());
    let load = {
        let pool = pool.clone();
        Load::start(stack.addr, workers, u64::MAX, move |n| {
            let p = pool.read().unwrap_or_else(|e| e.into_inner());
            let i = n as usize;
            // 80% valid, 10% expired, 10% invalid.
            match n % 10 {
                8 => Planned {
                    label: "expired",
                    path: format!("/s/{n}"),
                    token: Some(p.expired[i % p.expired.len()].clone()),
                },
                9 => Planned {
                    label: "invalid",
                    path: format!("/s/{n}"),
                    token: Some(p.invalid[i % p.invalid.len()].clone()),
                },
                _ => {
                    Planned { label: "valid", path: format!("/s/{n}"), token: Some(p.valid[i % p.valid.len()].clone()) }
                }
            }
        })
    };

    let csv_path = out_dir.join("samples.csv");
    let mut csv = std::fs::File::create(&csv_path).unwrap_or_else(|e| panic!("create {}: {e}", csv_path.display()));
    writeln!(csv, "seconds,rss_kib,fds,requests,rps,valid_failures,error_rate,p99_ms").expect("csv");
    println!("soak: {minutes} min, {workers} workers; samples in {}", csv_path.display());
    println!(
        "{:>7} {:>9} {:>5} {:>8} {:>7} {:>8} {:>8}",
        "t(s)", "rss(KiB)", "fds", "rps", "p99(ms)", "vfail", "events"
    );

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut seen = 0usize;
    let mut next_minute = 1u32;
    let mut events = String::new();
    while Instant::now() < end {
        tokio::time::sleep(SAMPLE).await;
        let t = start.elapsed().as_secs_f64();
        if t >= f64::from(next_minute) * 60.0 && Instant::now() < end {
            next_minute += 1;
            // Rotation: new key, new tokens in use before the old key is retired (clients
            // switch tokens when their IdP rotates; ward must refuse nothing valid meanwhile).
            stack.idp.rotate().await;
            let fresh = mint_pool(&stack, next_minute as usize).await;
            valid_ever.write().unwrap_or_else(|e| e.into_inner()).extend(fresh.valid.iter().cloned());
            *pool.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            let swapped = load.elapsed();
            wait_for("every worker on the new tokens", || async {
                let snap = load.snapshot();
                let on_new: HashSet<&str> = snap.iter().filter(|o| o.sent > swapped).map(worker_of).collect();
                if on_new.len() >= workers { Ok(()) } else { Err(format!("{} of {workers} workers", on_new.len())) }
            })
            .await;
            stack.idp.retire_old().await;
            // Config reload: toggle a marker policy.
            let cfg = stack.config_with(&stack.opts).replacen(
                "policies:\n",
                &format!("policies:\n- name: soak-marker\n  action: DENY\n  rules: [{{to: [{{operation: {{paths: [\"/marker-{next_minute}*\"]}}}}]}}]\n"),
                1,
            );
            let tmp = stack.ward.config.with_extension("yaml.tmp");
            std::fs::write(&tmp, cfg).expect("write config");
            std::fs::rename(&tmp, &stack.ward.config).expect("swap config");
            events = "rotate+reload".to_owned();
        }
        let snap = load.snapshot();
        let window = &snap[seen..];
        seen = snap.len();
        let rss = rss_kib(pid);
        let fds = fd_count(pid);
        let vfail = window.iter().filter(|o| o.label == "valid" && o.status != Some(200)).count();
        let wrong = window
            .iter()
            .filter(|o| match o.label {
                "valid" => o.status != Some(200),
                _ => o.status != Some(401),
            })
            .count();
        let p99 = quantile(window, 0.99).as_secs_f64() * 1000.0;
        let rps = window.len() as f64 / SAMPLE.as_secs_f64();
        writeln!(
            csv,
            "{t:.1},{rss},{fds},{},{rps:.0},{vfail},{:.5},{p99:.2}",
            window.len(),
            if window.is_empty() { 0.0 } else { wrong as f64 / window.len() as f64 }
        )
        .expect("csv");
        println!("{t:>7.0} {rss:>9} {fds:>5} {rps:>8.0} {p99:>7.2} {vfail:>8} {events:>8}");
        events.clear();
        samples.push((t, rss, fds));
    }
    let outcomes = load.stop().await;
    let total = outcomes.len();
    let valid_failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.label == "valid" && o.status != Some(200)).collect();
    let misjudged = outcomes.iter().filter(|o| o.label != "valid" && o.status != Some(401)).count();
    let third = (samples.len() / 3).max(1);
    let first_max = samples[..third].iter().map(|s| s.1).max().unwrap_or(0);
    let last_max = samples[samples.len() - third..].iter().map(|s| s.1).max().unwrap_or(0);
    let fd_first = samples[..third].iter().map(|s| s.2).max().unwrap_or(0);
    let fd_last = samples[samples.len() - third..].iter().map(|s| s.2).max().unwrap_or(0);
    let p99 = quantile(&outcomes, 0.99);
    let p50 = quantile(&outcomes, 0.5);
    let secs = start.elapsed().as_secs_f64();
    let summary_json = json!({
        "minutes": minutes, "workers": workers, "requests": total, "rps": total as f64 / secs,
        "valid_failures": valid_failed.len(), "invalid_or_expired_not_401": misjudged,
        "p50_ms": p50.as_secs_f64() * 1000.0, "p99_ms": p99.as_secs_f64() * 1000.0,
        "rss_first_third_max_kib": first_max, "rss_last_third_max_kib": last_max,
        "fds_first_third_max": fd_first, "fds_last_third_max": fd_last,
        "rotations_and_reloads": next_minute - 1, "counts": summary(&outcomes),
        "upstream_unverified": unverified.load(Ordering::Relaxed),
    });
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&summary_json).expect("json"))
        .expect("write summary");
    println!("soak summary: {summary_json}");

    assert!(
        valid_failed.is_empty(),
        "{} valid requests failed, e.g. {:?}",
        valid_failed.len(),
        &valid_failed[..valid_failed.len().min(5)]
    );
    assert_eq!(misjudged, 0, "invalid or expired tokens must get 401: {}", summary(&outcomes));
    assert!(
        last_max as f64 <= 1.2 * first_max as f64 + 5.0 * 1024.0,
        "RSS did not plateau: first third max {first_max} KiB, last third max {last_max} KiB"
    );
    assert!(fd_last <= fd_first + 16, "fds grew: {fd_first} -> {fd_last}");
    let unverified = unverified.load(Ordering::Relaxed);
    assert_eq!(unverified, 0, "{unverified} requests reached the upstream without a valid token");
}
