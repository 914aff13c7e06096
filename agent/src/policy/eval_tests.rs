//! Table-driven policy tests: each case is a policy file fragment and a request.

use std::net::SocketAddr;

use serde_json::json;

use super::*;
use crate::authn::Identity;

fn identity(claims: serde_json::Value) -> Identity {
    let claims = claims.as_object().unwrap().clone();
    Identity {
        issuer: "https://idp.test".into(),
        subject: claims.get("sub").and_then(|v| v.as_str()).map(str::to_owned),
        audiences: vec!["api".into()],
        presenter: claims.get("azp").and_then(|v| v.as_str()).map(str::to_owned),
        claims,
        expires_at: 0,
    }
}

struct Req {
    method: &'static str,
    path: &'static str,
    host: Option<&'static str>,
    source: &'static str,
    dest: &'static str,
    headers: http::HeaderMap,
}

fn req(method: &'static str, path: &'static str) -> Req {
    Req {
        method,
        path,
        host: Some("backend.default:8080"),
        source: "10.0.0.5:40000",
        dest: "10.200.0.3:8080",
        headers: http::HeaderMap::new(),
    }
}

fn eval(policies_yaml: &str, r: &Req, id: &Identity) -> Verdict {
    let policies: Vec<Policy> =
        serde_yaml_ng::from_str(policies_yaml).unwrap_or_else(|e| panic!("policy yaml: {e}\n{policies_yaml}"));
    let set = PolicySet::new(&policies);
    let facts = RequestFacts {
        method: r.method,
        path: r.path,
        host: r.host,
        headers: &r.headers,
        source: r.source.parse::<SocketAddr>().unwrap(),
        destination: r.dest.parse::<SocketAddr>().unwrap(),
    };
    let attrs = RequestAttrs { facts: &facts, identity: id };
    set.evaluate(&attrs, None)
}

const READER_API: &str = r#"
- name: api
  action: ALLOW
  rules:
    - to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
      when: [{key: "request.auth.claims[role]", values: ["reader"]}]
"#;

#[test]
fn table() {
    let alice =
        identity(json!({"sub": "alice", "role": "reader", "groups": ["dev", "ops"], "email": "user@example.com",
        "realm_access": {"roles": ["admin", "user"]}, "level": 3, "verified": true, "azp": "web"}));
    let bob = identity(json!({"sub": "bob", "role": "writer"}));
    let mut with_header = req("GET", "/x");
    with_header.headers.insert("x-tenant", "blue".parse().unwrap());
    let cases: Vec<(&str, &str, Req, &Identity, Reason)> = vec![
        ("allow matches", READER_API, req("GET", "/api/items"), &alice, Reason::Allowed),
        ("wrong claim", READER_API, req("GET", "/api/items"), &bob, Reason::NoAllowMatch),
        ("wrong method", READER_API, req("POST", "/api/items"), &alice, Reason::NoAllowMatch),
        ("wrong path", READER_API, req("GET", "/admin"), &alice, Reason::NoAllowMatch),
        ("no policies: any valid token", "[]", req("DELETE", "/"), &bob, Reason::Allowed),
        (
            "allow with no rules allows nothing",
            "[{name: n, action: ALLOW}]",
            req("GET", "/"),
            &alice,
            Reason::NoAllowMatch,
        ),
        (
            "allow with empty rule allows all",
            "[{name: n, action: ALLOW, rules: [{}]}]",
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        ("deny with no rules denies nothing", "[{name: n, action: DENY}]", req("GET", "/"), &alice, Reason::Allowed),
        (
            "deny before allow",
            r#"
- {name: a, action: ALLOW, rules: [{}]}
- {name: d, action: DENY, rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}
"#,
            req("GET", "/admin/x"),
            &alice,
            Reason::DeniedByPolicy,
        ),
        ("audit only records", "[{name: au, action: AUDIT, rules: [{}]}]", req("GET", "/"), &alice, Reason::Allowed),
        (
            "list claim any element",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[groups]", values: ["ops"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "list claim none",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[groups]", values: ["qa"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::NoAllowMatch,
        ),
        (
            "nested claim",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[realm_access][roles]", values: ["admin"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "nested claim absent",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[realm_access][roles]", values: ["admin"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "notValues on list",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[groups]", notValues: ["ops"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::NoAllowMatch,
        ),
        (
            "notValues on absent claim passes",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[groups]", notValues: ["ops"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "presence",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[email]", values: ["*"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "suffix",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[email]", values: ["*@example.com"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "number claim",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[level]", values: ["3"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "bool claim",
            r#"[{name: g, action: ALLOW, rules: [{when: [{key: "request.auth.claims[verified]", values: ["true"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "principal",
            r#"[{name: p, action: ALLOW, rules: [{from: [{source: {requestPrincipals: ["https://idp.test/alice"]}}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "principal prefix",
            r#"[{name: p, action: ALLOW, rules: [{from: [{source: {requestPrincipals: ["https://idp.test/*"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "notRequestPrincipals",
            r#"[{name: p, action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*/alice"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::DeniedByPolicy,
        ),
        (
            "ipBlocks",
            r#"[{name: p, action: ALLOW, rules: [{from: [{source: {ipBlocks: ["10.0.0.0/24"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "notIpBlocks",
            r#"[{name: p, action: ALLOW, rules: [{from: [{source: {notIpBlocks: ["10.0.0.0/24"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "principal key",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: request.auth.principal, values: ["https://idp.test/bob"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "audiences key",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: request.auth.audiences, values: ["api"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "presenter key",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: request.auth.presenter, values: ["web"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::Allowed,
        ),
        (
            "header key",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: "request.headers[X-Tenant]", values: ["blue"]}]}]}]"#,
            with_header,
            &bob,
            Reason::Allowed,
        ),
        (
            "source.ip",
            r#"[{name: p, action: DENY, rules: [{when: [{key: source.ip, values: ["10.0.0.5"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::DeniedByPolicy,
        ),
        (
            "destination.ip cidr",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: destination.ip, values: ["10.200.0.0/16"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "destination.port",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: destination.port, notValues: ["8080"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "hosts ignore case and port",
            r#"[{name: p, action: ALLOW, rules: [{to: [{operation: {hosts: ["Backend.Default"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "ports as strings",
            r#"[{name: p, action: ALLOW, rules: [{to: [{operation: {ports: ["8080"]}}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "notPaths",
            r#"[{name: p, action: ALLOW, rules: [{to: [{operation: {notPaths: ["/x*"]}}]}]}]"#,
            req("GET", "/x/y"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "target elsewhere: allow does not apply",
            r#"[{name: p, action: ALLOW, target: {addresses: ["10.9.9.9"]}, rules: [{when: [{key: "request.auth.claims[role]", values: ["nobody"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "target here: allow applies",
            r#"[{name: p, action: ALLOW, target: {addresses: ["10.200.0.0/24"], ports: [8080]}, rules: [{when: [{key: "request.auth.claims[role]", values: ["nobody"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "target other port",
            r#"[{name: p, action: DENY, target: {addresses: ["10.200.0.3"], ports: [9090]}, rules: [{}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "allow target by host: other Host cannot escape it",
            r#"[{name: p, action: ALLOW, target: {addresses: ["10.200.0.3"], hosts: ["api.internal"]}, rules: [{}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::NoAllowMatch,
        ),
        (
            "allow target by host: matching Host",
            r#"[{name: p, action: ALLOW, target: {addresses: ["10.200.0.3"], hosts: ["backend.default"]}, rules: [{}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "deny target by host: other Host not denied",
            r#"[{name: p, action: DENY, target: {hosts: ["api.internal"]}, rules: [{}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "keycloak example",
            r#"
- name: backend-authz
  action: ALLOW
  rules:
    - to: [{operation: {methods: ["GET"]}}]
      when:
        - {key: "request.auth.claims[iss]", values: ["http://keycloak.keycloak.svc.cluster.local/realms/myrealm"]}
        - {key: "request.auth.claims[email]", values: ["user@example.com"]}
"#,
            req("GET", "/data"),
            &alice,
            Reason::NoAllowMatch,
        ),
        (
            "multiple rules: any",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: "request.auth.claims[role]", values: ["x"]}]}, {when: [{key: "request.auth.claims[role]", values: ["writer"]}]}]}]"#,
            req("GET", "/"),
            &bob,
            Reason::Allowed,
        ),
        (
            "conditions in a rule: all",
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: "request.auth.claims[role]", values: ["reader"]}, {key: "request.auth.claims[email]", values: ["nobody@x"]}]}]}]"#,
            req("GET", "/"),
            &alice,
            Reason::NoAllowMatch,
        ),
    ];
    for (name, yaml, r, id, want) in cases {
        assert_eq!(eval(yaml, &r, id).reason, want, "case {name:?}");
    }
}

