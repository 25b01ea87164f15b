//! Requests and grants as approvers see them (the CLI, the HTTP API, the web page) and as the
//! webhook tells them: JSON, never a literal value.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{Grant, Pending};
use crate::clock::rfc3339_utc;

/// Everything an approver is shown of a waiting request.
pub fn pending_json(pending: &Pending) -> Value {
    let (requester, ask) = (&pending.requester, &pending.ask);
    let left = pending
        .deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    json!({
        "id": pending.id,
        "since": rfc3339_utc(pending.since),
        "deadline": rfc3339_utc(pending.deadline),
        "seconds_left": left.as_secs(),
        "requester": {
            "actor": requester.actor,
            "token_subject": requester.token_subject,
            "token_groups": requester.token_groups,
        },
        "conn_id": ask.conn_id,
        "target": ask.target,
        "db_user": ask.db_user,
        "database": ask.database,
        "rule": ask.rule,
        "statement": ask.statement,
        "tables": ask.tables,
        "classified_columns": ask.classified_columns,
        "row_estimate": ask.row_estimate,
        "request_hash": crate::audit::hex(&ask.request_hash),
        "approved_by": pending.approved_by.iter().map(|a| &a.name).collect::<Vec<_>>(),
    })
}

pub fn grant_json(grant: &Grant) -> Value {
    json!({
        "id": grant.id,
        "grantee": grant.grantee,
        "target": grant.target,
        "statement": grant.statement,
        "approval": grant.approval,
        "approvers": grant.approvers.iter().map(|a| &a.name).collect::<Vec<_>>(),
        "expires": rfc3339_utc(grant.expires),
        "uses": grant.uses,
    })
}
