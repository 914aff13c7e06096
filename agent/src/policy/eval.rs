//! Evaluation with Istio's order: any matching DENY refuses; then, if ALLOW policies apply
//! to the destination, one of them must match; otherwise the request is allowed. AUDIT
//! policies only record. Authentication has already succeeded when this runs.

use std::{net::SocketAddr, sync::Arc};

use serde::Serialize;
use serde_json::Value;

use super::{
    model::{Action, Cidr, Condition, ConditionKey, Operation, Policy, PortValue, Rule, Source, Target, Values},
    pattern::Pattern,
};
use crate::{authn::Identity, reason::Reason};

/// What the proxy knows about a request before authentication.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// Normalized path without the query.
    pub path: &'a str,
    /// Host header or `:authority`.
    pub host: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub source: SocketAddr,
    /// Listener upstream, or the captured original destination.
    pub destination: SocketAddr,
}

/// What a request looks like to policy: the facts plus the verified identity.
#[derive(Debug, Clone, Copy)]
pub struct RequestAttrs<'a> {
    pub facts: &'a RequestFacts<'a>,
    pub identity: &'a Identity,
}

impl<'a> std::ops::Deref for RequestAttrs<'a> {
    type Target = RequestFacts<'a>;
    fn deref(&self) -> &RequestFacts<'a> {
        self.facts
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `Allowed`, `DeniedByPolicy` or `NoAllowMatch`.
    pub reason: Reason,
    /// The DENY that matched, or the ALLOW that allowed.
    pub policy: Option<Arc<str>>,
    pub audited_by: Vec<Arc<str>>,
}

/// One line of `ward explain` output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTrace {
    pub policy: Arc<str>,
    pub action: &'static str,
    /// The policy's target covers this destination.
    pub applies: bool,
    /// Index of the first matching rule.
    pub matched_rule: Option<usize>,
}

#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<(Arc<str>, Policy)>,
}

impl PolicySet {
    pub fn new(policies: &[Policy]) -> Self {
        Self { policies: policies.iter().map(|p| (Arc::from(p.name.as_str()), p.clone())).collect() }
    }

    pub fn evaluate(&self, req: &RequestAttrs<'_>, mut trace: Option<&mut Vec<PolicyTrace>>) -> Verdict {
        let mut deny = None;
        let mut allow = None;
        let mut any_allow_applies = false;
        let mut audited_by = Vec::new();
        for (name, policy) in &self.policies {
            // The Host header is the client's to choose. For an ALLOW, `target.hosts` therefore
            // only narrows what it allows, never whether it applies: otherwise a client could
            // send another Host to the same address, make no ALLOW apply, and be let in with
            // any valid token.
            let (applies, host_ok) = match &policy.target {
                None => (true, true),
                Some(t) if policy.action == Action::Allow => {
                    (target_covers_address(t, req), target_covers_host(t, req))
                }
                Some(t) => (target_covers(t, req), true),
            };
            let matched =
                if applies && host_ok { policy.rules.iter().position(|r| rule_matches(r, req)) } else { None };
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(PolicyTrace {
                    policy: name.clone(),
                    action: policy.action.as_str(),
                    applies,
                    matched_rule: matched,
                });
            }
            if !applies {
                continue;
            }
            match policy.action {
                Action::Deny if matched.is_some() && deny.is_none() => deny = Some(name.clone()),
                Action::Allow => {
                    any_allow_applies = true;
                    if matched.is_some() && allow.is_none() {
                        allow = Some(name.clone());
                    }
                }
                Action::Audit if matched.is_some() => audited_by.push(name.clone()),
                _ => {}
            }
        }
        let (reason, policy) = match (deny, allow) {
            (Some(d), _) => (Reason::DeniedByPolicy, Some(d)),
            (None, Some(a)) => (Reason::Allowed, Some(a)),
            (None, None) if any_allow_applies => (Reason::NoAllowMatch, None),
            (None, None) => (Reason::Allowed, None),
        };
        Verdict { reason, policy, audited_by }
    }
}

/// The targets of these policies (what capture redirects); a policy without a target adds none.
pub fn targets<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Vec<Target> {
    policies.into_iter().filter_map(|p| p.target.clone()).collect()
}

/// Does a policy's `target` cover this destination?
pub fn target_covers(t: &Target, req: &RequestAttrs<'_>) -> bool {
    target_covers_address(t, req) && target_covers_host(t, req)
}

fn target_covers_address(t: &Target, req: &RequestAttrs<'_>) -> bool {
    (t.addresses.is_empty() || t.addresses.iter().any(|c| c.contains(req.destination.ip())))
        && (t.ports.is_empty() || t.ports.contains(&req.destination.port()))
}

