//! OpenID Connect Discovery 1.0: find an issuer's `jwks_uri`.

use serde_json::Value;

use super::{JwksError, fetch::parse_url};

/// `{issuer}/.well-known/openid-configuration`, with the issuer's terminating `/` removed
/// first (Discovery §4).
pub fn default_uri(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.strip_suffix('/').unwrap_or(issuer))
}

/// Validate a discovery document and return its `jwks_uri`.
///
/// The document's `issuer` must equal the configured issuer byte for byte (§4.3): otherwise
/// an IdP could vouch for keys of an issuer it is not, or a misspelt issuer (trailing
/// slash) would accept tokens no client will ever present.
pub fn jwks_uri(document: &[u8], url: &str, configured_issuer: &str) -> Result<String, JwksError> {
    let bad = |why: &str| JwksError::BadDiscovery { url: url.to_owned(), why: why.to_owned() };
    let doc: Value = serde_json::from_slice(document).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let doc = doc.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let issuer = match doc.get("issuer") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("`issuer` is not a string")),
        None => return Err(bad("no `issuer`")),
    };
    if issuer != configured_issuer {
        return Err(JwksError::IssuerMismatch {
            url: url.to_owned(),
            found: issuer.clone(),
            configured: configured_issuer.to_owned(),
        });
    }
    let jwks = match doc.get("jwks_uri") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("`jwks_uri` is not a string")),
        None => return Err(bad("no `jwks_uri`")),
    };
    let parsed = parse_url(jwks, "jwks_uri")?;
    // An https issuer publishing its keys over plain http would let anyone on the path
    // substitute keys: refuse the downgrade.
    if configured_issuer.starts_with("https://") && parsed.scheme_str() != Some("https") {
        return Err(bad("`jwks_uri` is not https although the issuer is"));
    }
    Ok(jwks.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const URL: &str = "https://idp.example/.well-known/openid-configuration";

    #[test]
    fn default_uri_drops_one_trailing_slash() {
        assert_eq!(default_uri("https://idp.example"), URL);
        assert_eq!(default_uri("https://idp.example/"), URL);
        assert_eq!(
            default_uri("https://idp.example/realms/x"),
            "https://idp.example/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        let doc = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/keys"}).to_string();
        assert_eq!(jwks_uri(doc.as_bytes(), URL, "https://idp.example").expect("match"), "https://idp.example/keys");
        for configured in
            ["https://idp.example/", "https://IDP.example", "http://idp.example", "https://idp.example:443"]
        {
            let err = jwks_uri(doc.as_bytes(), URL, configured).expect_err(configured);
            assert!(matches!(err, JwksError::IssuerMismatch { .. }), "{configured}: {err}");
            assert!(err.to_string().contains("byte-identical"), "message says what to check: {err}");
        }
    }

    #[test]
    fn refuses_bad_documents() {
        let iss = "https://idp.example";
        let cases = [
            "<html>login</html>".to_owned(),
            "[]".to_owned(),
            json!({"jwks_uri": "https://idp.example/keys"}).to_string(),
            json!({"issuer": 1, "jwks_uri": "https://idp.example/keys"}).to_string(),
            json!({"issuer": iss}).to_string(),
            json!({"issuer": iss, "jwks_uri": ["https://idp.example/keys"]}).to_string(),
            json!({"issuer": iss, "jwks_uri": "http://idp.example/keys"}).to_string(),
            json!({"issuer": iss, "jwks_uri": "file:///etc/keys"}).to_string(),
        ];
        for doc in &cases {
            let err = jwks_uri(doc.as_bytes(), URL, iss).expect_err(doc);
            assert!(matches!(err, JwksError::BadDiscovery { .. } | JwksError::BadUrl { .. }), "{doc}: {err}");
        }
        let plain = json!({"issuer": "http://127.0.0.1:9000", "jwks_uri": "http://127.0.0.1:9000/jwks"}).to_string();
        assert!(jwks_uri(plain.as_bytes(), URL, "http://127.0.0.1:9000").is_ok(), "http issuers may use http");
    }
}
