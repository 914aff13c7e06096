//! Compact JWS serialization (RFC 7515 §7.1), parsed with no leniency.

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurposeConfig, general_purpose::GeneralPurpose},
};

use crate::reason::Reason;

/// Unpadded base64url that refuses padding and non-zero trailing bits, so every token has
/// exactly one encoding: a token cannot be altered without changing its signed bytes.
pub const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// The three decoded parts of a compact JWS, plus the signing input.
#[derive(Debug)]
pub struct Compact<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Split and decode. Five segments (JWE) or any other count, empty segments, padding,
/// whitespace and non-alphabet bytes are all refused.
pub fn split(token: &str) -> Result<Compact<'_>, Reason> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Reason::MalformedCompact);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Reason::MalformedCompact);
    }
    let decode = |seg: &str| {
        // The engine rejects '=' and bytes outside the alphabet, but check first so the
        // reason does not depend on the crate's error variants.
        if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Reason::BadBase64);
        }
        B64.decode(seg).map_err(|_| Reason::BadBase64)
    };
    Ok(Compact {
        signing_input: &token[..h.len() + 1 + p.len()],
        header: decode(h)?,
        payload: decode(p)?,
        signature: decode(s)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<(), Reason>)] = &[
            ("eyJ.eyJ.c2ln", Err(Reason::BadBase64)), // "eyJ" decodes with non-zero trailing bits
            ("e30.e30.c2ln", Ok(())),
            ("e30.e30", Err(Reason::MalformedCompact)),
            ("e30.e30.c2ln.eA.eA", Err(Reason::MalformedCompact)), // JWE shape
            ("e30.e30.c2ln.", Err(Reason::MalformedCompact)),
            ("e30..c2ln", Err(Reason::MalformedCompact)),
            ("e30.e30.", Err(Reason::MalformedCompact)), // unsigned
            ("e30=.e30.c2ln", Err(Reason::BadBase64)),
            ("e30.e30.c2ln=", Err(Reason::BadBase64)),
            ("e30.e30 .c2ln", Err(Reason::BadBase64)),
            ("e30.e3+.c2ln", Err(Reason::BadBase64)),
            ("e30.e30.c2l", Err(Reason::BadBase64)), // "c2l": trailing bits set
            ("e30.e30.c2lu", Ok(())),
            ("e30.e30.c", Err(Reason::BadBase64)), // impossible length
        ];
        for (token, want) in cases {
            let got = split(token).map(|_| ());
            assert_eq!(&got, want, "token {token:?}");
        }
    }

    #[test]
    fn signing_input_covers_header_and_payload() {
        let c = split("e30.eyJhIjoxfQ.c2lnbg").unwrap();
        assert_eq!(c.signing_input, "e30.eyJhIjoxfQ");
        assert_eq!(c.header, b"{}");
        assert_eq!(c.payload, br#"{"a":1}"#);
        assert_eq!(c.signature, b"sign");
    }
}
