//! `ward explain`: the decision for one request, with its reasons, as JSON.

use std::{
    collections::HashMap,
    io::Read,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use serde_json::{Value, json};

use crate::{
    authn::{Authenticator, KeyResolver, StaticKeys, metrics::AuthnMetrics},
    config::{Config, load_file},
    enforce::{Enforcer, RequestFacts, TokenInput},
    jwt::key::KeySet,
    reason::Outcome,
};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// The bearer token; `-` reads it from stdin (keeps it out of shell history).
    #[arg(long, env = "WARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long)]
    pub host: Option<String>,
    /// Destination port (default: the first listener's upstream port, else 80).
    #[arg(long)]
    pub port: Option<u16>,
    /// Destination IP (default: the first listener's upstream IP, else 127.0.0.1).
    #[arg(long)]
    pub destination: Option<IpAddr>,
    #[arg(long, default_value = "127.0.0.1")]
    pub source: IpAddr,
    /// Verify with this JWKS file instead of fetching the issuers' keys.
    #[arg(long)]
    pub jwks: Option<PathBuf>,
    /// Evaluate at this Unix time instead of now.
    #[arg(long)]
    pub now: Option<u64>,
}

#[derive(Debug)]
pub struct Explained {
    pub allowed: bool,
    pub json: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read the JWKS file {path}: {source}")]
    JwksRead { path: PathBuf, source: std::io::Error },
    #[error("the JWKS file {path} is not a key set: {source}")]
    JwksParse { path: PathBuf, source: crate::jwt::key::KeySetError },
    #[error("cannot read the token from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("cannot fetch the issuers' keys: {0}")]
    Keys(String),
}

pub async fn explain(args: &ExplainArgs) -> Result<Explained, ExplainError> {
    let config = Arc::new(load_file(&args.config)?);
    let resolver = resolver(args, &config).await?;
    let authn = Authenticator::new(resolver, &config.cache, Arc::new(AuthnMetrics::unregistered()));
    let enforcer = Enforcer::new(authn, config.clone());
    let snap = enforcer.snapshot();

    let token = match args.token.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(ExplainError::Stdin)?;
            Some(s.trim().to_owned())
        }
        other => other.map(str::to_owned),
    };
    let upstream = config.listeners.first().map(|l| l.upstream);
    let destination = SocketAddr::new(
        args.destination.or(upstream.map(|u| u.ip())).unwrap_or(IpAddr::from([127, 0, 0, 1])),
        args.port.or(upstream.map(|u| u.port())).unwrap_or(80),
    );
    let headers = http::HeaderMap::new();
    let facts = RequestFacts {
        method: &args.method,
        path: &args.path,
        host: args.host.as_deref(),
        headers: &headers,
        source: SocketAddr::new(args.source, 0),
        destination,
    };
    let input = match token.as_deref() {
        Some(t) => TokenInput::Present(t),
        None => TokenInput::Missing,
    };
    let mut trace = Vec::new();
    let now = args.now.unwrap_or_else(crate::time::now_unix);
    let decision = enforcer.decide_traced(&snap, &facts, input, now, Some(&mut trace)).await;
    let (status, decision_name) = match decision.reason.outcome() {
        Outcome::Allow => (200, "allow"),
        Outcome::Unauthenticated => (401, "unauthenticated"),
        Outcome::Forbidden => (403, "forbidden"),
        Outcome::Unavailable => (503, "unavailable"),
        Outcome::ProxyError => (400, "error"),
    };
    let identity = decision.identity.as_ref().map(|id| {
        json!({
            "issuer": &*id.issuer,
            "subject": id.subject,
            "principal": id.principal(),
            "audiences": id.audiences,
            "expiresAt": id.expires_at,
        })
    });
    let json = json!({
        "decision": decision_name,
        "status": status,
        "reason": decision.reason.as_str(),
        "description": decision.reason.description(),
        "policy": decision.policy.as_deref(),
        "auditedBy": decision.audited_by.iter().map(|s| &**s).collect::<Vec<_>>(),
        "identity": identity,
        "request": {"method": args.method, "path": args.path, "host": args.host, "source": args.source.to_string(), "destination": destination.to_string()},
        "policies": trace,
    });
    Ok(Explained { allowed: decision.allowed(), json })
}

async fn resolver(args: &ExplainArgs, config: &Config) -> Result<Arc<dyn KeyResolver>, ExplainError> {
    if let Some(path) = &args.jwks {
        let bytes = std::fs::read(path).map_err(|source| ExplainError::JwksRead { path: path.clone(), source })?;
        let mut map = HashMap::new();
        for issuer in &config.issuers {
            let set = KeySet::parse(&bytes).map_err(|source| ExplainError::JwksParse { path: path.clone(), source })?;
            map.insert(issuer.issuer.clone(), set);
        }
        return Ok(Arc::new(StaticKeys(map)));
    }
    fetch_keys(config).await
}

/// Fetch every issuer's keys once (discovery + JWKS), waiting up to the fetch timeouts.
async fn fetch_keys(config: &Config) -> Result<Arc<dyn KeyResolver>, ExplainError> {
    let store = crate::jwks::KeyStore::new(Arc::new(crate::jwks::metrics::JwksMetrics::new(
        &mut prometheus_client::registry::Registry::default(),
    )));
    store.sync_issuers(&config.issuers);
    let patience: u64 = config.issuers.iter().map(|i| i.jwks.fetch_timeout_millis * 2).max().unwrap_or(0) + 500;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(patience);
    while !store.all_loaded() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    if !store.all_loaded() {
        let status = serde_json::to_string(&store.status()).unwrap_or_default();
        tracing::warn!(%status, "not every issuer's keys could be loaded; tokens from those issuers will get keys_unavailable");
    }
    Ok(store)
}
