//! The catalog of each protected database, read over the gateway's own side connection and
//! only as far as statements and results need it: work per statement is proportional to the
//! statement, not to the database.
//!
//! - Before a request is decided, the names its statements look up (and what the cached views
//!   among them look up) must be known; whatever is missing is read in one round trip per
//!   level of views. A name found absent is believed for [`known::ABSENT_FOR`].
//! - A RowDescription origin the snapshot lacks is masked as unknown and read for the next
//!   statement.
//! - DDL the gateway allowed forgets the relations it names, what reads through them, and
//!   every absent name (other DDL forgets everything, which costs no more than a cold cache).
//! - Changes made elsewhere (another session, a function, an unparsed statement) are found by
//!   probing the cached relations' fingerprints (row versions of their pg_class, pg_namespace,
//!   pg_attribute and pg_rewrite rows): in the background after [`known::PROBE_AFTER`], and a
//!   statement waits for a probe when the last one is older than [`known::MAX_STALENESS`].
//!   That is the window in which another session's committed CREATE OR REPLACE VIEW can go
//!   unnoticed.
//! - A relation that another transaction holds exclusively (being changed, maybe by the very
//!   session asking, which sees the change before it commits) is not cached: it stays unknown.
//!
//! Snapshots are immutable and share structure, so sessions keep comparing them by pointer.

mod cache;
mod estimate;
mod known;
mod pending;
mod server;
#[cfg(test)]
mod tests;
mod wanted;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use self::{cache::Cache, server::PgServer};
use super::{session::Credentials, tls::UpstreamConnector};
use crate::{policy::Catalog, sql::StatementFacts};

pub use self::{
    pending::{PendingChanges, Settled},
    wanted::{wanted_names, Changes, RequestNames},
};

/// How the gateway reaches one target's catalog.
pub struct CatalogAccess {
    pub target: String,
    pub credentials: Credentials,
    pub connector: UpstreamConnector,
    pub bypass_mark: u32,
    pub connect_timeout: Duration,
}

/// Catalog caches per (target, server address, database).
#[derive(Default)]
pub struct CatalogStore {
    slots: Mutex<HashMap<(String, SocketAddr, String), Arc<CatalogSlot>>>,
}

impl CatalogStore {
    pub fn slot(&self, target: &str, server: SocketAddr, database: &str) -> Arc<CatalogSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry((target.to_owned(), server, database.to_owned()))
            .or_insert_with(|| {
                Arc::new(CatalogSlot {
                    server,
                    database: database.to_owned(),
                    cache: OnceLock::new(),
                    estimator: estimate::Estimator::default(),
                })
            })
            .clone()
    }
}

/// One database's cache, with its side connection made on first use.
pub struct CatalogSlot {
    server: SocketAddr,
    database: String,
    cache: OnceLock<Arc<Cache<PgServer>>>,
    estimator: estimate::Estimator,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("connecting to the server for its catalog: {0}")]
    Connect(String),
    #[error("reading the catalog: {0}")]
    Query(String),
}

impl CatalogSlot {
    /// A snapshot that knows what a request looks up (see [`wanted_names`]), less what its
    /// session's unanswered DDL may change (see [`PendingChanges`]); or None when the
    /// catalog cannot be trusted now (provenance is then unknown, and results masked).
    pub async fn current(
        &self,
        access: &CatalogAccess,
        request: &RequestNames,
        settled: &Settled,
    ) -> Option<Arc<Catalog>> {
        let cache = self.cache(access);
        cache.forget(&settled.answered);
        let held = &settled.held;
        if held.is_empty() {
            return cache.ensure(&request.wanted).await;
        }
        if held.everything {
            cache.ensure(&[]).await?;
        } else {
            let wanted: Vec<_> = (request.wanted.iter())
                .filter(|name| !held.names.contains(&name.name))
                .cloned()
                .collect();
            cache.ensure(&wanted).await?;
        }
        Some(cache.known().without(held))
    }

    /// The planner's estimate of the rows a statement without literal values returns or
    /// touches (it does not run), if it can be planned.
    pub async fn estimate(&self, access: &CatalogAccess, parameterised: &str) -> Option<u64> {
        (self.estimator)
            .rows(access, self.server, &self.database, parameterised)
            .await
    }

    /// The schema and name of the function with this OID, if the server has one.
    pub async fn function(&self, access: &CatalogAccess, oid: u32) -> Option<(String, String)> {
        self.cache(access).function(oid).await
    }

    fn cache(&self, access: &CatalogAccess) -> &Arc<Cache<PgServer>> {
        self.cache.get_or_init(|| {
            let server = PgServer::new(access, self.server, &self.database);
            let target = server.target().to_owned();
            Arc::new(Cache::new(server, &target))
        })
    }

    /// After DDL the gateway allowed: forgets what it may change, for every session.
    pub fn forget_ddl(&self, facts: &StatementFacts) {
        if let (Some(cache), Some(changes)) = (self.cache.get(), Changes::of(facts)) {
            cache.forget(&changes);
        }
    }
}
