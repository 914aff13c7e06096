//! Config reload under load through the real `ward` binary: good reloads drop no request;
//! bad ones (syntax error, unknown field, empty file, deleted file) keep the last good
//! config, say where the mistake is (file:line:column on stderr) and set
//! `ward_config_last_reload_successful` to 0.

use std::{path::Path, sync::Arc};

use ward_e2e::{
    fault::{FaultStack, Scrape, StackOptions, wait_for},
    load::{Load, Planned, summary},
};

/// Replace the file in one step, as the kubelet's ConfigMap swap does.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename onto {}: {e}", path.display()));
}

/// The stack's config plus a DENY on `/marker-<n>*`, so each generation is observable.
fn config_with_marker(stack: &FaultStack, n: u32) -> String {
    let base = stack.config_with(&stack.opts);
    base.replacen(
        "policies:\n",
        &format!("policies:\n- name: marker\n  action: DENY\n  rules: [{{to: [{{operation: {{paths: [\"/marker-{n}*\"]}}}}]}}]\n"),
        1,
    )
}

async fn reload_counts(stack: &FaultStack) -> (f64, f64, f64) {
    let m: Scrape = stack.scrape().await;
    (
        m.sum("ward_config_reloads_total", &[("result", "success")]),
        m.sum("ward_config_reloads_total", &[("result", "error")]),
        m.get("ward_config_generation", &[]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn good_reloads_drop_nothing_and_bad_ones_keep_the_last_good_config() {
    let stack = FaultStack::start(StackOptions::default(), true).await;
    stack.wait_ready().await;
    let path = stack.ward.config.clone();
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(stack.token(&format!("user-{i}")).await);
    }
    let tokens = Arc::new(tokens);
    let load = {
        let tokens = tokens.clone();
        Load::start(stack.addr, 6, u64::MAX, move |n| Planned {
            label: "valid",
            path: format!("/items/{n}"),
            token: Some(tokens[n as usize % tokens.len()].clone()),
        })
    };

    // Good reloads, one after another, while the load runs.
    for n in 1..=5 {
        let (ok_before, _, generation_before) = reload_counts(&stack).await;
        write_atomically(&path, &config_with_marker(&stack, n));
        wait_for(&format!("reload {n}"), || async {
            let (ok, _, generation) = reload_counts(&stack).await;
            if ok > ok_before && generation > generation_before {
                Ok(())
            } else {
                Err(format!("ok {ok}, generation {generation}"))
            }
        })
        .await;
        assert_eq!(
            stack.status(&format!("/marker-{n}/x"), Some(&tokens[0])).await,
            Some(403),
            "reload {n} is in force"
        );
        assert_eq!(stack.scrape().await.get("ward_config_last_reload_successful", &[]), 1.0);
    }
    let during_good = load.snapshot();
    assert!(
        during_good.iter().all(|o| o.status == Some(200)),
        "a good reload must not drop or refuse any request: {}",
        summary(&during_good)
    );

    // Bad reloads: each is refused, located, and leaves generation 6 (marker-5) in force.
    let good = config_with_marker(&stack, 5);
    let file = path.display().to_string();
    let unknown_field = good.replacen("  audiences: [api]\n", "  audiences: [api]\n  audience: api\n", 1);
    let unknown_line =
        unknown_field.lines().position(|l| l == "  audience: api").map(|i| i + 1).expect("inserted line");
    let syntax = format!("{good}proxy: {{maxConnections: 10\n");
    let cases: Vec<(&str, Option<String>, String)> = vec![
        ("unknown field", Some(unknown_field), format!("{file}:{unknown_line}:")),
        ("syntax error", Some(syntax), format!("{file}:")),
        ("empty file", Some(String::new()), format!("{file}:1:1: the config file is empty")),
        ("deleted file", None, "config file disappeared".to_owned()),
    ];
    for (what, text, expect_in_stderr) in cases {
        let (_, errors_before, generation_before) = reload_counts(&stack).await;
        match &text {
            Some(t) => write_atomically(&path, t),
            None => std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {file}: {e}")),
        }
        wait_for(&format!("refusal of the {what}"), || async {
            let (_, errors, _) = reload_counts(&stack).await;
            if errors > errors_before { Ok(()) } else { Err(format!("{errors} errors")) }
        })
        .await;
        let m = stack.scrape().await;
        assert_eq!(
            m.get("ward_config_last_reload_successful", &[]),
            0.0,
            "{what}: the failed reload shows in the metric"
        );
        assert_eq!(m.get("ward_config_generation", &[]), generation_before, "{what}: the generation must not move");
        assert_eq!(
            stack.status("/marker-5/x", Some(&tokens[0])).await,
            Some(403),
            "{what}: the last good config stays in force"
        );
        assert_eq!(stack.status("/fine", Some(&tokens[0])).await, Some(200), "{what}: valid requests are still served");
        let stderr = stack.ward.stderr();
        assert!(stderr.contains(&expect_in_stderr), "{what}: stderr should contain {expect_in_stderr:?}:\n{stderr}");
        if what == "syntax error" {
            // file:line:column, with numbers.
            let at = stderr.rfind(&format!("{file}:")).expect("located error");
            let rest = &stderr[at + file.len() + 1..];
            let mut parts = rest.splitn(3, ':');
            let (line, col) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                line.parse::<usize>().is_ok() && col.parse::<usize>().is_ok(),
                "syntax error not located: {rest:.80}"
            );
        }
    }

    // A good file again: accepted, the metric recovers.
    let (ok_before, _, _) = reload_counts(&stack).await;
    write_atomically(&path, &config_with_marker(&stack, 6));
    wait_for("recovery reload", || async {
        let (ok, _, _) = reload_counts(&stack).await;
        if ok > ok_before { Ok(()) } else { Err(format!("{ok} successes")) }
    })
    .await;
    assert_eq!(stack.scrape().await.get("ward_config_last_reload_successful", &[]), 1.0);
    assert_eq!(stack.status("/marker-6/x", Some(&tokens[0])).await, Some(403));
    assert_eq!(stack.status("/marker-5/x", Some(&tokens[0])).await, Some(200));

    let outcomes = load.stop().await;
    assert!(outcomes.len() > during_good.len());
    assert!(
        outcomes.iter().all(|o| o.status == Some(200)),
        "no valid request may fail during good or bad reloads: {}",
        summary(&outcomes)
    );
}
