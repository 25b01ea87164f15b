//! Derived columns of persistent tables, and targets whose server-side settings code Tollgate
//! cannot read may have filled, kept in `state_dir/classified.json` so they survive restarts
//! and policy reloads. The gateway and the `tollgate classified` commands both
//! change the file, each as read-modify-write under an exclusive lock, so neither loses the
//! other's change; the gateway notices the admin's edits by the file's modification time.

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use super::{class_of, DerivedColumn};

/// The file under `state_dir`.
pub const FILE_NAME: &str = "classified.json";

/// One derived column as stored, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedRecord {
    pub target: String,
    /// `*`: any schema (the destination could not be placed).
    pub schema: String,
    pub table: String,
    /// `*`: every column.
    pub column: String,
    pub categories: Vec<String>,
    /// Stored exactly as the source column's value (else computed from it).
    pub direct: bool,
    /// Computed by something Tollgate cannot trace (masked whatever its categories).
    pub unknown: bool,
    pub provenance: Provenance,
}

/// Who filled a derived column from what, when: the first statement that did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Classified relations the statement read (`schema.table`).
    pub sources: Vec<String>,
    /// The statement's command (`INSERT`, `CREATE TABLE`, ...).
    pub statement: String,
    /// The agent: process, uid, cgroup, token subject.
    pub identity: String,
    /// RFC 3339, UTC.
    pub at: String,
}

impl DerivedRecord {
    pub fn new(target: &str, column: DerivedColumn, provenance: Provenance) -> Self {
        Self {
            target: target.to_owned(),
            schema: column.schema,
            table: column.table,
            column: column.column,
            categories: column
                .class
                .categories
                .iter()
                .map(|c| c.to_string())
                .collect(),
            direct: column.class.direct,
            unknown: column.class.unknown,
            provenance,
        }
    }

    pub fn column(&self) -> DerivedColumn {
        DerivedColumn {
            schema: self.schema.clone(),
            table: self.table.clone(),
            column: self.column.clone(),
            class: class_of(&self.categories, self.direct, self.unknown),
        }
    }

    fn same_place(&self, other: &DerivedRecord) -> bool {
        self.target == other.target
            && self.schema == other.schema
            && self.table == other.table
            && self.column == other.column
    }

    /// Takes on what `other` adds; true when that changed anything.
    fn absorb(&mut self, other: &DerivedRecord) -> bool {
        let before = self.clone();
        for category in &other.categories {
            if !self.categories.contains(category) {
                self.categories.push(category.clone());
            }
        }
        self.categories.sort();
        self.direct &= other.direct;
        self.unknown |= other.unknown;
        for source in &other.provenance.sources {
            if !self.provenance.sources.contains(source) {
                self.provenance.sources.push(source.clone());
            }
        }
        *self != before
    }

    /// `TABLE` or `SCHEMA.TABLE`, optionally `.COLUMN`, as an admin writes it (a record
    /// for any schema is for the one named too).
    pub fn matches(&self, spec: &ForgetSpec) -> bool {
        let schema = spec
            .schema
            .as_deref()
            .is_none_or(|s| s == self.schema || self.schema == super::ANY);
        let column = spec.column.as_deref().is_none_or(|c| c == self.column);
        schema && spec.table == self.table && column
    }
}

/// A target on which code Tollgate cannot read (`DO`, `CALL`, a user-defined function) ran
/// for an agent that can read classified data. Such code may have stored a classified value
/// in a setting every later session inherits (`ALTER ROLE | DATABASE | SYSTEM ... SET`), so
/// settings a session did not set itself are read back masked until an admin has checked
/// them and forgets this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub target: String,
    pub provenance: Provenance,
}

/// What `tollgate classified forget` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetSpec {
    pub schema: Option<String>,
    pub table: String,
    pub column: Option<String>,
}

