//! Syslog over TLS: RFC 5424 messages (facility "log audit") framed by octet counting
//! (RFC 5425), the OCSF event as the message. Syslog acknowledges nothing, so a write counts
//! only once the connection has stayed up for `confirm` after it; a receiver that goes away
//! sooner gets those events again, with the same ids.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, WriteHalf},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{connect_host, Outgoing, SinkError, CONNECT_TIMEOUT};
use crate::config::SyslogExport;

/// RFC 5424 facility 13 (log audit), severity 6 (informational).
const PRI: u8 = 13 * 8 + 6;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SyslogSink {
    settings: SyslogExport,
    tls: TlsConnector,
    bypass_mark: u32,
    hostname: String,
    conn: Option<Conn>,
}

struct Conn {
    writer: WriteHalf<TlsStream<TcpStream>>,
    /// Cleared when the receiver closes or resets the connection.
    alive: Arc<AtomicBool>,
    watcher: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl SyslogSink {
    pub fn new(settings: SyslogExport, bypass_mark: u32) -> Result<Self, SinkError> {
        let tls = crate::net::tls_connector(&settings.ca_file, &[]).map_err(SinkError::Setup)?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or_else(|| "-".to_owned());
        Ok(Self {
            settings,
            tls,
            bypass_mark,
            hostname,
            conn: None,
        })
    }

    pub fn confirm_after(&self) -> Duration {
        self.settings.confirm
    }

    /// False once the receiver has gone away since the last reset: what was written since
    /// the last confirmed event may not have reached it.
    pub fn healthy(&self) -> bool {
        self.conn
            .as_ref()
            .is_none_or(|c| c.alive.load(Ordering::Acquire))
    }

    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn send(&mut self, events: &[Outgoing]) -> Result<(), SinkError> {
        let mut frames = Vec::with_capacity(events.iter().map(|e| e.json.len() + 128).sum());
        for event in events {
            self.frame(event, &mut frames);
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SinkError::Io("not connected".to_owned()));
        };
        let write = async {
            conn.writer.write_all(&frames).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) if self.healthy() => Ok(()),
            Ok(Ok(())) => Err(SinkError::Io(
                "the receiver closed the connection".to_owned(),
            )),
            Ok(Err(error)) => Err(SinkError::Io(format!("writing: {error}"))),
            Err(_) => Err(SinkError::Io(format!(
                "writing took over {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    /// `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
    fn frame(&self, event: &Outgoing, out: &mut Vec<u8>) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(event.time_ms);
        let message = format!(
            "<{PRI}>1 {} {} {} {} {} - {}",
            crate::clock::rfc3339_utc(at),
            self.hostname,
            self.settings.app_name,
            std::process::id(),
            event.class_uid,
            event.json
        );
        out.extend_from_slice(format!("{} ", message.len()).as_bytes());
        out.extend_from_slice(message.as_bytes());
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let settings = &self.settings;
        let tcp = connect_host(&settings.host, settings.port, self.bypass_mark, false).await?;
        self.handshake(tcp).await
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<Conn, SinkError> {
        let name = ServerName::try_from(self.settings.server_name.clone()).map_err(|_| {
            SinkError::Setup(format!(
                "`{}` is not a TLS server name",
                self.settings.server_name
            ))
        })?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| SinkError::Io("TLS handshake timed out".to_owned()))?
            .map_err(|e| SinkError::Io(format!("TLS handshake: {e}")))?;
        let (mut reader, writer) = tokio::io::split(tls);
        let alive = Arc::new(AtomicBool::new(true));
        let watching = alive.clone();
        // The receiver sends nothing but TLS records of its own; the end of the stream, or
        // an error, is how a receiver that went away shows.
        let watcher = tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while let Ok(read) = reader.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
            }
            watching.store(false, Ordering::Release);
        });
        Ok(Conn {
            writer,
            alive,
            watcher,
        })
    }
}
