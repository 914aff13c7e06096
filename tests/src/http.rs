//! A minimal HTTP/1.1 client for test drivers (loopback only).

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// Status and body of a response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }

    /// Panics unless 2xx.
    pub fn ok(self) -> Self {
        assert!((200..300).contains(&self.status), "HTTP {}: {}", self.status, self.body);
        self
    }
}

pub async fn request(method: Method, url: &str, content_type: Option<&str>, body: impl Into<Bytes>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method.clone()).uri(url);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req.body(Full::new(body.into())).unwrap_or_else(|e| panic!("bad request {method} {url}: {e}"));
    let resp = client.request(req).await.unwrap_or_else(|e| panic!("{method} {url} failed: {e:?}"));
    let status = resp.status().as_u16();
    let body =
        resp.into_body().collect().await.unwrap_or_else(|e| panic!("{method} {url}: reading body: {e}")).to_bytes();
    Reply { status, body: String::from_utf8_lossy(&body).into_owned() }
}

pub async fn get(url: &str) -> Reply {
    request(Method::GET, url, None, Bytes::new()).await
}

pub async fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    request(Method::POST, url, Some("application/json"), body.to_string()).await
}

pub async fn post_form(url: &str, pairs: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
    request(Method::POST, url, Some("application/x-www-form-urlencoded"), body.join("&")).await
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
