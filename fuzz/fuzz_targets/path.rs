//! Request paths and token extraction: the proxy's path normalizer and `proxy::extract`.
//!
//! Properties checked besides "no panic":
//! - a normalized path starts with '/', has no empty, "." or ".." segment, no encoded
//!   unreserved character and no lower-case escape, and normalizing it again changes nothing
//!   (what policy matched is exactly what goes upstream);
//! - an extracted token is a non-empty RFC 6750 b64token; extraction is all-or-nothing
//!   (an error carries no locations).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ward::{
    enforce::TokenInput,
    proxy::{extract, path},
    reason::{Outcome, Reason},
};
use ward_fuzz::issuer;

#[derive(Debug, Arbitrary)]
enum Input {
    Path(String),
    Request { headers: Vec<(Name, Vec<u8>)>, query: Option<String> },
}

#[derive(Debug, Arbitrary)]
enum Name {
    Authorization,
    XJwt,
    XAuth,
    Cookie,
    Other(String),
}

fn check_normalized(raw: &str, out: &str) {
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}: not absolute");
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != "." && *seg != "..", "{raw:?} -> {out:?}: dot segment left");
        assert!(!seg.is_empty() || i == segments.len() - 1, "{raw:?} -> {out:?}: empty segment (//) left");
    }
    let bytes = out.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = out.get(i + 1..i + 3).unwrap_or_else(|| panic!("{raw:?} -> {out:?}: truncated escape"));
            assert!(
                hex.bytes().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                "{raw:?} -> {out:?}: escape not upper-case"
            );
            let v = u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{raw:?} -> {out:?}: bad escape {hex}: {e}"));
            assert!(
                !(v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')),
                "{raw:?} -> {out:?}: unreserved left encoded"
            );
            assert!(!matches!(v, 0 | b'/' | b'\\'), "{raw:?} -> {out:?}: forbidden escape kept");
        }
    }
    assert!(!out.contains('\\') && !out.contains('\0'), "{raw:?} -> {out:?}: separator or NUL");
    let again =
        path::normalize(out).unwrap_or_else(|e| panic!("{raw:?} -> {out:?}, which is refused on a second pass: {e}"));
    assert_eq!(again, out, "normalization of {raw:?} is not idempotent");
}

fn b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    match input {
        Input::Path(raw) => {
            if let Ok(out) = path::normalize(&raw) {
                check_normalized(&raw, &out);
            }
        }
        Input::Request { headers, query } => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let name = match name {
                    Name::Authorization => HeaderName::from_static("authorization"),
                    Name::XJwt => HeaderName::from_static("x-jwt"),
                    Name::XAuth => HeaderName::from_static("x-auth"),
                    Name::Cookie => HeaderName::from_static("cookie"),
                    Name::Other(s) => match HeaderName::from_bytes(s.as_bytes()) {
                        Ok(n) => n,
                        Err(_) => continue,
                    },
                };
                let Ok(value) = HeaderValue::from_bytes(&value) else { continue };
                map.append(name, value);
            }
            let issuers = [(*issuer(false)).clone(), (*issuer(true)).clone()];
            let extracted = extract::extract(&map, query.as_deref(), &issuers);
            match extracted.input() {
                TokenInput::Present(t) => {
                    assert!(b64token(t), "extracted token {t:?} is not a b64token");
                    assert!(!extracted.locations.is_empty(), "a token without a location");
                }
                TokenInput::Missing => {
                    assert!(extracted.locations.is_empty(), "no token but locations {:?}", extracted.locations)
                }
                TokenInput::Invalid(r) => {
                    assert_eq!(r.outcome(), Outcome::Unauthenticated, "extraction refusal {r} must be a 401");
                    assert!(matches!(r, Reason::AmbiguousToken | Reason::MalformedAuthorization), "unexpected {r}");
                    assert!(extracted.locations.is_empty(), "an error must not leave locations to strip");
                }
            }
        }
    }
});
