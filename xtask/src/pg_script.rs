//! `xtask pg-script --port P SCRIPT`: a PostgreSQL frontend driven by a message script. It
//! connects to 127.0.0.1:P, does the startup (user and database `postgres`, trust auth), sends
//! the script's messages and prints every backend message, normalised, one per line, so two
//! runs (directly against the server and through Tollgate) can be compared line for line.
//!
//! # Script format
//!
//! One step per line; blank lines and lines starting with `#` are ignored. Text arguments run
//! to the end of the line and take the escapes `\n`, `\t`, `\r`, `\\` and `\xHH` (any byte,
//! so invalid UTF-8 can be sent). A name written `-` is the unnamed statement or portal.
//!
//! Settings (anywhere in the script, applied before it runs):
//!
//! | line | meaning |
//! |---|---|
//! | `param NAME=VALUE` | extra startup parameter (e.g. `application_name=x`, `replication=database`) |
//! | `no-startup` | send no startup packet: the script starts with raw bytes |
//! | `timeout MS` | read timeout (default 10000); a timeout fails the run, it never hangs |
//!
//! Frontend messages (buffered, written together at the next `recv`, `sleep` or the end, so
//! several batches sent in a row form one pipelined write):
//!
//! | line | message |
//! |---|---|
//! | `Q SQL` | Query (`Q` alone is the empty query) |
//! | `P NAME[:OID,OID..] SQL` | Parse, with optional parameter type OIDs |
//! | `B PORTAL STMT [VALUE..] [results=F,F..]` | Bind; a VALUE is `text:TEXT`, `bin:HEX` or `null` |
//! | `D S NAME` / `D P NAME` | Describe a statement / portal |
//! | `E PORTAL [MAX_ROWS]` | Execute (default 0: all rows) |
//! | `C S NAME` / `C P NAME` | Close a statement / portal |
//! | `S` / `H` | Sync / Flush |
//! | `d TEXT` / `dx HEX` | CopyData |
//! | `c` / `f MESSAGE` | CopyDone / CopyFail |
//! | `F OID [VALUE..]` | FunctionCall (text result) |
//! | `X` | Terminate |
//! | `raw HEX` | these bytes as they are (spaces allowed) |
//!
//! Control:
//!
//! | line | meaning |
//! |---|---|
//! | `recv N` | read until N ReadyForQuery (or the end of the connection) |
//! | `recv eof` | read until the server closes the connection |
//! | `recv-until TAG` | read until a message of type TAG (e.g. `G` for CopyInResponse) |
//! | `sleep MS` | pause |
//! | `cancel-after-ms MS` | after MS, send a CancelRequest with the BackendKeyData received, on a second connection |
//!
//! The end of the script closes the socket without Terminate. Once the server has closed the
//! connection the rest of the script is skipped.
//!
//! # Output
//!
//! One line per backend message, with values that change between runs left out: `R ok`,
//! `S name=value`, `K` (pid and secret omitted), `Z I`, `T name:typeoid[:b]..`,
//! `D v1|v2|NULL`, `C tag`, `E severity sqlstate message`, `N severity sqlstate message`,
//! `A channel payload` (pid omitted), `G`/`H`/`W format [column formats]`, `d data`, `c`,
//! `1`, `2`, `3`, `n`, `s`, `I`, `t oid..`, `V value`, and finally `EOF` (or `RESET`) when the
//! server closes. Bytes outside printable ASCII (and `\`, `|`) are written as escapes.

mod backend;
mod frontend;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpStream},
    path::Path,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, Context};

use self::{
    backend::{print_line, print_message, BackendKey},
    frontend::{Script, Step, Until},
};

pub fn run(port: u16, script: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("reading script {}", script.display()))?;
    let script = Script::parse(&text).with_context(|| format!("in {}", script.display()))?;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(script.timeout))?;
    stream.set_write_timeout(Some(script.timeout))?;
    stream.set_nodelay(true)?;
    let mut session = Session {
        port,
        stream,
        pending: Vec::new(),
        key: Arc::new(Mutex::new(None)),
        timeout: script.timeout,
        cancels: Vec::new(),
        closed: false,
    };
    let result = session.run(&script);
    for cancel in session.cancels.drain(..) {
        if let Ok(Err(error)) = cancel.join() {
            eprintln!("cancel request: {error:#}");
        }
    }
    result
}

