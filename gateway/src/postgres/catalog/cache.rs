//! The catalog cache of one database, on demand: before a request is decided, the names its
//! statements look up (and, through cached views, what those look up) are read in one round
//! trip if any is missing; a statement whose names are all known reads nothing. Cached
//! relations are probed in the background by fingerprint, and a statement waits for a probe
//! only when the last one is older than [`MAX_STALENESS`](super::known::MAX_STALENESS).

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{
    known::{Entry, Known, Staleness},
    server::{CatalogServer, Found},
    wanted::Changes,
    CatalogError,
};
use crate::{policy::Catalog, sql::RelationName};

/// After a failed read or probe the server is left alone this long: statements go on with
/// what is known (unknown names masked) instead of each waiting for a timeout.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A read or probe taking longer than this counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads per statement at most: one, plus one per level of views over views.
const MAX_ROUNDS: usize = 18;

pub struct Cache<S> {
    server: S,
    /// Names the target in logs.
    target: String,
    known: Mutex<Known>,
    /// One probe at a time.
    probing: tokio::sync::Mutex<()>,
    probe_spawned: AtomicBool,
    failed_at: Mutex<Option<Instant>>,
}

impl<S: CatalogServer> Cache<S> {
    pub fn new(server: S, target: &str) -> Self {
        Self {
            server,
            target: target.to_owned(),
            known: Mutex::new(Known::default()),
            probing: tokio::sync::Mutex::new(()),
            probe_spawned: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        }
    }

    /// A snapshot that knows every name in `wanted` (as far as the server answered), or
    /// None when the cache could not be checked recently enough to be trusted.
    pub async fn ensure(self: &Arc<Self>, wanted: &[RelationName]) -> Option<Arc<Catalog>> {
        let staleness = self.known().staleness(Instant::now());
        match staleness {
            Staleness::Fresh => {}
            Staleness::Aging => self.spawn_probe(),
            Staleness::Stale => {
                if !self.probe_now().await {
                    // Without a catalog provenance is unknown, and results are masked.
                    return None;
                }
            }
        }
        let mut tried = HashSet::new();
        for _ in 0..MAX_ROUNDS {
            let (wanted, epoch) = {
                let known = self.known();
                let misses = known.snapshot().take_misses();
                known.missing(wanted, &misses, &tried, Instant::now())
            };
            if wanted.is_empty() || self.backing_off() {
                break;
            }
            tried.extend(wanted.everywhere.iter().map(|name| RelationName {
                schema: None,
                name: name.clone(),
            }));
            tried.extend(wanted.qualified.iter().map(|(schema, name)| RelationName {
                schema: Some(schema.clone()),
                name: name.clone(),
            }));
            let started = Instant::now();
            match self.ask("read", self.server.read(&wanted)).await {
                Some(found) => {
                    // View definitions are analysed here, outside the lock.
                    let entries: Vec<Entry> = found.into_iter().map(entry).collect();
                    tracing::debug!(
                        event = "catalog.read",
                        target = %self.target,
                        names = wanted.everywhere.len() + wanted.qualified.len(),
                        oids = wanted.oids.len(),
                        relations = entries.len(),
                        "catalog names read"
                    );
                    self.known().apply_read(&wanted, entries, started, epoch);
                }
                None => break,
            }
        }
        Some(self.known().snapshot())
    }

    /// The schema and name of a function by OID, read each time (a function can be renamed
    /// and keep its OID); None when there is none or the server cannot say now.
    pub async fn function(&self, oid: u32) -> Option<(String, String)> {
        if self.backing_off() {
            return None;
        }
        self.ask("function lookup", self.server.function(oid))
            .await
            .flatten()
    }

    /// One query to the server within [`QUERY_TIMEOUT`]; a failure is logged, and the server
    /// is left alone for a while (see [`RETRY_AFTER`]).
    async fn ask<T>(
        &self,
        what: &str,
        query: impl std::future::Future<Output = Result<T, CatalogError>>,
    ) -> Option<T> {
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(error)) => {
                self.failed(&error);
                None
            }
            Err(_) => {
                self.failed(&CatalogError::Query(format!("{what} timed out")));
                None
            }
        }
    }

    /// Forgets what DDL may have changed: the relations it names, what reads through them,
    /// and every name found absent (it may have been created or renamed to); or everything.
    pub fn forget(&self, changes: &Changes) {
        let mut known = self.known();
        if changes.everything {
            known.forget_all();
        } else if !changes.names.is_empty() {
            known.forget_names(changes.names.clone());
            known.forget_absent();
        }
    }

    fn spawn_probe(self: &Arc<Self>) {
        if self.probe_spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let _probing = cache.probing.lock().await;
            if cache.known().staleness(Instant::now()) != Staleness::Fresh && !cache.backing_off() {
                cache.probe().await;
            }
            cache.probe_spawned.store(false, Ordering::Release);
        });
    }

    /// Probes now unless another task just did; false when the cache cannot be trusted.
    async fn probe_now(&self) -> bool {
        if self.backing_off() {
            return false;
        }
        let _probing = self.probing.lock().await;
        if self.known().staleness(Instant::now()) != Staleness::Stale {
            return true;
        }
        self.probe().await
    }

    async fn probe(&self) -> bool {
        let started = Instant::now();
        let Some((names, epoch)) = self.known().begin_probe() else {
            return true;
        };
        match self.ask("probe", self.server.probe(&names)).await {
            Some(probed) => {
                let changed = self.known().apply_probe(&names, &probed, started, epoch);
                if changed > 0 {
                    tracing::info!(
                        event = "catalog.changed",
                        target = %self.target,
                        names = changed,
                        "relations changed on the server: read again when next used"
                    );
                }
                true
            }
            None => false,
        }
    }

    fn backing_off(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }

    fn failed(&self, error: &CatalogError) {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        tracing::warn!(
            event = "catalog.failed",
            target = %self.target,
            %error,
            "catalog not read: results on this target are masked where provenance is unknown"
        );
    }

    pub fn known(&self) -> MutexGuard<'_, Known> {
        // Each change to it is made whole under the lock, or not at all.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry(found: Found) -> Entry {
    let relation = Arc::new(found.relation);
    let needs = relation.names_needed();
    Entry {
        relation,
        fingerprint: found.fingerprint,
        needs,
        in_flux: found.in_flux,
    }
}
