//! One decision per request: authenticate the token, then evaluate policy. The proxy calls
//! [`Enforcer::decide`] for every request on every connection; nothing is decided per
//! connection.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwap;

pub use crate::{authn::Identity, policy::eval::RequestFacts};
use crate::{
    authn::{Authenticator, IssuerSet},
    config::{Config, Issuer},
    policy::eval::{PolicySet, PolicyTrace, RequestAttrs},
    reason::Reason,
};

/// One config generation, compiled. Requests take one snapshot and use it throughout, so a
/// reload never mixes old issuers with new policies within a request.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub issuers: IssuerSet,
    pub policies: PolicySet,
}

impl Snapshot {
    pub fn new(config: Arc<Config>, generation: u64) -> Self {
        Self {
            generation,
            issuers: IssuerSet::new(&config.issuers, generation),
            policies: PolicySet::new(&config.policies),
            config,
        }
    }
}

/// What the proxy found in the request's token locations.
#[derive(Debug, Clone, Copy)]
pub enum TokenInput<'a> {
    Missing,
    Present(&'a str),
    /// Malformed or ambiguous token placement (see `proxy::extract`).
    Invalid(Reason),
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// `reason.outcome()` gives the HTTP class.
    pub reason: Reason,
    pub policy: Option<Arc<str>>,
    pub identity: Option<Arc<Identity>>,
    /// The config of the issuer that verified the token.
    pub issuer: Option<Arc<Issuer>>,
    pub audited_by: Vec<Arc<str>>,
    /// The token came from the verified-token cache.
    pub cached: bool,
}

impl Decision {
    fn refuse(reason: Reason) -> Self {
        Self { reason, policy: None, identity: None, issuer: None, audited_by: Vec::new(), cached: false }
    }

    pub fn allowed(&self) -> bool {
        self.reason.outcome() == crate::reason::Outcome::Allow
    }
}

#[derive(Debug)]
pub struct Enforcer {
    authn: Authenticator,
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl Enforcer {
    pub fn new(authn: Authenticator, config: Arc<Config>) -> Self {
        Self { authn, current: ArcSwap::from_pointee(Snapshot::new(config, 1)), generation: AtomicU64::new(1) }
    }

    /// The live snapshot. Take one per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Make `config` live (after it was validated). Returns the new generation.
    pub fn install(&self, config: Arc<Config>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.current.store(Arc::new(Snapshot::new(config, generation)));
        generation
    }

    pub async fn decide(&self, snap: &Snapshot, facts: &RequestFacts<'_>, token: TokenInput<'_>) -> Decision {
        self.decide_traced(snap, facts, token, crate::time::now_unix(), None).await
    }

    /// [`Self::decide`] with an explicit clock and an optional policy trace (`ward explain`).
    pub async fn decide_traced(
        &self,
        snap: &Snapshot,
        facts: &RequestFacts<'_>,
        token: TokenInput<'_>,
        now: u64,
        trace: Option<&mut Vec<PolicyTrace>>,
    ) -> Decision {
        let token = match token {
            TokenInput::Missing => return Decision::refuse(Reason::MissingToken),
            TokenInput::Invalid(reason) => return Decision::refuse(reason),
            TokenInput::Present(t) => t,
        };
        let authenticated = match self.authn.authenticate(&snap.issuers, token, now).await {
            Ok(a) => a,
            Err(reason) => return Decision::refuse(reason),
        };
        let attrs = RequestAttrs { facts, identity: &authenticated.identity };
        let verdict = snap.policies.evaluate(&attrs, trace);
        Decision {
            reason: verdict.reason,
            policy: verdict.policy,
            identity: Some(authenticated.identity),
            issuer: Some(authenticated.issuer),
            audited_by: verdict.audited_by,
            cached: authenticated.cached,
        }
    }

    pub fn verified_cache_len(&self) -> usize {
        self.authn.cache_len()
    }
}
