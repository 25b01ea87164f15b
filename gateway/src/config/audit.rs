//! The `[audit]` section: where the evidence log lives, how it reaches the disk and what
//! signs its checkpoints. The log is always on; these only tune it.

use std::{path::PathBuf, time::Duration};

use super::{
    export::{self, ExportSink},
    raw::RawAudit,
    validate::{absolute, bounded, issue, Issue},
};

/// When a record is on disk relative to the request it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written before the request is forwarded (it survives the gateway's crash); synced to
    /// the disk at least every `flush_ms` (a power loss may cost that much).
    Batched,
    /// The request waits for its record's fsync; concurrent sessions share one.
    Strict,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batched => "batched",
            Self::Strict => "strict",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Segment files, the latest checkpoint and nothing else.
    pub dir: PathBuf,
    pub durability: Durability,
    /// Records are synced at least this often (strict mode also syncs at once for each
    /// request waiting).
    pub flush_interval: Duration,
    /// The Ed25519 signing key (C2SP `PRIVATE+KEY+...` text); generated on first run.
    pub key_file: PathBuf,
    /// The checkpoints' origin line and the key's name.
    pub origin: String,
    /// SIEM sinks the log's events are exported to.
    pub exports: Vec<ExportSink>,
}

const DEFAULT_FLUSH_MS: u64 = 20;
const MAX_FLUSH_MS: u64 = 10_000;

pub fn settings(
    raw: Option<&RawAudit>,
    state_dir: &std::path::Path,
) -> Result<AuditSettings, Issue> {
    let default = RawAudit::default();
    let raw = raw.unwrap_or(&default);
    let dir = match &raw.dir {
        Some(dir) => absolute("audit.dir", dir)?,
        None => state_dir.join("audit"),
    };
    let durability = match &raw.durability {
        None => Durability::Batched,
        Some(text) => match text.get_ref().as_str() {
            "batched" => Durability::Batched,
            "strict" => Durability::Strict,
            other => {
                return Err(issue(
                    "audit.durability",
                    text,
                    format!("`{other}` is not one of: batched, strict"),
                ))
            }
        },
    };
    let flush_ms = bounded(
        "audit.flush_ms",
        raw.flush_ms.as_ref(),
        DEFAULT_FLUSH_MS,
        1..=MAX_FLUSH_MS,
    )?;
    let key_file = match &raw.key_file {
        Some(file) => absolute("audit.key_file", file)?,
        None => state_dir.join("audit-key"),
    };
    let origin = match &raw.origin {
        Some(origin) if valid_origin(origin.get_ref()) => origin.get_ref().clone(),
        Some(origin) => {
            return Err(issue(
                "audit.origin",
                origin,
                "must be non-empty, without spaces, `+` or control characters (it names the \
                 signing key)",
            ))
        }
        None => default_origin(),
    };
    Ok(AuditSettings {
        dir,
        durability,
        flush_interval: Duration::from_millis(flush_ms),
        key_file,
        origin,
        exports: match &raw.export {
            Some(sinks) => export::sinks(sinks.get_ref(), state_dir)?,
            None => Vec::new(),
        },
    })
}

/// A C2SP key name: the origin doubles as the name of the key that signs it.
fn valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// `tollgate.audit/<host name>`: a log is named by the host that keeps it.
fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_origin(h))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("tollgate.audit/{host}")
}
