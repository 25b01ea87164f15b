//! SIEM export: each `[[audit.export]]` sink reads the log itself (never a second copy),
//! turns each record into OCSF events carrying the record's leaf index and the checkpoint
//! that covers it, delivers them in order and moves its durable cursor only past what the
//! receiver has. While a receiver is down, events wait in the log, not in memory; they are
//! delivered when it returns, with the same ids, so a receiver can drop duplicates.
//!
//! Each sink runs on a thread of its own, off the request path.

mod batch;
mod cursor;
mod file;
mod hec;
pub mod ocsf;
mod syslog;
mod tail;
#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use self::{
    batch::Reader,
    cursor::Cursor,
    file::FileSink,
    hec::HecSink,
    ocsf::{Connections, LogContext, Outgoing},
    syslog::SyslogSink,
};
use super::Audit;
use crate::config::{ExportKind, ExportSink};

/// Records per delivery, about (whole checkpoint groups).
const MAX_BATCH: usize = 2000;
/// How often an idle sink looks for new records.
const POLL: Duration = Duration::from_millis(200);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink cannot work as configured (retried, in case a file appears).
    #[error("{0}")]
    Setup(String),
    /// The receiver did not take the events; they are sent again.
    #[error("{0}")]
    Io(String),
}

enum Sink {
    File(FileSink),
    Syslog(SyslogSink),
    Hec(HecSink),
}

impl Sink {
    fn new(kind: &ExportKind, bypass_mark: u32) -> Result<Self, SinkError> {
        Ok(match kind {
            ExportKind::File(settings) => Self::File(FileSink::new(settings.clone())),
            ExportKind::Syslog(settings) => {
                Self::Syslog(SyslogSink::new(settings.clone(), bypass_mark)?)
            }
            ExportKind::SplunkHec(settings) => {
                Self::Hec(HecSink::new(settings.clone(), bypass_mark)?)
            }
        })
    }

    async fn send(&mut self, events: &[Outgoing]) -> Result<(), SinkError> {
        match self {
            Self::File(sink) => sink.send(events),
            Self::Syslog(sink) => sink.send(events).await,
            Self::Hec(sink) => sink.send(events).await,
        }
    }

    /// How long after a successful send the events count as delivered.
    fn confirm_after(&self) -> Duration {
        match self {
            Self::Syslog(sink) => sink.confirm_after(),
            Self::File(_) | Self::Hec(_) => Duration::ZERO,
        }
    }

    fn healthy(&self) -> bool {
        match self {
            Self::Syslog(sink) => sink.healthy(),
            Self::File(_) | Self::Hec(_) => true,
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Syslog(sink) => sink.reset(),
            Self::Hec(sink) => sink.reset(),
            Self::File(_) => {}
        }
    }
}

/// What `tollgate status` shows of a sink.
struct SinkStatus {
    name: String,
    kind: &'static str,
    destination: String,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// The cursor: records before it are delivered.
    delivered: u64,
    error: Option<String>,
    last_delivery_ms: Option<u64>,
}

impl SinkStatus {
    fn update(&self, change: impl FnOnce(&mut SinkState)) {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn failed(&self, error: &str) {
        self.update(|s| {
            if s.error.as_deref() != Some(error) {
                tracing::warn!(event = "audit.export_failed", sink = %self.name, %error,
                    "SIEM export: events wait in the log and are sent again");
            }
            s.error = Some(error.to_owned());
        });
    }
}

/// Resolving, connecting and a TLS handshake each get this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A marked connection to the first of `host`'s addresses that answers (`loopback_only`:
/// others are refused, for plain-text sinks).
async fn connect_host(
    host: &str,
    port: u16,
    bypass_mark: u32,
    loopback_only: bool,
) -> Result<tokio::net::TcpStream, SinkError> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SinkError::Io(format!("resolving {host}: {e}")))?;
    let mut failure = SinkError::Io(format!("{host} resolves to no address"));
    for addr in addrs {
        if loopback_only && !addr.ip().is_loopback() {
            failure = SinkError::Setup(format!("plain text to {addr}, which is not loopback"));
            continue;
        }
        match crate::net::connect_within(addr, bypass_mark, CONNECT_TIMEOUT).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => failure = SinkError::Io(format!("connecting to {addr}: {e}")),
        }
    }
    Err(failure)
}

