//! The key cache against a fake identity provider: what is fetched when, and what a login
//! sees while the provider is slow, down or rotating keys. Real time, short intervals.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Long enough that a busy test machine does not cross it by accident.
const MIN_REFETCH: Duration = Duration::from_secs(1);

/// Serves whatever `publish` last set, counting requests.
#[derive(Clone)]
struct Provider {
    published: Arc<Mutex<Result<Vec<&'static str>, String>>>,
    requests: Arc<AtomicUsize>,
    delay: Duration,
    max_age: Option<Duration>,
}

impl Provider {
    fn new(kids: &[&'static str]) -> Self {
        Self {
            published: Arc::new(Mutex::new(Ok(kids.to_vec()))),
            requests: Arc::new(AtomicUsize::new(0)),
            delay: Duration::ZERO,
            max_age: None,
        }
    }

    fn publish(&self, kids: &[&'static str]) {
        *self.published.lock().unwrap() = Ok(kids.to_vec());
    }

    fn fail(&self) {
        *self.published.lock().unwrap() = Err("connection refused".into());
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn keys(&self, timing: Timing) -> RemoteKeys {
        RemoteKeys::new(
            Box::new(self.clone()),
            "targets[db].token_jwks_url".into(),
            timing,
        )
    }
}

impl FetchKeys for Provider {
    fn fetch(&self) -> KeysFuture<'_> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let kids = self.published.lock().unwrap().clone()?;
            let set = serde_json::json!({"keys": kids.iter().map(|kid| serde_json::json!(
                {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid, "x": "AAAA", "y": "AAAA"}
            )).collect::<Vec<_>>()});
            Ok(Fetched {
                keys: keys::parse_keys(set.to_string().as_bytes())?,
                max_age: self.max_age,
            })
        })
    }

    fn source(&self) -> &str {
        "fake"
    }
}

fn timing() -> Timing {
    Timing::new(MIN_REFETCH)
}

fn kid(result: Result<Jwk, TokenError>) -> Result<String, TokenError> {
    result.map(|jwk| jwk.common.key_id.unwrap_or_default())
}

#[tokio::test]
async fn keys_are_fetched_at_startup_and_cached() {
    let provider = Provider::new(&["k1"]);
    let keys = provider.keys(timing());
    for _ in 0..50 {
        assert_eq!(kid(keys.key_for(Some("k1")).await), Ok("k1".into()));
    }
    // A single key serves tokens without a kid.
    assert_eq!(kid(keys.key_for(None).await), Ok("k1".into()));
    assert_eq!(provider.requests(), 1, "one fetch, not one per login");
}

#[tokio::test]
async fn an_unknown_key_refetches_at_most_once_per_interval() {
    let provider = Provider::new(&["old"]);
    let keys = provider.keys(timing());
    assert!(keys.key_for(Some("old")).await.is_ok());
    // Right after startup's fetch the rate limit holds: refused without asking.
    assert_eq!(
        kid(keys.key_for(Some("new")).await),
        Err(TokenError::UnknownKey("new".into()))
    );
    provider.publish(&["old", "new"]);
    assert_eq!(
        kid(keys.key_for(Some("new")).await),
        Err(TokenError::UnknownKey("new".into()))
    );
    assert_eq!(provider.requests(), 1);
    tokio::time::sleep(MIN_REFETCH + Duration::from_millis(50)).await;
    assert_eq!(kid(keys.key_for(Some("new")).await), Ok("new".into()));
    assert_eq!(kid(keys.key_for(Some("old")).await), Ok("old".into()));
    assert_eq!(provider.requests(), 2);
    // Random kids cannot make the gateway hammer the provider.
    for i in 0..20 {
        let bogus = format!("bogus-{i}");
        assert!(keys.key_for(Some(&bogus)).await.is_err());
    }
    assert_eq!(provider.requests(), 2);
}

#[tokio::test]
async fn no_keys_refuse_every_token_until_a_fetch_succeeds() {
    let provider = Provider::new(&[]);
    provider.fail();
    let keys = provider.keys(timing());
    let unavailable = Err(TokenError::Keys(
        "no signing keys could be fetched yet".into(),
    ));
    assert_eq!(kid(keys.key_for(Some("k1")).await), unavailable);
    assert_eq!(kid(keys.key_for(None).await), unavailable);
    provider.publish(&["k1"]);
    assert_eq!(kid(keys.key_for(Some("k1")).await), unavailable);
    tokio::time::sleep(MIN_REFETCH + Duration::from_millis(50)).await;
    assert_eq!(kid(keys.key_for(Some("k1")).await), Ok("k1".into()));
    assert_eq!(provider.requests(), 2);
}

#[tokio::test]
async fn a_stale_set_is_refreshed_and_a_failed_refresh_keeps_the_keys() {
    let provider = Provider::new(&["k1"]);
    let timing = Timing {
        min_refetch: Duration::from_millis(100),
        default_lifetime: Duration::from_millis(200),
        min_lifetime: Duration::ZERO,
        max_lifetime: Duration::from_secs(60),
    };
    let keys = provider.keys(timing);
    assert!(keys.key_for(Some("k1")).await.is_ok());
    provider.fail();
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Stale: the held key still answers and a refresh starts behind it, and fails.
    assert!(keys.key_for(Some("k1")).await.is_ok());
    wait_for(|| provider.requests() >= 2).await;
    assert!(keys.key_for(Some("k1")).await.is_ok());
    // The provider recovers with a rotated set: a login on the stale set picks it up behind
    // itself, and a key the provider dropped is dropped.
    provider.publish(&["k2"]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(keys.key_for(Some("k1")).await.is_ok());
    wait_for(|| held(&keys) == ["k2"]).await;
    assert_eq!(kid(keys.key_for(Some("k2")).await), Ok("k2".into()));
    assert_eq!(
        kid(keys.key_for(Some("k1")).await),
        Err(TokenError::UnknownKey("k1".into()))
    );
}

fn held(keys: &RemoteKeys) -> Vec<String> {
    let cache = keys.shared.lock();
    cache
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect()
}

#[tokio::test]
async fn concurrent_logins_share_one_fetch() {
    let mut provider = Provider::new(&["k1"]);
    provider.delay = Duration::from_millis(200);
    let keys = Arc::new(provider.keys(timing()));
    // Startup's fetch is still in flight: logins wait for it instead of being refused.
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { kid(keys.key_for(Some("k1")).await) })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap(), Ok("k1".into()));
    }
    assert_eq!(provider.requests(), 1);
}

#[tokio::test]
async fn several_keys_need_a_kid() {
    let provider = Provider::new(&["a", "b"]);
    let keys = provider.keys(timing());
    assert!(keys.key_for(Some("a")).await.is_ok());
    assert_eq!(kid(keys.key_for(None).await), Err(TokenError::NoKeyId));
}

#[test]
fn max_age_is_clamped() {
    let timing = timing();
    let lifetime = |secs: Option<u64>| timing.lifetime(secs.map(Duration::from_secs)).as_secs();
    assert_eq!(lifetime(None), 15 * 60);
    assert_eq!(lifetime(Some(0)), 60);
    assert_eq!(lifetime(Some(3600)), 3600);
    assert_eq!(lifetime(Some(u64::MAX)), 24 * 60 * 60);
}

async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within two seconds");
}
