//! Redaction for `/config_dump`: the config holds no keys or tokens by design, but URLs may
//! carry credentials (`https://user:pass@idp/...`, `?client_secret=`) and a future field
//! might hold a secret. Redaction is by shape, so new fields are covered too.

use serde_json::Value;

const REDACTED: &str = "<redacted>";

/// Member names whose values are never shown.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["secret", "password", "token", "privatekey", "private_key", "credential", "apikey", "api_key"]
        .iter()
        .any(|s| n.contains(s))
        // Token *locations* and policies about tokens are configuration, not secrets.
        && !matches!(n.as_str(), "forwardoriginaltoken" | "maxtokenbytes")
}

/// Redact a config-dump document.
pub fn redact(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(_) | Value::Number(_) if is_secret_name(&k) => Value::String(REDACTED.into()),
                        other => redact(other),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_url(&s)),
        other => other,
    }
}

/// Hide userinfo and query values of anything that looks like a URL.
fn redact_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else { return s.to_owned() };
    let (scheme, rest) = s.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}={REDACTED}"),
                    None => pair.to_owned(),
                })
                .collect();
            let mut t = format!("{path}?{}", redacted.join("&"));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}
