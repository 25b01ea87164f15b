//! Records go to stdout in batches: a record is formatted by the task that makes it and
//! appended to a shared buffer under a short lock; one thread writes the buffer out every few
//! milliseconds, or at once when it grows large. At tens of thousands of statement records a
//! second, a write(2) or a thread wake-up per record would cost more than the proxying itself.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long a record may wait in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A buffer this large is written at once.
const FLUSH_BYTES: usize = 256 * 1024;
/// Beyond this, record makers wait for the writer: records are never dropped.
const MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Shared {
    state: Mutex<Buffer>,
    /// Signalled when the buffer is large or the logger stops.
    wake: Condvar,
    /// Signalled when the writer has emptied the buffer.
    drained: Condvar,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writer thread when dropped (at the end of `main`).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

pub fn batch_writer<W: Write + Send + 'static>(mut out: W) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared::default());
    let writer_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("tollgate-log".into())
        .spawn(move || loop {
            let (bytes, stopping) = {
                let state = writer_shared.lock();
                let (mut state, _) = writer_shared
                    .wake
                    .wait_timeout_while(state, FLUSH_INTERVAL, |s| {
                        s.bytes.len() < FLUSH_BYTES && !s.stopping
                    })
                    .unwrap_or_else(|p| p.into_inner());
                (std::mem::take(&mut state.bytes), state.stopping)
            };
            writer_shared.drained.notify_all();
            if !bytes.is_empty() {
                // Nowhere to report a failed log write; the next batch tries again.
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            if stopping {
                return;
            }
        })
        .expect("spawning the log writer thread");
    let guard = FlushGuard {
        shared: shared.clone(),
        thread: Some(thread),
    };
    (BatchWriter { shared }, guard)
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One record: formatted into its own buffer, appended whole when dropped.
pub struct Record {
    shared: Arc<Shared>,
    bytes: Vec<u8>,
}

impl Write for Record {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        while state.bytes.len() >= MAX_BYTES && !state.stopping {
            self.shared.wake.notify_one();
            state = self
                .shared
                .drained
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.bytes.extend_from_slice(&self.bytes);
        if state.bytes.len() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = Record;

    fn make_writer(&'a self) -> Record {
        Record {
            shared: self.shared.clone(),
            bytes: Vec::with_capacity(512),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read after the writer has stopped.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_record_is_written_whole_and_in_order_by_shutdown() {
        let sink = Sink::default();
        let (writer, guard) = batch_writer(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let mut record = writer.make_writer();
                        write!(record, "thread {t} ").unwrap();
                        writeln!(record, "record {i}").unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let own: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..5000)
                .map(|i| format!("thread {t} record {i}"))
                .collect();
            assert_eq!(own, expected, "thread {t}'s records are whole and in order");
        }
    }

    #[test]
    fn a_record_reaches_the_output_within_the_flush_interval() {
        let sink = Sink::default();
        let (writer, _guard) = batch_writer(sink.clone());
        writeln!(writer.make_writer(), "one").unwrap();
        std::thread::sleep(FLUSH_INTERVAL * 5);
        assert_eq!(&*sink.0.lock().unwrap(), b"one\n");
    }
}
