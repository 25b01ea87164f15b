//! The writer: appends records to the current segment, keeps the Merkle frontier, signs a
//! checkpoint every second and every 1,000 records, and syncs to disk (batched, or strict
//! group commit). A write that fails leaves the log as it was and the caller refuses its
//! request; the next append tries again, so service resumes by itself when space returns.
//!
//! On the request path a record costs its serialization (done before taking the writer), a
//! hash and a copy into the mapped segment ([`mapped`]): no system call but the occasional
//! reservation of disk space ahead.

mod mapped;

use std::{
    fs::OpenOptions,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
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
    record::{self, Body, Record},
    segment::{self, Place, SEGMENT_BYTES},
    AuditError,
};
use crate::config::{AuditSettings, Durability};

/// Records between two checkpoints, at most.
pub const CHECKPOINT_EVERY: u64 = 1000;
/// And at least this often while records arrive.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Records written later (answers, closes) that find no space reserved wait in memory at
/// most this many bytes.
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
}

#[derive(Debug, Clone, Default)]
struct Synced {
    records: u64,
    error: Option<String>,
}

struct Writer {
    dir: PathBuf,
    /// The current segment: records, then zeros reserved on disk ahead of them.
    segment: mapped::Mapped,
    /// Where the records of the current segment end.
    segment_len: u64,
    frontier: Frontier,
    prev: Option<Hash>,
    key: SigningKey,
    origin: String,
    /// Records covered by the last checkpoint, the checkpoint's own record included.
    signed: u64,
    signed_at: Instant,
    /// Lines in the tree but not yet in the file: records written later (answers, closes)
    /// that found no space reserved; they follow with the next write or the sync thread.
    queued: Vec<u8>,
    /// The line being made.
    line: Vec<u8>,
    /// The last checkpoint signed, until the sync thread copies it beside the segments.
    unsaved_note: Option<String>,
    /// Records a strict request waits to see synced (the highest index + 1).
    awaited: u64,
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
        let copy = match settings.durability {
            Durability::Batched => mapped::Copy::Mapped,
            Durability::Strict => mapped::Copy::Written,
        };
        let (segment, segment_len) = open_segment(&dir, last, frontier.size(), copy)?;
        let writer = Writer {
            dir,
            segment,
            segment_len,
            frontier,
            prev,
            key,
            origin: settings.origin.clone(),
            signed,
            signed_at: Instant::now(),
            queued: Vec::with_capacity(QUEUED_BYTES),
            line: Vec::with_capacity(4096),
            unsaved_note: None,
            awaited: 0,
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
        });
        if size > signed {
            let mut writer = log.lock();
            writer.checkpoint()?;
            writer.save_checkpoint();
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
        self.append_for(event, false)
    }

    /// Appends a record; `waited`: a strict caller will wait for its sync, so the sync
    /// thread is told (under the writer, so the wake-up cannot be missed).
    fn append_for(&self, event: Event, waited: bool) -> Result<u64, AuditError> {
        let body = Body::of(&event);
        drop(event);
        let index = {
            let mut writer = self.lock();
            let index = writer.add(&body, true)?;
            if waited {
                writer.awaited = writer.awaited.max(index + 1);
            }
            index
        };
        if waited {
            self.wake.notify_one();
        }
        Ok(index)
    }

    /// Appends a record and, in strict mode, waits until it is synced to disk.
    pub async fn record(&self, event: Event) -> Result<u64, AuditError> {
        let strict = self.durability == Durability::Strict;
        let index = self.append_for(event, strict)?;
        if strict {
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
    /// it is copied to the file at once when space is reserved for it, and otherwise (a full
    /// disk) waits in memory for the next record written or the sync thread. A failure is
    /// logged for the operator.
    pub fn record_anyway(&self, event: Event) {
        let kind = event.kind();
        let body = Body::of(&event);
        drop(event);
        if let Err(error) = self.lock().add(&body, false) {
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
            let len = writer.segment_len;
            let _ = writer.segment.cut(len);
        }
        self.wake.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.lock().save_checkpoint();
    }

    /// Where the segments are (the writer's, read once by each exporter).
    pub fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    /// The checkpoints' origin line.
    pub fn origin(&self) -> String {
        self.lock().origin.clone()
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
        let mut note_saved_at = Instant::now();
        loop {
            let (file, records, note, closing) = {
                let mut writer = self.lock();
                let pending = |w: &Writer| w.frontier.size() > self.synced.borrow().records;
                // Records queued in memory reach the file before it is synced.
                let flushed = writer.flush();
                // Strict: a sync as soon as a request waits for one; records nobody waits
                // for (answers, closes) ride along, or go with the periodic sync.
                let sync_now = writer.awaited > self.synced.borrow().records;
                if !writer.closing && !sync_now {
                    writer = self
                        .wake
                        .wait_timeout(writer, self.flush_interval)
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
                let note_due =
                    note_saved_at.elapsed() >= CHECKPOINT_INTERVAL && writer.unsaved_note.is_some();
                if !pending(&writer) && !writer.closing && !note_due {
                    continue;
                }
                if let Err(error) = writer.flush().and(flushed) {
                    tracing::error!(event = "audit.write_failed", %error, "queued records");
                }
                // The copy beside the segments at most once a second (close writes the last):
                // it only ever names records already synced.
                let note = match note_due {
                    true => writer.unsaved_note.take().map(|n| (writer.dir.clone(), n)),
                    false => None,
                };
                let written = writer.segment_len;
                writer.segment.release_before(written);
                (
                    writer.segment.file(),
                    writer.frontier.size() - writer.queued_count(),
                    note,
                    writer.closing,
                )
            };
            let result = file.sync_data();
            let synced = result.is_ok();
            self.synced.send_modify(|s| match result {
                Ok(()) => {
                    s.records = s.records.max(records);
                    s.error = None;
                }
                Err(error) => s.error = Some(error.to_string()),
            });
            if let Some((dir, note)) = note {
                if synced {
                    write_latest_checkpoint(&dir, &note);
                    note_saved_at = Instant::now();
                } else {
                    let mut writer = self.lock();
                    writer.unsaved_note.get_or_insert(note);
                }
            }
            if closing {
                return;
            }
        }
    }
}

impl Writer {
    /// Adds a record: written at once (`now`), or, for a record written later, at once when
    /// space is reserved for it and otherwise with the next write. Signs a checkpoint every
    /// [`CHECKPOINT_EVERY`] records.
    fn add(&mut self, body: &Body, now: bool) -> Result<u64, AuditError> {
        let index = self.write(body, now)?;
        if self.frontier.size() - self.signed >= CHECKPOINT_EVERY {
            self.checkpoint()?;
        }
        Ok(index)
    }

    /// Adds a record to the tree. A record that cannot be written is not added.
    fn write(&mut self, body: &Body, now: bool) -> Result<u64, AuditError> {
        if self.segment_len + self.queued.len() as u64 >= SEGMENT_BYTES {
            self.flush()?;
            self.rotate()?;
        }
        let index = self.frontier.size();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        body.line_into(index, record::now_ms(), self.prev.as_ref(), &mut line);
        let leaf = leaf_hash(&line);
        line.push(b'\n');
        let result = self.put(&line, now);
        self.line = line;
        result?;
        self.frontier.push(leaf);
        self.prev = Some(leaf);
        Ok(index)
    }

    /// Writes `line` after whatever is queued, or queues it (a record written later with no
    /// space reserved for it). On failure nothing of it stays.
    fn put(&mut self, line: &[u8], now: bool) -> Result<(), AuditError> {
        let end = self.segment_len + (self.queued.len() + line.len()) as u64;
        if self.queued.is_empty() && (now || self.segment.holds(end)) {
            self.reserve(end)?;
            if let Err(error) = self.segment.write_at(self.segment_len, line) {
                return Err(self.failed(error));
            }
            self.segment_len = end;
            return Ok(());
        }
        let mark = self.queued.len();
        self.queued.extend_from_slice(line);
        if now || self.segment.holds(end) || self.queued.len() >= QUEUED_BYTES {
            if let Err(error) = self.flush() {
                // This record is taken back; those queued before it stay queued.
                self.queued.truncate(mark);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Records in the tree not yet in the file (one line each).
    fn queued_count(&self) -> u64 {
        self.queued.iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// Makes room in the segment up to `end`.
    fn reserve(&mut self, end: u64) -> Result<(), AuditError> {
        if !self.segment.holds(end) {
            if let Err(error) = self.segment.reserve(end) {
                return Err(self.failed(error));
            }
        }
        if self.failure.take().is_some() {
            tracing::warn!(event = "audit.resumed", "the audit log is written again");
        }
        Ok(())
    }

    /// Writes the queued records to the segment in one piece.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let end = self.segment_len + self.queued.len() as u64;
        self.reserve(end)?;
        if let Err(error) = self.segment.write_at(self.segment_len, &self.queued) {
            return Err(self.failed(error));
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
        self.write(&Body::of(&Event::Checkpoint { note: note.clone() }), true)?;
        self.signed = self.frontier.size();
        self.signed_at = Instant::now();
        self.unsaved_note = Some(note);
        Ok(())
    }

    /// Writes the last checkpoint signed beside the segments, if it is not there yet.
    fn save_checkpoint(&mut self) {
        if let Some(note) = self.unsaved_note.take() {
            write_latest_checkpoint(&self.dir, &note);
        }
    }

    /// Closes the full segment (synced) and starts the next at the next index.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let len = self.segment_len;
        self.segment
            .cut(len)
            .and_then(|()| self.segment.file().sync_data())
            .map_err(|e| AuditError::Unavailable(format!("closing a full segment: {e}")))?;
        let copy = self.segment.copy();
        let (segment, len) = open_segment(&self.dir, None, self.frontier.size(), copy)?;
        self.segment = segment;
        self.segment_len = len;
        Ok(())
    }
}

/// A copy of the latest checkpoint to hand out (`tollgate audit checkpoint`); the record in
/// the log is what verifies.
fn write_latest_checkpoint(dir: &Path, note: &str) {
    let latest = dir.join(LATEST_CHECKPOINT);
    let temporary = dir.join(format!("{LATEST_CHECKPOINT}.new"));
    if let Err(error) =
        std::fs::write(&temporary, note).and_then(|()| std::fs::rename(&temporary, &latest))
    {
        tracing::warn!(event = "audit.checkpoint_copy_failed", %error, "latest checkpoint file");
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
/// starting at `next`), and that end offset. Space ahead is reserved as records arrive.
fn open_segment(
    dir: &Path,
    last: Option<(u64, PathBuf, u64)>,
    next: u64,
    copy: mapped::Copy,
) -> Result<(mapped::Mapped, u64), AuditError> {
    let (path, end) = match last {
        Some((_, path, end)) => (path, end),
        None => (dir.join(segment::name(next)), 0),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| AuditError::io(format!("opening {}", path.display()), e))?;
    // A length left over from before (zeros past the records) is cut back.
    let segment = mapped::Mapped::new(file, end, copy)
        .map_err(|e| AuditError::io(format!("sizing {}", path.display()), e))?;
    Ok((segment, end))
}
