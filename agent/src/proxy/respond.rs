//! Responses ward produces itself: refusals (401/403/503), proxy errors (400/502/504), with
//! RFC 6750 challenges and, for gRPC callers, `grpc-status`/`grpc-message`. Bodies are
//! small JSON objects naming the reason; nothing from the token is ever echoed.

use http::{HeaderValue, Response, StatusCode, Version, header};

use super::body::ProxyBody;
use crate::reason::{Outcome, Reason};

/// The HTTP status ward answers with for a refused or failed request.
pub fn status_for(reason: Reason) -> StatusCode {
    match reason.outcome() {
        Outcome::Allow => StatusCode::OK,
        Outcome::Unauthenticated => StatusCode::UNAUTHORIZED,
        Outcome::Forbidden => StatusCode::FORBIDDEN,
        Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::ProxyError => match reason {
            Reason::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reason::HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        },
    }
}

/// gRPC status code for an HTTP status (gRPC's HTTP-to-gRPC mapping).
fn grpc_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 13,                     // INTERNAL
    }
}

/// Whether the caller speaks gRPC (HTTP/2 with `content-type: application/grpc*`).
pub fn is_grpc(version: Version, headers: &http::HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// `realm` as an RFC 9110 quoted-string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// The `WWW-Authenticate` challenge for a 401/403, if any.
pub fn challenge(reason: Reason, realm: &str) -> Option<String> {
    let realm = quote(realm);
    match reason.outcome() {
        Outcome::Unauthenticated if reason == Reason::MissingToken => Some(format!("Bearer realm={realm}")),
        Outcome::Unauthenticated => Some(format!(
            "Bearer realm={realm}, error=\"invalid_token\", error_description={}",
            quote(reason.description())
        )),
        Outcome::Forbidden => Some(format!(
            "Bearer realm={realm}, error=\"insufficient_scope\", error_description={}",
            quote(reason.description())
        )),
        _ => None,
    }
}

/// Build ward's own response for `reason`.
pub fn refusal(reason: Reason, realm: &str, grpc: bool) -> Response<ProxyBody> {
    let status = status_for(reason);
    let body = serde_json::json!({ "error": reason.description(), "reason": reason.as_str() }).to_string();
    let mut builder = Response::builder().status(status);
    if let Some(c) = challenge(reason, realm) {
        builder = builder.header(header::WWW_AUTHENTICATE, c);
    }
    let response = if grpc {
        // A trailers-only gRPC response: status in the headers, no body.
        builder
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", grpc_status(status).to_string())
            .header("grpc-message", grpc_message(reason.description()))
            .body(ProxyBody::local(bytes::Bytes::new()))
    } else {
        builder.header(header::CONTENT_TYPE, "application/json").body(ProxyBody::local(body))
    };
    // Every header above is built from static or escaped ASCII.
    response.unwrap_or_else(|_| {
        let mut r = Response::new(ProxyBody::local(bytes::Bytes::new()));
        *r.status_mut() = status;
        r
    })
}

/// gRPC's percent-encoding of `grpc-message` (everything outside printable ASCII and `%`).
fn grpc_message(s: &str) -> HeaderValue {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenges() {
        let cases: &[(Reason, u16, Option<&str>)] = &[
            (Reason::MissingToken, 401, Some("Bearer realm=\"ward\"")),
            (
                Reason::Expired,
                401,
                Some("Bearer realm=\"ward\", error=\"invalid_token\", error_description=\"token expired\""),
            ),
            (
                Reason::MalformedAuthorization,
                401,
                Some(
                    "Bearer realm=\"ward\", error=\"invalid_token\", error_description=\"Authorization header is not 'Bearer <token>'\"",
                ),
            ),
            (
                Reason::NoAllowMatch,
                403,
                Some(
                    "Bearer realm=\"ward\", error=\"insufficient_scope\", error_description=\"no policy allows this request\"",
                ),
            ),
            (Reason::KeysUnavailable, 503, None),
            (Reason::UpstreamUnreachable, 502, None),
            (Reason::UpstreamTimeout, 504, None),
            (Reason::HeaderTimeout, 408, None),
            (Reason::HeadersTooLarge, 431, None),
            (Reason::BadRequest, 400, None),
        ];
        for (reason, status, want) in cases {
            let r = refusal(*reason, "ward", false);
            assert_eq!(r.status().as_u16(), *status, "{reason}");
            let got = r.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().expect("ascii"));
            assert_eq!(got, *want, "{reason}");
        }
        assert_eq!(challenge(Reason::MissingToken, "a\"b\\c").as_deref(), Some("Bearer realm=\"a\\\"b\\\\c\""));
    }

    #[test]
    fn grpc_callers_get_a_grpc_status() {
        let r = refusal(Reason::BadSignature, "ward", true);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(refusal(Reason::DeniedByPolicy, "ward", true).headers()["grpc-status"], "7");
        assert_eq!(refusal(Reason::KeysUnavailable, "ward", true).headers()["grpc-status"], "14");
        assert_eq!(grpc_message("50% off"), "50%25 off");
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(is_grpc(Version::HTTP_2, &h));
        assert!(!is_grpc(Version::HTTP_11, &h));
    }
}
