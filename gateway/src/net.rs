//! The gateway's own outbound connections: to the real server on an agent's behalf, to an
//! identity provider, to a SIEM. Each carries the bypass mark, and TLS is verified against
//! the configured CA bundle.

pub mod http;

use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};

use tokio::net::{TcpSocket, TcpStream};

/// Connects with the bypass mark set before `connect()`, so the kernel programs never intercept
/// the gateway's own connection (a redirect loop), whatever uid or cgroup the gateway runs in.
pub async fn connect(addr: SocketAddr, bypass_mark: u32) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_mark(bypass_mark)?;
    socket.set_nonblocking(true)?;
    TcpSocket::from_std_stream(socket.into())
        .connect(addr)
        .await
}

/// [`connect`] bounded by `timeout`; running out is a `TimedOut` error that says so.
pub async fn connect_within(
    addr: SocketAddr,
    bypass_mark: u32,
    timeout: Duration,
) -> io::Result<TcpStream> {
    tokio::time::timeout(timeout, connect(addr, bypass_mark))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            ))
        })
}

/// A TLS client verifying servers against the certificates in `ca_file` (PEM), offering
/// `alpn` (none when empty).
pub fn tls_connector(ca_file: &Path, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsConnector, String> {
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: {error}", ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a certificate rustls cannot use; the others still count.
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: no usable CA certificate in the file",
            ca_file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
