//! Configuration: one TOML file, parsed into raw serde types (`deny_unknown_fields`) and then
//! validated into [`Config`]. Every error names the file, the line and the field.

mod approvals;
mod audit;
mod auth;
mod export;
mod local;
mod raw;
mod tls;
pub mod validate;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;

pub use approvals::{ApprovalSettings, HttpApprovals};
pub use audit::{AuditSettings, Durability};
pub use auth::{JwksSource, JwksUrl, TargetAuth, TokenAuth, TokenValidation};
pub use export::{ExportKind, ExportSink, FileExport, HecExport, SyslogExport};
pub use local::{Coverage, UnixAgents, UnixRoute};
pub use tls::{AgentTls, UpstreamTls, UpstreamTlsMode};
pub use validate::validate;

/// A validated configuration. Only [`load`] and [`validate`] build one.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewaySettings,
    pub agents: AgentSelection,
    pub targets: Vec<Target>,
    pub audit: AuditSettings,
    pub approvals: ApprovalSettings,
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Port the nftables rules redirect agent connections to.
    pub listen_port: u16,
    /// Addresses the listener binds (loopback by default; wildcard when remote agents exist).
    pub bind: Vec<IpAddr>,
    pub admin_socket: PathBuf,
    /// Directory under a bpffs mount where programs, links and maps are pinned.
    pub bpffs_dir: PathBuf,
    pub nft_table: String,
    pub mark: u32,
    /// Mark on the gateway's own upstream sockets: never intercepted.
    pub bypass_mark: u32,
    pub redirect: RedirectMode,
    /// Which connections Tollgate's table exempts from connection tracking.
    pub untrack: UntrackScope,
    /// Threads serving connections (each with its own listeners and event loop; default one
    /// per two cores).
    pub workers: usize,
    /// How long a worker polls its sockets after each write before it sleeps (zero: never).
    pub busy_poll: Duration,
    pub upstream_connect_timeout: Duration,
    pub drain_timeout: Duration,
    /// A client must finish startup and authentication within this.
    pub startup_timeout: Duration,
    /// Largest PostgreSQL message a client may send after authentication.
    pub max_message_bytes: usize,
    pub tls: AgentTls,
    /// The policy (see policies/README.md). Without one, statements are recorded but not
    /// checked or masked.
    pub policy_file: Option<PathBuf>,
    /// Where the gateway's own unix sockets live (agents' unix connects are pointed here).
    pub unix_socket_dir: PathBuf,
    /// Agents' connects to protected unix sockets: served through the gateway or refused.
    pub unix_agents: UnixAgents,
}

/// How local agent connections reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMode {
    /// The nftables `output` chain redirects the marked SYN (conntrack + NAT).
    Nftables,
    /// `connect()` is pointed at the listener by the eBPF program: no NAT, no conntrack.
    Ebpf,
}

impl RedirectMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::Ebpf => "ebpf",
        }
    }
}

/// Which connections Tollgate's table exempts from connection tracking (`gateway.untrack`).
/// Only redirected connections need it; its nat chains switch it on for the whole host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntrackScope {
    /// `non-agent`, unless another ruleset on the host relies on connection tracking (its
    /// stateful rules would see the untracked flows as strangers): then `loopback`.
    Auto,
    /// Every flow that is not an agent's (nor from a remote agent source), on every interface.
    NonAgent,
    /// Only loopback traffic of protected ports that is not an agent's.
    Loopback,
}

impl UntrackScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::NonAgent => "non-agent",
            Self::Loopback => "loopback",
        }
    }
}

/// Who counts as an agent.
#[derive(Debug, Clone, Default)]
pub struct AgentSelection {
    /// cgroup v2 paths as written in `/proc/PID/cgroup` (e.g. `/tollgate-agents`).
    pub cgroups: Vec<String>,
    pub uids: Vec<u32>,
    /// Remote agent hosts whose connections are redirected in `prerouting`.
    pub remote_sources: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Postgres,
    ObjectStore,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::ObjectStore => "object_store",
        }
    }
}

/// A protected destination: an address and port, or a port on every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Exact(SocketAddr),
    AnyAddress(u16),
}

impl Destination {
    pub fn port(self) -> u16 {
        match self {
            Self::Exact(addr) => addr.port(),
            Self::AnyAddress(port) => port,
        }
    }

