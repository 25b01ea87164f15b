//! What the log records: typed events, one per thing an auditor asks about. Plain data, so
//! every protocol (PostgreSQL now, object storage next) fills the same shapes and nothing here
//! depends on the modules above.

use serde::{Deserialize, Serialize};

/// One audit event. Serialized with its `kind` beside its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    GatewayStarted {
        version: String,
        config_file: String,
        policy_file: Option<String>,
    },
    GatewayStopped {
        reason: String,
    },
    /// A policy file was read again: applied, or rejected (the previous one stays).
    PolicyReloaded {
        file: String,
        applied: bool,
        detail: Option<String>,
    },
    ConnectionOpened(ConnectionOpened),
    ConnectionClosed(ConnectionClosed),
    LoginDecided(LoginDecided),
    RequestDecided(RequestDecided),
    RequestAnswered(RequestAnswered),
    /// A request was held until a person approves it.
    ApprovalRequested(ApprovalRequested),
    /// A held request was approved (in full or in part), denied, timed out or withdrawn.
    ApprovalDecided(ApprovalDecided),
    /// A request ran without waiting, under a grant an approver gave earlier.
    GrantUsed(GrantUsed),
    /// A signed checkpoint over every record before this one (C2SP signed note).
    Checkpoint {
        note: String,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GatewayStarted { .. } => "gateway_started",
            Self::GatewayStopped { .. } => "gateway_stopped",
            Self::PolicyReloaded { .. } => "policy_reloaded",
            Self::ConnectionOpened(_) => "connection_opened",
            Self::ConnectionClosed(_) => "connection_closed",
            Self::LoginDecided(_) => "login_decided",
            Self::RequestDecided(_) => "request_decided",
            Self::RequestAnswered(_) => "request_answered",
            Self::ApprovalRequested(_) => "approval_requested",
            Self::ApprovalDecided(_) => "approval_decided",
            Self::GrantUsed(_) => "grant_used",
            Self::Checkpoint { .. } => "checkpoint",
        }
    }

    /// The connection an event belongs to, for the session view.
    pub fn conn_id(&self) -> Option<u64> {
        match self {
            Self::ConnectionOpened(e) => Some(e.conn_id),
            Self::ConnectionClosed(e) => Some(e.conn_id),
            Self::LoginDecided(e) => Some(e.conn_id),
            Self::RequestDecided(e) => Some(e.conn_id),
            Self::RequestAnswered(e) => Some(e.conn_id),
            Self::ApprovalRequested(e) => Some(e.conn_id),
            Self::ApprovalDecided(e) => Some(e.conn_id),
            Self::GrantUsed(e) => Some(e.conn_id),
            _ => None,
        }
    }
}

/// Who opened a connection: the process the kernel saw, or a remote agent's address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// `process` or `remote`.
    pub identity: String,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// The command line with secrets redacted.
    pub cmdline: Option<String>,
    pub cgroup: Option<String>,
    pub ppid: Option<u32>,
    pub parent_exe: Option<String>,
    /// A remote agent's source address.
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionOpened {
    pub conn_id: u64,
    pub client: String,
    pub orig_dst: String,
    pub target: String,
    pub target_kind: String,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionClosed {
    pub conn_id: u64,
    pub client: String,
    pub orig_dst: String,
    pub target: Option<String>,
    pub pid: Option<u32>,
    /// `closed`, `refused`, `interrupted`, ...
    pub outcome: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub bytes_from_agent: u64,
    pub bytes_to_agent: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginDecided {
    pub conn_id: u64,
    pub target: String,
    pub db_user: String,
    pub database: String,
    /// `passthrough` (the server authenticates) or `token`.
    pub auth: String,
    pub tls: bool,
    pub token_subject: Option<String>,
    pub token_groups: Vec<String>,
    pub accepted: bool,
    pub reason: Option<String>,
}

/// One request (a simple Query, or the extended-protocol messages up to Sync) as decided,
/// written before anything of it is forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestDecided {
    pub conn_id: u64,
    pub target: String,
    pub db_user: String,
    pub database: String,
    pub token_subject: Option<String>,
    pub statements: Vec<StatementRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementRecord {
    /// `simple`, `prepare` or `extended`.
    pub protocol: String,
    /// The statement with its literals redacted; None for an Execute of a statement prepared
    /// before (recorded with its Parse).
    pub sql: Option<String>,
    /// Each parameter's format and size, never its value.
    pub parameters: Option<String>,
    /// `allow`, `deny`, `require_approval`, or None without a policy.
    pub decision: Option<String>,
    pub rule: Option<String>,
}

/// What the agent got back for a request: written once the server has answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestAnswered {
    pub conn_id: u64,
    /// The index of the request's `request_decided` record.
    pub request: u64,
    /// Result rows (DataRow) and COPY data messages the agent received.
    pub rows: u64,
    /// Their size on the wire, after masking.
    pub row_bytes: u64,
    /// The SQLSTATE of the error that answered it, if one did.
    pub sqlstate: Option<String>,
    /// From forwarding the request to its answer.
    pub duration_us: u64,
    /// Every result column that carried classified data, and what the agent got of it.
    pub classified_columns: Vec<ClassifiedColumn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifiedColumn {
    /// The result column's name (`column N` for COPY, which names none).
    pub column: String,
    pub categories: Vec<String>,
    /// The mask applied (`clear`: the policy let this identity see the values).
    pub mask: String,
}

/// A request held for approval, as its approvers are shown it (never a literal value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    /// The approval id approvers name.
    pub approval: u64,
    pub conn_id: u64,
    /// The index of the request's `request_decided` record.
    pub request: Option<u64>,
    pub target: String,
    pub db_user: String,
    pub database: String,
    pub actor: Actor,
    pub token_subject: Option<String>,
    pub token_groups: Vec<String>,
    pub rule: String,
    /// The statement with its literals redacted.
    pub statement: String,
    pub tables: Vec<String>,
    pub classified_columns: Vec<ClassifiedColumn>,
    /// The planner's estimate of the rows it returns, if one was made.
    pub row_estimate: Option<u64>,
    /// SHA-256 of the exact request (hex): an approval is bound to it.
    pub request_hash: String,
    pub timeout_s: u64,
}

/// What became of a held request, or one approver's part in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub approval: u64,
    pub conn_id: u64,
    /// `approved`, `approved_in_part` (more approvers needed), `denied`, `timed_out`,
    /// `withdrawn` (the client cancelled or left) or `abandoned` (the gateway stopped).
    pub outcome: String,
    /// Who decided: a user name or a token subject.
    pub approver: Option<String>,
    pub approver_uid: Option<u32>,
    pub approver_subject: Option<String>,
    pub reason: Option<String>,
    /// The grant an approval `--for` a while came with.
    pub grant: Option<u64>,
    /// When that grant expires (RFC 3339).
    pub grant_expires: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantUsed {
    pub grant: u64,
    /// The approval the grant was given with.
    pub approval: u64,
    pub conn_id: u64,
    /// The index of the request's `request_decided` record.
    pub request: Option<u64>,
    /// This use's number (1 for the first).
    pub uses: u64,
    pub expires: String,
}
