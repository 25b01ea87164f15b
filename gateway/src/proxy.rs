//! The accept path: listener, per-connection task, relay and the guard that records each close.

pub mod addrs;
pub mod busy_poll;
mod connection;
pub mod guard;
pub mod listener;
mod relay;
pub mod unix;
pub mod workers;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::{config::Config, intercept::Attribution, postgres::PostgresSettings};

pub use connection::handle_connection;

/// Shared by every connection task.
pub struct ProxyContext {
    pub config: Arc<Config>,
    pub attribution: Arc<dyn Attribution>,
    pub stats: Arc<ProxyStats>,
    /// Root of the proc filesystem (tests point it at a fake tree).
    pub proc_root: std::path::PathBuf,
    pub postgres: PostgresSettings,
    /// Local addresses a protected server also listens on (listener coverage).
    pub coverage: Arc<crate::intercept::coverage::CoverageView>,
    /// Every connection is recorded there before it is served.
    pub audit: crate::audit::Audit,
}

/// Counters for `tollgate status`.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub live: AtomicU64,
    pub bytes_from_agents: AtomicU64,
    pub bytes_to_agents: AtomicU64,
    next_id: AtomicU64,
}

impl ProxyStats {
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "live": self.live.load(Ordering::Relaxed),
            "bytes_from_agents": self.bytes_from_agents.load(Ordering::Relaxed),
            "bytes_to_agents": self.bytes_to_agents.load(Ordering::Relaxed),
        })
    }
}
