//! One issuer's keys: the current key set, how it is refreshed, and how a token's key is
//! found in it.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use tokio::sync::Notify;

use super::{
    JwksError,
    backoff::Backoff,
    cache_control, discovery,
    fetch::Fetcher,
    kid_gate::{Decision, KidGate},
    metrics::JwksMetrics,
    singleflight::{Flight, SingleFlight},
};
use crate::{
    config::{Issuer, JwksSettings},
    jwt::{
        Algorithm,
        key::{IgnoredKey, KeySet, VerifyingKey},
    },
    reason::Reason,
    time::now_unix,
};

/// Where the keys come from: a change here means a new client and an immediate refetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Source {
    pub jwks_uri: Option<String>,
    pub discovery_uri: String,
    pub ca_file: Option<PathBuf>,
    pub fetch_timeout: Duration,
    pub max_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timing {
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub max_staleness: Duration,
    pub kid_cooldown: Duration,
}

#[derive(Debug)]
pub(super) struct Settings {
    pub source: Source,
    pub timing: Timing,
    /// Changes whenever the source changes, so a fetch started under old settings is
    /// recognised as such.
    pub generation: u64,
    /// `Err` when the config cannot give a client (unreadable caFile): every refresh fails
    /// with that error, loudly, and the last good keys keep serving meanwhile.
    pub fetcher: Result<Arc<Fetcher>, Arc<JwksError>>,
}

impl Settings {
    pub fn split(issuer: &Issuer) -> (Source, Timing) {
        let JwksSettings {
            min_refresh_seconds,
            max_refresh_seconds,
            max_staleness_seconds,
            unknown_kid_cooldown_seconds,
            fetch_timeout_millis,
            max_response_bytes,
        } = issuer.jwks;
        let source = Source {
            jwks_uri: issuer.jwks_uri.clone(),
            discovery_uri: issuer.discovery_uri.clone().unwrap_or_else(|| discovery::default_uri(&issuer.issuer)),
            ca_file: issuer.ca_file.clone(),
            fetch_timeout: Duration::from_millis(fetch_timeout_millis),
            max_bytes: max_response_bytes,
        };
        let timing = Timing {
            min_refresh: Duration::from_secs(min_refresh_seconds),
            max_refresh: Duration::from_secs(max_refresh_seconds),
            max_staleness: Duration::from_secs(max_staleness_seconds),
            kid_cooldown: Duration::from_secs(unknown_kid_cooldown_seconds),
        };
        (source, timing)
    }

    pub fn new(source: Source, timing: Timing, generation: u64) -> Self {
        let fetcher = Fetcher::new(source.ca_file.as_deref(), source.fetch_timeout, source.max_bytes)
            .map(Arc::new)
            .map_err(Arc::new);
        Self { source, timing, generation, fetcher }
    }
}

/// A successfully fetched key set.
#[derive(Debug)]
pub(super) struct Loaded {
    pub keys: Arc<KeySet>,
    pub fetched_at: Instant,
    pub fetched_unix: u64,
    /// From `Cache-Control`, clamped.
    pub refresh_in: Duration,
    pub jwks_uri: String,
    pub generation: u64,
}

type FetchResult = Result<Arc<Loaded>, Arc<JwksError>>;

/// What the node can do with this issuer's tokens right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// First fetch not done yet.
    Loading,
    /// The last refresh succeeded.
    Fresh,
    /// The last refresh failed; the last good keys serve until `maxStalenessSeconds`.
    Stale,
    /// The last good keys are older than `maxStalenessSeconds`: tokens get 503.
    Expired,
    /// No fetch ever succeeded, and the last one failed: tokens get 503.
    Failing,
}

impl Health {
    pub fn available(self) -> bool {
        matches!(self, Health::Fresh | Health::Stale)
    }
}

/// Are keys fetched at `fetched_at` still usable at `now`? The boundary itself is still
/// usable: `maxStalenessSeconds: 0` means "only until the next failed refresh".
pub(super) fn within_staleness(fetched_at: Instant, now: Instant, max_staleness: Duration) -> bool {
    now.saturating_duration_since(fetched_at) <= max_staleness
}

#[derive(Debug)]
struct Condition {
    health: Health,
    last_error: Option<String>,
    last_attempt_unix: Option<u64>,
    consecutive_failures: u32,
    /// From discovery, for unknown-kid refetches that skip discovery: (settings generation, uri).
    discovered: Option<(u64, String)>,
}

