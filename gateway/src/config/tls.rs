//! TLS settings: the certificate the gateway shows agents, and per target how it connects to
//! the real server. Files are read at startup (errors then name the field too).

use std::path::PathBuf;

use super::{
    raw::{RawGateway, RawTarget},
    validate::{absolute, issue, Issue},
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/tollgate";

/// TLS towards agents. Without a configured pair, an appliance certificate is generated on
/// first run under `state_dir/tls/` and reused afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub state_dir: PathBuf,
}

/// How the gateway connects to a target's server, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTlsMode {
    Disable,
    /// The default: plain text to a server on a loopback address (the gateway runs on the
    /// database host; nothing crosses a network, and a TLS server connection would break SCRAM
    /// logins of TLS agents, see policies/README.md), `Prefer` to any other.
    Auto,
    /// TLS if the server offers it, unverified; plain text otherwise.
    Prefer,
    /// TLS or nothing, unverified.
    Require,
    /// TLS with the server's certificate checked against `ca_file` and the server name.
    VerifyFull,
}

impl UpstreamTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Auto => "auto",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub mode: UpstreamTlsMode,
    pub ca_file: Option<PathBuf>,
    /// Name checked against the server's certificate; by default the upstream's address.
    pub server_name: Option<String>,
}

pub fn agent_tls(raw: &RawGateway) -> Result<AgentTls, Issue> {
    let cert_file = raw
        .tls_cert_file
        .as_ref()
        .map(|p| absolute("gateway.tls_cert_file", p))
        .transpose()?;
    let key_file = raw
        .tls_key_file
        .as_ref()
        .map(|p| absolute("gateway.tls_key_file", p))
        .transpose()?;
    match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(cert), None) => {
            return Err(issue(
                "gateway.tls_cert_file",
                cert,
                "needs gateway.tls_key_file too",
            ))
        }
        (None, Some(key)) => {
            return Err(issue(
                "gateway.tls_key_file",
                key,
                "needs gateway.tls_cert_file too",
            ))
        }
        _ => {}
    }
    let state_dir = match &raw.state_dir {
        Some(dir) => absolute("gateway.state_dir", dir)?,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    Ok(AgentTls {
        cert_file,
        key_file,
        state_dir,
    })
}

pub fn upstream_tls(raw: &RawTarget, index: usize) -> Result<UpstreamTls, Issue> {
    let field = |name: &str| format!("targets[{index}].{name}");
    let mode = match &raw.upstream_tls {
        None => UpstreamTlsMode::Auto,
        Some(text) => match text.get_ref().as_str() {
            "disable" => UpstreamTlsMode::Disable,
            "auto" => UpstreamTlsMode::Auto,
            "prefer" => UpstreamTlsMode::Prefer,
            "require" => UpstreamTlsMode::Require,
            "verify-full" => UpstreamTlsMode::VerifyFull,
            other => {
                return Err(issue(
                    field("upstream_tls"),
                    text,
                    format!("`{other}` is not one of: auto, disable, prefer, require, verify-full"),
                ))
            }
        },
    };
    let ca_file = raw
        .upstream_ca_file
        .as_ref()
        .map(|p| absolute(field("upstream_ca_file"), p))
        .transpose()?;
    match (&raw.upstream_ca_file, mode) {
        (None, UpstreamTlsMode::VerifyFull) => {
            let at = raw
                .upstream_tls
                .as_ref()
                .expect("verify-full is written out");
            return Err(issue(
                field("upstream_tls"),
                at,
                "verify-full needs upstream_ca_file (the CA that signed the server's certificate)",
            ));
        }
        (
            Some(ca),
            UpstreamTlsMode::Disable
            | UpstreamTlsMode::Auto
            | UpstreamTlsMode::Prefer
            | UpstreamTlsMode::Require,
        ) => {
            return Err(issue(
                field("upstream_ca_file"),
                ca,
                "is only used with upstream_tls = \"verify-full\"",
            ))
        }
        _ => {}
    }
    let server_name = match &raw.upstream_server_name {
        Some(name) if mode != UpstreamTlsMode::VerifyFull => {
            return Err(issue(
                field("upstream_server_name"),
                name,
                "is only used with upstream_tls = \"verify-full\"",
            ))
        }
        Some(name) if rustls::pki_types::ServerName::try_from(name.get_ref().as_str()).is_err() => {
            return Err(issue(
                field("upstream_server_name"),
                name,
                format!("`{}` is not a DNS name or IP address", name.get_ref()),
            ))
        }
        other => other.as_ref().map(|name| name.get_ref().clone()),
    };
    Ok(UpstreamTls {
        mode,
        ca_file,
        server_name,
    })
}
