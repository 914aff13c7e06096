//! A whole test stack: an issuer, an upstream, and ward in front of it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::{free_port, issuer::TestIdp, upstream::Upstream, ward::Ward};

#[derive(Debug)]
pub struct Stack {
    pub idp: TestIdp,
    pub upstream: Upstream,
    pub ward: Ward,
    /// The enforcing listener in front of `upstream`.
    pub addr: SocketAddr,
}

impl Stack {
    /// Start an issuer, an upstream and ward. `config(issuer, listen, upstream)` returns the
    /// whole ward config; ward must listen on `listen` (more listeners are up to the test,
    /// which must then wait for them itself).
    pub async fn start(config: impl FnOnce(&str, SocketAddr, SocketAddr) -> String) -> Self {
        let idp = TestIdp::start().await;
        let upstream = Upstream::start().await;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let yaml = config(&idp.issuer, addr, upstream.addr);
        let ward = tokio::task::spawn_blocking(move || Ward::start(&yaml, &[addr])).await.expect("start ward");
        let stack = Self { idp, upstream, ward, addr };
        stack.wait_for_keys().await;
        stack
    }

    /// ward fetches keys after it starts listening: until then valid tokens get 503.
    async fn wait_for_keys(&self) {
        let token = self.idp.mint("probe", "api", serde_json::json!({}));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = get_status(self.addr, "/__ward_probe", &token).await;
            if status != 503 {
                return;
            }
            assert!(Instant::now() < deadline, "ward never loaded the issuer's keys; stderr:\n{}", self.ward.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn get_status(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to ward");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "api")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// The usual config: one issuer (audience `api`, `x-user` from `sub`), a DENY on `/admin*`,
/// an ALLOW for any authenticated caller, the `api` listener, and `extra` appended (e.g. a
/// `proxy:` section or more listeners).
pub fn config(issuer: &str, listen: SocketAddr, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"issuers:
- issuer: "{issuer}"
  audiences: [api]
  outputClaimToHeaders: [{{header: x-user, claim: sub}}]
policies:
- name: deny-admin
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
- name: authenticated
  action: ALLOW
  rules: [{{from: [{{source: {{requestPrincipals: ["*"]}}}}]}}]
listeners:
- {{name: api, listen: "{listen}", upstream: "{upstream}"}}
{extra}"#
    )
}
