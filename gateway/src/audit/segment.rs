//! The log on disk: segment files named by the index of their first record
//! (`00000000000000000000.log`), one JSON record per line. The exact bytes of a line (without
//! its newline) are the Merkle leaf. The segment being written is sized ahead (zeros past the
//! last record), so an append changes no file size: the log ends at the first zero byte
//! where a line would start.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

const SUFFIX: &str = ".log";
/// A segment is closed once it holds this much; the next record starts a new one.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

pub fn name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

/// The segments in `dir`, in order of their first record.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SUFFIX))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Where a line is, for messages that name it.
#[derive(Debug, Clone)]
pub struct Place {
    pub segment: PathBuf,
    /// 1-based.
    pub line: u64,
    /// Byte offset of the line's start in its segment.
    pub offset: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.segment.display(), self.line)
    }
}

/// A last line without its newline: a write the gateway did not finish (a crash).
#[derive(Debug, Clone)]
pub struct TornTail {
    pub place: Place,
    pub bytes: usize,
}

/// Where the records end.
#[derive(Debug, Default)]
pub struct Scanned {
    /// A record the last segment holds only part of.
    pub torn: Option<TornTail>,
    /// The last segment and the offset its records end at (before a torn tail and the zeros
    /// it was sized ahead with).
    pub last: Option<(u64, PathBuf, u64)>,
}

/// Every complete line of every segment, in order. A torn line anywhere but at the end of
/// the last segment is handed to `each` as a line (it cannot parse).
pub fn for_each_line<E>(
    dir: &Path,
    mut each: impl FnMut(&Place, &[u8]) -> Result<(), E>,
) -> Result<Scanned, ScanError<E>> {
    let segments = list(dir).map_err(ScanError::Io)?;
    let count = segments.len();
    let mut scanned = Scanned::default();
    let mut line = Vec::with_capacity(1024);
    for (n, (first, path)) in segments.into_iter().enumerate() {
        let file = File::open(&path).map_err(ScanError::Io)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut place = Place {
            segment: path,
            line: 0,
            offset: 0,
        };
        loop {
            let (ended, read) = next_line(&mut reader, &mut line).map_err(ScanError::Io)?;
            if line.is_empty() {
                break;
            }
            place.line += 1;
            if ended != Some(b'\n') && n + 1 == count {
                scanned.torn = Some(TornTail {
                    place: place.clone(),
                    bytes: line.len(),
                });
                break;
            }
            let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
            each(&place, bytes).map_err(ScanError::Line)?;
            place.offset += read as u64;
            if ended != Some(b'\n') {
                break;
            }
        }
        scanned.last = Some((first, place.segment, place.offset));
    }
    Ok(scanned)
}

/// Reads up to and including the next newline into `line`, stopping before a zero byte (the
/// space a segment was sized ahead with). Returns what ended it (`\n`, 0, or None at the end
/// of the file) and how many bytes were consumed.
pub(super) fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
) -> std::io::Result<(Option<u8>, usize)> {
    line.clear();
    let mut consumed = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok((None, consumed));
        }
        match buffer.iter().position(|&b| b == b'\n' || b == 0) {
            Some(at) if buffer[at] == b'\n' => {
                line.extend_from_slice(&buffer[..=at]);
                reader.consume(at + 1);
                return Ok((Some(b'\n'), consumed + at + 1));
            }
            Some(at) => {
                line.extend_from_slice(&buffer[..at]);
                reader.consume(at);
                return Ok((Some(0), consumed + at));
            }
            None => {
                let len = buffer.len();
                line.extend_from_slice(buffer);
                reader.consume(len);
                consumed += len;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError<E> {
    #[error("reading the audit log: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Line(E),
}