#[test]
fn verdict_names_the_deciding_policy_and_audits() {
    let alice = identity(json!({"sub": "alice", "role": "reader"}));
    let yaml = r#"
- {name: audit-all, action: AUDIT, rules: [{}]}
- {name: readers, action: ALLOW, rules: [{when: [{key: "request.auth.claims[role]", values: ["reader"]}]}]}
"#;
    let v = eval(yaml, &req("GET", "/"), &alice);
    assert_eq!(v.policy.as_deref(), Some("readers"));
    assert_eq!(v.audited_by.iter().map(|s| &**s).collect::<Vec<_>>(), vec!["audit-all"]);
}

#[test]
fn bad_policies_are_refused_at_load() {
    for (yaml, needle) in [
        (
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: "request.auth.claim[role]", values: ["x"]}]}]}]"#,
            "unknown condition key",
        ),
        (
            r#"[{name: p, action: ALLOW, rules: [{when: [{key: "request.auth.claims[role]"}]}]}]"#,
            "needs values or notValues",
        ),
        (r#"[{name: p, action: ALLOW, rules: [{when: [{key: source.ip, values: ["10.0.0.300"]}]}]}]"#, "not an IP"),
        (r#"[{name: p, action: ALLOW, rules: [{when: [{key: destination.port, values: ["http"]}]}]}]"#, "not a port"),
        (r#"[{name: p, action: PERMIT}]"#, "unknown variant"),
        (r#"[{name: p, action: ALLOW, rules: [{to: [{operation: {paths: ["/a/*/b"]}}]}]}]"#, "'*'"),
        (r#"[{name: p, action: ALLOW, rules: [{from: [{source: {principals: ["x"]}}]}]}]"#, "unknown field"),
        (r#"[{name: p, action: ALLOW, target: {addresses: ["10.0.0.1/8"]}}]"#, "host bits"),
        (r#"[{name: p, action: ALLOW, rules: [{when: [{key: source.principal, values: ["x"]}]}]}]"#, "mTLS"),
    ] {
        let err = serde_yaml_ng::from_str::<Vec<Policy>>(yaml).expect_err(yaml).to_string();
        assert!(err.contains(needle), "{yaml}\n  error {err:?} should mention {needle:?}");
    }
}
