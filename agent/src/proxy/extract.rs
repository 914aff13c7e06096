//! Finding the bearer token in a request: `Authorization: Bearer` (RFC 6750 §2.1) plus every
//! issuer's extra locations (`fromHeaders`, `fromParams`, `fromCookies`). Anything ambiguous
//! is refused rather than guessed: two `Authorization` headers, two copies of a parameter or
//! cookie, or two locations carrying different tokens.

use std::borrow::Cow;

use http::{HeaderMap, header};

use crate::{config::Issuer, enforce::TokenInput, reason::Reason};

/// Where a token was found; used to remove it before forwarding when an issuer says
/// `forwardOriginalToken: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Authorization,
    Header(String),
    Param(String),
    Cookie(String),
}

/// The outcome of looking for a token.
#[derive(Debug)]
pub struct Extracted<'a> {
    result: Result<Option<Cow<'a, str>>, Reason>,
    /// Every place the (single, agreed) token was found.
    pub locations: Vec<Location>,
}

impl Extracted<'_> {
    pub fn input(&self) -> TokenInput<'_> {
        match &self.result {
            Ok(Some(t)) => TokenInput::Present(t),
            Ok(None) => TokenInput::Missing,
            Err(r) => TokenInput::Invalid(*r),
        }
    }
}

/// Search `headers` and `query` for a token, in the default location and every location any
/// of `issuers` names.
pub fn extract<'a>(headers: &'a HeaderMap, query: Option<&'a str>, issuers: &[Issuer]) -> Extracted<'a> {
    let mut found = Found::default();

    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = auth.next() {
        if auth.next().is_some() {
            return Extracted { result: Err(Reason::AmbiguousToken), locations: Vec::new() };
        }
        found.add(parse_bearer(value.as_bytes()).map(Cow::Borrowed), Location::Authorization);
    }

    for issuer in issuers {
        for from in &issuer.from_headers {
            let name = from.name.to_ascii_lowercase();
            if name == "authorization" && from.prefix.eq_ignore_ascii_case("bearer ") {
                continue; // the default location, already read strictly above
            }
            let mut values = headers.get_all(name.as_str()).iter();
            let location = Location::Header(name);
            if found.has(&location) {
                continue;
            }
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                found.add(Err(Reason::AmbiguousToken), location);
                continue;
            }
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix(from.prefix.as_str()))
                .filter(|t| is_b64token(t.as_bytes()))
                .map(Cow::Borrowed)
                .ok_or(Reason::MalformedAuthorization);
            found.add(token, location);
        }
        for param in &issuer.from_params {
            let location = Location::Param(param.clone());
            if found.has(&location) {
                continue;
            }
            let mut values = query_values(query.unwrap_or(""), param);
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                found.add(Err(Reason::AmbiguousToken), location);
                continue;
            }
            let token = value.filter(|t| is_b64token(t.as_bytes())).ok_or(Reason::MalformedAuthorization);
            found.add(token, location);
        }
        for cookie in &issuer.from_cookies {
            let location = Location::Cookie(cookie.clone());
            if found.has(&location) {
                continue;
            }
            let mut values = cookie_values(headers, cookie);
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                found.add(Err(Reason::AmbiguousToken), location);
                continue;
            }
            let token = Some(value)
                .filter(|t| is_b64token(t.as_bytes()))
                .map(Cow::Borrowed)
                .ok_or(Reason::MalformedAuthorization);
            found.add(token, location);
        }
    }
    found.finish()
}

#[derive(Default)]
struct Found<'a> {
    token: Option<Cow<'a, str>>,
    error: Option<Reason>,
    locations: Vec<Location>,
}

impl<'a> Found<'a> {
    fn has(&self, location: &Location) -> bool {
        self.locations.contains(location)
    }

