//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! identity headers (client copies stripped, verified values set), token removal, and
//! `x-forwarded-*`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::Value;

use super::extract::{self, Location};
use crate::{
    config::{ClaimToHeader, Issuer},
    enforce::Identity,
};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether this HTTP/1.1 request asks for a protocol upgrade (`Connection: upgrade` plus
/// `Upgrade: ...`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Remove hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`,
/// `Proxy-Connection`, `TE` (except `TE: trailers`, which gRPC needs end to end),
/// `Transfer-Encoding` (hyper re-frames bodies) and `Upgrade`. With `keep_upgrade`, the
/// `Upgrade` header survives and `Connection: upgrade` is re-set, so the upstream sees the
/// upgrade request it has to answer.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        // A client must not be able to strip what ward sets or checks by naming it.
        if name == header::AUTHORIZATION || name == header::HOST {
            continue;
        }
        headers.remove(&name);
    }
    headers.remove(header::CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Remove every header a client could use to impersonate an identity: all headers any
/// issuer's `outputClaimToHeaders` writes, and everything under `x-ward-`.
pub fn strip_identity_headers(headers: &mut HeaderMap, issuers: &[Issuer]) {
    for issuer in issuers {
        for out in &issuer.output_claim_to_headers {
            if let Ok(name) = HeaderName::from_bytes(out.header.as_bytes()) {
                headers.remove(name);
            }
        }
    }
    let ward: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("x-ward-")).cloned().collect();
    for name in ward {
        headers.remove(name);
    }
}

/// Set the `outputClaimToHeaders` values of the verifying issuer from the verified identity.
pub fn set_claim_headers(headers: &mut HeaderMap, outputs: &[ClaimToHeader], identity: &Identity) {
    for out in outputs {
        let Ok(name) = HeaderName::from_bytes(out.header.as_bytes()) else { continue };
        let path = claim_path(&out.claim);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some(value) = identity.claim(&path).and_then(claim_text) else { continue };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// `a.b.c` or `[a][b][c]` -> `["a", "b", "c"]` (the bracket form allows dots in names).
pub fn claim_path(claim: &str) -> Vec<String> {
    if let Some(inner) = claim.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
        return inner.split("][").map(str::to_owned).collect();
    }
    claim.split('.').map(str::to_owned).collect()
}

/// Header text for a claim: strings as they are, numbers and booleans as JSON, lists
/// comma-joined (their scalar members only); objects and null give no header.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    other => claim_text(other),
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        Value::Object(_) | Value::Null => None,
    }
}

/// Remove the token from everywhere it was found. Returns the new query (the old one when
/// no parameter was removed).
pub fn remove_token(headers: &mut HeaderMap, query: Option<&str>, found: &[Location]) -> Option<String> {
    let mut query = query.map(str::to_owned);
    for location in found {
        match location {
            Location::Authorization => {
                headers.remove(header::AUTHORIZATION);
            }
            Location::Header(name) => {
                headers.remove(name.as_str());
            }
            Location::Param(name) => {
                query = query.and_then(|q| extract::remove_query_param(&q, name));
            }
            Location::Cookie(name) => extract::remove_cookie(headers, name),
        }
    }
    query
}

