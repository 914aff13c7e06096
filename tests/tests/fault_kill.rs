//! The agent SIGKILLed under load (explicit listener): requests fail while it is gone, none
//! reaches the upstream unverified, and a restarted agent resumes service. (With capture,
//! connections fail closed; the capture tests cover that.)

use std::{collections::HashSet, sync::Arc};

use ward_e2e::{
    fault::{FaultStack, StackOptions, wait_for},
    load::{Load, Planned, summary},
    ward::Ward,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_never_lets_unverified_requests_through_and_restart_resumes() {
    let mut stack = FaultStack::start(StackOptions::default(), true).await;
    stack.wait_ready().await;
    let mut valid = Vec::new();
    for i in 0..50 {
        valid.push(stack.token(&format!("user-{i}")).await);
    }
    let expired =
        stack.idp.mint(serde_json::json!({"sub": "old", "aud": "api", "iat": 1_000_000, "exp": 1_000_600})).await;
    let valid_set: HashSet<String> = valid.iter().cloned().collect();
    let (valid, expired) = (Arc::new(valid), Arc::new(expired));
    let load = Load::start(stack.addr, 8, u64::MAX, move |n| match n % 4 {
        0 => Planned { label: "none", path: format!("/k/{n}"), token: None },
        1 => Planned { label: "expired", path: format!("/k/{n}"), token: Some((*expired).clone()) },
        2 => Planned {
            label: "forged",
            path: format!("/k/{n}"),
            token: Some(format!("{}x", valid[n as usize % valid.len()])),
        },
        _ => Planned { label: "valid", path: format!("/k/{n}"), token: Some(valid[n as usize % valid.len()].clone()) },
    });

    let config = std::fs::read_to_string(&stack.ward.config).expect("read ward config");
    for round in 0..3 {
        wait_for(&format!("traffic before kill {round}"), || async {
            let ok = load.snapshot().iter().filter(|o| o.status == Some(200)).count();
            if ok >= 300 * (round + 1) { Ok(()) } else { Err(format!("{ok} served")) }
        })
        .await;
        let old_pid = stack.ward.pid();
        let status =
            std::process::Command::new("kill").args(["-KILL", &old_pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -KILL {old_pid}");
        // The listener is gone once connections are refused; then the new process can bind.
        let addr = stack.addr;
        wait_for("the killed agent's listener to disappear", || async move {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepting".to_owned()),
            }
        })
        .await;
        let (yaml, addrs) = (config.clone(), [stack.addr, stack.admin]);
        // Replacing the handle reaps the killed process.
        stack.ward = tokio::task::spawn_blocking(move || Ward::start(&yaml, &addrs)).await.expect("restart ward");
        assert_ne!(stack.ward.pid(), old_pid);
        stack.wait_ready().await;
    }
    wait_for("traffic after the last restart", || async {
        let ok = load.snapshot().iter().filter(|o| o.status == Some(200)).count();
        if ok >= 1200 { Ok(()) } else { Err(format!("{ok} served")) }
    })
    .await;
    let outcomes = load.stop().await;

    for o in &outcomes {
        match (o.label, o.status) {
            (_, None) => {} // the agent was gone: the connection failed, closed
            ("valid", Some(s)) => assert!(s == 200 || s == 503, "valid request got {s}: {o:?}"),
            (_, Some(s)) => assert_eq!(s, 401, "{o:?}"),
        }
    }
    assert!(
        outcomes.iter().any(|o| o.status.is_none()),
        "the kills should have failed some requests: {}",
        summary(&outcomes)
    );
    let unverified = stack.unverified_upstream_requests(&valid_set);
    assert!(
        unverified.is_empty(),
        "{} requests reached the upstream without a valid token: {:?}",
        unverified.len(),
        &unverified[..unverified.len().min(5)]
    );
    // A forwarded request whose answer was lost in a kill shows up as a transport error.
    let served = outcomes.iter().filter(|o| o.status == Some(200)).count();
    let lost = outcomes.iter().filter(|o| o.label == "valid" && o.status.is_none()).count();
    let forwarded = stack.upstream.requests().len();
    assert!(
        forwarded >= served && forwarded <= served + lost,
        "upstream saw {forwarded} requests; clients saw {served} served and {lost} valid requests lost"
    );
}
