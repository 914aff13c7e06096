//! Policy: patterns, condition keys, and whole policy sets evaluated over arbitrary verified
//! claims and request attributes.
//!
//! Properties checked besides "no panic":
//! - a pattern that parses displays as the text it came from, and matches as its kind says;
//! - a condition key that parses displays as a key that parses to the same key;
//! - a verdict names a policy of the right action (DENY for denials, ALLOW for allows);
//! - a catch-all DENY added anywhere always denies; an AUDIT added never changes the reason;
//!   removing every ALLOW never turns an allow into a refusal.
#![no_main]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use ward::{
    authn::Identity,
    policy::{
        eval::{PolicySet, RequestAttrs, RequestFacts},
        model::{ConditionKey, Policy},
        pattern::Pattern,
    },
    reason::Reason,
};
use ward_fuzz::Json;

#[derive(Debug, Arbitrary)]
enum Input {
    /// `<config YAML>\0<claims JSON>\0<path>`: real policy files over real claims.
    Config(String),
    /// `<pattern>\0<value>`
    Pattern(String),
    Key(String),
    Eval(Box<Scenario>),
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    policies: Vec<PolicySpec>,
    claims: Vec<(ClaimName, Json)>,
    subject: Option<String>,
    audiences: Vec<String>,
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    source: ([u8; 4], u16),
    destination: (Option<[u8; 16]>, [u8; 4], u16),
}

#[derive(Debug, Arbitrary)]
enum ClaimName {
    Groups,
    Realm,
    Scope,
    Any(String),
}

impl ClaimName {
    fn name(&self) -> &str {
        match self {
            ClaimName::Groups => "groups",
            ClaimName::Realm => "realm_access",
            ClaimName::Scope => "scope",
            ClaimName::Any(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct PolicySpec {
    action: u8,
    target: Option<(Vec<String>, Vec<u16>, Vec<String>)>,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Arbitrary)]
struct RuleSpec {
    principals: Vec<String>,
    not_principals: Vec<String>,
    ip_blocks: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
    not_paths: Vec<String>,
    hosts: Vec<String>,
    ports: Vec<u16>,
    when: Vec<(KeySpec, Vec<String>, Vec<String>)>,
}

#[derive(Debug, Arbitrary)]
enum KeySpec {
    Claim(Vec<ClaimName>),
    Known(u8),
    Any(String),
}

impl KeySpec {
    fn text(&self) -> String {
        match self {
            KeySpec::Claim(path) if !path.is_empty() => {
                let mut s = "request.auth.claims".to_owned();
                for p in path {
                    s.push_str(&format!("[{}]", p.name()));
                }
                s
            }
            KeySpec::Claim(_) => "request.auth.claims[groups]".to_owned(),
            KeySpec::Known(i) => [
                "request.auth.principal",
                "request.auth.audiences",
                "request.auth.presenter",
                "request.headers[x-team]",
                "source.ip",
                "destination.ip",
                "destination.port",
            ][usize::from(*i) % 7]
                .to_owned(),
            KeySpec::Any(s) => s.clone(),
        }
    }
}

fn policy_json(i: usize, p: &PolicySpec) -> Value {
    let action = ["ALLOW", "DENY", "AUDIT"][usize::from(p.action) % 3];
    let mut v = json!({"name": format!("p{i}"), "action": action});
    if let Some((addresses, ports, hosts)) = &p.target {
        v["target"] = json!({"addresses": addresses, "ports": ports, "hosts": hosts});
    }
    v["rules"] = p
        .rules
        .iter()
        .map(|r| {
            let mut rule = json!({});
            if !(r.principals.is_empty() && r.not_principals.is_empty() && r.ip_blocks.is_empty()) {
                rule["from"] = json!([{"source": {
                    "requestPrincipals": r.principals, "notRequestPrincipals": r.not_principals, "ipBlocks": r.ip_blocks,
                }}]);
            }
            if !(r.methods.is_empty() && r.paths.is_empty() && r.not_paths.is_empty() && r.hosts.is_empty() && r.ports.is_empty()) {
                rule["to"] = json!([{"operation": {
                    "methods": r.methods, "paths": r.paths, "notPaths": r.not_paths, "hosts": r.hosts,
                    "ports": r.ports.iter().map(|p| json!(p.to_string())).collect::<Vec<_>>(),
                }}]);
            }
            rule["when"] = r
                .when
                .iter()
                .map(|(k, values, not_values)| json!({"key": k.text(), "values": values, "notValues": not_values}))
                .collect();
            rule
        })
        .collect();
    v
}

fn check_pattern(text: &str, value: &str) {
    let Ok(p) = Pattern::parse(text) else { return };
    assert_eq!(p.to_string(), text, "pattern does not display as written");
    let want = match &p {
        Pattern::Exact(e) => value == e,
        Pattern::Prefix(pre) => value.starts_with(pre.as_str()),
        Pattern::Suffix(suf) => value.ends_with(suf.as_str()),
        Pattern::Presence => true,
    };
    assert_eq!(p.matches(value), want, "{text:?} on {value:?}");
    if p.matches(value) {
        assert!(p.matches_ignore_case(value), "{text:?} matches {value:?} but not ignoring case");
    }
}

fn check_key(text: &str) {
    let Ok(key) = text.parse::<ConditionKey>() else { return };
    let shown = key.to_string();
    let again: ConditionKey =
        shown.parse().unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which is refused: {e}"));
    assert_eq!(again, key, "{text:?} does not round-trip");
}

fn evaluate(s: &Scenario) {
    let policies: Vec<Policy> =
        s.policies.iter().enumerate().filter_map(|(i, p)| serde_json::from_value(policy_json(i, p)).ok()).collect();
    let mut claims = serde_json::Map::new();
    for (name, value) in &s.claims {
        claims.insert(name.name().to_owned(), value.to_value());
    }
    let identity = Identity {
        issuer: Arc::from("https://idp.fuzz.test"),
        subject: s.subject.clone(),
        audiences: s.audiences.clone(),
        presenter: None,
        claims,
        expires_at: u64::MAX,
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &s.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
    let destination = match s.destination.0 {
        Some(v6) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), s.destination.2),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(s.destination.1)), s.destination.2),
    };
    let facts = RequestFacts {
        method: &s.method,
        path: &s.path,
        host: s.host.as_deref(),
        headers: &headers,
        source: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(s.source.0)), s.source.1),
        destination,
    };
    let req = RequestAttrs { facts: &facts, identity: &identity };

    check_verdict(&policies, &req);
}

