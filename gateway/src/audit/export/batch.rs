//! Records grouped under the checkpoint that covers them: the first signed checkpoint after a
//! record is the one a receiver checks it against (inclusion proof of the leaf in that tree).
//! A record waits here until its checkpoint is written, at most a second or 1,000 records.

use std::{path::Path, sync::Arc};

use super::{
    super::{
        event::Event,
        merkle::{leaf_hash, Hash},
        record::Record,
    },
    tail::{Line, Tail, TailError},
};

/// The signed checkpoint a record is covered by.
#[derive(Debug)]
pub struct Cover {
    /// The checkpoint's own record.
    pub index: u64,
    /// Records in the tree it signs (its own record not included).
    pub size: u64,
    /// Base64 of the root hash, as in the note.
    pub root: String,
}

/// One record ready to export.
#[derive(Debug)]
pub struct Covered {
    pub index: u64,
    /// The record's exact bytes, for the receiver to hash.
    pub bytes: Vec<u8>,
    pub leaf: Hash,
    pub record: Record,
    pub cover: Arc<Cover>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error("record {0} of the audit log does not parse: run `tollgate audit verify`")]
    Corrupt(u64),
}

pub struct Reader {
    tail: Tail,
    /// Read, waiting for their checkpoint.
    waiting: Vec<(Line, Record)>,
}

/// Lines read from the log at a time.
const READ_AHEAD: usize = 2048;

impl Reader {
    pub fn new(dir: &Path, next: u64) -> Self {
        Self {
            tail: Tail::new(dir, next),
            waiting: Vec::new(),
        }
    }

    /// The records covered by a checkpoint from the next one on: whole groups, until at
    /// least `max` or nothing more is covered. `limit`: records the log has synced.
    pub fn next_batch(&mut self, max: usize, limit: u64) -> Result<Vec<Covered>, ReadError> {
        let mut out = Vec::new();
        while out.len() < max {
            let lines = self.tail.read(READ_AHEAD, limit)?;
            if lines.is_empty() {
                break;
            }
            for line in lines {
                let record =
                    Record::parse(&line.bytes).map_err(|_| ReadError::Corrupt(line.index))?;
                if record.index != line.index {
                    return Err(ReadError::Corrupt(line.index));
                }
                let cover = match &record.event {
                    Event::Checkpoint { note } => Some(cover(line.index, note)?),
                    _ => None,
                };
                self.waiting.push((line, record));
                if let Some(cover) = cover {
                    let cover = Arc::new(cover);
                    out.extend(self.waiting.drain(..).map(|(line, record)| Covered {
                        index: line.index,
                        leaf: leaf_hash(&line.bytes),
                        bytes: line.bytes,
                        record,
                        cover: cover.clone(),
                    }));
                }
            }
        }
        Ok(out)
    }
}

fn cover(index: u64, note: &str) -> Result<Cover, ReadError> {
    let mut lines = note.lines().skip(1);
    let size = lines.next().and_then(|s| s.parse().ok());
    let root = lines.next();
    match (size, root) {
        (Some(size), Some(root)) => Ok(Cover {
            index,
            size,
            root: root.to_owned(),
        }),
        _ => Err(ReadError::Corrupt(index)),
    }
}
