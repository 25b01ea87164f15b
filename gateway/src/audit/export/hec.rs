//! Splunk HTTP Event Collector with indexer acknowledgement: a batch is posted on the
//! sink's channel (`X-Splunk-Request-Channel`), the collector answers with an `ackId`, and
//! the batch counts as delivered only once `/services/collector/ack` reports it indexed. A
//! batch not acknowledged within `ack_timeout` is sent again (same ids).

use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::TlsConnector;

use super::{connect_host, Outgoing, SinkError};
use crate::{config::HecExport, net::http};

const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: usize = 1024 * 1024;
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct HecSink {
    settings: HecExport,
    token: String,
    /// This sink's channel for the life of the process; acks are per channel.
    channel: String,
    tls: Option<TlsConnector>,
    bypass_mark: u32,
    conn: Option<Box<dyn Stream>>,
}

impl HecSink {
    pub fn new(settings: HecExport, bypass_mark: u32) -> Result<Self, SinkError> {
        let token = std::fs::read_to_string(&settings.token_file)
            .map_err(|e| SinkError::Setup(format!("{}: {e}", settings.token_file.display())))?
            .trim()
            .to_owned();
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(SinkError::Setup(format!(
                "{}: does not hold a HEC token",
                settings.token_file.display()
            )));
        }
        let tls = match settings.https {
            true => Some(
                crate::net::tls_connector(&settings.ca_file, &[b"http/1.1"])
                    .map_err(SinkError::Setup)?,
            ),
            false => None,
        };
        Ok(Self {
            settings,
            token,
            channel: channel_id().map_err(SinkError::Setup)?,
            tls,
            bypass_mark,
            conn: None,
        })
    }

    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// Posts the events and waits for the indexer's acknowledgement.
    pub async fn send(&mut self, events: &[Outgoing]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.json.len() + 160).sum());
        for event in events {
            let mut envelope = serde_json::json!({
                "time": event.time_ms as f64 / 1000.0,
                "source": "tollgate",
                "sourcetype": self.settings.sourcetype,
            });
            if let Some(index) = &self.settings.index {
                envelope["index"] = Value::from(index.as_str());
            }
            let mut envelope = envelope.to_string();
            // The event is spliced in as the JSON it already is.
            envelope.pop();
            body.extend_from_slice(envelope.as_bytes());
            body.extend_from_slice(b",\"event\":");
            body.extend_from_slice(event.json.as_bytes());
            body.extend_from_slice(b"}\n");
        }
        let answer = self.exchange("/services/collector/event", &body).await?;
        let Some(ack) = answer.get("ackId").and_then(Value::as_u64) else {
            return Err(SinkError::Setup(
                "the collector gave no ackId: turn on indexer acknowledgement for this token"
                    .to_owned(),
            ));
        };
        self.wait_for_ack(ack).await
    }

    async fn wait_for_ack(&mut self, ack: u64) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.settings.ack_timeout;
        let query = format!("{{\"acks\":[{ack}]}}");
        let path = format!("/services/collector/ack?channel={}", self.channel);
        let mut pause = FIRST_POLL;
        loop {
            tokio::time::sleep(pause).await;
            let answer = self.exchange(&path, query.as_bytes()).await?;
            if answer["acks"][ack.to_string()].as_bool() == Some(true) {
                return Ok(());
            }
            if Instant::now() + pause > deadline {
                return Err(SinkError::Io(format!(
                    "batch {ack} not acknowledged within {:?}",
                    self.settings.ack_timeout
                )));
            }
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// One request on the kept-alive connection (made again if it was lost), bounded in time.
    async fn exchange(&mut self, path: &str, body: &[u8]) -> Result<Value, SinkError> {
        let result = tokio::time::timeout(EXCHANGE_TIMEOUT, self.try_exchange(path, body))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Io(format!(
                    "no answer within {EXCHANGE_TIMEOUT:?}"
                )))
            });
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_exchange(&mut self, path: &str, body: &[u8]) -> Result<Value, SinkError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tollgate/{}\r\n\
             Authorization: Splunk {}\r\nX-Splunk-Request-Channel: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.authority(),
            env!("CARGO_PKG_VERSION"),
            self.token,
            self.channel,
            body.len()
        );
        let text = &self.settings.text;
        let io = |e: std::io::Error| SinkError::Io(format!("{text}: {e}"));
        let Some(conn) = self.conn.as_mut() else {
            return Err(SinkError::Io("not connected".to_owned()));
        };
        conn.write_all(head.as_bytes()).await.map_err(io)?;
        conn.write_all(body).await.map_err(io)?;
        conn.flush().await.map_err(io)?;
        let mut buffer = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let read = conn.read(&mut chunk).await.map_err(io)?;
            buffer.extend_from_slice(&chunk[..read]);
            match http::parse_response(&buffer, read == 0, MAX_RESPONSE) {
                Ok(Some(response)) => {
                    return serde_json::from_slice(&response.body).map_err(|e| {
                        SinkError::Io(format!(
                            "{}: the answer is not JSON: {e}",
                            self.settings.text
                        ))
                    })
                }
                Ok(None) => {}
                Err(error) => return Err(SinkError::Io(format!("{text}: {error}"))),
            }
        }
    }

    fn authority(&self) -> String {
        match self.settings.host.contains(':') {
            true => format!("[{}]:{}", self.settings.host, self.settings.port),
            false => format!("{}:{}", self.settings.host, self.settings.port),
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SinkError> {
        // Plain http is allowed to loopback names only; hold the name to it.
        let loopback_only = !self.settings.https;
        let settings = &self.settings;
        let tcp = connect_host(
            &settings.host,
            settings.port,
            self.bypass_mark,
            loopback_only,
        );
        self.wrap(tcp.await?).await
    }

    async fn wrap(&self, tcp: TcpStream) -> Result<Box<dyn Stream>, SinkError> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(self.settings.host.clone()).map_err(|_| {
            SinkError::Setup(format!("`{}` is not a TLS server name", self.settings.host))
        })?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| SinkError::Io(format!("TLS handshake: {e}")))?;
        Ok(Box::new(stream))
    }
}

/// A random GUID, the form Splunk expects for a channel.
fn channel_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a channel id: {e}"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::audit::hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}