/// The running sinks.
pub struct Exporters {
    sinks: Vec<Arc<SinkStatus>>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Exporters {
    pub fn start(sinks: &[ExportSink], audit: &Audit, bypass_mark: u32) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut statuses = Vec::new();
        let mut threads = Vec::new();
        for sink in sinks {
            let status = Arc::new(SinkStatus {
                name: sink.name.clone(),
                kind: sink.kind.as_str(),
                destination: sink.kind.destination(),
                state: Mutex::default(),
            });
            let job = Job {
                sink: sink.clone(),
                audit: audit.clone(),
                status: status.clone(),
                stopped: stopped.clone(),
                bypass_mark,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("export-{}", sink.name))
                .spawn(move || job.run());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => status.failed(&format!("starting its thread: {error}")),
            }
            statuses.push(status);
        }
        Self {
            sinks: statuses,
            stop,
            threads,
        }
    }

    /// Each sink's cursor, lag behind the log and last error.
    pub fn status(&self, records: u64) -> serde_json::Value {
        self.sinks
            .iter()
            .map(|sink| {
                let state = sink.state.lock().unwrap_or_else(|p| p.into_inner());
                serde_json::json!({
                    "name": sink.name,
                    "kind": sink.kind,
                    "destination": sink.destination,
                    "delivered": state.delivered,
                    "lag": records.saturating_sub(state.delivered),
                    "last_delivery_ms": state.last_delivery_ms,
                    "error": state.error,
                })
            })
            .collect()
    }

    /// Stops the sinks; what they have not delivered goes at the next start.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// A point of the log a sink can resume from: the next record and the connections open there.
struct Position {
    next: u64,
    connections: Connections,
}

/// A sink's place in the log: what it has read, what it has sent but not yet counted as
/// delivered (when it will count, and the position after it), and what is delivered.
struct Progress {
    dir: std::path::PathBuf,
    reader: Reader,
    context: LogContext,
    durable: Position,
    unconfirmed: VecDeque<(Instant, Position)>,
}

impl Progress {
    /// Moves the delivered position past what has now counted long enough; the new cursor.
    fn confirm(&mut self, now: Instant) -> Option<u64> {
        let mut confirmed = None;
        while self.unconfirmed.front().is_some_and(|(at, _)| *at <= now) {
            confirmed = self.unconfirmed.pop_front().map(|(_, position)| position);
        }
        let position = confirmed?;
        self.durable = position;
        Some(self.durable.next)
    }

    /// Reads again from the delivered position, with the connections open there.
    fn rewind(&mut self) {
        self.unconfirmed.clear();
        self.context.restore(self.durable.connections.clone());
        self.reader = Reader::new(&self.dir, self.durable.next);
    }
}

struct Job {
    sink: ExportSink,
    audit: Audit,
    status: Arc<SinkStatus>,
    stopped: watch::Receiver<bool>,
    bypass_mark: u32,
}