impl ForgetSpec {
    /// `table`, `schema.table` or `schema.table.column` (a name with no schema matches it in
    /// every schema).
    pub fn parse(text: &str) -> Result<Self, DerivedStoreError> {
        let parts: Vec<&str> = text.split('.').collect();
        let bad = || DerivedStoreError::Spec(text.to_owned());
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let owned = |s: &str| Some(s.to_owned());
        match parts.as_slice() {
            [table] => Ok(Self {
                schema: None,
                table: (*table).to_owned(),
                column: None,
            }),
            [schema, table] => Ok(Self {
                schema: owned(schema),
                table: (*table).to_owned(),
                column: None,
            }),
            [schema, table, column] => Ok(Self {
                schema: owned(schema),
                table: (*table).to_owned(),
                column: owned(column),
            }),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DerivedStoreError {
    #[error("derived classification file {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{0:?} is not TABLE, SCHEMA.TABLE or SCHEMA.TABLE.COLUMN")]
    Spec(String),
}

/// The file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Document {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    pub columns: Vec<DerivedRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingsRecord>,
}

pub struct DerivedStore {
    path: PathBuf,
    document: Mutex<Document>,
    /// Bumped on every change, so sessions rebuild what they resolve against.
    generation: AtomicU64,
    modified: Mutex<Option<SystemTime>>,
    /// Per target: whether its inherited settings may hold classified values. Shared with
    /// that target's sessions, which mask what the server reports at once.
    settings_flags: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl DerivedStore {
    /// The store under `state_dir` (empty when there is no file yet).
    pub fn open(state_dir: &Path) -> Result<Self, DerivedStoreError> {
        let path = state_dir.join(FILE_NAME);
        let document = read(&path)?;
        Ok(Self {
            modified: Mutex::new(modified(&path)),
            path,
            document: Mutex::new(document),
            generation: AtomicU64::new(0),
            settings_flags: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The derived columns of one target.
    pub fn columns(&self, target: &str) -> Vec<DerivedColumn> {
        let document = self.lock();
        document
            .columns
            .iter()
            .filter(|r| r.target == target)
            .map(DerivedRecord::column)
            .collect()
    }

    /// Records derived columns. Known in memory at once (every session sees them from its
    /// next decision); written to the file when they change it.
    pub fn record(&self, new: Vec<DerivedRecord>) -> Result<(), DerivedStoreError> {
        self.change(|document| merge_all(&mut document.columns, &new))
    }

    /// Records that code Tollgate cannot read ran on `target` (the first time is kept).
    pub fn record_settings(&self, new: SettingsRecord) -> Result<(), DerivedStoreError> {
        self.change(|document| {
            let known = document.settings.iter().any(|r| r.target == new.target);
            if !known {
                document.settings.push(new.clone());
            }
            !known
        })
    }

    /// Whether `target`'s inherited settings may hold classified values: a flag that follows
    /// the store (set when recorded, cleared when an admin forgets the record).
    pub fn settings_flag(&self, target: &str) -> Arc<AtomicBool> {
        let tainted = self.lock().settings.iter().any(|r| r.target == target);
        let mut flags = self
            .settings_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        flags
            .entry(target.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(tainted)))
            .clone()
    }

    /// Applies `change` in memory and, when it changed anything, to the file.
    fn change(&self, change: impl Fn(&mut Document) -> bool) -> Result<(), DerivedStoreError> {
        let mut document = self.lock();
        if !change(&mut document) {
            return Ok(());
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        let written = update(&self.path, &change);
        // What the file holds now (an admin may have changed it meanwhile), with ours.
        if let Ok(on_disk) = &written {
            *document = on_disk.clone();
        }
        self.raise_flags(&document);
        *self.modified.lock().unwrap_or_else(|p| p.into_inner()) = modified(&self.path);
        written.map(|_| ())
    }

    /// Reads the file again when it changed on disk (an admin forgot something).
    pub fn reload_if_changed(&self) -> Result<bool, DerivedStoreError> {
        let now = modified(&self.path);
        let mut seen = self.modified.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return Ok(false);
        }
        let document = read(&self.path)?;
        self.raise_flags(&document);
        *self.lock() = document;
        *seen = now;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Brings every target's settings flag in line with `document`.
    fn raise_flags(&self, document: &Document) {
        let flags = self
            .settings_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (target, flag) in flags.iter() {
            let tainted = document.settings.iter().any(|r| &r.target == target);
            flag.store(tainted, Ordering::Release);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Document> {
        self.document.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything in the file under `state_dir` (for `tollgate classified list`).
pub fn list(state_dir: &Path) -> Result<Document, DerivedStoreError> {
    read(&state_dir.join(FILE_NAME))
}

/// Removes the records `spec` names (of `target`, or every target); returns them.
pub fn forget(
    state_dir: &Path,
    target: Option<&str>,
    spec: &ForgetSpec,
) -> Result<Vec<DerivedRecord>, DerivedStoreError> {
    remove(
        state_dir,
        |document| &mut document.columns,
        |r| r.matches(spec) && target.is_none_or(|t| t == r.target),
    )
}

/// Removes the settings records of `target`, or of every target; returns them.
pub fn forget_settings(
    state_dir: &Path,
    target: Option<&str>,
) -> Result<Vec<SettingsRecord>, DerivedStoreError> {
    remove(
        state_dir,
        |document| &mut document.settings,
        |r| target.is_none_or(|t| t == r.target),
    )
}

/// Removes the records of one list in the file that `gone` picks; returns them.
fn remove<R: Clone>(
    state_dir: &Path,
    list: impl Fn(&mut Document) -> &mut Vec<R>,
    gone: impl Fn(&R) -> bool,
) -> Result<Vec<R>, DerivedStoreError> {
    let mut removed = Vec::new();
    update(&state_dir.join(FILE_NAME), |document: &mut Document| {
        list(document).retain(|r| {
            if gone(r) {
                removed.push(r.clone());
                return false;
            }
            true
        });
        !removed.is_empty()
    })?;
    Ok(removed)
}

/// Adds `new` to `records`; true when anything changed.
fn merge_all(records: &mut Vec<DerivedRecord>, new: &[DerivedRecord]) -> bool {
    let mut changed = false;
    for record in new {
        match records.iter_mut().find(|r| r.same_place(record)) {
            Some(existing) => changed |= existing.absorb(record),
            None => {
                records.push(record.clone());
                changed = true;
            }
        }
    }
    changed
}

fn read(path: &Path) -> Result<Document, DerivedStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Document::default()),
        Err(error) => Err(file_error(path, error)),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Document, DerivedStoreError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Document::default());
    }
    serde_json::from_slice(bytes).map_err(|e| file_error(path, e))
}

/// Read-modify-write of the file under an exclusive lock; `change` says whether it changed
/// anything (nothing is written otherwise). Returns the contents as written.
fn update(
    path: &Path,
    change: impl FnOnce(&mut Document) -> bool,
) -> Result<Document, DerivedStoreError> {
    let error = |e: std::io::Error| file_error(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(error)?;
    file.lock().map_err(error)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(error)?;
    let mut document = parse(path, &bytes)?;
    if change(&mut document) {
        document.version = 1;
        let mut text = serde_json::to_vec_pretty(&document).map_err(|e| file_error(path, e))?;
        text.push(b'\n');
        file.rewind().map_err(error)?;
        file.set_len(0).map_err(error)?;
        file.write_all(&text).map_err(error)?;
        file.sync_data().map_err(error)?;
    }
    // The lock goes with the file handle.
    Ok(document)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn file_error(path: &Path, detail: impl std::fmt::Display) -> DerivedStoreError {
    DerivedStoreError::File {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}
