//! Istio string matching: exact `abc`, prefix `abc*`, suffix `*abc`, presence `*`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: any value, but the attribute must be present.
    Presence,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Pattern::Presence);
        }
        let (prefix_star, suffix_star) = (s.starts_with('*'), s.ends_with('*'));
        // Bytes, not a str slice: index 1 may fall inside a multi-byte character.
        let inner_star = s.len() > 2 && s.as_bytes()[1..s.len() - 1].contains(&b'*');
        match (prefix_star, suffix_star) {
            _ if inner_star => {
                Err(format!("{s:?}: '*' may only stand at the start or the end of a value (Istio semantics)"))
            }
            (true, true) => Err(format!("{s:?}: use either a prefix (abc*) or a suffix (*abc) match, not both")),
            (true, false) => Ok(Pattern::Suffix(s[1..].to_owned())),
            (false, true) => Ok(Pattern::Prefix(s[..s.len() - 1].to_owned())),
            (false, false) => Ok(Pattern::Exact(s.to_owned())),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(e) => value == e,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.ends_with(s.as_str()),
            Pattern::Presence => true,
        }
    }

    /// ASCII case-insensitive match (host names).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        fn starts(v: &str, p: &str) -> bool {
            v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        }
        fn ends(v: &str, s: &str) -> bool {
            v.len() >= s.len() && v.as_bytes()[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        }
        match self {
            Pattern::Exact(e) => value.eq_ignore_ascii_case(e),
            Pattern::Prefix(p) => starts(value, p),
            Pattern::Suffix(s) => ends(value, s),
            Pattern::Presence => true,
        }
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Pattern::parse(&s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(e) => f.write_str(e),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Suffix(s) => write!(f, "*{s}"),
            Pattern::Presence => f.write_str("*"),
        }
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/api/v1", "/api/v1", true),
            ("/api/v1", "/api/v1/", false),
            ("/api/*", "/api/x/y", true),
            ("/api/*", "/api/", true),
            ("/api/*", "/apix", false),
            ("*.json", "/a/b.json", true),
            ("*.json", "/a/b.jsonx", false),
            ("*", "", true),
            ("*", "anything", true),
            ("reader", "Reader", false),
        ];
        for (pat, value, want) in cases {
            let p = Pattern::parse(pat).unwrap_or_else(|e| panic!("parse {pat}: {e}"));
            assert_eq!(p.matches(value), *want, "pattern {pat:?} on {value:?}");
        }
    }

    #[test]
    fn rejects_inner_and_double_stars() {
        for bad in ["a*b", "*a*", "**x", "/a/*/b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(Pattern::parse("**").unwrap_err().contains("either"));
    }

    /// Regression (found by fuzzing `policy`): a value starting with a multi-byte character
    /// panicked (str slice inside a character), taking the config loader down with it.
    #[test]
    fn non_ascii_values() {
        for (pat, value, want) in
            [("ñandú", "ñandú", true), ("ñ*", "ñu", true), ("*ú", "ñandú", true), ("é", "e", false)]
        {
            let p = Pattern::parse(pat).unwrap_or_else(|e| panic!("parse {pat}: {e}"));
            assert_eq!(p.matches(value), want, "{pat} on {value}");
            assert_eq!(p.to_string(), pat);
        }
        assert!(Pattern::parse("é*è").is_err(), "an inner star is refused in any script");
    }

    #[test]
    fn host_match_ignores_case() {
        let p = Pattern::parse("*.Example.com").unwrap();
        assert!(p.matches_ignore_case("api.example.COM"));
        assert!(!p.matches_ignore_case("example.org"));
    }
}