    fn add(&mut self, token: Result<Cow<'a, str>, Reason>, location: Location) {
        match token {
            // Ambiguity wins over malformation: it names the real problem.
            Err(Reason::AmbiguousToken) => self.error = Some(Reason::AmbiguousToken),
            Err(r) => {
                self.error.get_or_insert(r);
            }
            Ok(t) => match &self.token {
                Some(existing) if *existing != t => self.error = Some(Reason::AmbiguousToken),
                Some(_) => {}
                None => self.token = Some(t),
            },
        }
        self.locations.push(location);
    }

    fn finish(self) -> Extracted<'a> {
        match self.error {
            Some(r) => Extracted { result: Err(r), locations: Vec::new() },
            None => Extracted { result: Ok(self.token), locations: self.locations },
        }
    }
}

/// `Bearer 1*SP b64token` with a case-insensitive scheme and nothing after the token.
fn parse_bearer(value: &[u8]) -> Result<&str, Reason> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(Reason::MalformedAuthorization);
    }
    let rest = &value[SCHEME.len()..];
    let token = rest.trim_ascii_start();
    if token.len() == rest.len()
        || !rest.starts_with(b" ")
        || rest[..rest.len() - token.len()].iter().any(|b| *b != b' ')
    {
        return Err(Reason::MalformedAuthorization);
    }
    if !is_b64token(token) {
        return Err(Reason::MalformedAuthorization);
    }
    // b64token is ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| Reason::MalformedAuthorization)
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body_len = t.len() - t.iter().rev().take_while(|b| **b == b'=').count();
    body_len > 0
        && t[..body_len]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Values of query parameter `name` (percent-decoded; `None` for a value that does not decode).
fn query_values<'q>(query: &'q str, name: &str) -> impl Iterator<Item = Option<Cow<'q, str>>> {
    query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name)).then(|| percent_decode(v))
    })
}

/// Values of cookie `name` across all `Cookie` headers (RFC 6265 §5.4: `name=value; ...`).
fn cookie_values<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).filter_map(
        move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        },
    )
}

/// Decode `%XX` escapes; `None` if an escape is broken or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Remove query parameter `name` (all occurrences); `None` when nothing is left.
pub(crate) fn remove_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode(k).as_deref() != Some(name)
        })
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

