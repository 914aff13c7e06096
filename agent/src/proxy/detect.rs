//! Protocol detection from the first bytes of a connection: an HTTP/1.x request line, the
//! HTTP/2 prior-knowledge preface, or anything else (closed: fail closed). The bytes read
//! here are replayed to the HTTP server by [`super::io::ConnIo`].

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token accepted before the first space (longer ones are not HTTP we serve).
const MAX_METHOD: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Is(Protocol),
    NotHttp,
    NeedMore,
}

/// Classify a prefix of the stream.
pub fn classify(buf: &[u8]) -> Sniff {
    if buf.is_empty() {
        return Sniff::NeedMore;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() { Sniff::Is(Protocol::Http2) } else { Sniff::NeedMore };
    }
    // An HTTP/1 request line starts with a method token (RFC 9110 tchar) and a space.
    for (i, &b) in buf.iter().enumerate() {
        if b == b' ' {
            return if i == 0 { Sniff::NotHttp } else { Sniff::Is(Protocol::Http1) };
        }
        if i >= MAX_METHOD || !is_tchar(b) {
            return Sniff::NotHttp;
        }
    }
    Sniff::NeedMore
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Read until the protocol is known. Returns the protocol (or `None` for not HTTP / EOF)
/// and the bytes consumed.
pub async fn sniff<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(Option<Protocol>, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok((None, buf));
        }
        match classify(&buf) {
            Sniff::Is(p) => return Ok((Some(p), buf)),
            Sniff::NotHttp => return Ok((None, buf)),
            Sniff::NeedMore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases: &[(&[u8], Sniff)] = &[
            (b"GET / HTTP/1.1\r\n", Sniff::Is(Protocol::Http1)),
            (b"POST ", Sniff::Is(Protocol::Http1)),
            (b"GE", Sniff::NeedMore),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Sniff::Is(Protocol::Http2)),
            (b"PRI * HTTP/2.0\r\n", Sniff::NeedMore),
            (b"PRI * HTTP/1.1\r\n", Sniff::Is(Protocol::Http1)),
            (b"\x16\x03\x01\x02\x00", Sniff::NotHttp),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Sniff::NotHttp),
            (b" GET /", Sniff::NotHttp),
            (b"\r\nGET /", Sniff::NotHttp),
            (b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA", Sniff::NotHttp),
            (b"\0\0\0\0", Sniff::NotHttp),
        ];
        for (input, want) in cases {
            assert_eq!(classify(input), *want, "classify({:?})", String::from_utf8_lossy(input));
        }
    }

    #[tokio::test]
    async fn sniff_reads_across_partial_writes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in [&b"PRI * HTTP/2"[..], b".0\r\n\r\nSM\r\n\r\nrest"] {
                client.write_all(chunk).await.expect("write");
                tokio::task::yield_now().await;
            }
            client
        });
        let (protocol, buf) = sniff(&mut server).await.expect("sniff");
        assert_eq!(protocol, Some(Protocol::Http2));
        assert!(buf.starts_with(H2_PREFACE));
        drop(writer.await.expect("writer"));
    }
}
