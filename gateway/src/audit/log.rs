//! The writer: appends records to the current segment, keeps the Merkle frontier, signs a
//! checkpoint every second and every 1,000 records, and syncs to disk (batched, or strict
//! group commit). A write that fails leaves the log as it was and the caller refuses its
//! request; the next append tries again, so service resumes by itself when space returns.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    event::Event,
    keys,
    merkle::{leaf_hash, Frontier, Hash},
    note::{self, Checkpoint, SigningKey},
    record::Record,
    segment::{self, Place, SEGMENT_BYTES},
    AuditError,
};
use crate::config::{AuditSettings, Durability};

/// Records between two checkpoints, at most.
pub const CHECKPOINT_EVERY: u64 = 1000;
/// And at least this often while records arrive.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A segment is sized this far ahead of its last record (sparse until written).
const SEGMENT_AHEAD: u64 = 16 * 1024 * 1024;
/// Records written later (answers, closes) wait in memory at most this many bytes.
const QUEUED_BYTES: usize = 64 * 1024;
/// The latest signed checkpoint, beside the segments (`tollgate audit checkpoint`).
pub const LATEST_CHECKPOINT: &str = "checkpoint";

pub struct AuditLog {
    writer: Mutex<Writer>,
    /// Wakes the sync thread: records wait (strict), or the log is closing.
    wake: Condvar,
    /// Records known to be on disk, or why syncing failed.
    synced: tokio::sync::watch::Sender<Synced>,
    durability: Durability,
    flush_interval: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    origin: String,
}

#[derive(Debug, Clone, Default)]
struct Synced {
    records: u64,
    error: Option<String>,
}

struct Writer {
    dir: PathBuf,
    file: File,
    /// Where the records of the current segment end.
    segment_len: u64,
    /// Its size on disk: sized ahead with zeros, so an append changes no file size (no
    /// inode update per write).
    capacity: u64,
    frontier: Frontier,
    prev: Option<Hash>,
    key: SigningKey,
    origin: String,
    /// Records covered by the last checkpoint, the checkpoint's own record included.
    signed: u64,
    signed_at: Instant,
    /// Lines in the tree but not yet in the file: records that may follow with the next write
    /// (answers, closes), so a request costs one write however many records it makes.
    queued: Vec<u8>,
    /// The last write failed (the segment was cut back to its last whole record).
    failure: Option<String>,
    closing: bool,
}

