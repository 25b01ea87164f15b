//! TLS on both sides of a PostgreSQL session: terminated towards agents with the configured
//! certificate (or an appliance certificate generated on first run), originated towards each
//! target's server as libpq's `sslmode` would.

mod any_server_cert;

/// For in-process tests of TLS sessions: a client that takes the gateway's test certificate.
#[cfg(test)]
pub fn test_tls_pair() -> (TlsAcceptor, tokio_rustls::TlsConnector) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a test certificate");
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).expect("a test key");
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("a server config");
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(any_server_cert::AnyServerCert::new(provider())))
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{AgentTls, UpstreamTls, UpstreamTlsMode};

/// A byte stream to a client or server, plain or TLS.
pub trait PgStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PgStream for T {}

/// SSLRequest: length 8, code 1234.5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// PostgreSQL 17 clients offer this ALPN protocol.
const ALPN: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: {path}: {source}")]
    File {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{field}: {path}: {detail}")]
    Pem {
        field: String,
        path: PathBuf,
        detail: String,
    },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("generating the appliance certificate: {0}")]
    Generate(String),
}

/// Where the agent-facing certificate came from, for the startup log.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    Configured(PathBuf),
    Appliance { cert_file: PathBuf, generated: bool },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor for agents' SSLRequests.
pub fn agent_acceptor(settings: &AgentTls) -> Result<(TlsAcceptor, CertificateSource), TlsError> {
    server_acceptor(settings, ALPN)
}

/// The acceptor of the approvers' HTTPS API: the certificate agents are shown, speaking
/// HTTP/1.1.
pub fn https_acceptor(settings: &AgentTls) -> Result<TlsAcceptor, TlsError> {
    server_acceptor(settings, b"http/1.1").map(|(acceptor, _)| acceptor)
}

fn server_acceptor(
    settings: &AgentTls,
    alpn: &[u8],
) -> Result<(TlsAcceptor, CertificateSource), TlsError> {
    let (cert_file, key_file, source) = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => (
            cert.clone(),
            key.clone(),
            CertificateSource::Configured(cert.clone()),
        ),
        _ => {
            let (cert, key, generated) = appliance_certificate(&settings.state_dir)?;
            let source = CertificateSource::Appliance {
                cert_file: cert.clone(),
                generated,
            };
            (cert, key, source)
        }
    };
    let certs = read_certificates("gateway.tls_cert_file", &cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|error| TlsError::Pem {
        field: "gateway.tls_key_file".into(),
        path: key_file.clone(),
        detail: error.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), source))
}

fn read_certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Pem {
            field: field.into(),
            path: path.to_owned(),
            detail: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            field: field.into(),
            path: path.to_owned(),
            detail: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The appliance's self-signed certificate under `state_dir/tls/`, generated on first run
/// for localhost, the loopback addresses and the host name.
fn appliance_certificate(state_dir: &Path) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    let dir = state_dir.join("tls");
    let cert_file = dir.join("appliance-cert.pem");
    let key_file = dir.join("appliance-key.pem");
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::File {
            field: "gateway.state_dir".into(),
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(file_error(&dir))?;
    // Two gateways starting together must not write a certificate and a key of different pairs.
    let lock_path = dir.join(".generate.lock");
    let lock = std::fs::File::create(&lock_path).map_err(file_error(&lock_path))?;
    lock.lock().map_err(file_error(&lock_path))?;
    if cert_file.exists() && key_file.exists() {
        return Ok((cert_file, key_file, false));
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_owned());
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|error| TlsError::Generate(error.to_string()))?;
    write_private(&key_file, certified.key_pair.serialize_pem().as_bytes())
        .map_err(file_error(&key_file))?;
    std::fs::write(&cert_file, certified.cert.pem()).map_err(file_error(&cert_file))?;
    Ok((cert_file, key_file, true))
}

/// Created readable by the owner only, before any key material is written.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

/// How one target's server is reached.
#[derive(Clone)]
pub struct UpstreamConnector {
    mode: UpstreamTlsMode,
    connector: Option<TlsConnector>,
    server_name: Option<ServerName<'static>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("the server refused TLS, which upstream_tls = \"{0}\" requires")]
    Refused(&'static str),
    #[error("unexpected answer to SSLRequest")]
    BadAnswer,
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl UpstreamConnector {
    pub fn new(target: &str, tls: &UpstreamTls) -> Result<Self, TlsError> {
        let field = |name: &str| format!("targets[{target}].{name}");
        let connector = match tls.mode {
            UpstreamTlsMode::Disable => None,
            UpstreamTlsMode::Auto | UpstreamTlsMode::Prefer | UpstreamTlsMode::Require => {
                let config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(
                        any_server_cert::AnyServerCert::new(provider()),
                    ))
                    .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(config)))
            }
            UpstreamTlsMode::VerifyFull => {
                let ca_file = tls.ca_file.as_deref().unwrap_or(Path::new(""));
                let mut roots = RootCertStore::empty();
                for cert in read_certificates(&field("upstream_ca_file"), ca_file)? {
                    roots.add(cert)?;
                }
                let config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(config)))
            }
        };
        let server_name = tls
            .server_name
            .as_deref()
            .and_then(|name| ServerName::try_from(name.to_owned()).ok());
        Ok(Self {
            mode: tls.mode,
            connector,
            server_name,
        })
    }

    /// SSLRequest, then TLS or plain text as the mode allows. The certificate is checked
    /// against the configured server name, or else the address connected to. The flag says
    /// whether the connection is encrypted.
    pub async fn negotiate(
        &self,
        mut stream: TcpStream,
        address: IpAddr,
    ) -> Result<(Box<dyn PgStream>, bool), UpstreamTlsError> {
        let Some(connector) = &self.connector else {
            return Ok((Box::new(stream), false));
        };
        if self.mode == UpstreamTlsMode::Auto && crate::config::canonical_ip(address).is_loopback()
        {
            return Ok((Box::new(stream), false));
        }
        stream.write_all(&SSL_REQUEST).await?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await?;
        match (answer[0], self.mode) {
            (b'S', _) => {
                let name = self
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(address.into()));
                let tls = connector
                    .connect(name, stream)
                    .await
                    .map_err(UpstreamTlsError::Handshake)?;
                Ok((Box::new(tls), true))
            }
            (b'N', UpstreamTlsMode::Auto | UpstreamTlsMode::Prefer) => {
                Ok((Box::new(stream), false))
            }
            (b'N', mode) => Err(UpstreamTlsError::Refused(mode.as_str())),
            _ => Err(UpstreamTlsError::BadAnswer),
        }
    }
}
