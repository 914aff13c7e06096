//! One request: normalize, extract the token, decide, then forward or refuse; audit and
//! count either way.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use http::{Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Proxy,
    body::ProxyBody,
    extract, headers,
    io::{ConnState, InFlight},
    limits::Limits,
    metrics::decision_label,
    path, respond,
};
use crate::{
    audit::{self, Record},
    enforce::{Decision, RequestFacts},
    reason::{Outcome, Reason},
};

/// What every request on one client connection shares.
#[derive(Debug)]
pub struct ConnCtx {
    pub proxy: Arc<Proxy>,
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub destination: SocketAddr,
    pub enforce: bool,
    pub limits: Limits,
    pub state: Arc<ConnState>,
    pub tracker: TaskTracker,
    pub hard_stop: CancellationToken,
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

fn no_decision(reason: Reason) -> Decision {
    Decision { reason, policy: None, identity: None, issuer: None, audited_by: Vec::new(), cached: false }
}

pub async fn handle(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Response<ProxyBody> {
    // Until the response body is done, bytes from the client belong to this request, not
    // to the head of the next one.
    let mut in_flight = Some(ctx.state.request_started());
    let response = serve_one(ctx, req, &mut in_flight).await;
    match in_flight.take() {
        Some(guard) => response.map(|b| b.with_in_flight(guard)),
        None => response,
    }
}

async fn serve_one(
    ctx: Arc<ConnCtx>,
    mut req: Request<Incoming>,
    in_flight: &mut Option<InFlight>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let snap = ctx.proxy.enforcer.snapshot();
    let config = snap.config.clone();
    let version = req.version();
    let grpc = respond::is_grpc(version, req.headers());
    let method = req.method().as_str().to_owned();
    let host: Option<String> = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));

    let done = |path: &str, decision: &Decision, status: StatusCode| {
        ctx.proxy.metrics.request(decision.reason);
        if ctx.proxy.audit.wants(&config.audit, decision.reason) {
            let identity = decision.identity.as_deref();
            ctx.proxy.audit.write(&Record {
                time: audit::rfc3339(SystemTime::now()),
                listener: &ctx.listener,
                source: ctx.peer,
                destination: ctx.destination,
                method: &method,
                path,
                host: host.as_deref(),
                http_version: version_str(version),
                iss: identity.map(|i| &*i.issuer),
                sub: identity.and_then(|i| i.subject.as_deref()),
                decision: decision_label(decision.reason),
                reason: decision.reason.as_str(),
                status: status.as_u16(),
                policy: decision.policy.as_deref(),
                audit_policies: &decision.audited_by,
                latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            });
        }
        if decision.reason.outcome() != Outcome::Allow {
            tracing::info!(
                listener = %ctx.listener, source = %ctx.peer, destination = %ctx.destination,
                %method, path, reason = decision.reason.as_str(), status = status.as_u16(),
                "request refused"
            );
        }
    };
    let refuse = |path: &str, decision: &Decision| {
        let response = respond::refusal(decision.reason, &config.proxy.realm, grpc);
        done(path, decision, response.status());
        response
    };

    // hyper bounds an HTTP/1.1 head by its read buffer, which one large read can overshoot
    // (a 2 MiB head passed a 1.5 MiB limit under load), so count the parsed head as well.
    if head_bytes(&req) > ctx.limits.max_header_bytes {
        return refuse(req.uri().path(), &no_decision(Reason::HeadersTooLarge));
    }

    let normalized = match path::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "refusing request path");
            return refuse(req.uri().path(), &no_decision(Reason::BadRequest));
        }
    };
    let query = req.uri().query().map(str::to_owned);

    let (decision, locations) = if ctx.enforce {
        let extracted = extract::extract(req.headers(), query.as_deref(), &config.issuers);
        let facts = RequestFacts {
            method: &method,
            path: &normalized,
            host: host.as_deref(),
            headers: req.headers(),
            source: ctx.peer,
            destination: ctx.destination,
        };
        let decision = ctx.proxy.enforcer.decide(&snap, &facts, extracted.input()).await;
        (decision, extracted.locations)
    } else {
        (no_decision(Reason::NotProtected), Vec::new())
    };
    if decision.reason.outcome() != Outcome::Allow {
        return refuse(&normalized, &decision);
    }

    let upgrade = version <= Version::HTTP_11 && headers::is_upgrade(req.headers());
    let mut query = query;
    {
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h, upgrade);
        headers::strip_identity_headers(h, &config.issuers);
        if let (Some(identity), Some(issuer)) = (&decision.identity, &decision.issuer) {
            headers::set_claim_headers(h, &issuer.output_claim_to_headers, identity);
            if !issuer.forward_original_token {
                query = headers::remove_token(h, query.as_deref(), &locations);
            }
        }
        headers::set_forwarded(h, ctx.peer.ip());
    }
    let path_and_query = match &query {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized.clone(),
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let sent = Instant::now();
    let result = ctx
        .proxy
        .upstream
        .send(
            req,
            ctx.destination,
            &path_and_query,
            ctx.limits.upstream_connect_timeout,
            ctx.limits.upstream_response_timeout,
        )
        .await;
    let mut response = match result {
        Ok(r) => r,
        Err(reason) => {
            let failed = Decision { reason, ..decision };
            return refuse(&normalized, &failed);
        }
    };
    ctx.proxy.metrics.upstream_duration(sent.elapsed().as_secs_f64());
    done(&normalized, &decision, response.status());

    if let Some(client_upgrade) = client_upgrade.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        ctx.tracker.spawn(tunnel(ctx.clone(), client_upgrade, upstream_upgrade, in_flight.take()));
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, ProxyBody::local(bytes::Bytes::new()));
    }
    headers::strip_hop_by_hop(response.headers_mut(), false);
    response.map(|b| ProxyBody::upstream(b, in_flight.take()))
}

/// Copy bytes both ways after a successful upgrade, until either side closes, the
/// connection idles out, or shutdown's grace period ends.
async fn tunnel(
    ctx: Arc<ConnCtx>,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    in_flight: Option<InFlight>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        _ = ctx.state.expired(ctx.limits.header_read_timeout, ctx.limits.idle_timeout) => {}
        () = ctx.hard_stop.cancelled() => {}
    }
    drop(in_flight);
}

/// Size of the request head as sent in HTTP/1.1: request line plus `name: value\r\n` lines.
fn head_bytes<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target =
        uri.path_and_query().map_or(1, |pq| pq.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + " ".len() + target + " HTTP/1.1\r\n".len();
    req.headers().iter().fold(line + 2, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the fault suite): heads beyond `maxHeaderBytes` must be refused
    /// even when hyper's buffer let them through.
    #[test]
    fn head_bytes_counts_the_request_line_and_every_header() {
        let req = Request::get("/abc?x=1").header("host", "api").header("x-big", "v".repeat(1000)).body(()).unwrap();
        let wire = format!("GET /abc?x=1 HTTP/1.1\r\nhost: api\r\nx-big: {}\r\n\r\n", "v".repeat(1000));
        assert_eq!(head_bytes(&req), wire.len());
    }
}