fn from_config(text: &str) {
    let (yaml, rest) = text.split_once('\0').unwrap_or((text, ""));
    let (claims, path) = rest.split_once('\0').unwrap_or((rest, "/"));
    let Ok(cfg) = ward::config::parse_str(yaml, "fuzz-policy.yaml") else { return };
    let Ok(claims) = ward::jwt::json::parse_object(claims.as_bytes()) else { return };
    let identity = Identity {
        issuer: Arc::from("https://idp.fuzz.test"),
        subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        audiences: vec!["api".to_owned()],
        presenter: claims.get("azp").and_then(Value::as_str).map(str::to_owned),
        claims,
        expires_at: u64::MAX,
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-team", HeaderValue::from_static("payments"));
    let facts = RequestFacts {
        method: "GET",
        path,
        host: Some("api.example:8080"),
        headers: &headers,
        source: "10.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
        destination: "10.0.0.2:8080".parse().unwrap_or_else(|e| panic!("{e}")),
    };
    let req = RequestAttrs { facts: &facts, identity: &identity };
    check_verdict(&cfg.policies, &req);
}

fn check_verdict(policies: &[Policy], req: &RequestAttrs<'_>) {
    let req = *req;
    let set = PolicySet::new(policies);
    let mut trace = Vec::new();
    let verdict = set.evaluate(&req, Some(&mut trace));
    assert_eq!(trace.len(), policies.len(), "one trace line per policy");
    let action_of = |name: &str| policies.iter().find(|p| p.name == name).map(|p| p.action.as_str());
    match verdict.reason {
        Reason::DeniedByPolicy => {
            let name = verdict.policy.as_deref().unwrap_or_else(|| panic!("a denial names no policy"));
            assert_eq!(action_of(name), Some("DENY"), "denied by {name}, which is not a DENY");
        }
        Reason::Allowed => {
            if let Some(name) = verdict.policy.as_deref() {
                assert_eq!(action_of(name), Some("ALLOW"), "allowed by {name}, which is not an ALLOW");
            }
        }
        Reason::NoAllowMatch => assert!(verdict.policy.is_none(), "no-allow-match names a policy"),
        other => panic!("policy evaluation returned {other}"),
    }
    for name in &verdict.audited_by {
        assert_eq!(action_of(name), Some("AUDIT"), "audited by {name}, which is not an AUDIT");
    }
    // The verdict without a trace is the same verdict.
    assert_eq!(set.evaluate(&req, None), verdict, "tracing changed the verdict");

    // A catch-all DENY (no target, one empty rule) wins wherever it stands.
    let deny_all: Policy = serde_json::from_value(json!({"name": "deny-all", "action": "DENY", "rules": [{}]}))
        .unwrap_or_else(|e| panic!("catch-all deny: {e}"));
    for at in [0, policies.len()] {
        let mut with = policies.to_vec();
        with.insert(at, deny_all.clone());
        assert_eq!(
            PolicySet::new(&with).evaluate(&req, None).reason,
            Reason::DeniedByPolicy,
            "catch-all DENY at {at} did not deny"
        );
    }
    // AUDIT policies only record.
    let audit_all: Policy = serde_json::from_value(json!({"name": "audit-all", "action": "AUDIT", "rules": [{}]}))
        .unwrap_or_else(|e| panic!("catch-all audit: {e}"));
    let mut with = policies.to_vec();
    with.push(audit_all);
    assert_eq!(
        PolicySet::new(&with).evaluate(&req, None).reason,
        verdict.reason,
        "an AUDIT policy changed the decision"
    );
    // Without ALLOW policies nothing can be refused for lack of an allow.
    let no_allows: Vec<Policy> = policies.iter().filter(|p| p.action.as_str() != "ALLOW").cloned().collect();
    let without = PolicySet::new(&no_allows).evaluate(&req, None).reason;
    assert!(without != Reason::NoAllowMatch, "no ALLOW policies, yet no_allow_match");
    if verdict.reason == Reason::DeniedByPolicy {
        assert_eq!(without, Reason::DeniedByPolicy, "removing ALLOWs undid a DENY");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    match input {
        Input::Config(text) => from_config(&text),
        Input::Pattern(text) => {
            let (pattern, value) = text.split_once('\0').unwrap_or((&text, ""));
            check_pattern(pattern, value);
        }
        Input::Key(text) => check_key(&text),
        Input::Eval(s) => evaluate(&s),
    }
});
