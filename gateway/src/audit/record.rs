//! One line of the log: its place in the tree, when, a link to the record before it, and the
//! event. The link names a modified record exactly (the next one no longer links to it); the
//! signed checkpoints catch whatever an editor recomputed.

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

use super::{event::Event, merkle::Hash};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub index: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Base64 of the previous record's leaf hash; empty for the first.
    pub prev: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    pub fn new(index: u64, prev: Option<&Hash>, event: Event) -> Self {
        Self {
            index,
            time_ms: now_ms(),
            prev: prev.map(link).unwrap_or_default(),
            event,
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        // A record of plain strings and numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

/// How a record names the one before it.
pub fn link(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