fn target_covers_host(t: &Target, req: &RequestAttrs<'_>) -> bool {
    t.hosts.is_empty() || req.host.is_some_and(|h| t.hosts.iter().any(|p| host_matches(p, h)))
}

fn rule_matches(rule: &Rule, req: &RequestAttrs<'_>) -> bool {
    (rule.from.is_empty() || rule.from.iter().any(|f| source_matches(&f.source, req)))
        && (rule.to.is_empty() || rule.to.iter().any(|t| operation_matches(&t.operation, req)))
        && rule.when.iter().all(|c| condition_matches(c, req))
}

/// Each set field must match (any of its values); each `not*` field must match none.
fn field<T>(include: &[T], exclude: &[T], matches: impl Fn(&T) -> bool) -> bool {
    (include.is_empty() || include.iter().any(&matches)) && !exclude.iter().any(&matches)
}

fn source_matches(s: &Source, req: &RequestAttrs<'_>) -> bool {
    // `iss/sub` is formatted only for sources that name principals, not on every request.
    let principal =
        (!s.request_principals.is_empty() || !s.not_request_principals.is_empty()).then(|| req.identity.principal());
    let principal_matches = |p: &Pattern| principal.as_ref().and_then(Option::as_deref).is_some_and(|v| p.matches(v));
    let ip = req.source.ip();
    let ip_matches = |c: &Cidr| c.contains(ip);
    field(&s.request_principals, &s.not_request_principals, principal_matches)
        && field(&s.ip_blocks, &s.not_ip_blocks, ip_matches)
        && field(&s.remote_ip_blocks, &s.not_remote_ip_blocks, ip_matches)
}

fn operation_matches(op: &Operation, req: &RequestAttrs<'_>) -> bool {
    let port = req.destination.port();
    field(&op.hosts, &op.not_hosts, |p| req.host.is_some_and(|h| host_matches(p, h)))
        && field(&op.ports, &op.not_ports, |p: &PortValue| p.0 == port)
        && field(&op.methods, &op.not_methods, |p| p.matches(req.method))
        && field(&op.paths, &op.not_paths, |p| p.matches(req.path))
}

/// Hosts compare case-insensitively; a pattern also matches `host:port` by its host part.
fn host_matches(p: &Pattern, host: &str) -> bool {
    p.matches_ignore_case(host) || strip_port(host).is_some_and(|name| p.matches_ignore_case(name))
}

fn strip_port(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        return after.starts_with(':').then_some(name);
    }
    let (name, port) = host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

fn condition_matches(c: &Condition, req: &RequestAttrs<'_>) -> bool {
    match (&c.key, &c.values, &c.not_values) {
        (ConditionKey::SourceIp, Values::Ips(inc), Values::Ips(exc)) => {
            field(inc, exc, |n| n.contains(req.source.ip()))
        }
        (ConditionKey::DestinationIp, Values::Ips(inc), Values::Ips(exc)) => {
            field(inc, exc, |n| n.contains(req.destination.ip()))
        }
        (ConditionKey::DestinationPort, Values::Ports(inc), Values::Ports(exc)) => {
            field(inc, exc, |p| *p == req.destination.port())
        }
        (key, Values::Strings(inc), Values::Strings(exc)) => {
            let values = string_values(key, req);
            // An absent attribute matches no value (so `values` fails and `notValues` passes).
            (inc.is_empty() || values.iter().any(|v| inc.iter().any(|p| p.matches(v))))
                && !values.iter().any(|v| exc.iter().any(|p| p.matches(v)))
        }
        // Values are typed by key at load time; any other combination cannot be built.
        _ => false,
    }
}

/// The attribute's values as strings: a list claim contributes each element.
fn string_values(key: &ConditionKey, req: &RequestAttrs<'_>) -> Vec<String> {
    let id = req.identity;
    match key {
        ConditionKey::Claim(path) => {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            match id.claim(&path) {
                Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
                Some(v) => scalar(v).into_iter().collect(),
                None => Vec::new(),
            }
        }
        ConditionKey::Principal => id.principal().into_iter().collect(),
        ConditionKey::Audiences => id.audiences.clone(),
        ConditionKey::Presenter => id.presenter.clone().into_iter().collect(),
        ConditionKey::Header(name) => {
            req.headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect()
        }
        ConditionKey::SourceIp => vec![req.source.ip().to_string()],
        ConditionKey::DestinationIp => vec![req.destination.ip().to_string()],
        ConditionKey::DestinationPort => vec![req.destination.port().to_string()],
    }
}

/// Strings as-is; numbers and booleans as their JSON text; objects and null match nothing.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
