//! Wiring of the running agent: config, key store, enforcer, proxy listeners, admin server,
//! capture and live reload.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinSet};
use tracing::{error, info, warn};

use crate::{
    admin::{AdminState, ConfigDump, LiveCheck},
    audit::AuditLog,
    authn::{Authenticator, metrics::AuthnMetrics},
    capture::Capture,
    config::{self, Config, metrics::ReloadMetrics, watch::Watcher},
    enforce::Enforcer,
    jwks::{KeyStore, metrics::JwksMetrics},
    metrics::Metrics,
    proxy::{OriginalDst, Proxy, Route, Shutdown, metrics::ProxyMetrics},
    readiness::Ready,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error(
        "cannot listen on {addr} ({what}): {source}; is another process using the port, or does the address exist on this node?"
    )]
    Bind { what: String, addr: std::net::SocketAddr, source: std::io::Error },
}

/// What the admin endpoint reads from the running agent.
#[derive(Debug)]
pub struct Agent {
    pub metrics: Arc<Metrics>,
    pub ready: Ready,
    pub keys: Arc<KeyStore>,
    pub enforcer: Arc<Enforcer>,
}

pub async fn run(config_path: PathBuf) -> Result<(), AppError> {
    let config = Arc::new(config::load_file(&config_path)?);
    info!(path = %config_path.display(), issuers = config.issuers.len(), policies = config.policies.len(), "config loaded");

    let mut parts = None;
    let mut capture = None;
    let metrics = Arc::new(Metrics::new(|registry| {
        if let Some(cfg) = &config.capture {
            let targets = crate::policy::eval::targets(&config.policies);
            capture = Some(Capture::attach(cfg, &targets, registry).map(Arc::new));
        }
        parts = Some((
            Arc::new(ReloadMetrics::new(registry)),
            Arc::new(AuthnMetrics::new(registry)),
            Arc::new(JwksMetrics::new(registry)),
            Arc::new(ProxyMetrics::new(registry)),
            Arc::new(if config.audit.enabled { AuditLog::stdout(registry) } else { AuditLog::disabled() }),
        ));
    }));
    let Some((reload_metrics, authn_metrics, jwks_metrics, proxy_metrics, audit)) = parts else {
        unreachable!("Metrics::new runs its closure")
    };
    reload_metrics.success(1);

    let ready = Ready::new();
    let keys = KeyStore::new(jwks_metrics);
    keys.sync_issuers(&config.issuers);
    let authn = Authenticator::new(keys.clone(), &config.cache, authn_metrics);
    let enforcer = Arc::new(Enforcer::new(authn, config.clone()));
    let proxy = Proxy::new(enforcer.clone(), proxy_metrics, audit);
    let agent = Agent { metrics, ready: ready.clone(), keys: keys.clone(), enforcer: enforcer.clone() };

    let mut capture_error: Option<String> = None;
    let shutdown = Shutdown::new();
    let mut tasks = JoinSet::new();
    let listeners_ready = ready.register("listeners");
    for l in &config.listeners {
        let socket = bind(&l.name, l.listen).await?;
        info!(listener = %l.name, listen = %l.listen, upstream = %l.upstream, enforce = l.enforce, "listening");
        let route = Route::Fixed { name: l.name.clone(), upstream: l.upstream, enforce: l.enforce };
        tasks.spawn(proxy.clone().serve(socket, route, shutdown.clone()));
    }
    drop(listeners_ready);

    let capture = match (capture, &config.capture) {
        (Some(Ok(capture)), Some(cfg)) => {
            info!(cgroup = %cfg.cgroup.display(), adopted = capture.adopted(), sk_msg = capture.sk_msg(), "capture attached");
            for addr in [Some(cfg.listen), cfg.listen_v6].into_iter().flatten() {
                let socket = bind("capture", addr).await?;
                info!(listen = %addr, "capture listener ready");
                tasks.spawn(proxy.clone().serve(socket, Route::Captured(capture.clone()), shutdown.clone()));
            }
            Some(capture)
        }
        (Some(Err(e)), _) => {
            // Explicit listeners keep working; /readyz stays not ready and says why.
            error!(error = %e, "capture is not active");
            capture_error = Some(e.to_string());
            None
        }
        _ => None,
    };

    let apply = {
        let (keys, enforcer, config_path, capture) =
            (keys.clone(), enforcer.clone(), config_path.clone(), capture.clone());
        let startup = config.clone();
        Arc::new(move |next: Arc<Config>| -> Result<u64, String> {
            warn_restart_only(&startup, &next, &config_path);
            // Targets first: a destination the new config protects is redirected before the
            // new policies are live, and captured destinations always need a valid token, so
            // the window fails closed rather than open.
            if let Some(capture) = &capture {
                let targets = crate::policy::eval::targets(&next.policies);
                capture.sync_targets(&targets).map_err(|e| format!("cannot update the kernel target map: {e}"))?;
            }
            keys.sync_issuers(&next.issuers);
            Ok(enforcer.install(next))
        })
    };
    tokio::spawn(Watcher::new(config_path.clone(), reload_metrics, apply).run());

    if let Some(admin) = &config.admin {
        let socket = bind("admin", admin.listen).await?;
        info!(listen = %admin.listen, "admin endpoint ready (/metrics /healthz /readyz /config_dump)");
        let state = admin_state(&agent, capture.clone(), capture_error, config.capture.is_some());
        tokio::spawn(crate::admin::serve(socket, state, shutdown.clone()));
    }
    wait_for_signal().await;
    info!("shutting down: no new connections; draining in-flight requests");
    shutdown.trigger();
    let grace = Duration::from_secs(config.proxy.shutdown_grace_seconds + 1);
    let drained = tokio::time::timeout(grace, async {
        while let Some(res) = tasks.join_next().await {
            if let Ok(Err(e)) = res {
                error!(error = %e, "listener stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("drain deadline passed; closing the remaining connections");
    }
    Ok(())
}

fn admin_state(
    agent: &Agent,
    capture: Option<Arc<Capture>>,
    capture_error: Option<String>,
    capture_wanted: bool,
) -> AdminState {
    let keys = agent.keys.clone();
    let mut checks: Vec<(String, LiveCheck)> = vec![(
        "keys".to_owned(),
        Arc::new(move || {
            if keys.all_loaded() {
                Ok(())
            } else {
                let missing: Vec<String> =
                    keys.status().into_iter().filter(|s| !s.available).map(|s| s.issuer).collect();
                Err(format!("signing keys not loaded for: {}", missing.join(", ")))
            }
        }),
    )];
    if capture_wanted {
        let capture = capture.clone();
        checks.push((
            "capture".to_owned(),
            Arc::new(move || match (&capture, &capture_error) {
                (Some(c), _) if c.is_attached() => Ok(()),
                (Some(_), _) => Err("capture programs are no longer attached (was `ward uninstall` run?)".to_owned()),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err("capture not attached".to_owned()),
            }),
        ));
    }
    let (enforcer, keys) = (agent.enforcer.clone(), agent.keys.clone());
    let config_dump: ConfigDump = Arc::new(move || {
        let snap = enforcer.snapshot();
        serde_json::json!({
            "generation": snap.generation,
            "config": &*snap.config,
            "issuers": keys.status(),
            "verifiedCacheEntries": enforcer.verified_cache_len(),
            "capture": capture.as_ref().map(|c| serde_json::json!({
                "attached": c.is_attached(),
                "adopted": c.adopted(),
                "skMsg": c.sk_msg(),
                "pinPath": c.pin_path(),
            })),
        })
    });
    AdminState { metrics: agent.metrics.clone(), ready: agent.ready.clone(), checks, config_dump }
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|source| AppError::Bind { what: what.to_owned(), addr, source })
}

/// Listener, admin and capture sockets are bound once at start; say so when a reload
/// changes them instead of silently ignoring the change.
fn warn_restart_only(startup: &Config, next: &Config, path: &std::path::Path) {
    let listeners =
        |c: &Config| c.listeners.iter().map(|l| (l.name.clone(), l.listen, l.upstream, l.enforce)).collect::<Vec<_>>();
    if listeners(startup) != listeners(next)
        || startup.admin.as_ref().map(|a| a.listen) != next.admin.as_ref().map(|a| a.listen)
        || startup.capture.as_ref().map(|c| (&c.cgroup, c.listen))
            != next.capture.as_ref().map(|c| (&c.cgroup, c.listen))
    {
        warn!(path = %path.display(), "listeners, admin.listen and capture.cgroup/listen changed: these take effect on restart; issuers and policies were reloaded");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

impl OriginalDst for Capture {
    fn original_dst(&self, peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        Capture::original_dst(self, peer, local)
    }
}
