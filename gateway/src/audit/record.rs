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

/// An event serialized on its own (`{"kind":...}`), before its place in the tree is known:
/// the costly part of a line, made without holding the writer. [`Body::line_into`] then
/// writes exactly the bytes [`Record::to_line`] would.
pub struct Body(Vec<u8>);

impl Body {
    pub fn of(event: &Event) -> Self {
        let mut body = Vec::with_capacity(512);
        // A record of plain strings and numbers always serializes.
        let _ = serde_json::to_writer(&mut body, event);
        Self(body)
    }

    /// Appends the record's line (without its newline) to `out`: the fields of [`Record`]
    /// in order, then the event's own (its `kind` first), as `#[serde(flatten)]` writes them.
    pub fn line_into(&self, index: u64, time_ms: u64, prev: Option<&Hash>, out: &mut Vec<u8>) {
        // Numbers as serde_json writes them (into a Vec, which cannot fail).
        out.extend_from_slice(b"{\"index\":");
        let _ = serde_json::to_writer(&mut *out, &index);
        out.extend_from_slice(b",\"time_ms\":");
        let _ = serde_json::to_writer(&mut *out, &time_ms);
        out.extend_from_slice(b",\"prev\":\"");
        if let Some(prev) = prev {
            let mut link = [0u8; 44];
            if let Ok(n) = STANDARD.encode_slice(prev, &mut link) {
                out.extend_from_slice(&link[..n]);
            }
        }
        out.extend_from_slice(b"\",");
        // The event's object without its opening brace; it has a field at least (`kind`).
        out.extend_from_slice(self.0.get(1..).unwrap_or_default());
    }
}
