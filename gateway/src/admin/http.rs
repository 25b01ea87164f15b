//! The approvers' HTTPS API and web page (`[approvals] http_listen`). TLS with the
//! certificate agents are shown; every API call carries an OIDC access token
//! (`Authorization: Bearer`), validated like an agent's, whose groups claim must name one of
//! `approver_token_groups`. One request per connection, except the event stream, which stays
//! open and pushes each change to the waiting requests as it happens.

mod events;
mod routes;
mod web;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::Semaphore,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    approval::Approvals,
    config::HttpApprovals,
    drain,
    identity::token::TokenValidator,
    net::http::request::{parse_request, Request, RequestError},
};

/// An approve or deny call is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;
/// Handshake and request together.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (event streams included); more are closed at once.
const MAX_CONNECTIONS: usize = 128;
/// Of those, from one client address.
const MAX_PER_PEER: usize = 16;
/// A client that stops reading is let go after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API serves.
pub struct HttpApi {
    pub approvals: Arc<Approvals>,
    pub tokens: TokenValidator,
    pub approver_groups: Vec<String>,
    pub drain: drain::Watch,
}

/// Binds the listener now, so a port in use stops startup with its field named.
pub async fn bind(settings: &HttpApprovals) -> std::io::Result<TcpListener> {
    TcpListener::bind(settings.listen).await
}

pub async fn serve(listener: TcpListener, tls: TlsAcceptor, api: HttpApi) {
    let api = Arc::new(api);
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_peer = Arc::new(PerPeer::default());
    let mut drain = api.drain.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: give the others time to close.
                tracing::warn!(event = "approvals.http.accept_failed", %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // One client cannot take every place (an agent on the host must not be able to
        // lock approvers out).
        let (Some(peer_place), Ok(place)) = (
            per_peer.enter(client_of(peer.ip())),
            places.clone().try_acquire_owned(),
        ) else {
            tracing::warn!(event = "approvals.http.busy", %peer, "too many approver connections");
            continue;
        };
        let (api, tls) = (api.clone(), tls.clone());
        tokio::spawn(async move {
            let _places = (place, peer_place);
            let _ = tcp.set_nodelay(true);
            // The handshake and the request share one deadline.
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            let handshake = tokio::time::timeout_at(deadline, tls.accept(tcp)).await;
            if let Ok(Ok(stream)) = handshake {
                connection(stream, peer, &api, deadline).await;
            }
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    api: &HttpApi,
    deadline: Instant,
) {
    let request = match tokio::time::timeout_at(deadline, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => {
            let reply = Reply::error(error.status(), &error.to_string());
            let _ = reply.write(&mut stream).await;
            return;
        }
        Err(_) => return,
    };
    match routes::route(api, &request, peer).await {
        Answer::Reply(reply) => {
            let _ = reply.write(&mut stream).await;
        }
        Answer::Events(caller) => events::stream(&mut stream, api, caller).await,
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

/// Who a connection counts against: its IPv4 address, or its IPv6 /64 (one host's share).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Connections open per client.
#[derive(Default)]
struct PerPeer(Mutex<HashMap<IpAddr, usize>>);

/// A connection's place in [`PerPeer`], given back when it closes.
struct PeerPlace {
    peers: Arc<PerPeer>,
    ip: IpAddr,
}

impl PerPeer {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPlace> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= MAX_PER_PEER {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, RequestError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|_| RequestError::Malformed("the connection failed"))?;
        if read == 0 {
            return Err(RequestError::Malformed("the connection closed mid-request"));
        }
        buf.extend_from_slice(&chunk[..read]);
        if let Some(request) = parse_request(&buf, MAX_BODY)? {
            return Ok(request);
        }
    }
}

/// What a route answers: one reply, or the event stream for an authenticated caller.
pub enum Answer {
    Reply(Reply),
    Events(routes::TokenCaller),
}

/// One complete response.
pub struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// `WWW-Authenticate: Bearer` on a 401.
    challenge: bool,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            challenge: status == 401,
        }
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "ok": false, "error": message }),
        )
    }

    pub fn file(content_type: &'static str, body: &'static str) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            challenge: false,
        }
    }

    async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> std::io::Result<()> {
        tokio::time::timeout(WRITE_TIMEOUT, self.write_all(stream))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)?
    }

    async fn write_all<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> std::io::Result<()> {
        let mut head = status_line(self.status);
        head.push_str(&format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            self.content_type,
            self.body.len()
        ));
        if self.challenge {
            head.push_str("WWW-Authenticate: Bearer realm=\"tollgate approvals\"\r\n");
        }
        head.push_str(SECURITY_HEADERS);
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&self.body).await?;
        stream.flush().await
    }
}

/// Nothing is cached, framed, sniffed or loaded from elsewhere: the page's script and style
/// are its own files, and it renders what an agent wrote as text only.
const SECURITY_HEADERS: &str = "Cache-Control: no-store\r\n\
    Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'\r\n\
    X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Strict-Transport-Security: max-age=31536000\r\n";

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!("HTTP/1.1 {status} {reason}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_64() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(client_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("2001:db8:1:2:bbbb::9")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn one_client_holds_at_most_its_share_and_gets_it_back() {
        let peers = Arc::new(PerPeer::default());
        let ip: IpAddr = "127.0.0.1".parse().expect("address");
        let held: Vec<PeerPlace> = (0..MAX_PER_PEER)
            .map(|_| peers.enter(ip).expect("a place"))
            .collect();
        assert!(peers.enter(ip).is_none(), "the share is full");
        assert!(peers.enter("127.0.0.2".parse().expect("address")).is_some());
        drop(held);
        assert!(peers.enter(ip).is_some(), "places are given back");
    }
}