struct Session {
    port: u16,
    stream: TcpStream,
    /// Encoded messages not yet written.
    pending: Vec<u8>,
    key: Arc<Mutex<Option<BackendKey>>>,
    timeout: Duration,
    cancels: Vec<JoinHandle<anyhow::Result<()>>>,
    closed: bool,
}

impl Session {
    fn run(&mut self, script: &Script) -> anyhow::Result<()> {
        if let Some(packet) = &script.startup {
            self.pending.extend_from_slice(packet);
            self.receive(Until::Ready(1))?;
        }
        for step in &script.steps {
            if self.closed {
                break;
            }
            match step {
                Step::Send(bytes) => self.pending.extend_from_slice(bytes),
                Step::Receive(until) => self.receive(*until)?,
                Step::Sleep(pause) => {
                    self.flush()?;
                    std::thread::sleep(*pause);
                }
                Step::CancelAfter(delay) => {
                    self.flush()?;
                    self.spawn_cancel(*delay);
                }
            }
        }
        if !self.closed {
            self.flush()?;
            // Close without Terminate, as a client that just goes away.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.pending)
            .context("writing to the server")?;
        self.pending.clear();
        Ok(())
    }

    fn receive(&mut self, until: Until) -> anyhow::Result<()> {
        self.flush()?;
        let mut ready = 0;
        loop {
            let Some((tag, body)) = self.read_message()? else {
                self.closed = true;
                return Ok(());
            };
            if let Some(key) = print_message(tag, &body) {
                *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
            }
            match until {
                Until::Ready(count) if tag == b'Z' => {
                    ready += 1;
                    if ready == count {
                        return Ok(());
                    }
                }
                Until::Tag(wanted) if tag == wanted => return Ok(()),
                _ => {}
            }
        }
    }

    /// One whole message, or `None` (after printing how) when the connection has ended.
    fn read_message(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; 5];
        let mut filled = 0;
        while filled < header.len() {
            match self.stream.read(&mut header[filled..]) {
                Ok(0) if filled == 0 => return Ok(self.ended("EOF")),
                Ok(0) => return Ok(self.ended("EOF (in a message header)")),
                Ok(n) => filled += n,
                Err(error) => return self.read_error(error),
            }
        }
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let Some(body_len) = usize::try_from(len).ok().and_then(|l| l.checked_sub(4)) else {
            bail!(
                "backend message {:?} with invalid length {len}",
                header[0] as char
            );
        };
        let mut body = vec![0u8; body_len];
        match self.stream.read_exact(&mut body) {
            Ok(()) => Ok(Some((header[0], body))),
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
                Ok(self.ended("EOF (in a message body)"))
            }
            Err(error) => self.read_error(error),
        }
    }

    fn ended(&mut self, how: &str) -> Option<(u8, Vec<u8>)> {
        print_line(how);
        None
    }

    fn read_error(&mut self, error: std::io::Error) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        match error.kind() {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Ok(self.ended("RESET")),
            ErrorKind::WouldBlock | ErrorKind::TimedOut => bail!(
                "no backend message within {:?} (the script's read timeout)",
                self.timeout
            ),
            _ => Err(error).context("reading from the server"),
        }
    }

    fn spawn_cancel(&mut self, delay: Duration) {
        let key = self.key.clone();
        let (port, timeout) = (self.port, self.timeout);
        self.cancels.push(std::thread::spawn(move || {
            std::thread::sleep(delay);
            let key = key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .context("no BackendKeyData received before cancel-after-ms")?;
            send_cancel(port, &key, timeout)
        }));
    }
}

/// A CancelRequest on a new connection; the server answers by closing it.
fn send_cancel(port: u16, key: &BackendKey, timeout: Duration) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("cancel connection")?;
    stream.set_read_timeout(Some(timeout))?;
    let mut packet = Vec::new();
    let len = 12 + key.secret.len();
    packet.extend_from_slice(&i32::try_from(len)?.to_be_bytes());
    packet.extend_from_slice(&frontend::CANCEL_REQUEST_CODE.to_be_bytes());
    packet.extend_from_slice(&key.pid.to_be_bytes());
    packet.extend_from_slice(&key.secret);
    stream.write_all(&packet).context("sending CancelRequest")?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .context("waiting for the server to close the cancel connection")?;
    Ok(())
}
