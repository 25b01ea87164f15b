//! A minimal HTTP/1.1 client for the gateway's own calls (the identity provider's JWKS, an
//! approvals webhook): one request per connection (`Connection: close`), TLS verified against
//! the configured CA bundle, bounded in time and size. The socket carries the bypass mark so
//! the gateway never intercepts itself.

use std::{io, net::SocketAddr, time::Duration};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::net::{
    self as upstream,
    http::{self, HttpError, Response, MAX_HEAD},
};

/// Resolve, connect, handshake, request and response together.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set is a few KiB, a webhook's answer less; anything near this is neither.
pub const MAX_BODY: usize = 1024 * 1024;

/// Where requests go: `http[s]://host:port/path`, checked by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As written, for logs.
    pub text: String,
    pub https: bool,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// PEM bundle verifying the server's certificate (https only).
    pub ca_file: std::path::PathBuf,
}
/// Raw bytes read, headers and chunk framing included.
const MAX_READ: usize = MAX_HEAD + 2 * MAX_BODY;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("resolving {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("plain http is for loopback only, but the host resolved to {0}")]
    NotLoopback(SocketAddr),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS handshake: {0}")]
    Handshake(#[source] io::Error),
    #[error("exchange: {0}")]
    Io(#[from] io::Error),
    #[error("no complete response within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub struct HttpClient {
    url: Endpoint,
    tls: Option<TlsConnector>,
    bypass_mark: u32,
}

impl HttpClient {
    /// Reads the CA bundle now (https only), so a missing one stops startup.
    pub fn new(url: &Endpoint, bypass_mark: u32) -> Result<Self, String> {
        let tls = if url.https {
            Some(upstream::tls_connector(&url.ca_file, &[b"http/1.1"])?)
        } else {
            None
        };
        Ok(Self {
            url: url.clone(),
            tls,
            bypass_mark,
        })
    }

    pub fn url(&self) -> &str {
        &self.url.text
    }

    pub async fn get(&self) -> Result<Response, FetchError> {
        let request = self.head(
            "GET",
            "Accept: application/jwk-set+json, application/json\r\nAccept-Encoding: identity\r\n",
        );
        self.bounded(request.into_bytes()).await
    }

    /// POSTs a JSON body; a 200 answer is success.
    pub async fn post_json(&self, body: &[u8]) -> Result<Response, FetchError> {
        let extra = format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        let mut request = self.head("POST", &extra).into_bytes();
        request.extend_from_slice(body);
        self.bounded(request).await
    }

    async fn bounded(&self, request: Vec<u8>) -> Result<Response, FetchError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.exchange(&request))
            .await
            .map_err(|_| FetchError::TimedOut(FETCH_TIMEOUT))?
    }

    async fn exchange(&self, request: &[u8]) -> Result<Response, FetchError> {
        let tcp = self.connect().await?;
        match &self.tls {
            None => send_and_read(tcp, request).await,
            Some(connector) => {
                let name = ServerName::try_from(self.url.host.clone())
                    .map_err(|_| FetchError::ServerName(self.url.host.clone()))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(FetchError::Handshake)?;
                send_and_read(tls, request).await
            }
        }
    }

    /// Every address the name resolves to, in order, until one answers.
    async fn connect(&self) -> Result<TcpStream, FetchError> {
        let host = self.url.host.as_str();
        let addrs = tokio::net::lookup_host((host, self.url.port))
            .await
            .map_err(|source| FetchError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        let mut failure = FetchError::NoAddress(host.to_owned());
        for addr in addrs {
            // The config allows plain http to loopback names only; hold the name to it.
            if !self.url.https && !addr.ip().is_loopback() {
                failure = FetchError::NotLoopback(addr);
                continue;
            }
            match upstream::connect(addr, self.bypass_mark).await {
                Ok(stream) => return Ok(stream),
                Err(source) => failure = FetchError::Connect { addr, source },
            }
        }
        Err(failure)
    }

    /// The request line and headers; `extra` ends with CRLF (or is empty).
    fn head(&self, method: &str, extra: &str) -> String {
        let url = &self.url;
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let default_port = if url.https { 443 } else { 80 };
        let authority = if url.port == default_port {
            host
        } else {
            format!("{host}:{}", url.port)
        };
        format!(
            "{method} {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tollgate/{}\r\n\
             {extra}Connection: close\r\n\r\n",
            url.path,
            env!("CARGO_PKG_VERSION"),
        )
    }
}

/// Writes the request and reads until the response is complete, the cap is hit or the
/// server closes. A TLS close without close_notify is an error, so truncation is never a body.
async fn send_and_read<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<Response, FetchError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..read]);
        if buf.len() > MAX_READ {
            return Err(HttpError::TooLarge(MAX_BODY).into());
        }
        let eof = read == 0;
        match http::parse_response(&buf, eof, MAX_BODY)? {
            Some(response) => return Ok(response),
            None if eof => return Err(HttpError::Truncated.into()),
            None => {}
        }
    }
}
