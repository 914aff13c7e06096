//! Reading and checking a config file. Every error names file:line:column and the field
//! path, so an operator can go straight to the mistake.

use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
};

use super::{
    Config,
    locate::{FieldPath, locate},
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}; check that it exists and is readable")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

/// A config file that was read but refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub origin: String,
    pub line: usize,
    pub column: usize,
    /// `issuers[1].audiences`; empty for syntax errors outside any field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse_str(&text, &path.display().to_string())
}

pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |line, column, field: String, message: String| {
        ConfigError::Invalid(Box::new(Invalid { origin: origin.to_owned(), line, column, field, message }))
    };
    if text.trim().is_empty() {
        return Err(invalid(
            1,
            1,
            String::new(),
            "the config file is empty (a ConfigMap key with no data?)".to_owned(),
        ));
    }
    let config: Config = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let (field, message) = split_serde_message(&e.to_string());
        invalid(line, column, field, message)
    })?;
    if let Some((path, message)) = check(&config).into_iter().next() {
        let (line, column) = locate(text, &path).unwrap_or((1, 1));
        return Err(invalid(line, column, path.to_string(), message));
    }
    Ok(config)
}

/// serde_yaml_ng renders `issuers[1]: unknown field ... at line 6 column 5`.
fn split_serde_message(msg: &str) -> (String, String) {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    match msg.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => (field.to_owned(), rest.to_owned()),
        _ => (String::new(), msg.to_owned()),
    }
}

/// Checks across fields, after the types parsed. Returns (path, message) for each problem.
pub fn check(c: &Config) -> Vec<(FieldPath, String)> {
    let mut errs = Vec::new();
    let root = FieldPath::default();
    let mut issuers = HashSet::new();
    for (i, iss) in c.issuers.iter().enumerate() {
        let at = root.clone().key("issuers").index(i);
        if iss.issuer.is_empty() {
            errs.push((at.clone().key("issuer"), "must not be empty".to_owned()));
        }
        if !issuers.insert(iss.issuer.as_str()) {
            errs.push((at.clone().key("issuer"), format!("issuer {:?} is configured twice", iss.issuer)));
        }
        if iss.audiences.is_empty() || iss.audiences.iter().any(String::is_empty) {
            errs.push((
                at.clone().key("audiences"),
                "list at least one non-empty audience: tokens without a matching aud are refused".to_owned(),
            ));
        }
        if iss.algorithms.is_empty() {
            errs.push((
                at.clone().key("algorithms"),
                "list at least one algorithm (or omit the field for the default set)".to_owned(),
            ));
        }
        for (name, uri) in [("jwksUri", &iss.jwks_uri), ("discoveryUri", &iss.discovery_uri)] {
            if let Some(uri) = uri
                && let Err(e) = check_url(uri)
            {
                errs.push((at.clone().key(name), e));
            }
        }
        if iss.jwks_uri.is_none()
            && iss.discovery_uri.is_none()
            && let Err(e) = check_url(&iss.issuer)
        {
            errs.push((
                at.clone().key("issuer"),
                format!("{e}; without jwksUri or discoveryUri the issuer must be a URL to discover keys from"),
            ));
        }
        if iss.max_token_bytes == 0 {
            errs.push((at.clone().key("maxTokenBytes"), "must be greater than 0".to_owned()));
        }
        let j = &iss.jwks;
        if j.min_refresh_seconds == 0 || j.min_refresh_seconds > j.max_refresh_seconds {
            errs.push((
                at.clone().key("jwks").key("minRefreshSeconds"),
                format!("must be between 1 and maxRefreshSeconds ({})", j.max_refresh_seconds),
            ));
        }
        if j.fetch_timeout_millis == 0 {
            errs.push((at.clone().key("jwks").key("fetchTimeoutMillis"), "must be greater than 0".to_owned()));
        }
        if j.max_response_bytes < 1024 {
            errs.push((at.clone().key("jwks").key("maxResponseBytes"), "must be at least 1024".to_owned()));
        }
        for (k, h) in iss.from_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                errs.push((
                    at.clone().key("fromHeaders").index(k).key("name"),
                    format!("{:?} is not a valid HTTP header name", h.name),
                ));
            }
        }
        for (k, h) in iss.output_claim_to_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.header.as_bytes()).is_err() {
                errs.push((
                    at.clone().key("outputClaimToHeaders").index(k).key("header"),
                    format!("{:?} is not a valid HTTP header name", h.header),
                ));
            }
            if h.claim.is_empty() {
                errs.push((
                    at.clone().key("outputClaimToHeaders").index(k).key("claim"),
                    "must not be empty".to_owned(),
                ));
            }
        }
    }
    let mut names = HashSet::new();
    for (i, p) in c.policies.iter().enumerate() {
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            errs.push((
                root.clone().key("policies").index(i).key("name"),
                format!("policy names must be unique and non-empty ({:?})", p.name),
            ));
        }
    }
    if !c.policies.is_empty() && c.issuers.is_empty() {
        errs.push((
            root.clone().key("issuers"),
            "policies need at least one issuer to verify tokens against".to_owned(),
        ));
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, l) in c.listeners.iter().enumerate() {
        let at = root.clone().key("listeners").index(i);
        if !names.insert(l.name.as_str()) {
            errs.push((at.clone().key("name"), format!("listener name {:?} is used twice", l.name)));
        }
        if !addrs.insert(l.listen) {
            errs.push((at.clone().key("listen"), format!("{} is used by another listener", l.listen)));
        }
        if l.listen == l.upstream {
            errs.push((at.clone().key("upstream"), "the upstream is the listener itself".to_owned()));
        }
    }
    if let (Some(admin), Some(cap)) = (&c.admin, &c.capture)
        && admin.listen == cap.listen
    {
        errs.push((root.clone().key("capture").key("listen"), "same address as admin.listen".to_owned()));
    }
    if let Some(admin) = &c.admin
        && addrs.contains(&admin.listen)
    {
        errs.push((root.clone().key("admin").key("listen"), "same address as a listener".to_owned()));
    }
    let rate = c.audit.allow_sample_rate;
    if !(0.0..=1.0).contains(&rate) {
        errs.push((root.clone().key("audit").key("allowSampleRate"), "must be between 0 and 1".to_owned()));
    }
    let p = &c.proxy;
    for (name, zero) in [
        ("maxHeaderBytes", p.max_header_bytes == 0),
        ("headerReadTimeoutMillis", p.header_read_timeout_millis == 0),
        ("maxConnections", p.max_connections == 0),
        ("upstreamConnectTimeoutMillis", p.upstream_connect_timeout_millis == 0),
        ("upstreamResponseTimeoutMillis", p.upstream_response_timeout_millis == 0),
    ] {
        if zero {
            errs.push((root.clone().key("proxy").key(name), "must be greater than 0".to_owned()));
        }
    }
    if c.cache.max_entries == 0 || c.cache.max_bytes == 0 {
        errs.push((root.clone().key("cache"), "maxEntries and maxBytes must be greater than 0".to_owned()));
    }
    errs
}

