//! Key rotation under load through the real `ward` binary: a new key is picked up with no
//! false 401, and once the old key leaves the JWKS its tokens (cached ones included) are
//! refused from the next key-set refresh on.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use ward_e2e::{
    fault::{FaultStack, StackOptions, wait_for},
    load::{Load, Planned, summary},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_has_no_false_401_and_retired_keys_die_at_once() {
    let opts = StackOptions {
        jwks: "{minRefreshSeconds: 1, maxRefreshSeconds: 1, unknownKidCooldownSeconds: 1, fetchTimeoutMillis: 1000}"
            .to_owned(),
        ..StackOptions::default()
    };
    let stack = FaultStack::start(opts, true).await;
    stack.wait_ready().await;
    let issuer = stack.idp.issuer.clone();

    let mut old = Vec::new();
    for i in 0..100 {
        old.push(stack.token(&format!("old-{i}")).await);
    }
    let old_set: HashSet<String> = old.iter().cloned().collect();
    // The pool the load draws from: (label, token). Old-key tokens first; new-key tokens are
    // added once the IdP has rotated.
    let pool: Arc<RwLock<Vec<(&'static str, String)>>> =
        Arc::new(RwLock::new(old.iter().map(|t| ("old-key", t.clone())).collect()));
    let load = {
        let pool = pool.clone();
        Load::start(stack.addr, 8, u64::MAX, move |n| {
            let pool = pool.read().unwrap_or_else(|e| e.into_inner());
            let (label, token) = &pool[n as usize % pool.len()];
            Planned { label, path: format!("/r/{n}"), token: Some(token.clone()) }
        })
    };
    wait_for("warm-up", || async {
        let n = load.snapshot().len();
        if n >= 500 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;

    // Rotate: the IdP publishes old + new and signs with the new key from now on.
    stack.idp.rotate().await;
    let mut new = Vec::new();
    for i in 0..100 {
        new.push(stack.token(&format!("new-{i}")).await);
    }
    assert!(new.iter().all(|t| !old_set.contains(t)));
    pool.write().unwrap_or_else(|e| e.into_inner()).extend(new.iter().map(|t| ("new-key", t.clone())));
    let rotated_at = load.elapsed();
    wait_for("new-key traffic", || async {
        let n = load.snapshot().iter().filter(|o| o.label == "new-key").count();
        if n >= 1000 { Ok(()) } else { Err(format!("{n} new-key requests")) }
    })
    .await;
    let before_retire = load.snapshot();
    assert!(
        before_retire.iter().all(|o| o.status == Some(200)),
        "rotation must not refuse any valid token (old or new key): {}",
        summary(&before_retire)
    );
    assert!(before_retire.iter().any(|o| o.label == "new-key" && o.sent >= rotated_at));

    // Retire: the old key leaves the JWKS. From the refresh that sees it gone (the key gauge
    // drops to 1), old-key tokens are refused, though all of them are in the verified cache.
    stack.idp.retire_old().await;
    wait_for("the refresh that drops the old key", || async {
        let keys = stack.scrape().await.get("ward_jwks_keys", &[("issuer", &issuer)]);
        if keys == 1.0 { Ok(()) } else { Err(format!("{keys} keys")) }
    })
    .await;
    let retired_at = load.elapsed();
    wait_for("old-key traffic after the retirement", || async {
        let n = load.snapshot().iter().filter(|o| o.label == "old-key" && o.sent > retired_at).count();
        if n >= 500 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;
    let outcomes = load.stop().await;

    for o in &outcomes {
        assert!(o.status.is_some(), "transport error: {o:?}");
        match o.label {
            "new-key" => assert_eq!(o.status, Some(200), "new-key token refused: {o:?}"),
            _ if o.sent > retired_at => {
                assert_eq!(o.status, Some(401), "old-key token accepted after its key was removed: {o:?}")
            }
            _ => {}
        }
    }
    let m = stack.scrape().await;
    assert!(
        m.sum("ward_requests_total", &[("reason", "unknown_key")]) >= 500.0,
        "old-key refusals are unknown_key:\n{}",
        m.text
    );
    // Every forwarded request is one the client saw answered 200 (nothing else slipped through).
    let forwarded = stack.upstream.requests().len();
    let ok = outcomes.iter().filter(|o| o.status == Some(200)).count();
    assert_eq!(forwarded, ok, "the upstream saw {forwarded} requests but clients got {ok} 200s");
}