impl Job {
    fn run(mut self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => runtime.block_on(self.deliver()),
            Err(error) => self
                .status
                .failed(&format!("starting its runtime: {error}")),
        }
    }

    /// Sleeps, unless the gateway stops first: then false.
    async fn pause(&self, time: Duration) -> bool {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(time) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
        !*self.stopped.borrow()
    }

    async fn deliver(&mut self) {
        let dir = self.audit.dir();
        let Some((mut sink, context, durable)) = self.prepare(&dir).await else {
            return;
        };
        let mut progress = Progress {
            reader: Reader::new(&dir, durable.next),
            dir,
            context,
            durable,
            unconfirmed: VecDeque::new(),
        };
        let mut backoff = FIRST_BACKOFF;
        while !*self.stopped.borrow() {
            if !sink.healthy() {
                let closed = SinkError::Io("the receiver closed the connection".to_owned());
                if !self
                    .retry(closed, &mut sink, &mut progress, &mut backoff)
                    .await
                {
                    return;
                }
                continue;
            }
            if let Some(next) = progress.confirm(Instant::now()) {
                self.commit(next, &progress.context);
            }
            let limit = self.audit.synced_records();
            let batch = match progress.reader.next_batch(MAX_BATCH, limit) {
                Ok(batch) => batch,
                Err(error) => {
                    self.status.failed(&error.to_string());
                    progress.rewind();
                    if !self.pause(MAX_BACKOFF).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(end) = batch.last().map(|c| c.index + 1) else {
                if !self.pause(POLL).await {
                    return;
                }
                continue;
            };
            let events = ocsf::events(&batch, &mut progress.context);
            let after = Position {
                next: end,
                connections: progress.context.snapshot(),
            };
            let mut stopped = self.stopped.clone();
            let sent = tokio::select! {
                sent = sink.send(&events) => sent,
                _ = stopped.wait_for(|s| *s) => return,
            };
            match sent {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    let confirm = sink.confirm_after();
                    if confirm.is_zero() {
                        progress.durable = after;
                        self.commit(end, &progress.context);
                    } else {
                        progress
                            .unconfirmed
                            .push_back((Instant::now() + confirm, after));
                    }
                }
                Err(error) => {
                    if !self
                        .retry(error, &mut sink, &mut progress, &mut backoff)
                        .await
                    {
                        return;
                    }
                }
            }
        }
    }

    /// After a failed delivery: everything since the cursor goes again, after a pause that
    /// grows with each failure. False once the gateway stops.
    async fn retry(
        &self,
        error: SinkError,
        sink: &mut Sink,
        progress: &mut Progress,
        backoff: &mut Duration,
    ) -> bool {
        self.status.failed(&error.to_string());
        sink.reset();
        progress.rewind();
        let go_on = self.pause(*backoff).await;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        go_on
    }

    /// The sink, the log's identity and where to start; None once the gateway stops.
    async fn prepare(&mut self, dir: &Path) -> Option<(Sink, LogContext, Position)> {
        loop {
            // Nothing to export yet (no record synced): not a failure.
            if self.audit.synced_records() == 0 {
                if !self.pause(POLL).await {
                    return None;
                }
                continue;
            }
            match self.try_prepare(dir) {
                Ok(ready) => return Some(ready),
                Err(error) => {
                    self.status.failed(&error);
                    if !self.pause(MAX_BACKOFF).await {
                        return None;
                    }
                }
            }
        }
    }

    fn try_prepare(&self, dir: &Path) -> Result<(Sink, LogContext, Position), String> {
        let mut context = LogContext::read(dir, &self.audit.origin())?;
        let next = match cursor::load(&self.sink.cursor_file).map_err(|e| e.to_string())? {
            None => 0,
            Some(cursor) if cursor.log == context.log_id => cursor.next,
            Some(cursor) => {
                return Err(format!(
                    "its cursor {} belongs to another audit log (id {}, this one is {}): \
                     remove the cursor file to export this log from its start",
                    self.sink.cursor_file.display(),
                    cursor.log,
                    context.log_id
                ))
            }
        };
        // The one full read of the log: later rewinds restore a kept position.
        let connections = Connections::rebuild(dir, next)?;
        context.restore(connections.clone());
        let sink = Sink::new(&self.sink.kind, self.bypass_mark).map_err(|e| e.to_string())?;
        self.status.update(|s| s.delivered = next);
        Ok((sink, context, Position { next, connections }))
    }

    fn commit(&self, next: u64, context: &LogContext) {
        let cursor = Cursor {
            next,
            log: context.log_id.clone(),
        };
        match cursor::store(&self.sink.cursor_file, &cursor) {
            Ok(()) => self.status.update(|s| {
                if s.error.take().is_some() {
                    tracing::info!(event = "audit.export_resumed", sink = %self.status.name,
                        "SIEM export delivers again");
                }
                s.delivered = next;
                s.last_delivery_ms = Some(super::record::now_ms());
            }),
            Err(error) => self.status.failed(&error.to_string()),
        }
    }
}
