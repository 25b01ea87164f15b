//! The log on disk: segment files named by the index of their first record
//! (`00000000000000000000.log`), one JSON record per line. The exact bytes of a line (without
//! its newline) are the Merkle leaf.

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

/// Every complete line of every segment, in order. Returns the torn tail of the last
/// segment, if any; a torn line anywhere else is handed to `each` as a line (it cannot parse).
pub fn for_each_line<E>(
    dir: &Path,
    mut each: impl FnMut(&Place, &[u8]) -> Result<(), E>,
) -> Result<Option<TornTail>, ScanError<E>> {
    let segments = list(dir).map_err(ScanError::Io)?;
    let count = segments.len();
    let mut line = Vec::with_capacity(1024);
    for (n, (_, path)) in segments.into_iter().enumerate() {
        let file = File::open(&path).map_err(ScanError::Io)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut place = Place {
            segment: path,
            line: 0,
            offset: 0,
        };
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(ScanError::Io)?;
            if read == 0 {
                break;
            }
            place.line += 1;
            if line.last() != Some(&b'\n') && n + 1 == count {
                return Ok(Some(TornTail { place, bytes: read }));
            }
            let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
            each(&place, bytes).map_err(ScanError::Line)?;
            place.offset += read as u64;
        }
    }
    Ok(None)
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError<E> {
    #[error("reading the audit log: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Line(E),
}