/// Append the peer to `x-forwarded-for` and set `x-forwarded-proto: http`.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr) {
    let previous: Vec<String> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let mut value = previous.join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(&peer.to_string());
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        m
    }

    fn get<'a>(m: &'a HeaderMap, k: &str) -> Vec<&'a str> {
        m.get_all(k).iter().map(|v| v.to_str().expect("ascii")).collect()
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut m = h(&[
            ("connection", "keep-alive, x-secret, Authorization"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer t"),
            ("x-other", "2"),
        ]);
        strip_hop_by_hop(&mut m, false);
        assert!(get(&m, "x-secret").is_empty());
        assert!(get(&m, "connection").is_empty());
        assert!(get(&m, "keep-alive").is_empty());
        assert!(get(&m, "proxy-connection").is_empty());
        assert!(get(&m, "upgrade").is_empty());
        assert_eq!(get(&m, "te"), vec!["trailers"]);
        assert_eq!(get(&m, "authorization"), vec!["Bearer t"], "Connection cannot strip Authorization");
        assert_eq!(get(&m, "x-other"), vec!["2"]);

        let mut m = h(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("te", "gzip")]);
        assert!(is_upgrade(&m));
        strip_hop_by_hop(&mut m, true);
        assert_eq!(get(&m, "upgrade"), vec!["websocket"]);
        assert_eq!(get(&m, "connection"), vec!["upgrade"]);
        assert!(get(&m, "te").is_empty());
    }

    #[test]
    fn identity_headers_from_clients_are_stripped_and_verified_ones_set() {
        let issuer: Issuer = serde_yaml_ng::from_str(
            "issuer: https://a\naudiences: [x]\noutputClaimToHeaders:\n\
             - {header: x-user, claim: sub}\n\
             - {header: x-roles, claim: realm_access.roles}\n\
             - {header: x-dotted, claim: '[a.b][c]'}\n\
             - {header: x-level, claim: level}\n\
             - {header: x-admin, claim: admin}\n\
             - {header: x-obj, claim: realm_access}\n\
             - {header: x-missing, claim: nope}\n",
        )
        .expect("issuer");
        let mut m = h(&[("x-user", "forged"), ("x-missing", "forged"), ("x-ward-anything", "forged"), ("x-keep", "1")]);
        strip_identity_headers(&mut m, std::slice::from_ref(&issuer));
        assert!(
            get(&m, "x-user").is_empty() && get(&m, "x-missing").is_empty() && get(&m, "x-ward-anything").is_empty()
        );
        assert_eq!(get(&m, "x-keep"), vec!["1"]);

        let claims = serde_json::json!({
            "sub": "alice",
            "realm_access": {"roles": ["admin", "dev", 3, {"x": 1}]},
            "a.b": {"c": "dotted"},
            "level": 7,
            "admin": true,
        });
        let identity = Identity {
            issuer: Arc::from("https://a"),
            subject: Some("alice".into()),
            audiences: vec!["x".into()],
            presenter: None,
            claims: claims.as_object().expect("object").clone(),
            expires_at: 0,
        };
        set_claim_headers(&mut m, &issuer.output_claim_to_headers, &identity);
        assert_eq!(get(&m, "x-user"), vec!["alice"]);
        assert_eq!(get(&m, "x-roles"), vec!["admin,dev,3"]);
        assert_eq!(get(&m, "x-dotted"), vec!["dotted"]);
        assert_eq!(get(&m, "x-level"), vec!["7"]);
        assert_eq!(get(&m, "x-admin"), vec!["true"]);
        assert!(get(&m, "x-obj").is_empty(), "objects give no header");
        assert!(get(&m, "x-missing").is_empty(), "a forged header is not restored");
    }

    #[test]
    fn forwarded_headers() {
        let mut m =
            h(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8"), ("x-forwarded-proto", "https")]);
        set_forwarded(&mut m, "10.0.0.1".parse().expect("ip"));
        assert_eq!(get(&m, "x-forwarded-for"), vec!["1.2.3.4, 5.6.7.8, 10.0.0.1"]);
        assert_eq!(get(&m, "x-forwarded-proto"), vec!["http"]);
        let mut m = HeaderMap::new();
        set_forwarded(&mut m, "::ffff:10.0.0.2".parse().expect("ip"));
        assert_eq!(get(&m, "x-forwarded-for"), vec!["10.0.0.2"]);
    }

    #[test]
    fn token_removal_everywhere() {
        let mut m = h(&[("authorization", "Bearer t"), ("x-token", "t"), ("cookie", "s=t; o=1")]);
        let q = remove_token(
            &mut m,
            Some("a=1&tok=t"),
            &[
                Location::Authorization,
                Location::Header("x-token".into()),
                Location::Param("tok".into()),
                Location::Cookie("s".into()),
            ],
        );
        assert_eq!(q.as_deref(), Some("a=1"));
        assert!(get(&m, "authorization").is_empty() && get(&m, "x-token").is_empty());
        assert_eq!(get(&m, "cookie"), vec!["o=1"]);
    }
}
