//! WebSocket through ward: the upgrade request is authorized like any other, then bytes
//! flow both ways.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use ward_e2e::stack::{self, Stack};

#[tokio::test]
async fn websocket_upgrade_is_authorized_then_tunneled() {
    let stack = Stack::start(|iss, listen, up| stack::config(iss, listen, up, "")).await;
    let url = format!("ws://{}/ws", stack.addr);

    let mut req = url.as_str().into_client_request().expect("ws request");
    let token = stack.idp.mint("alice", "api", json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let stream = TcpStream::connect(stack.addr).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.expect("websocket handshake through ward");
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let echoed = ws.next().await.expect("a message").expect("no error");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.expect("send 1 MiB");
    assert_eq!(ws.next().await.expect("a message").expect("no error").into_data().as_ref(), big.as_slice());
    ws.close(None).await.expect("close");

    // Without a token the upgrade is refused and never reaches the upstream.
    let before = stack.upstream.uris().len();
    let stream = TcpStream::connect(stack.addr).await.expect("connect");
    match tokio_tungstenite::client_async(url.as_str(), stream).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    assert_eq!(stack.upstream.uris().len(), before);
}
