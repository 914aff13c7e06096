//! The enforcing HTTP proxy: explicit listeners and captured connections.
//!
//! Every request is checked on its own (keep-alive and HTTP/2 streams included): path
//! normalized ([`path`]), token extracted ([`extract`]), decision from the
//! [`Enforcer`](crate::enforce::Enforcer), then forwarded ([`forward`], [`headers`]) or
//! refused ([`respond`]). Bodies stream in both directions; nothing is buffered whole.
//! Limits ([`limits`]) come from the live config snapshot at accept time.

mod accept;
mod body;
mod conn;
mod detect;
pub mod extract;
mod forward;
mod handle;
pub mod headers;
mod io;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod respond;
mod shutdown;
#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc};

pub use metrics::ProxyMetrics;
pub use shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::{audit::AuditLog, enforce::Enforcer};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot read the listener's local address (is the socket still open?): {0}")]
    LocalAddr(#[source] std::io::Error),
}

/// Where the connections of one listener go.
#[derive(Clone)]
pub enum Route {
    /// Explicit listener: everything goes to `upstream`; `enforce: false` = plain proxy.
    Fixed { name: String, upstream: SocketAddr, enforce: bool },
    /// Transparent capture: each connection's original destination is looked up by its
    /// peer address.
    Captured(Arc<dyn OriginalDst>),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Fixed { name, upstream, enforce } => f
                .debug_struct("Fixed")
                .field("name", name)
                .field("upstream", upstream)
                .field("enforce", enforce)
                .finish(),
            Route::Captured(_) => f.write_str("Captured"),
        }
    }
}

/// Original-destination lookup for captured connections.
pub trait OriginalDst: Send + Sync + 'static {
    /// `None`: unknown connection; it is closed (fail closed) and counted.
    fn original_dst(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr>;
}

/// The proxy; one per process, shared by all listeners.
#[derive(Debug)]
pub struct Proxy {
    enforcer: Arc<Enforcer>,
    metrics: Arc<ProxyMetrics>,
    audit: Arc<AuditLog>,
    upstream: forward::Upstream,
    connections: limits::ConnectionLimiter,
}

impl Proxy {
    pub fn new(enforcer: Arc<Enforcer>, metrics: Arc<ProxyMetrics>, audit: Arc<AuditLog>) -> Arc<Self> {
        Arc::new(Self {
            enforcer,
            connections: limits::ConnectionLimiter::new(metrics.clone()),
            metrics,
            audit,
            upstream: forward::Upstream::default(),
        })
    }

    /// Serve one listener until `shutdown` fires, then let in-flight requests finish within
    /// `proxy.shutdownGraceSeconds` and return.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        route: Route,
        shutdown: Shutdown,
    ) -> Result<(), ProxyError> {
        accept::serve(self, listener, route, shutdown).await
    }

    /// Client connections open now, across all listeners.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }
}
