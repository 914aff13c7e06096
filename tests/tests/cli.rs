//! The `ward` command-line contract: `check-config` names file:line:column and the field
//! path and exits non-zero; `explain` prints the decision as JSON and exits 0 only on allow.

use std::process::{Command, Output};

use serde_json::{Value, json};
use ward_e2e::{idp::DevIdp, ward_bin};

fn ward(args: &[&str]) -> Output {
    Command::new(ward_bin()).args(args).output().unwrap_or_else(|e| panic!("cannot run ward {args:?}: {e}"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn check_config_accepts_good_and_locates_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.yaml", "issuers:\n  - issuer: https://idp.test\n    audiences: [api]\n");
    let out = ward(&["check-config", "--config", &good]);
    assert!(out.status.success(), "good config refused: {}", String::from_utf8_lossy(&out.stderr));

    let cases = [
        (
            "typo.yaml",
            "issuers:\n  - issuer: https://idp.test\n    audiences: [api]\n    audience: api\n",
            ":4:5: issuers[0]: unknown field `audience`",
        ),
        (
            "cidr.yaml",
            "issuers: [{issuer: 'https://a', audiences: [x]}]\npolicies:\n  - name: p\n    action: ALLOW\n    target: {addresses: [10.0.0.1/8]}\n",
            "host bits set",
        ),
        ("empty.yaml", "\n", ":1:1: the config file is empty"),
        (
            "refresh.yaml",
            "issuers:\n  - issuer: https://a\n    audiences: [x]\n    jwks:\n      minRefreshSeconds: 0\n",
            ":5:7: issuers[0].jwks.minRefreshSeconds: must be between",
        ),
    ];
    for (name, text, needle) in cases {
        let path = write(&dir, name, text);
        let out = ward(&["check-config", "--config", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: expected exit 1, stderr {stderr}");
        assert!(stderr.contains(&path), "{name}: error must name the file: {stderr}");
        assert!(stderr.contains(needle), "{name}: error {stderr:?} should contain {needle:?}");
    }
    let out = ward(&["check-config", "--config", "/nonexistent/ward.yaml"]);
    assert_ne!(out.status.code(), Some(0), "a missing file must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_the_decision_and_exits_by_it() {
    let idp = DevIdp::start(&["--audience", "api"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "ward.yaml",
        &format!(
            "issuers:\n  - issuer: {}\n    audiences: [api]\npolicies:\n  - name: readers\n    action: ALLOW\n    rules:\n      - to: [{{operation: {{methods: [GET], paths: [\"/api/*\"]}}}}]\n        when: [{{key: \"request.auth.claims[role]\", values: [reader]}}]\n",
            idp.issuer
        ),
    );
    let reader = idp.mint(json!({"sub": "alice", "role": "reader"})).await;
    let writer = idp.mint(json!({"sub": "bob", "role": "writer"})).await;
    let expired = idp.mint(json!({"sub": "carol", "role": "reader", "exp": 1_000_000_000, "iat": 999_999_000})).await;

    let run = |token: Option<&str>, path: &str| {
        let mut args = vec!["explain", "--config", &config, "--path", path];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        let out = ward(&args);
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("explain printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    let (code, j) = run(Some(&reader), "/api/items");
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(
        (j["decision"].as_str(), j["status"].as_u64(), j["policy"].as_str()),
        (Some("allow"), Some(200), Some("readers"))
    );
    assert_eq!(j["identity"]["principal"], format!("{}/alice", idp.issuer));
    assert_eq!(j["policies"][0]["matchedRule"], 0);

    for (token, path, status, reason) in [
        (Some(writer.as_str()), "/api/items", 403, "no_allow_match"),
        (Some(reader.as_str()), "/admin", 403, "no_allow_match"),
        (Some(expired.as_str()), "/api/items", 401, "expired"),
        (Some("not.a.jwt"), "/api/items", 401, "bad_base64"),
        (None, "/api/items", 401, "missing_token"),
    ] {
        let (code, j) = run(token, path);
        assert_eq!(code, Some(1), "{reason}: {j}");
        assert_eq!((j["status"].as_u64(), j["reason"].as_str()), (Some(status), Some(reason)), "{j}");
    }
    let printed = run(Some(&reader), "/api/items").1.to_string();
    assert!(!printed.contains(&reader), "explain must not echo the token");
}