    pub fn matches(self, addr: SocketAddr) -> bool {
        match self {
            Self::Exact(exact) => {
                exact.port() == addr.port() && canonical_ip(exact.ip()) == canonical_ip(addr.ip())
            }
            Self::AnyAddress(port) => port == addr.port(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(addr) => write!(f, "{addr}"),
            Self::AnyAddress(port) => write!(f, "*:{port}"),
        }
    }
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    pub destinations: Vec<Destination>,
    /// Where the gateway connects; `None` means the destination the agent asked for.
    pub upstream: Option<SocketAddr>,
    pub upstream_tls: UpstreamTls,
    pub auth: TargetAuth,
    /// Credentials for the gateway's catalog connection (relation and view definitions for
    /// masking by provenance); token targets fall back to their upstream credentials.
    pub catalog_credentials_file: Option<PathBuf>,
    /// Unix socket paths of the server (`psql` without `-h`) whose agent connects go to the
    /// gateway instead; by default the PostgreSQL socket of each local destination's port.
    pub unix_sockets: Vec<PathBuf>,
    /// What happens to local listeners on a protected port that the destinations do not name.
    pub coverage: Coverage,
}

impl Config {
    /// The target protecting `orig_dst`, if any. Exact destinations win over port-only ones.
    pub fn target_for(&self, orig_dst: SocketAddr) -> Option<&Target> {
        let exact = self.targets.iter().find(|target| {
            target
                .destinations
                .iter()
                .any(|d| matches!(d, Destination::Exact(_)) && d.matches(orig_dst))
        });
        exact.or_else(|| {
            self.targets
                .iter()
                .find(|target| target.destinations.iter().any(|d| d.matches(orig_dst)))
        })
    }
}

/// A configuration error, pointing at the file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        /// Dotted path of the offending field, e.g. `targets[0].destinations[1]`.
        field: String,
        message: String,
    },
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = deserialize_toml(path, text)?;
    validate(raw).map_err(|issue| ConfigError::Invalid {
        path: path.to_owned(),
        line: line_of(text, issue.offset),
        message: format!("{}: {}", issue.field, issue.message),
        field: issue.field,
    })
}

/// Deserializes TOML text into raw (Spanned) types; the error names the line and field.
pub fn deserialize_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    // serde_path_to_error keeps the key path toml's own message leaves out.
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
        // Spanned<T> adds a private wrapper segment to the path; drop it.
        let field = error
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value.", "");
        let inner = error.into_inner();
        let field = if field == "." { String::new() } else { field };
        let line = inner.span().map_or(1, |span| line_of(text, span.start));
        let message = inner.message().trim_end().to_owned();
        ConfigError::Invalid {
            path: path.to_owned(),
            line,
            message: if field.is_empty() {
                message
            } else {
                format!("{field}: {message}")
            },
            field,
        }
    })
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;

/// A short human summary of what a configuration protects (for `check-config`).
pub fn describe(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let gateway = &config.gateway;
    let _ = writeln!(
        out,
        "listener: port {} on {:?}",
        gateway.listen_port, gateway.bind
    );
    let _ = writeln!(
        out,
        "nftables table: inet {} (mark {:#x}); local agents redirected by {}; untracked: {}",
        gateway.nft_table,
        gateway.mark,
        gateway.redirect.as_str(),
        gateway.untrack.as_str()
    );
    let _ = writeln!(
        out,
        "agents: cgroups {:?}, uids {:?}, remote sources {:?}",
        config.agents.cgroups,
        config.agents.uids,
        config
            .agents
            .remote_sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    for target in &config.targets {
        let destinations: Vec<String> = target
            .destinations
            .iter()
            .map(ToString::to_string)
            .collect();
        let upstream = target
            .upstream
            .map_or_else(|| "the original destination".to_owned(), |u| u.to_string());
        let _ = writeln!(
            out,
            "target {} ({}): {} -> {}; coverage {}",
            target.name,
            target.kind.as_str(),
            destinations.join(", "),
            upstream,
            target.coverage.as_str()
        );
    }
    for route in config.unix_routes() {
        let _ = writeln!(
            out,
            "unix socket {} (target {}): agents' connects go to {} (cgroup connect_unix hook, Linux 6.7+)",
            route.protected.display(),
            route.target,
            route.gateway.display()
        );
    }
    let audit = &config.audit;
    let _ = writeln!(
        out,
        "audit log: {} ({}, synced every {} ms)",
        audit.dir.display(),
        audit.durability.as_str(),
        audit.flush_interval.as_millis()
    );
    for sink in &audit.exports {
        let _ = writeln!(
            out,
            "audit export {} ({}): {}, cursor {}",
            sink.name,
            sink.kind.as_str(),
            sink.kind.destination(),
            sink.cursor_file.display()
        );
    }
    let approvals = &config.approvals;
    let approvers: Vec<String> = approvals
        .approver_users
        .iter()
        .cloned()
        .chain(
            approvals
                .approver_groups
                .iter()
                .map(|g| format!("group {g}")),
        )
        .chain(
            approvals
                .http
                .iter()
                .flat_map(|http| (http.approver_groups.iter()).map(|g| format!("token group {g}"))),
        )
        .collect();
    let who = match approvers.is_empty() {
        true => "nobody may approve (no approver_users, approver_groups or \
                 approver_token_groups: held requests time out)"
            .to_owned(),
        false => format!("{} of {}", approvals.required, approvers.join(", ")),
    };
    let _ = writeln!(
        out,
        "approvals: {who}; a held request waits {} s",
        approvals.timeout.as_secs()
    );
    if let Some(webhook) = &approvals.webhook {
        let _ = writeln!(out, "approvals webhook: {}", webhook.text);
    }
    if let Some(http) = &approvals.http {
        let _ = writeln!(
            out,
            "approvals web page and API: https://{}/ (tokens from {})",
            http.listen, http.tokens.issuer
        );
    }
    out
}
