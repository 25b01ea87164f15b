//! Approvals as the admin socket and the HTTPS API answer them: list and show what waits,
//! approve, deny, list and revoke grants. Deciding takes an approver; looking also suits root.
//! Each front end says who its caller is (a [`Caller`]) and shares everything else.

use std::time::Duration;

use serde_json::{json, Value};

use super::{refusal, AdminApi};
use crate::approval::{
    local_approver,
    view::{grant_json, pending_json},
    ApprovalError, Approvals, Approver, Decided,
};

/// Who calls, as its front end established it.
pub struct Caller {
    /// The approver the caller is, or why it is not one.
    pub approver: Result<Approver, String>,
    /// May list and show (approvers, and root on the socket).
    pub may_view: bool,
}

/// The longest grant an approver may give.
const MAX_GRANT: Duration = Duration::from_secs(7 * 24 * 3600);

/// An admin socket call from local uid `uid`.
pub fn dispatch(api: &AdminApi, uid: u32, op: &str, request: &Value) -> Value {
    let Some(approvals) = &api.approvals else {
        return refusal(
            "this gateway holds no requests for approval (it runs without a policy)".to_owned(),
        );
    };
    let approver = local_approver(uid, &api.approval_settings).map_err(|e| e.to_string());
    let caller = Caller {
        may_view: approver.is_ok() || uid == 0,
        approver,
    };
    answer(approvals, &caller, op, request)
}

/// One operation (`approvals.list`, `approvals.approve`, ...) with its JSON arguments.
pub fn answer(approvals: &Approvals, caller: &Caller, op: &str, request: &Value) -> Value {
    let viewer = caller.may_view;
    let id = request["id"].as_u64();
    match (op, caller.approver.as_ref()) {
        ("approvals.list", _) if viewer => json!({
            "ok": true,
            "pending": approvals.pending().iter().map(pending_json).collect::<Vec<_>>(),
        }),
        ("approvals.show", _) if viewer => match id.and_then(|id| approvals.get(id)) {
            Some(pending) => json!({ "ok": true, "pending": pending_json(&pending) }),
            None => refused(
                "not_found",
                format!(
                    "no request {} is waiting for approval (decided, timed out or withdrawn)",
                    request["id"]
                ),
            ),
        },
        ("grants.list", _) if viewer => json!({
            "ok": true,
            "grants": approvals.grants().iter().map(grant_json).collect::<Vec<_>>(),
        }),
        ("approvals.approve", Ok(approver)) => approve(approvals, approver, request),
        ("approvals.deny", Ok(approver)) => {
            let Some(reason) = request["reason"].as_str().filter(|r| !r.trim().is_empty()) else {
                return refused(
                    "bad_request",
                    "a denial needs a reason (--reason; the client is shown it)",
                );
            };
            match id.map(|id| approvals.deny(id, approver, reason.to_owned())) {
                Some(Ok(())) => json!({ "ok": true, "denied": id }),
                Some(Err(error)) => decision_refused(&error),
                None => refused("bad_request", "name the request: an approval id"),
            }
        }
        ("grants.revoke", Ok(approver)) => match id.map(|id| approvals.revoke(id)) {
            Some(Ok(grant)) => {
                tracing::info!(event = "grant.revoked", grant = grant.id, by = %approver.name, "grant revoked");
                json!({ "ok": true, "revoked": grant_json(&grant) })
            }
            Some(Err(error)) => decision_refused(&error),
            None => refused("bad_request", "name the grant: a grant id"),
        },
        (_, Err(not_an_approver)) => refused("forbidden", not_an_approver),
        (op, Ok(_)) => refused("bad_request", format!("unknown request {op}")),
    }
}

fn approve(approvals: &Approvals, approver: &Approver, request: &Value) -> Value {
    let Some(id) = request["id"].as_u64() else {
        return refused("bad_request", "name the request: an approval id");
    };
    let grant_for = match request["for_s"].as_u64().map(Duration::from_secs) {
        Some(duration) if duration.is_zero() || duration > MAX_GRANT => {
            return refused("bad_request", "a grant (--for) lasts 1 s to 7 days")
        }
        other => other,
    };
    let seen = match request["hash"].as_str() {
        Some(hex) => match parse_hash(hex) {
            Some(hash) => Some(hash),
            None => return refused("bad_request", "the request hash is 64 hex digits"),
        },
        None => None,
    };
    let reason = request["reason"].as_str().map(str::to_owned);
    match approvals.approve(id, approver, reason, grant_for, seen) {
        Ok(Decided::Approved { grant }) => json!({ "ok": true, "approved": id, "grant": grant }),
        Ok(Decided::Waiting { have, need }) => {
            json!({ "ok": true, "approved": Value::Null, "have": have, "need": need })
        }
        Err(error) => decision_refused(&error),
    }
}

/// A refusal with the kind of failure it is (`bad_request`, `forbidden`, `not_found`,
/// `conflict`), which the HTTP API answers with its status code.
fn refused(code: &str, error: impl Into<String>) -> Value {
    let mut refusal = refusal(error.into());
    refusal["code"] = json!(code);
    refusal
}

fn decision_refused(error: &ApprovalError) -> Value {
    let code = match error {
        ApprovalError::NotPending(_) | ApprovalError::NoGrant(_) => "not_found",
        ApprovalError::SelfApproval => "forbidden",
        ApprovalError::AlreadyApproved(_) | ApprovalError::Mismatch => "conflict",
    };
    refused(code, error.to_string())
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (at, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(at * 2..at * 2 + 2)?, 16).ok()?;
    }
    Some(hash)
}
