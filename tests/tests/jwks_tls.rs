//! Discovery and JWKS over HTTPS: the IdP's certificate must chain to the system roots or
//! to the issuer's `caFile`. The IdP here is a loopback HTTPS server with a private CA.

use std::{convert::Infallible, path::PathBuf, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use ward::{
    devidp::mint::{KidHeader, SigningKey, fill_claims, jwks_document},
    jwks::Health,
    jwt::Algorithm,
    reason::Reason,
    time::now_unix,
};
use ward_e2e::verifier::{Verifier, issuer};

const ISSUER: &str = "https://idp.tls.test";

struct TlsIdp {
    url: String,
    ca_file: PathBuf,
    key: SigningKey,
}

impl Drop for TlsIdp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// A private CA, a certificate for 127.0.0.1 signed by it, and an HTTPS server answering
/// discovery (naming ISSUER, with an https jwks_uri) and the JWKS.
async fn tls_idp(name: &str) -> TlsIdp {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "ward test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server cert");

    let ca_file = std::env::temp_dir().join(format!("ward-e2e-{}-{name}-ca.pem", std::process::id()));
    std::fs::write(&ca_file, ca_cert.pem()).expect("write CA file");

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));

    let key = SigningKey::generate(Algorithm::ES256).expect("keygen");
    let discovery = Bytes::from(json!({"issuer": ISSUER, "jwks_uri": format!("{url}/jwks")}).to_string());
    let jwks = Bytes::from(jwks_document([&key]).to_string());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, discovery, jwks) = (acceptor.clone(), discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                // Clients that do not trust the certificate abort the handshake: fine.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/jwks" { jwks.clone() } else { discovery.clone() };
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("response"),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    TlsIdp { url, ca_file, key }
}

fn token(key: &SigningKey) -> String {
    let mut claims = serde_json::Map::new();
    fill_claims(&mut claims, ISSUER, Some("api"), 600, now_unix());
    key.mint(None, &KidHeader::Key, &claims).expect("mint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_idp_trusted_through_ca_file() {
    let idp = tls_idp("trusted").await;
    let v = Verifier::new(&[issuer(&format!(
        "issuer: {ISSUER}\naudiences: [api]\ndiscoveryUri: {}/.well-known/openid-configuration\ncaFile: {}",
        idp.url,
        idp.ca_file.display()
    ))]);
    v.check(&token(&idp.key)).await.unwrap_or_else(|r| panic!("token refused over a trusted HTTPS IdP: {r}"));
    assert_eq!(v.status(ISSUER).jwks_uri, Some(format!("{}/jwks", idp.url)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_idp_with_an_unknown_ca_is_not_trusted() {
    let idp = tls_idp("untrusted").await;
    let v = Verifier::new(&[issuer(&format!("issuer: {ISSUER}\naudiences: [api]\njwksUri: {}/jwks", idp.url))]);
    assert_eq!(v.check(&token(&idp.key)).await.err(), Some(Reason::KeysUnavailable));
    let status = v.status(ISSUER);
    assert_eq!(status.health, Health::Failing);
    let error = status.last_error.expect("error");
    assert!(error.contains("certificate") && error.contains("caFile"), "the error should point at the CA: {error}");
    assert_eq!(v.fetches(ISSUER, "connect_error"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_ca_file_is_reported() {
    let v = Verifier::new(&[issuer(&format!(
        "issuer: {ISSUER}\naudiences: [api]\njwksUri: https://127.0.0.1:1/jwks\ncaFile: /nonexistent/ward-ca.pem"
    ))]);
    v.wait_for("the config error", async |v| v.status(ISSUER).last_error.is_some()).await;
    let status = v.status(ISSUER);
    let error = status.last_error.expect("error");
    assert!(error.contains("/nonexistent/ward-ca.pem"), "{error}");
    assert_eq!(status.health, Health::Failing);
    assert!(v.fetches(ISSUER, "config_error") >= 1.0);
}
