//! The file as written. Spanned fields carry their position so validation errors can name the line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub gateway: Option<Spanned<RawGateway>>,
    pub agents: Spanned<RawAgents>,
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    /// Not spanned: `[[audit.export]]` alone makes the table implicitly, which has no span.
    pub audit: Option<RawAudit>,
    pub approvals: Option<Spanned<RawApprovals>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    pub approver_users: Option<Spanned<Vec<Spanned<String>>>>,
    pub approver_groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub required: Option<Spanned<u64>>,
    pub timeout_s: Option<Spanned<u64>>,
    pub webhook_url: Option<Spanned<String>>,
    pub webhook_ca_file: Option<Spanned<String>>,
    // The HTTPS API and web page for remote approvers, who sign in with an OIDC token.
    pub http_listen: Option<Spanned<String>>,
    pub approver_token_groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub token_issuer: Option<Spanned<String>>,
    pub token_audience: Option<Spanned<String>>,
    pub token_jwks_file: Option<Spanned<String>>,
    pub token_jwks_url: Option<Spanned<String>>,
    pub token_jwks_ca_file: Option<Spanned<String>>,
    pub token_jwks_min_refetch_s: Option<Spanned<u64>>,
    pub token_required_claims: Option<Spanned<Vec<Spanned<String>>>>,
    pub token_groups_claim: Option<Spanned<String>>,
    pub token_leeway_s: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub dir: Option<Spanned<String>>,
    pub durability: Option<Spanned<String>>,
    pub flush_ms: Option<Spanned<u64>>,
    pub key_file: Option<Spanned<String>>,
    pub origin: Option<Spanned<String>>,
    pub export: Option<Spanned<Vec<Spanned<RawExport>>>>,
}

/// One `[[audit.export]]` sink. Flat: `kind` says which of the other fields apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub name: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    // file
    pub path: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub keep: Option<Spanned<u32>>,
    // syslog
    pub address: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub app_name: Option<Spanned<String>>,
    pub confirm_ms: Option<Spanned<u64>>,
    // splunk_hec
    pub url: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub index: Option<Spanned<String>>,
    pub sourcetype: Option<Spanned<String>>,
    pub ack_timeout_s: Option<Spanned<u64>>,
    // syslog and splunk_hec
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen_port: Option<Spanned<u16>>,
    pub bind: Option<Spanned<Vec<Spanned<String>>>>,
    pub admin_socket: Option<Spanned<String>>,
    pub bpffs_dir: Option<Spanned<String>>,
    pub nft_table: Option<Spanned<String>>,
    pub mark: Option<Spanned<u32>>,
    pub bypass_mark: Option<Spanned<u32>>,
    pub redirect: Option<Spanned<String>>,
    pub untrack: Option<Spanned<String>>,
    pub workers: Option<Spanned<u16>>,
    pub busy_poll_us: Option<Spanned<u64>>,
    pub upstream_connect_timeout_ms: Option<Spanned<u64>>,
    pub drain_timeout_ms: Option<Spanned<u64>>,
    pub startup_timeout_ms: Option<Spanned<u64>>,
    pub max_message_bytes: Option<Spanned<u64>>,
    pub tls_cert_file: Option<Spanned<String>>,
    pub tls_key_file: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub policy_file: Option<Spanned<String>>,
    pub unix_socket_dir: Option<Spanned<String>>,
    pub unix_agents: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgents {
    #[serde(default)]
    pub cgroups: Vec<Spanned<String>>,
    #[serde(default)]
    pub uids: Vec<Spanned<u32>>,
    #[serde(default)]
    pub remote_sources: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub destinations: Spanned<Vec<Spanned<String>>>,
    pub upstream: Option<Spanned<String>>,
    pub upstream_tls: Option<Spanned<String>>,
    pub upstream_ca_file: Option<Spanned<String>>,
    pub upstream_server_name: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    pub token_issuer: Option<Spanned<String>>,
    pub token_audience: Option<Spanned<String>>,
    pub token_jwks_file: Option<Spanned<String>>,
    pub token_jwks_url: Option<Spanned<String>>,
    pub token_jwks_ca_file: Option<Spanned<String>>,
    pub token_jwks_min_refetch_s: Option<Spanned<u64>>,
    pub token_required_claims: Option<Spanned<Vec<Spanned<String>>>>,
    pub token_groups_claim: Option<Spanned<String>>,
    pub token_leeway_s: Option<Spanned<u64>>,
    pub upstream_credentials_file: Option<Spanned<String>>,
    pub catalog_credentials_file: Option<Spanned<String>>,
    pub unix_sockets: Option<Spanned<Vec<Spanned<String>>>>,
    pub coverage: Option<Spanned<String>>,
}