fn check_url(s: &str) -> Result<(), String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(()),
        _ => Err(format!("{s:?} must be an http:// or https:// URL with a host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
issuers:
  - issuer: https://idp.test          # byte-exact vs token iss and discovery `issuer`
    audiences: [agent-api]
    jwksUri: http://127.0.0.1:9000/jwks
    discoveryUri: http://127.0.0.1:9000/.well-known/openid-configuration
    algorithms: [RS256, ES256]
    clockSkewSeconds: 60
policies:
  - name: api
    action: ALLOW
    rules:
      - to:   [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
        when: [{key: "request.auth.claims[role]", values: ["reader"]}]
listeners:
  - name: demo
    listen: 127.0.0.1:15080
    upstream: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:15020
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = parse_str(GOOD, "ward.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.issuers[0].audiences, vec!["agent-api"]);
        assert_eq!(c.listeners[0].upstream.port(), 8080);
    }

    fn err(text: &str) -> Invalid {
        match parse_str(text, "f.yaml") {
            Err(ConfigError::Invalid(i)) => *i,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// (name, file text, (line, column), field path, message fragment)
    type Case = (&'static str, &'static str, (usize, usize), &'static str, &'static str);

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases: &[Case] = &[
            (
                "unknown field",
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    audience: y\n",
                (4, 5),
                "issuers[0]",
                "unknown field `audience`",
            ),
            (
                "bad type",
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    clockSkewSeconds: soon\n",
                (4, 23),
                "issuers[0].clockSkewSeconds",
                "invalid type",
            ),
            (
                "bad alg",
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    algorithms: [HS256]\n",
                (4, 17),
                "issuers[0].algorithms",
                "HMAC",
            ),
            ("syntax", "issuers:\n  - issuer: https://a\n    audiences: [x\n", (4, 1), "", "did not find expected"),
            (
                "empty audiences",
                "issuers:\n  - issuer: https://a\n    audiences: []\n",
                (3, 5),
                "issuers[0].audiences",
                "at least one",
            ),
            (
                "refresh bounds",
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    jwks: {minRefreshSeconds: 90000}\n",
                (4, 12),
                "issuers[0].jwks.minRefreshSeconds",
                "between",
            ),
            (
                "duplicate policy",
                "issuers: [{issuer: 'https://a', audiences: [x]}]\npolicies:\n  - {name: p, action: DENY}\n  - {name: p, action: DENY}\n",
                (4, 6),
                "policies[1].name",
                "unique",
            ),
            (
                "bad listen",
                "listeners:\n  - name: a\n    listen: localhost\n    upstream: 127.0.0.1:1\n",
                (3, 13),
                "listeners[0].listen",
                "invalid socket address",
            ),
            ("not a URL", "issuers:\n  - issuer: idp\n    audiences: [x]\n", (2, 5), "issuers[0].issuer", "http"),
        ];
        for (name, text, (line, col), field, needle) in cases {
            let e = err(text);
            assert_eq!((e.line, e.column), (*line, *col), "{name}: {e}");
            assert_eq!(e.field, *field, "{name}: {e}");
            assert!(e.message.contains(needle), "{name}: {e} should mention {needle:?}");
            assert!(e.to_string().starts_with(&format!("f.yaml:{line}:{col}: ")), "{name}: {e}");
        }
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(err("  \n").message.contains("empty"));
    }
}
