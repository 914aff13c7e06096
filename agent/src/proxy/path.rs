//! Request path normalization. Policy is matched against the normalized path and the
//! normalized path is what goes upstream, so what was authorized is exactly what the
//! upstream sees: `/public/%2e%2e/admin` is checked, and forwarded, as `/admin`.

/// Why a path was refused (each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not an absolute path starting with '/'")]
    NotOriginForm,
    #[error("the path contains an encoded '/' or '\\' (%2F, %5C) or a raw '\\', which upstreams disagree about")]
    EncodedSeparator,
    #[error("the path contains a NUL byte (%00)")]
    Nul,
    #[error("the path contains a '%' not followed by two hex digits")]
    BadPercent,
}

/// Normalize `raw` (the path of the request target, without the query):
/// 1. decode percent-encoded unreserved characters (RFC 3986 §2.3) and upper-case the hex
///    digits of every other escape (§6.2.2.1); refuse `%2F`, `%5C`, raw `\` and `%00`;
/// 2. remove dot segments (§5.2.4);
/// 3. merge repeated slashes.
///
/// Dot segments go before slashes are merged, as Envoy does with `normalize_path` plus
/// `merge_slashes` (Istio's recommended setting), so policies written for Istio mean the same.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = decode_unreserved(raw)?;
    let without_dots = remove_dot_segments(&decoded);
    Ok(merge_slashes(&without_dots))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).copied().and_then(hex_val), bytes.get(i + 2).copied().and_then(hex_val))
                else {
                    return Err(PathError::BadPercent);
                };
                let value = hi << 4 | lo;
                match value {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            0 => return Err(PathError::Nul),
            _ => {
                // Copy the run up to the next special byte in one go (keeps UTF-8 intact).
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b'%' | b'\\' | 0) {
                    i += 1;
                }
                out.push_str(&raw[start..i]);
            }
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4, on a path that starts with '/'.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    // Segments after the leading '/'. A trailing "." or ".." leaves a trailing '/'.
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &output {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' {
            if prev_slash {
                continue;
            }
            prev_slash = true;
        } else {
            prev_slash = false;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let ok: &[(&str, &str)] = &[
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a%7Eb", "/a~b"),
            ("/a%20b", "/a%20b"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/a%3f", "/a%3F"),
            ("//admin", "/admin"),
            ("/a///b//", "/a/b/"),
            ("/a//../b", "/a/b"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/é/x", "/é/x"),
            ("/a;x=1/b", "/a;x=1/b"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize(input).as_deref(), Ok(*want), "normalize({input:?})");
        }
        let bad: &[(&str, PathError)] = &[
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::EncodedSeparator),
            ("/a%00b", PathError::Nul),
            ("/a%", PathError::BadPercent),
            ("/a%4", PathError::BadPercent),
            ("/a%zz", PathError::BadPercent),
            ("*", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
            ("a/b", PathError::NotOriginForm),
        ];
        for (input, want) in bad {
            assert_eq!(normalize(input), Err(*want), "normalize({input:?})");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for input in ["/a/%2e%2e/b//c/./d/..", "/x%41%20y/", "/../..//a"] {
            let once = normalize(input).expect("valid path");
            assert_eq!(normalize(&once).as_deref(), Ok(once.as_str()), "idempotent for {input:?}");
        }
    }
}
