//! When to refresh a key set: the IdP's `Cache-Control: max-age` (RFC 9111 §5.2.2.1), less
//! its `Age`, clamped to the issuer's `[minRefreshSeconds, maxRefreshSeconds]`.

use std::time::Duration;

use http::{HeaderMap, header};

/// The freshness lifetime the response grants, if it says anything about it. `no-store` and
/// `no-cache` grant none (zero, so the minimum refresh interval applies); a response without
/// `max-age` says nothing (`None`: the maximum applies).
pub fn freshness(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    let mut no_cache = false;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                no_cache = true;
            } else if name.eq_ignore_ascii_case("max-age") {
                // A malformed max-age makes the response stale (RFC 9111 §4.2.1); several
                // disagreeing ones too, so take the smallest.
                let secs = arg.and_then(delta_seconds).unwrap_or(0);
                max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
            }
        }
    }
    if no_cache {
        return Some(Duration::ZERO);
    }
    let age = headers.get(header::AGE).and_then(|v| v.to_str().ok()).and_then(|v| delta_seconds(v.trim())).unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; too large saturates.
fn delta_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// The interval until the next scheduled refresh.
pub fn refresh_interval(freshness: Option<Duration>, min: Duration, max: Duration) -> Duration {
    // A config with min > max is refused at load time; still, never panic in clamp.
    let max = max.max(min);
    freshness.map_or(max, |f| f.clamp(min, max))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(cache_control: &[&str], age: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in cache_control {
            h.append(header::CACHE_CONTROL, HeaderValue::from_str(v).expect("header value"));
        }
        if let Some(a) = age {
            h.insert(header::AGE, HeaderValue::from_str(a).expect("age value"));
        }
        h
    }

    #[test]
    fn parses_max_age() {
        let cases: &[(&[&str], Option<&str>, Option<u64>)] = &[
            (&[], None, None),
            (&["public, max-age=600"], None, Some(600)),
            (&["Max-Age=60"], None, Some(60)),
            (&["max-age=\"120\""], None, Some(120)),
            (&["public", "max-age=30"], None, Some(30)),
            (&["max-age=600, must-revalidate"], Some("100"), Some(500)),
            (&["max-age=60"], Some("100"), Some(0)),
            (&["max-age=60"], Some("junk"), Some(60)),
            (&["max-age=abc"], None, Some(0)),
            (&["max-age="], None, Some(0)),
            (&["max-age=-5"], None, Some(0)),
            (&["max-age=100, max-age=50"], None, Some(50)),
            (&["max-age=99999999999999999999999"], None, Some(u64::MAX)),
            (&["no-store"], None, Some(0)),
            (&["max-age=600, no-cache"], None, Some(0)),
            (&["private, s-maxage=600"], None, None),
        ];
        for (cc, age, want) in cases {
            let got = freshness(&headers(cc, *age)).map(|d| d.as_secs());
            assert_eq!(got, *want, "Cache-Control {cc:?}, Age {age:?}");
        }
    }

    #[test]
    fn clamps_to_configured_bounds() {
        let (min, max) = (Duration::from_secs(300), Duration::from_secs(86_400));
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(refresh_interval(None, min, max), max, "no max-age: the maximum");
        assert_eq!(refresh_interval(secs(0), min, max), min);
        assert_eq!(refresh_interval(secs(10), min, max), min);
        assert_eq!(refresh_interval(secs(3600), min, max), Duration::from_secs(3600));
        assert_eq!(refresh_interval(secs(u64::MAX), min, max), max);
        assert_eq!(refresh_interval(secs(5), max, min), max, "inverted bounds do not panic");
    }
}
