//! gRPC through ward: HTTP/2 prior knowledge from a tonic client, HTTP/2 to a tonic
//! server (the standard health service); refusals arrive as gRPC statuses.

use std::net::SocketAddr;

use serde_json::json;
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use ward_e2e::stack::{self, Stack};

async fn grpc_server() -> SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _keep = reporter;
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("gRPC server");
    });
    addr
}

async fn check(channel: Channel, token: Option<&str>) -> Result<i32, tonic::Status> {
    let mut req = Request::new(HealthCheckRequest { service: String::new() });
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("metadata"));
    }
    HealthClient::new(channel).check(req).await.map(|r| r.into_inner().status)
}

#[tokio::test]
async fn grpc_health_check_through_ward() {
    let grpc = grpc_server().await;
    let stack = Stack::start(|iss, listen, _up| {
        let extra = "- name: deny-mallory\n  action: DENY\n  rules: [{from: [{source: {requestPrincipals: [\"*/mallory\"]}}]}]\n";
        stack::config(iss, listen, grpc, "").replacen("policies:\n", &format!("policies:\n{extra}"), 1)
    })
    .await;
    let channel =
        Channel::from_shared(format!("http://{}", stack.addr)).expect("uri").connect().await.expect("connect to ward");

    let alice = stack.idp.mint("alice", "api", json!({}));
    let status = check(channel.clone(), Some(&alice)).await.expect("allowed health check");
    assert_eq!(status, ServingStatus::Serving as i32);

    let err = check(channel.clone(), None).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let err = check(channel.clone(), Some("not-a-jwt")).await.expect_err("bad token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mallory = stack.idp.mint("mallory", "api", json!({}));
    let err = check(channel.clone(), Some(&mallory)).await.expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The same HTTP/2 connection keeps working after refusals.
    assert_eq!(check(channel, Some(&alice)).await.expect("allowed again"), ServingStatus::Serving as i32);
}
