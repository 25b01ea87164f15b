//! Keys from the identity provider's JWKS URL, cached. Fetched at startup, again when the set
//! is older than its lifetime (`Cache-Control: max-age`, clamped; 15 minutes without one), and
//! when a token names a key the set does not hold, never more often than `min_refetch`: tokens
//! are attacker-controlled and must not turn the gateway into a load generator. A fetch that
//! fails keeps the keys held; with none held every token is refused (fail closed).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use jsonwebtoken::jwk::Jwk;
use tokio::time::Instant;

use super::{keys, TokenError};
use crate::net::http::client::HttpClient;

pub(super) type KeysFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send + 'a>>;

/// One fetch of the key set; the network behind a trait so the cache is tested with a fake.
pub(super) trait FetchKeys: Send + Sync + 'static {
    fn fetch(&self) -> KeysFuture<'_>;
    /// Where the keys come from, for logs.
    fn source(&self) -> &str;
}

pub(super) struct Fetched {
    pub keys: Vec<Jwk>,
    pub max_age: Option<Duration>,
}

impl FetchKeys for HttpClient {
    fn fetch(&self) -> KeysFuture<'_> {
        Box::pin(async move {
            let response = self.get().await.map_err(|e| e.to_string())?;
            let keys = keys::parse_keys(&response.body)?;
            Ok(Fetched {
                keys,
                max_age: response.max_age,
            })
        })
    }

    fn source(&self) -> &str {
        self.url()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Least time between two fetch attempts (unknown keys, failed or stale sets).
    pub min_refetch: Duration,
    /// A set's lifetime when the server names none.
    pub default_lifetime: Duration,
    /// `max-age` is clamped to this range.
    pub min_lifetime: Duration,
    pub max_lifetime: Duration,
}

impl Timing {
    pub(super) fn new(min_refetch: Duration) -> Self {
        Self {
            min_refetch,
            default_lifetime: Duration::from_secs(15 * 60),
            min_lifetime: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
        }
    }

    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.default_lifetime, |age| {
            age.clamp(self.min_lifetime, self.max_lifetime)
        })
    }
}

struct Cache {
    keys: Vec<Jwk>,
    /// When the set should be fetched again; `None` until a fetch succeeds.
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Counts fetch attempts, so a task that waited for another's fetch does not repeat it.
    attempts: u64,
}

struct Shared {
    fetcher: Box<dyn FetchKeys>,
    field: String,
    timing: Timing,
    /// Held briefly, never across an await.
    cache: Mutex<Cache>,
    /// One fetch at a time; held across the network I/O.
    fetching: tokio::sync::Mutex<()>,
}

pub(super) struct RemoteKeys {
    shared: Arc<Shared>,
}

impl RemoteKeys {
    /// Starts the first fetch in the background when a runtime is running (startup does not
    /// wait for the identity provider); otherwise the first token fetches.
    pub(super) fn new(fetcher: Box<dyn FetchKeys>, field: String, timing: Timing) -> Self {
        let shared = Arc::new(Shared {
            fetcher,
            field,
            timing,
            cache: Mutex::new(Cache {
                keys: Vec::new(),
                fresh_until: None,
                last_attempt: None,
                attempts: 0,
            }),
            fetching: tokio::sync::Mutex::new(()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Bounded by the fetch timeout, so it needs no drain watcher.
            runtime.spawn(Shared::fetch_once(shared.clone(), 0));
        }
        Self { shared }
    }

    pub(super) async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let now = Instant::now();
        let (found, seen, may_fetch, stale) = {
            let cache = self.shared.lock();
            (
                keys::find(&cache.keys, kid)?,
                cache.attempts,
                self.shared.may_fetch(&cache, now),
                cache.fresh_until.is_none_or(|until| now >= until),
            )
        };
        if let Some(jwk) = found {
            let in_flight = self.shared.fetching.try_lock().is_err();
            if stale && may_fetch && !in_flight {
                // The held key is still good while the set is refreshed behind this login
                // (detached, bounded by the fetch timeout).
                tokio::spawn(Shared::fetch_once(self.shared.clone(), seen));
            }
            return Ok(jwk);
        }
        let in_flight = self.shared.fetching.try_lock().is_err();
        if may_fetch || in_flight {
            // Spawned, so a login that gives up does not cancel the fetch others wait for.
            let fetch = tokio::spawn(Shared::fetch_once(self.shared.clone(), seen));
            if let Err(error) = fetch.await {
                tracing::warn!(field = %self.shared.field, %error, "JWKS fetch task failed");
            }
        }
        let cache = self.shared.lock();
        match keys::find(&cache.keys, kid)? {
            Some(jwk) => Ok(jwk),
            None if cache.keys.is_empty() => Err(TokenError::Keys(
                "no signing keys could be fetched yet".into(),
            )),
            None => Err(TokenError::UnknownKey(kid.unwrap_or("").to_owned())),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn may_fetch(&self, cache: &Cache, now: Instant) -> bool {
        cache
            .last_attempt
            .is_none_or(|last| now.duration_since(last) >= self.timing.min_refetch)
    }

    /// Fetches unless another attempt started since `seen` or the rate limit forbids it.
    async fn fetch_once(self: Arc<Self>, seen: u64) {
        let _one_at_a_time = self.fetching.lock().await;
        let started = Instant::now();
        {
            let mut cache = self.lock();
            if cache.attempts != seen || !self.may_fetch(&cache, started) {
                return;
            }
            cache.attempts += 1;
            cache.last_attempt = Some(started);
        }
        let result = self.fetcher.fetch().await;
        let mut cache = self.lock();
        match result {
            Ok(fetched) => {
                let lifetime = self.timing.lifetime(fetched.max_age);
                tracing::info!(
                    event = "token.jwks_fetched",
                    field = %self.field,
                    jwks = %self.fetcher.source(),
                    keys = fetched.keys.len(),
                    lifetime_s = lifetime.as_secs(),
                    "JWKS fetched"
                );
                cache.keys = fetched.keys;
                cache.fresh_until = Some(started + lifetime);
            }
            Err(detail) if cache.keys.is_empty() => tracing::warn!(
                event = "token.jwks_unavailable",
                field = %self.field,
                jwks = %self.fetcher.source(),
                %detail,
                "JWKS fetch failed and no keys are held: tokens for this target are refused until a fetch succeeds"
            ),
            Err(detail) => tracing::warn!(
                event = "token.jwks_fetch_failed",
                field = %self.field,
                jwks = %self.fetcher.source(),
                %detail,
                keys = cache.keys.len(),
                "JWKS fetch failed; keeping the keys held"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
