//! Reading the log from a record on, as it grows: only whole lines, across segments, and
//! never past what the writer reports synced (a record the disk might still lose is not
//! sent anywhere, so an id never names two different events).

use std::{
    fs::File,
    io::{BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use super::super::segment::{self, next_line};

/// One record as it is in the log: its index and its exact bytes (the Merkle leaf).
#[derive(Debug, Clone)]
pub struct Line {
    pub index: u64,
    pub bytes: Vec<u8>,
}

pub struct Tail {
    dir: PathBuf,
    /// The index of the next record to read.
    next: u64,
    /// The segment being read and the offset of the next line in it.
    at: Option<(PathBuf, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("reading the audit log: {0}")]
    Io(#[from] std::io::Error),
    #[error("the audit log holds no record {0} (it holds {1}): was it replaced?")]
    Missing(u64, u64),
}

impl Tail {
    pub fn new(dir: &Path, next: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            next,
            at: None,
        }
    }

    /// Reads whole records from the next one on, at most `max`, and none at or after `limit`.
    pub fn read(&mut self, max: usize, limit: u64) -> Result<Vec<Line>, TailError> {
        let mut lines = Vec::new();
        while lines.len() < max && self.next < limit {
            let before = lines.len();
            self.read_segment(&mut lines, max, limit)?;
            if lines.len() == before {
                // Nothing more here: the next record may start a new segment.
                let next = self.dir.join(segment::name(self.next));
                if self.at.as_ref().is_some_and(|(path, _)| *path != next) && next.exists() {
                    self.at = Some((next, 0));
                    continue;
                }
                break;
            }
        }
        Ok(lines)
    }

    fn read_segment(
        &mut self,
        lines: &mut Vec<Line>,
        max: usize,
        limit: u64,
    ) -> Result<(), TailError> {
        let (path, offset) = match self.at.take() {
            Some(at) => at,
            None => self.locate()?,
        };
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut offset = offset;
        let mut line = Vec::with_capacity(1024);
        while lines.len() < max && self.next < limit {
            let (ended, read) = next_line(&mut reader, &mut line)?;
            if ended != Some(b'\n') {
                // The end of what is written (zeros ahead, or a line still being written).
                break;
            }
            offset += read as u64;
            line.pop();
            lines.push(Line {
                index: self.next,
                bytes: std::mem::take(&mut line),
            });
            self.next += 1;
        }
        self.at = Some((path, offset));
        Ok(())
    }

    /// The segment holding the next record, and the offset of its line.
    fn locate(&mut self) -> Result<(PathBuf, u64), TailError> {
        let segments = segment::list(&self.dir)?;
        let Some((first, path)) = segments
            .into_iter()
            .rev()
            .find(|(first, _)| *first <= self.next)
        else {
            return Err(TailError::Missing(self.next, 0));
        };
        let mut reader = BufReader::with_capacity(256 * 1024, File::open(&path)?);
        let mut offset = 0;
        let mut index = first;
        let mut line = Vec::new();
        while index < self.next {
            let (ended, read) = next_line(&mut reader, &mut line)?;
            if ended != Some(b'\n') {
                return Err(TailError::Missing(self.next, index));
            }
            offset += read as u64;
            index += 1;
        }
        Ok((path, offset))
    }
}