impl AuditLog {
    /// Opens (or starts) the log in `settings.dir`: re-reads it to rebuild the tree, drops a
    /// record torn by a crash, signs what the last run left unsigned, and starts syncing.
    pub fn open(settings: &AuditSettings) -> Result<Arc<Self>, AuditError> {
        let dir = settings.dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| AuditError::io(format!("creating {}", dir.display()), e))?;
        let key = keys::load_or_create(&settings.key_file, &settings.origin)?;
        let Reread {
            frontier,
            prev,
            signed,
            last,
        } = reread(&dir)?;
        let (file, segment_len, capacity) = open_segment(&dir, last, frontier.size())?;
        let writer = Writer {
            dir: dir.clone(),
            file,
            segment_len,
            capacity,
            frontier,
            prev,
            key,
            origin: settings.origin.clone(),
            signed,
            signed_at: Instant::now(),
            queued: Vec::with_capacity(QUEUED_BYTES),
            failure: None,
            closing: false,
        };
        let size = writer.frontier.size();
        let log = Arc::new(Self {
            writer: Mutex::new(writer),
            wake: Condvar::new(),
            synced: tokio::sync::watch::Sender::new(Synced {
                records: size,
                error: None,
            }),
            durability: settings.durability,
            flush_interval: settings.flush_interval,
            thread: Mutex::new(None),
            dir,
            origin: settings.origin.clone(),
        });
        if size > signed {
            log.lock().checkpoint()?;
        }
        let syncing = Arc::clone(&log);
        let thread = std::thread::Builder::new()
            .name("audit-sync".to_owned())
            .spawn(move || syncing.sync_loop())
            .map_err(|e| AuditError::io("starting the audit sync thread".to_owned(), e))?;
        *log.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(log)
    }

    /// Appends a record (written before this returns: it survives the gateway's crash) and
    /// returns its index. In strict mode, use [`AuditLog::record`] to also wait for the disk.
    pub fn append(&self, event: Event) -> Result<u64, AuditError> {
        let index = self.lock().append(event)?;
        if self.durability == Durability::Strict {
            self.wake.notify_one();
        }
        Ok(index)
    }

    /// Appends a record and, in strict mode, waits until it is synced to disk.
    pub async fn record(&self, event: Event) -> Result<u64, AuditError> {
        let index = self.append(event)?;
        if self.durability == Durability::Strict {
            let mut synced = self.synced.subscribe();
            let state = synced
                .wait_for(|s| s.records > index || s.error.is_some())
                .await
                .map_err(|_| AuditError::Unavailable("the audit log is closed".to_owned()))?;
            if let Some(error) = &state.error {
                return Err(AuditError::Unavailable(format!("syncing: {error}")));
            }
        }
        Ok(index)
    }

    /// Appends a record the caller cannot refuse anything over (an answer, a close, a stop):
    /// it reaches the file with the next record written, or within `flush_ms`. A failure is
    /// logged for the operator.
    pub fn record_anyway(&self, event: Event) {
        let kind = event.kind();
        if let Err(error) = self.lock().append_later(event) {
            tracing::error!(event = "audit.write_failed", kind, %error, "audit record lost");
        }
    }

    /// Signs a final checkpoint, syncs and stops the sync thread.
    pub fn close(&self) {
        {
            let mut writer = self.lock();
            writer.closing = true;
            if let Err(error) = writer.checkpoint() {
                tracing::error!(event = "audit.write_failed", %error, "no final checkpoint");
            }
            // Left without the zeros it was sized ahead with.
            let _ = writer.file.set_len(writer.segment_len);
        }
        self.wake.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoints' origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Records in the log.
    pub fn records(&self) -> u64 {
        self.lock().frontier.size()
    }

    /// Records known to be on disk: what may leave the host (an exported id must never be
    /// reused by a record a power loss took back).
    pub fn synced_records(&self) -> u64 {
        self.synced.borrow().records
    }

    /// For `tollgate status`.
    pub fn status(&self) -> serde_json::Value {
        let writer = self.lock();
        let synced = self.synced.borrow().clone();
        serde_json::json!({
            "dir": writer.dir.display().to_string(),
            "records": writer.frontier.size(),
            "signed": writer.signed,
            "synced": synced.records,
            "durability": self.durability.as_str(),
            "failure": writer.failure.clone().or(synced.error),
            "verifier_key": writer.key.verifier().to_text(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Syncs what was written (at once for strict waiters, every `flush_interval` otherwise)
    /// and signs a checkpoint each second while records arrive.
    fn sync_loop(&self) {
        loop {
            let (file, records, closing) = {
                let mut writer = self.lock();
                let wait = match self.durability {
                    Durability::Strict => CHECKPOINT_INTERVAL,
                    Durability::Batched => self.flush_interval,
                };
                let pending = |w: &Writer| w.frontier.size() > self.synced.borrow().records;
                // Records queued in memory reach the file before it is synced.
                let flushed = writer.flush();
                let sync_now = self.durability == Durability::Strict && pending(&writer);
                if !writer.closing && !sync_now {
                    writer = self
                        .wake
                        .wait_timeout(writer, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if writer.frontier.size() > writer.signed
                    && writer.signed_at.elapsed() >= CHECKPOINT_INTERVAL
                    && !writer.closing
                {
                    if let Err(error) = writer.checkpoint() {
                        tracing::error!(event = "audit.write_failed", %error, "checkpoint");
                    }
                }
                if !pending(&writer) && !writer.closing {
                    continue;
                }
                if let Err(error) = writer.flush().and(flushed) {
                    tracing::error!(event = "audit.write_failed", %error, "queued records");
                }
                (
                    writer.file.try_clone(),
                    writer.frontier.size() - writer.queued_count(),
                    writer.closing,
                )
            };
            let result = file.and_then(|f| f.sync_data());
            self.synced.send_modify(|s| match result {
                Ok(()) => {
                    s.records = s.records.max(records);
                    s.error = None;
                }
                Err(error) => s.error = Some(error.to_string()),
            });
            if closing {
                return;
            }
        }
    }
}

impl Writer {
    fn append(&mut self, event: Event) -> Result<u64, AuditError> {
        self.add(event, true)
    }

    fn append_later(&mut self, event: Event) -> Result<u64, AuditError> {
        self.add(event, false)
    }

    fn add(&mut self, event: Event, now: bool) -> Result<u64, AuditError> {
        let is_checkpoint = matches!(event, Event::Checkpoint { .. });
        let index = self.write(event, now)?;
        if !is_checkpoint && self.frontier.size() - self.signed >= CHECKPOINT_EVERY {
            self.checkpoint()?;
        }
        Ok(index)
    }

    /// Adds a record to the tree: written at once (`now`) with whatever is queued before
    /// it, or queued. A record that cannot be written is not added.
    fn write(&mut self, event: Event, now: bool) -> Result<u64, AuditError> {
        if self.segment_len + self.queued.len() as u64 >= SEGMENT_BYTES {
            self.flush()?;
            self.rotate()?;
        }
        let index = self.frontier.size();
        let line = Record::new(index, self.prev.as_ref(), event).to_line();
        let leaf = leaf_hash(&line);
        let mark = self.queued.len();
        self.queued.extend_from_slice(&line);
        self.queued.push(b'\n');
        if now || self.queued.len() >= QUEUED_BYTES {
            if let Err(error) = self.flush() {
                // This record is taken back; those queued before it stay queued.
                self.queued.truncate(mark);
                return Err(error);
            }
        }
        self.frontier.push(leaf);
        self.prev = Some(leaf);
        Ok(index)
    }

    /// Records in the tree not yet in the file (one line each).
    fn queued_count(&self) -> u64 {
        self.queued.iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// Writes the queued records to the file in one piece.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let end = self.segment_len + self.queued.len() as u64;
        if end > self.capacity {
            self.capacity = end + SEGMENT_AHEAD;
            if let Err(error) = self.file.set_len(self.capacity) {
                return Err(self.failed(error));
            }
        }
        if let Err(error) = self.file.write_all_at(&self.queued, self.segment_len) {
            // Whatever part reached the file goes again; zeros until then, so a crash meanwhile
            // leaves no record that was not acknowledged.
            let zeros = vec![0u8; self.queued.len()];
            let _ = self.file.write_all_at(&zeros, self.segment_len);
            return Err(self.failed(error));
        }
        if self.failure.take().is_some() {
            tracing::warn!(event = "audit.resumed", "the audit log is written again");
        }
        self.segment_len = end;
        self.queued.clear();
        Ok(())
    }

    fn failed(&mut self, error: std::io::Error) -> AuditError {
        {
            let why = error.to_string();
            if self.failure.as_deref() != Some(&why) {
                tracing::error!(event = "audit.unavailable", error = %why,
                    "the audit log cannot be written: requests are refused until it can");
            }
            self.failure = Some(why.clone());
            AuditError::Unavailable(why)
        }
    }

    /// Signs the tree as it stands and appends the checkpoint as a record of its own.
    fn checkpoint(&mut self) -> Result<(), AuditError> {
        let size = self.frontier.size();
        if size == self.signed && size > 0 {
            return Ok(());
        }
        let body = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.frontier.root(),
            extensions: Vec::new(),
        }
        .body();
        let note = note::sign(&body, &self.key)
            .map_err(|e| AuditError::Unavailable(format!("signing a checkpoint: {e}")))?;
        self.write(Event::Checkpoint { note: note.clone() }, true)?;
        self.signed = self.frontier.size();
        self.signed_at = Instant::now();
        // A copy to hand out; the record in the log is what verifies.
        let latest = self.dir.join(LATEST_CHECKPOINT);
        let temporary = self.dir.join(format!("{LATEST_CHECKPOINT}.new"));
        if let Err(error) =
            std::fs::write(&temporary, &note).and_then(|()| std::fs::rename(&temporary, &latest))
        {
            tracing::warn!(event = "audit.checkpoint_copy_failed", %error, "latest checkpoint file");
        }
        Ok(())
    }

    /// Closes the full segment (synced) and starts the next at the next index.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.file
            .set_len(self.segment_len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| AuditError::Unavailable(format!("closing a full segment: {e}")))?;
        let (file, len, capacity) = open_segment(&self.dir, None, self.frontier.size())?;
        self.file = file;
        self.segment_len = len;
        self.capacity = capacity;
        Ok(())
    }
}

/// The log as read back at start.
struct Reread {
    frontier: Frontier,
    prev: Option<Hash>,
    signed: u64,
    /// The last segment and where its records end.
    last: Option<(u64, PathBuf, u64)>,
}

/// Reads the whole log back: the frontier, the last leaf, the records covered by the last
/// checkpoint and the last segment (with a torn tail cut off). A record that does not link
/// to the one before it stops the start: the log must be verified first.
fn reread(dir: &Path) -> Result<Reread, AuditError> {
    let mut frontier = Frontier::new();
    let mut prev: Option<Hash> = None;
    let mut signed = 0;
    let scanned = segment::for_each_line(dir, |place: &Place, line| {
        let record = Record::parse(line).map_err(|e| (place.clone(), e.to_string()))?;
        let expected = prev.as_ref().map(super::record::link).unwrap_or_default();
        if record.index != frontier.size() || record.prev != expected {
            return Err((
                place.clone(),
                "does not follow the record before it".to_owned(),
            ));
        }
        let leaf = leaf_hash(line);
        frontier.push(leaf);
        prev = Some(leaf);
        if matches!(record.event, Event::Checkpoint { .. }) {
            signed = frontier.size();
        }
        Ok(())
    })
    .map_err(|e| match e {
        segment::ScanError::Io(error) => {
            AuditError::io(format!("reading {}", dir.display()), error)
        }
        segment::ScanError::Line((place, why)) => AuditError::Corrupt {
            place: place.to_string(),
            why,
        },
    })?;
    let mut last = scanned.last;
    if let Some(torn) = scanned.torn {
        tracing::warn!(
            event = "audit.torn_record_dropped",
            place = %torn.place,
            bytes = torn.bytes,
            "a record the gateway had not finished writing when it stopped was dropped"
        );
        OpenOptions::new()
            .write(true)
            .open(&torn.place.segment)
            .and_then(|f| f.set_len(torn.place.offset))
            .map_err(|e| AuditError::io(format!("cutting {}", torn.place), e))?;
        if let Some(last) = last.as_mut() {
            last.2 = torn.place.offset;
        }
    }
    Ok(Reread {
        frontier,
        prev,
        signed,
        last,
    })
}

/// The segment to append to (the last one, from where its records end, or a new one
/// starting at `next`), sized ahead: its end offset and size.
fn open_segment(
    dir: &Path,
    last: Option<(u64, PathBuf, u64)>,
    next: u64,
) -> Result<(File, u64, u64), AuditError> {
    let (path, end) = match last {
        Some((_, path, end)) => (path, end),
        None => (dir.join(segment::name(next)), 0),
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| AuditError::io(format!("opening {}", path.display()), e))?;
    let capacity = end + SEGMENT_AHEAD;
    // Zeros past the end: a length left over from before is cut back first.
    file.set_len(end)
        .and_then(|()| file.set_len(capacity))
        .map_err(|e| AuditError::io(format!("sizing {}", path.display()), e))?;
    Ok((file, end, capacity))
}
