//! A sink's durable cursor: the index of the next record to deliver and the log it belongs
//! to. Written (temporary file, fsync, rename) only once the sink has the records before it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub next: u64,
    /// The log's id: the cursor of another log (one moved aside, a new one started) is
    /// never applied to this one.
    pub log: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a cursor file ({1})")]
    Malformed(PathBuf, String),
}

pub fn load(path: &Path) -> Result<Option<Cursor>, CursorError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CursorError::Malformed(path.to_owned(), e.to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CursorError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

pub fn store(path: &Path, cursor: &Cursor) -> Result<(), CursorError> {
    // A cursor of plain numbers and text always serializes.
    let text = serde_json::to_vec(cursor).unwrap_or_default();
    crate::durable::replace(path, &text).map_err(|source| CursorError::Io {
        path: path.to_owned(),
        source,
    })
}
