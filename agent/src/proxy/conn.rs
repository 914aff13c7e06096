//! One client connection: detect the protocol, serve it with hyper, and enforce the
//! header-read and idle timeouts and shutdown.

use std::{convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use hyper::{
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Proxy, Shutdown,
    detect::{self, Protocol},
    handle::{self, ConnCtx},
    io::{ConnIo, ConnState, Expired},
    limits::{ConnectionPermit, Limits},
    metrics::Rejection,
};
use crate::reason::Reason;

/// Where the connection's requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub listener: Arc<str>,
    pub destination: SocketAddr,
    pub enforce: bool,
}

/// Everything a connection task needs from its listener.
#[derive(Debug, Clone)]
pub struct Env {
    pub shutdown: Shutdown,
    pub hard_stop: CancellationToken,
    pub tracker: TaskTracker,
}

/// A hyper connection that can be asked to finish its in-flight requests and close.
trait Drain: Future<Output = Result<(), hyper::Error>> {
    fn drain(self: Pin<&mut Self>);
}

impl<I, S> Drain for http1::UpgradeableConnection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Drain for http2::Connection<I, S, E>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

pub async fn run(
    proxy: Arc<Proxy>,
    mut stream: TcpStream,
    peer: SocketAddr,
    target: Target,
    limits: Limits,
    permit: ConnectionPermit,
    env: Env,
) {
    let _ = stream.set_nodelay(true);
    let sniffed = tokio::select! {
        r = tokio::time::timeout(limits.header_read_timeout, detect::sniff(&mut stream)) => r,
        () = env.hard_stop.cancelled() => return,
    };
    let (protocol, prefix) = match sniffed {
        Err(_elapsed) => {
            proxy.metrics.rejected(Rejection::header_timeout);
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "client connection failed before a request");
            return;
        }
        Ok(Ok((None, prefix))) => {
            // EOF before any byte is a client that changed its mind, not a protocol error.
            if !prefix.is_empty() {
                proxy.metrics.rejected(Rejection::not_http);
                tracing::info!(%peer, destination = %target.destination, "closing a non-HTTP connection to a protected destination");
            }
            return;
        }
        Ok(Ok((Some(protocol), prefix))) => (protocol, prefix),
    };

    let state = ConnState::new(protocol == Protocol::Http1, permit);
    let io = TokioIo::new(ConnIo::new(stream, prefix, state.clone()));
    let ctx = Arc::new(ConnCtx {
        proxy: proxy.clone(),
        listener: target.listener,
        peer,
        destination: target.destination,
        enforce: target.enforce,
        limits: limits.clone(),
        state: state.clone(),
        tracker: env.tracker.clone(),
        hard_stop: env.hard_stop.clone(),
    });
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle::handle(ctx, req).await) }
    });
    match protocol {
        Protocol::Http1 => {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                // The header-read timeout is ward's own (see `ConnState`): hyper's would
                // also cut idle keep-alive connections and closes without a 408.
                .header_read_timeout(None)
                .max_buf_size(limits.h1_buffer())
                .keep_alive(true)
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, &proxy, &state, &limits, &env, true).await;
        }
        Protocol::Http2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(limits.h2_header_list())
                .serve_connection(io, service);
            drive(conn, &proxy, &state, &limits, &env, false).await;
        }
    }
}

async fn drive<C: Drain>(conn: C, proxy: &Proxy, state: &ConnState, limits: &Limits, env: &Env, h1: bool) {
    let mut conn = std::pin::pin!(conn);
    let expired = state.expired(limits.header_read_timeout, limits.idle_timeout);
    let mut expired = std::pin::pin!(expired);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_parse_too_large() {
                        // hyper already answered 431.
                        proxy.metrics.request(Reason::HeadersTooLarge);
                    } else if e.is_parse() {
                        // hyper already answered 400.
                        proxy.metrics.request(Reason::BadRequest);
                    } else {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                }
                return;
            }
            () = env.shutdown.triggered(), if !draining => {
                conn.as_mut().drain();
                draining = true;
            }
            why = &mut expired => {
                if why == Expired::HeaderRead && h1 {
                    proxy.metrics.request(Reason::HeaderTimeout);
                    state.answer_408_on_close();
                }
                return;
            }
            () = env.hard_stop.cancelled() => return,
        }
    }
}