/// Per-issuer status for `/config_dump`, logs and `ward explain`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    pub issuer: String,
    pub health: Health,
    /// True while this issuer's tokens can be verified.
    pub available: bool,
    /// True while the last refresh failed (the keys served are older than it).
    pub stale: bool,
    pub jwks_uri: Option<String>,
    pub keys: Vec<Option<String>>,
    pub ignored_keys: Vec<IgnoredKey>,
    pub last_success_unix: Option<u64>,
    pub last_attempt_unix: Option<u64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub(super) struct IssuerKeys {
    issuer: Arc<str>,
    settings: ArcSwap<Settings>,
    current: ArcSwapOption<Loaded>,
    flight: SingleFlight<FetchResult>,
    gate: Mutex<KidGate>,
    condition: Mutex<Condition>,
    metrics: Arc<JwksMetrics>,
    /// Wakes the refresh loop after a settings change.
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IssuerKeys {
    pub fn new(issuer: &Issuer, metrics: Arc<JwksMetrics>) -> Arc<Self> {
        let (source, timing) = Settings::split(issuer);
        let this = Arc::new(Self {
            issuer: Arc::from(issuer.issuer.as_str()),
            gate: Mutex::new(KidGate::new(timing.kid_cooldown)),
            settings: ArcSwap::from_pointee(Settings::new(source, timing, 0)),
            current: ArcSwapOption::empty(),
            flight: SingleFlight::default(),
            condition: Mutex::new(Condition {
                health: Health::Loading,
                last_error: None,
                last_attempt_unix: None,
                consecutive_failures: 0,
                discovered: None,
            }),
            metrics,
            wake: Notify::new(),
        });
        this.metrics.health(&this.issuer, false, false);
        this
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Apply a reloaded config entry. Returns whether anything changed.
    pub fn reconfigure(&self, issuer: &Issuer) -> bool {
        let (source, timing) = Settings::split(issuer);
        let old = self.settings.load();
        if old.source == source && old.timing == timing {
            return false;
        }
        lock(&self.gate).set_cooldown(timing.kid_cooldown);
        if old.source == source {
            // Only timing changed: keep the client (and its pooled connection).
            let fetcher = old.fetcher.clone();
            self.settings.store(Arc::new(Settings { source, timing, generation: old.generation, fetcher }));
        } else {
            self.settings.store(Arc::new(Settings::new(source, timing, old.generation + 1)));
        }
        self.wake.notify_one();
        true
    }

    /// The current keys, if still within `maxStalenessSeconds`.
    fn usable(&self, now: Instant) -> Option<Arc<Loaded>> {
        let loaded = self.current.load_full()?;
        let max = self.settings.load().timing.max_staleness;
        if within_staleness(loaded.fetched_at, now, max) {
            Some(loaded)
        } else {
            self.expire(&loaded, max, None);
            None
        }
    }

    pub fn available(&self) -> bool {
        self.usable(Instant::now()).is_some()
    }

    /// Start a refetch, or join the one in flight.
    fn refresh(self: &Arc<Self>, rediscover: bool) -> (Flight<FetchResult>, bool) {
        let this = Arc::clone(self);
        self.flight.run(move || async move { this.fetch_once(rediscover).await })
    }

    /// Start the first load (so that requests arriving before the refresh loop runs have a
    /// flight to wait for) and return the loop to spawn.
    pub fn start(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        // The loop awaits this very flight: if it called `refresh` itself, it could run only
        // after the first load landed and fetch a second time for nothing.
        let (first, _) = self.refresh(true);
        Arc::clone(self).refresh_loop(first)
    }

    /// The key for a token of this issuer.
    pub async fn resolve(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, Reason> {
        let now = Instant::now();
        let loaded = match self.usable(now) {
            Some(loaded) => loaded,
            None => {
                // Never loaded, or too old. A fetch in flight (start-up, a retry) may fix
                // that: wait for it. Never start one here: while the IdP is down the refresh
                // loop sets the pace, or every request would become a fetch.
                let flight = self.flight.current().ok_or(Reason::KeysUnavailable)?;
                let _ = flight.await;
                self.usable(Instant::now()).ok_or(Reason::KeysUnavailable)?
            }
        };
        match loaded.keys.select(kid, alg) {
            Err(Reason::UnknownKey) => {}
            found => return found,
        }
        // Unknown key: the IdP may have rotated. Joining a fetch already in flight costs the
        // IdP nothing; starting one is subject to the cooldown and the negative cache.
        //
        // A flight we join may have started before the new key was published (a scheduled
        // refresh, or another request's refetch racing the rotation). So a request that only
        // joined gets a second round: it re-reads the newest key set and, if the kid is
        // still unknown, joins the next flight or asks the gate for a refetch of its own.
        // Only refetches the gate allows reach the IdP, so the flood bound is unchanged.
        let mut started_own = false;
        for _ in 0..2 {
            let flight = match self.flight.current() {
                Some(flight) => flight,
                None if started_own => break,
                None => match lock(&self.gate).check(kid, Instant::now()) {
                    Decision::Suppressed => {
                        self.metrics.kid_suppressed(&self.issuer);
                        return Err(Reason::UnknownKey);
                    }
                    Decision::Refetch => {
                        let (flight, started) = self.refresh(false);
                        if started {
                            self.metrics.kid_refetch(&self.issuer);
                            tracing::info!(issuer = %self.issuer, kid = kid.map(short), "unknown key id: refetching the key set");
                        }
                        started_own = true;
                        flight
                    }
                },
            };
            let _ = flight.await;
            // The refetch may have failed: the keys from before are still as good as they were.
            let loaded = self.usable(Instant::now()).ok_or(Reason::KeysUnavailable)?;
            match loaded.keys.select(kid, alg) {
                Err(Reason::UnknownKey) => {}
                found => return found,
            }
        }
        lock(&self.gate).missed(kid, now);
        Err(Reason::UnknownKey)
    }

    async fn fetch_once(&self, rediscover: bool) -> FetchResult {
        let settings = self.settings.load_full();
        let fetcher = match &settings.fetcher {
            Ok(fetcher) => fetcher,
            Err(e) => {
                self.metrics.fetched(&self.issuer, e.kind(), Duration::ZERO);
                self.note_failure(e, settings.timing.max_staleness);
                return Err(Arc::clone(e));
            }
        };
        let started = Instant::now();
        let result = self.fetch_keys(&settings, fetcher, rediscover).await;
        let took = started.elapsed();
        match result {
            Ok((mut keys, freshness, jwks_uri)) => {
                // Under the condition lock, so that expiring the previous set (which
                // retires its keys) cannot interleave with this set adopting them.
                let swap = lock(&self.condition);
                let previous = self.current.load_full();
                if let Some(previous) = &previous {
                    keys.succeed(&previous.keys);
                }
                let t = settings.timing;
                let loaded = Arc::new(Loaded {
                    keys: Arc::new(keys),
                    fetched_at: Instant::now(),
                    fetched_unix: now_unix(),
                    // Refresh well before the keys could be refused as too old, whatever the
                    // IdP's max-age says: staleness is meant to count from a failure.
                    refresh_in: cache_control::refresh_interval(freshness, t.min_refresh, t.max_refresh)
                        .min((t.max_staleness / 2).max(Duration::from_secs(1))),
                    jwks_uri,
                    generation: settings.generation,
                });
                self.current.store(Some(Arc::clone(&loaded)));
                drop(swap);
                self.metrics.fetched(&self.issuer, "ok", took);
                self.metrics.loaded(&self.issuer, loaded.keys.len(), loaded.fetched_unix);
                self.note_success(&loaded, previous.as_deref());
                Ok(loaded)
            }
            Err(e) => {
                self.metrics.fetched(&self.issuer, e.kind(), took);
                self.note_failure(&e, settings.timing.max_staleness);
                Err(Arc::new(e))
            }
        }
    }

    async fn fetch_keys(
        &self,
        settings: &Settings,
        fetcher: &Fetcher,
        rediscover: bool,
    ) -> Result<(KeySet, Option<Duration>, String), JwksError> {
        let jwks_uri = match &settings.source.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let cached = lock(&self.condition)
                    .discovered
                    .as_ref()
                    .filter(|(generation, _)| *generation == settings.generation)
                    .map(|(_, uri)| uri.clone());
                match cached.filter(|_| !rediscover) {
                    Some(uri) => uri,
                    None => {
                        let url = &settings.source.discovery_uri;
                        let doc = fetcher.get_json(url, "discovery document").await?;
                        let uri = discovery::jwks_uri(&doc.body, url, &self.issuer)?;
                        lock(&self.condition).discovered = Some((settings.generation, uri.clone()));
                        uri
                    }
                }
            }
        };
        let fetched = fetcher.get_json(&jwks_uri, "key set").await?;
        let keys =
            KeySet::parse(&fetched.body).map_err(|source| JwksError::KeySet { url: jwks_uri.clone(), source })?;
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { url: jwks_uri, ignored: describe_ignored(keys.ignored()) });
        }
        Ok((keys, fetched.freshness, jwks_uri))
    }

    fn note_success(&self, loaded: &Loaded, previous: Option<&Loaded>) {
        let mut c = lock(&self.condition);
        let was = c.health;
        c.health = Health::Fresh;
        c.last_error = None;
        c.last_attempt_unix = Some(loaded.fetched_unix);
        c.consecutive_failures = 0;
        drop(c);
        self.metrics.health(&self.issuer, false, true);
        let kids = kid_list(&loaded.keys);
        let changed = previous.is_none_or(|p| kid_list(&p.keys) != kids);
        match was {
            Health::Fresh | Health::Loading if !changed => {}
            Health::Loading | Health::Fresh => {
                tracing::info!(issuer = %self.issuer, jwks_uri = %loaded.jwks_uri, keys = ?kids, "key set loaded");
            }
            Health::Stale | Health::Expired | Health::Failing => {
                tracing::warn!(issuer = %self.issuer, jwks_uri = %loaded.jwks_uri, keys = ?kids, previously = ?was,
                    "key set refreshed again: the IdP is reachable");
            }
        }
        if changed && !loaded.keys.ignored().is_empty() {
            tracing::warn!(issuer = %self.issuer, ignored = %describe_ignored(loaded.keys.ignored()), "some published keys are not usable");
        }
    }

    fn note_failure(&self, error: &JwksError, max_staleness: Duration) {
        let current = self.current.load_full();
        let mut c = lock(&self.condition);
        c.last_error = Some(error.to_string());
        c.last_attempt_unix = Some(now_unix());
        c.consecutive_failures = c.consecutive_failures.saturating_add(1);
        let health = match &current {
            Some(l) if within_staleness(l.fetched_at, Instant::now(), max_staleness) => Health::Stale,
            Some(l) => {
                drop(c);
                return self.expire(l, max_staleness, Some(error));
            }
            None => Health::Failing,
        };
        let was = c.health;
        c.health = health;
        drop(c);
        self.metrics.health(&self.issuer, true, health.available());
        if was == health {
            tracing::debug!(issuer = %self.issuer, %error, "key set refresh failed again");
            return;
        }
        match (health, current) {
            (Health::Stale, Some(l)) => tracing::warn!(issuer = %self.issuer, %error,
                keys_age_seconds = l.fetched_at.elapsed().as_secs(), max_staleness_seconds = max_staleness.as_secs(),
                "key set refresh failed: serving the last good keys until they are older than maxStalenessSeconds"),
            _ => tracing::error!(issuer = %self.issuer, %error,
                "cannot load the key set: this issuer's tokens get 503 until a fetch succeeds"),
        }
    }

    /// The keys are older than `maxStalenessSeconds` (found on the request path, by the
    /// loop, or by a failed refresh): retire them, so that verdicts cached with them end
    /// too (their tokens get 503 like any other), and say so once.
    fn expire(&self, loaded: &Arc<Loaded>, max_staleness: Duration, error: Option<&JwksError>) {
        let mut c = lock(&self.condition);
        // A fetch may have just replaced the set: only a set still current and still too
        // old expires. (Fetches swap sets under this same lock.)
        let still_current = self.current.load().as_ref().is_some_and(|cur| Arc::ptr_eq(cur, loaded));
        if !still_current || within_staleness(loaded.fetched_at, Instant::now(), max_staleness) {
            return;
        }
        loaded.keys.retire_all();
        let was = c.health;
        c.health = Health::Expired;
        drop(c);
        self.metrics.health(&self.issuer, true, false);
        if was != Health::Expired {
            self.log_expired(error, max_staleness);
        }
    }

    fn log_expired(&self, error: Option<&JwksError>, max_staleness: Duration) {
        tracing::error!(issuer = %self.issuer, error = error.map(tracing::field::display),
            max_staleness_seconds = max_staleness.as_secs(),
            "the last good keys are older than maxStalenessSeconds: this issuer's tokens get 503 until a refresh succeeds");
    }

    /// Refresh on schedule, retry with backoff while failing, refetch at once after a
    /// settings change. Runs until aborted (issuer removed, store dropped).
    async fn refresh_loop(self: Arc<Self>, first: Flight<FetchResult>) {
        let mut backoff = Backoff::default();
        let mut flight = first;
        loop {
            let result = flight.await;
            let settings = self.settings.load_full();
            let delay = match result {
                Some(Ok(loaded)) if loaded.generation == settings.generation => {
                    backoff.reset();
                    // Up to 10% early, so a fleet started together drifts apart.
                    loaded.refresh_in.mul_f64(1.0 - 0.1 * rand::random::<f64>())
                }
                // The source changed while this fetch ran: fetch again from the new one.
                Some(Ok(_)) => Duration::ZERO,
                Some(Err(_)) | None => {
                    let retry = backoff.next_delay(settings.timing.min_refresh);
                    // Wake up when the keys expire too, so the state (and its metric and
                    // log line) flips on time even when the backoff is long.
                    match self.current.load_full() {
                        Some(l) => {
                            let expires_in = settings.timing.max_staleness.saturating_sub(l.fetched_at.elapsed());
                            if expires_in.is_zero() {
                                self.usable(Instant::now());
                                retry
                            } else {
                                retry.min(expires_in + Duration::from_millis(1))
                            }
                        }
                        None => retry,
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.wake.notified() => backoff.reset(),
            }
            // Joins a flight a request may have started meanwhile.
            flight = self.refresh(true).0;
        }
    }

    pub fn retire_all(&self) {
        if let Some(l) = self.current.load_full() {
            l.keys.retire_all();
        }
        self.metrics.remove_issuer(&self.issuer);
    }

    pub fn status(&self) -> IssuerStatus {
        // Flip to Expired first if the keys have just become too old.
        let available = self.available();
        let current = self.current.load_full();
        let c = lock(&self.condition);
        IssuerStatus {
            issuer: self.issuer.to_string(),
            health: c.health,
            available,
            stale: matches!(c.health, Health::Stale | Health::Expired | Health::Failing),
            jwks_uri: current.as_ref().map(|l| l.jwks_uri.clone()),
            keys: current
                .as_ref()
                .map(|l| l.keys.keys().map(|k| k.kid().map(str::to_owned)).collect())
                .unwrap_or_default(),
            ignored_keys: current.as_ref().map(|l| l.keys.ignored().to_vec()).unwrap_or_default(),
            last_success_unix: current.as_ref().map(|l| l.fetched_unix),
            last_attempt_unix: c.last_attempt_unix,
            consecutive_failures: c.consecutive_failures,
            last_error: c.last_error.clone(),
        }
    }
}

fn kid_list(keys: &KeySet) -> Vec<Option<&str>> {
    keys.keys().map(|k| k.kid()).collect()
}

fn describe_ignored(ignored: &[IgnoredKey]) -> String {
    if ignored.is_empty() {
        return "the set is empty".to_owned();
    }
    ignored
        .iter()
        .map(|k| {
            format!(
                "kid {}: {}",
                k.kid.as_deref().map_or("(none)".to_owned(), |kid| format!("{:?}", short(kid))),
                k.why
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Kids come from unauthenticated tokens: log at most a bounded prefix.
fn short(kid: &str) -> &str {
    let mut end = kid.len().min(64);
    while !kid.is_char_boundary(end) {
        end -= 1;
    }
    &kid[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_measured_from_the_last_success() {
        let t0 = Instant::now();
        let max = Duration::from_secs(3600);
        assert!(within_staleness(t0, t0, max));
        assert!(within_staleness(t0, t0 + max, max), "the boundary is still usable");
        assert!(!within_staleness(t0, t0 + max + Duration::from_millis(1), max));
        assert!(within_staleness(t0, t0 - Duration::from_secs(1), max), "a clock read before the fetch is fine");
        assert!(!within_staleness(t0, t0 + Duration::from_secs(1), Duration::ZERO));
    }

    #[test]
    fn health_availability() {
        assert!(Health::Fresh.available());
        assert!(Health::Stale.available());
        for h in [Health::Loading, Health::Expired, Health::Failing] {
            assert!(!h.available(), "{h:?}");
        }
    }

    #[test]
    fn kid_logging_is_bounded() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(&"k".repeat(1000)).len(), 64);
        let s = "é".repeat(40);
        assert!(short(&s).len() <= 64);
    }
}
