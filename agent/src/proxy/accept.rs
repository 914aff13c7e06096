//! The accept loop of one listener, and its graceful shutdown.

use std::{sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Proxy, ProxyError, Route, Shutdown,
    conn::{self, Env, Target},
    limits::Limits,
    metrics::Rejection,
};

pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    route: Route,
    shutdown: Shutdown,
) -> Result<(), ProxyError> {
    let local = listener.local_addr().map_err(ProxyError::LocalAddr)?;
    let env = Env { shutdown: shutdown.clone(), hard_stop: CancellationToken::new(), tracker: TaskTracker::new() };
    let fixed_name: Arc<str> = match &route {
        Route::Fixed { name, .. } => Arc::from(name.as_str()),
        Route::Captured(_) => Arc::from("capture"),
    };
    tracing::info!(listener = %fixed_name, address = %local, "proxy listening");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.triggered() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning; existing
                // connections keep being served.
                tracing::warn!(address = %local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = proxy.enforcer.snapshot();
        let limits = Limits::from_settings(&snap.config.proxy);
        drop(snap);
        let Some(permit) = proxy.connections.try_acquire(limits.max_connections) else {
            proxy.metrics.rejected(Rejection::max_connections);
            drop(stream);
            continue;
        };
        let target = match &route {
            Route::Fixed { upstream, enforce, .. } => {
                Target { listener: fixed_name.clone(), destination: *upstream, enforce: *enforce }
            }
            Route::Captured(lookup) => {
                let local = stream.local_addr().unwrap_or(local);
                match lookup.original_dst(peer, local) {
                    Some(destination) => Target { listener: fixed_name.clone(), destination, enforce: true },
                    None => {
                        proxy.metrics.rejected(Rejection::unknown_destination);
                        tracing::warn!(%peer, "closing a captured connection with no known original destination");
                        continue;
                    }
                }
            }
        };
        env.tracker.spawn(conn::run(proxy.clone(), stream, peer, target, limits, permit, env.clone()));
    }
    drop(listener);

    // Drain: connections finish their in-flight requests (they saw `shutdown` too); after
    // the grace period whatever is left is cut.
    let grace = Limits::from_settings(&proxy.enforcer.snapshot().config.proxy).shutdown_grace;
    env.tracker.close();
    if tokio::time::timeout(grace, env.tracker.wait()).await.is_err() {
        tracing::warn!(listener = %fixed_name, open = env.tracker.len(), "grace period over; closing remaining connections");
        env.hard_stop.cancel();
        env.tracker.wait().await;
    }
    tracing::info!(listener = %fixed_name, "proxy listener stopped");
    Ok(())
}
