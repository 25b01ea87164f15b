//! Evidence: typed audit events, appended to a tamper-evident log before what they record
//! happens. Records are lines of JSON in segment files under `audit.dir`; an RFC 6962 Merkle
//! tree runs over them, and checkpoints (C2SP signed notes, Ed25519) sign it every second and
//! every 1,000 records. Anyone with the verifier key can check the log, a record's inclusion,
//! or that today's log grew from yesterday's checkpoint by appending only.
//!
//! At the bottom of the import graph: every protocol fills the same events, and nothing here
//! knows about them. Operational logging (`tracing`) stays separate.

pub mod commands;
pub mod event;
pub mod export;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod note;
pub mod prove;
pub mod record;
pub mod segment;
pub mod sessions;
pub mod verify;

use std::path::PathBuf;

pub use event::Event;
pub use log::AuditLog;

/// Bytes as lower-case hex, as digests are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an audit consumer holds.
pub type Audit = std::sync::Arc<AuditLog>;

/// SQLSTATE a request gets while its record cannot be written (`disk_full`).
pub const UNAVAILABLE_SQLSTATE: &str = "53100";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit signing key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error(
        "the audit log does not read back at {place}: the record {why}. Run `tollgate audit \
         verify`; to start a new log, move the directory aside (keep it as evidence)"
    )]
    Corrupt { place: String, why: String },
    /// The record could not be written: what it records must not happen.
    #[error("the audit log cannot be written ({0})")]
    Unavailable(String),
}

impl AuditError {
    pub fn io(what: String, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}

#[cfg(test)]
pub(crate) mod tests;
