//! HTTP(S) GET of a small JSON document from an IdP, with a deadline and a size cap.
//!
//! Each issuer gets its own client, because each may trust an extra CA (`caFile`). TLS is
//! rustls with the aws-lc-rs provider; trusted roots are the system's plus that file.

use std::{
    fmt::Write as _,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::{JwksError, cache_control};

/// A fetched document and how long the IdP says it stays fresh.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub freshness: Option<Duration>,
}

pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("timeout", &self.timeout).field("max_bytes", &self.max_bytes).finish()
    }
}

/// The system trust store, read once per process (it is the same for every issuer).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "could not read part of the system CA store");
        }
        if loaded.certs.is_empty() {
            tracing::warn!("the system CA store is empty: https IdPs need a caFile");
        }
        loaded.certs
    })
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, JwksError> {
    let mut store = RootCertStore::empty();
    // Individual unparsable system certificates are skipped, as every TLS client does.
    let (_added, _skipped) = store.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| JwksError::CaFileRead { path: path.to_owned(), source })?;
        let invalid = |why: String| JwksError::CaFileInvalid { path: path.to_owned(), why };
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| invalid(e.to_string()))?;
            store.add(cert).map_err(|e| invalid(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(invalid("no certificate found".to_owned()));
        }
    }
    Ok(store)
}

impl Fetcher {
    pub fn new(ca_file: Option<&Path>, timeout: Duration, max_bytes: usize) -> Result<Self, JwksError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Self { client, timeout, max_bytes })
    }

    /// GET `url`, expecting JSON (`what` names the document in errors). The deadline covers
    /// everything: connect, TLS, headers and the whole body, so a server that trickles its
    /// answer cannot hold a fetch (and the requests waiting on it) beyond it.
    pub async fn get_json(&self, url: &str, what: &'static str) -> Result<Fetched, JwksError> {
        let uri = parse_url(url, what)?;
        let request = Request::get(uri)
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .header(header::USER_AGENT, concat!("ward/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| JwksError::BadUrl { what, url: url.to_owned(), why: e.to_string() })?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| JwksError::Connect { url: url.to_owned(), detail: error_chain(&e) })?;
            let status = response.status();
            if !status.is_success() {
                let location =
                    response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
                return Err(JwksError::Status { url: url.to_owned(), status: status.as_u16(), location });
            }
            if let Some(ct) = response.headers().get(header::CONTENT_TYPE) {
                let ct = String::from_utf8_lossy(ct.as_bytes()).into_owned();
                if !is_json(&ct) {
                    return Err(JwksError::NotJson { url: url.to_owned(), content_type: ct, what });
                }
            }
            let freshness = cache_control::freshness(response.headers());
            let body = Limited::new(response.into_body(), self.max_bytes).collect().await.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    JwksError::TooLarge { url: url.to_owned(), limit: self.max_bytes }
                } else {
                    JwksError::Body { url: url.to_owned(), detail: error_chain(&*e) }
                }
            })?;
            Ok(Fetched { body: body.to_bytes(), freshness })
        };
        tokio::time::timeout(self.timeout, fetch).await.map_err(|_| JwksError::Timeout {
            url: url.to_owned(),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        })?
    }
}

pub fn parse_url(url: &str, what: &'static str) -> Result<Uri, JwksError> {
    let bad = |why: &str| JwksError::BadUrl { what, url: url.to_owned(), why: why.to_owned() };
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(bad("the scheme must be https (or http)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// `application/json`, `application/jwk-set+json`, and other `+json` types; parameters
/// (`; charset=utf-8`) are ignored.
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media.ends_with("/json") || media.ends_with("+json")
}

/// hyper's errors say "client error (Connect)" at the top and the useful part (connection
/// refused, certificate unknown) in their sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "application/jwk-set+json", "Application/JSON"]
        {
            assert!(is_json(ok), "{ok} is JSON");
        }
        for bad in ["text/html", "text/html; charset=utf-8", "application/octet-stream", "text/plain", ""] {
            assert!(!is_json(bad), "{bad} is not JSON");
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://idp.example/jwks", "jwksUri").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/jwks", "jwksUri").is_ok());
        for bad in ["ftp://idp/jwks", "/jwks", "idp.example/jwks", "https://", "not a url"] {
            let err = parse_url(bad, "jwksUri").expect_err(bad);
            assert!(matches!(err, JwksError::BadUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = roots(Some(&missing)).expect_err("missing file");
        assert!(matches!(err, JwksError::CaFileRead { .. }) && err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = roots(Some(&empty)).expect_err("no certificate");
        assert!(matches!(err, JwksError::CaFileInvalid { .. }), "{err}");
    }
}