/// Remove cookie `name` from every `Cookie` header, dropping headers left empty.
pub(crate) fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for v in values {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            headers.append(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(yaml: &str) -> Issuer {
        serde_yaml_ng::from_str(yaml).expect("test issuer parses")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Missing,
        Token(&'static str),
        Invalid(Reason),
    }

    fn run(h: &HeaderMap, query: Option<&str>, issuers: &[Issuer]) -> Want {
        match extract(h, query, issuers).input() {
            TokenInput::Missing => Want::Missing,
            TokenInput::Present(t) => Want::Token(Box::leak(t.to_owned().into_boxed_str())),
            TokenInput::Invalid(r) => Want::Invalid(r),
        }
    }

    #[test]
    fn authorization_header_table() {
        use Reason::*;
        let cases: &[(&[(&str, &str)], Want)] = &[
            (&[], Want::Missing),
            (&[("authorization", "Bearer abc.def.ghi")], Want::Token("abc.def.ghi")),
            (&[("authorization", "bearer abc")], Want::Token("abc")),
            (&[("authorization", "BEARER abc")], Want::Token("abc")),
            (&[("authorization", "Bearer    abc")], Want::Token("abc")),
            (&[("authorization", "Bearer a-b_c~d+e/f==")], Want::Token("a-b_c~d+e/f==")),
            (&[("authorization", "Bearerabc")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer ")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer\tabc")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer abc def")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer abc,")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer =abc")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer a=b")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Basic dXNlcjpwYXNz")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Token abc")], Want::Invalid(MalformedAuthorization)),
            (&[("authorization", "Bearer abc"), ("authorization", "Bearer abc")], Want::Invalid(AmbiguousToken)),
            (&[("authorization", "Bearer abc"), ("authorization", "Bearer xyz")], Want::Invalid(AmbiguousToken)),
        ];
        for (h, want) in cases {
            assert_eq!(run(&headers(h), None, &[]), *want, "headers {h:?}");
        }
    }

    #[test]
    fn issuer_locations_table() {
        use Reason::*;
        let a = issuer(
            "issuer: https://a\naudiences: [x]\nfromHeaders: [{name: X-Token}, {name: X-Auth, prefix: 'Token '}]\nfromParams: [access_token]\n",
        );
        let b = issuer("issuer: https://b\naudiences: [x]\nfromCookies: [session]\n");
        let issuers = [a, b];
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, Want);
        let cases: &[Case<'_>] = &[
            (&[("x-token", "t1")], None, Want::Token("t1")),
            (&[("x-auth", "Token t1")], None, Want::Token("t1")),
            (&[("x-auth", "t1")], None, Want::Invalid(MalformedAuthorization)),
            (&[("x-auth", "Token t1 x")], None, Want::Invalid(MalformedAuthorization)),
            (&[], Some("a=1&access_token=t1&b=2"), Want::Token("t1")),
            (&[], Some("access_token=t%31"), Want::Token("t1")),
            (&[], Some("access_token=t1&access_token=t1"), Want::Invalid(AmbiguousToken)),
            (&[], Some("access_token="), Want::Invalid(MalformedAuthorization)),
            (&[], Some("other=t1"), Want::Missing),
            (&[("cookie", "a=1; session=t1; b=2")], None, Want::Token("t1")),
            (&[("cookie", "a=1"), ("cookie", "session=t1")], None, Want::Token("t1")),
            (&[("cookie", "session=t1; session=t2")], None, Want::Invalid(AmbiguousToken)),
            (&[("cookie", "notsession=t1")], None, Want::Missing),
            // The same token in several places is fine; different tokens are not.
            (&[("authorization", "Bearer t1"), ("x-token", "t1")], Some("access_token=t1"), Want::Token("t1")),
            (&[("authorization", "Bearer t1"), ("x-token", "t2")], None, Want::Invalid(AmbiguousToken)),
            (&[("authorization", "Bearer t1")], Some("access_token=t2"), Want::Invalid(AmbiguousToken)),
            (&[("authorization", "Bearer t1"), ("cookie", "session=t2")], None, Want::Invalid(AmbiguousToken)),
            (&[("x-token", "t1"), ("x-token", "t1")], None, Want::Invalid(AmbiguousToken)),
            (&[("authorization", "Basic x"), ("x-token", "t1")], None, Want::Invalid(MalformedAuthorization)),
        ];
        for (h, q, want) in cases {
            assert_eq!(run(&headers(h), *q, &issuers), *want, "headers {h:?} query {q:?}");
        }
    }

    #[test]
    fn locations_name_every_place_the_token_was() {
        let a = issuer("issuer: https://a\naudiences: [x]\nfromParams: [t]\nfromCookies: [c]\n");
        let h = headers(&[("authorization", "Bearer t1"), ("cookie", "c=t1")]);
        let got = extract(&h, Some("t=t1"), std::slice::from_ref(&a));
        assert_eq!(
            got.locations,
            vec![Location::Authorization, Location::Param("t".into()), Location::Cookie("c".into())]
        );
    }

    #[test]
    fn removing_params_and_cookies() {
        assert_eq!(remove_query_param("a=1&t=x&b=2", "t").as_deref(), Some("a=1&b=2"));
        assert_eq!(remove_query_param("t=x", "t"), None);
        assert_eq!(remove_query_param("t=x&t=y&tt=1", "t").as_deref(), Some("tt=1"));
        let mut h = headers(&[("cookie", "a=1; c=tok; b=2"), ("cookie", "c=tok")]);
        remove_cookie(&mut h, "c");
        let left: Vec<_> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().expect("ascii")).collect();
        assert_eq!(left, vec!["a=1; b=2"]);
    }
}
