//! A minimal issuer for tests: OIDC discovery and a JWKS on loopback, and tokens signed
//! with its own P-256 key (ES256). The JWKS can be taken down to test key unavailability.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub const KID: &str = "e2e-1";

#[derive(Debug)]
pub struct TestIdp {
    pub addr: SocketAddr,
    pub issuer: String,
    key: Arc<EcdsaKeyPair>,
    serving: Arc<AtomicBool>,
}

impl TestIdp {
    /// Start on 127.0.0.1 (on the current tokio runtime).
    pub async fn start() -> Self {
        let key = Arc::new(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let addr = listener.local_addr().expect("idp addr");
        let issuer = format!("http://{addr}");
        let serving = Arc::new(AtomicBool::new(true));
        let jwks = json!({"keys": [jwk(&key)]}).to_string();
        let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string();
        let on = serving.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (jwks, discovery, on) = (jwks.clone(), discovery.clone(), on.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let body = match req.uri().path() {
                            _ if !on.load(Ordering::SeqCst) => None,
                            "/jwks" => Some(jwks.clone()),
                            "/.well-known/openid-configuration" => Some(discovery.clone()),
                            _ => None,
                        };
                        async move {
                            let resp = match body {
                                Some(b) => Response::builder()
                                    .header("content-type", "application/json")
                                    .header("cache-control", "max-age=300")
                                    .body(Full::new(Bytes::from(b))),
                                None => Response::builder()
                                    .status(StatusCode::SERVICE_UNAVAILABLE)
                                    .body(Full::new(Bytes::new())),
                            };
                            Ok::<_, Infallible>(resp.expect("response"))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, issuer, key, serving }
    }

    /// Make discovery and the JWKS answer 503 (`false`) or serve again (`true`).
    pub fn set_serving(&self, on: bool) {
        self.serving.store(on, Ordering::SeqCst);
    }

    /// A token for audience `aud` and subject `sub`, valid for 10 minutes, plus `extra` claims.
    pub fn mint(&self, sub: &str, aud: &str, extra: Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        let mut claims = json!({"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().expect("extra claims are an object") {
            claims[k] = v.clone();
        }
        self.sign(&json!({"alg": "ES256", "kid": KID, "typ": "JWT"}), &claims)
    }

    /// The public key as PEM `SubjectPublicKeyInfo` (what HAProxy's `jwt_verify` reads).
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der<'static> = self.key.public_key().as_der().expect("DER public key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Sign any header and claims with the issuer's key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.key.sign(&SystemRandom::new(), input.as_bytes()).expect("ECDSA signing");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

fn jwk(key: &EcdsaKeyPair) -> Value {
    // Uncompressed point: 0x04 || x || y.
    let point = key.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    json!({"kty": "EC", "crv": "P-256", "kid": KID, "alg": "ES256", "use": "sig", "x": B64.encode(x), "y": B64.encode(y)})
}
