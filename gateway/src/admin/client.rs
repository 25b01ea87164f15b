//! `tollgate approvals ...`: an approver's commands, sent to the running gateway over its
//! admin socket (which checks the caller's uid against `[approvals]`).

use std::path::Path;

use serde_json::{json, Value};

use crate::config;

/// An approver's command.
pub enum ApprovalCommand {
    List,
    Show(u64),
    Approve {
        id: u64,
        reason: Option<String>,
        /// `--for`: also grant the same statement shape for this long (`15m`, `2h`, `7d`).
        grant_for: Option<String>,
        /// `--hash`: approve only if the request is still the one with this hash.
        hash: Option<String>,
    },
    Deny {
        id: u64,
        reason: String,
    },
    Grants,
    Revoke(u64),
}

/// Runs one command against the gateway `config_path` configures; the text (or JSON) to
/// print, or why it failed.
pub fn run(config_path: &Path, command: ApprovalCommand, as_json: bool) -> Result<String, String> {
    let config = config::load(config_path).map_err(|error| error.to_string())?;
    let request = match &command {
        ApprovalCommand::List => json!({ "op": "approvals.list" }),
        ApprovalCommand::Show(id) => json!({ "op": "approvals.show", "id": id }),
        ApprovalCommand::Approve {
            id,
            reason,
            grant_for,
            hash,
        } => {
            let for_s = match grant_for {
                Some(text) => Some(
                    crate::clock::parse_span(text)
                        .ok_or_else(|| format!("--for `{text}`: give a span like 15m, 2h or 7d"))?
                        .as_secs(),
                ),
                None => None,
            };
            json!({ "op": "approvals.approve", "id": id, "reason": reason, "for_s": for_s, "hash": hash })
        }
        ApprovalCommand::Deny { id, reason } => {
            json!({ "op": "approvals.deny", "id": id, "reason": reason })
        }
        ApprovalCommand::Grants => json!({ "op": "grants.list" }),
        ApprovalCommand::Revoke(id) => json!({ "op": "grants.revoke", "id": id }),
    };
    let answer = crate::admin::call(&config.gateway.admin_socket, &request)?;
    if answer["ok"] != json!(true) {
        let error = answer["error"]
            .as_str()
            .unwrap_or("the gateway refused the request");
        return Err(error.to_owned());
    }
    if as_json {
        return Ok(format!("{answer}\n"));
    }
    Ok(match command {
        ApprovalCommand::List => list_text(&answer["pending"]),
        ApprovalCommand::Show(_) => show_text(&answer["pending"]),
        ApprovalCommand::Approve { id, .. } => match answer["approved"].as_u64() {
            Some(_) => match answer["grant"].as_u64() {
                Some(grant) => format!("approved {id}; grant {grant} covers the same statement\n"),
                None => format!("approved {id}: the statement runs now\n"),
            },
            None => format!(
                "approval recorded ({} of {} approvers): {id} still waits\n",
                answer["have"], answer["need"]
            ),
        },
        ApprovalCommand::Deny { id, .. } => format!("denied {id}\n"),
        ApprovalCommand::Grants => grants_text(&answer["grants"]),
        ApprovalCommand::Revoke(id) => format!("revoked grant {id}\n"),
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn who(pending: &Value) -> String {
    let requester = &pending["requester"];
    let actor = &requester["actor"];
    let mut parts = Vec::new();
    if let Some(subject) = requester["token_subject"].as_str() {
        parts.push(format!("token {subject}"));
    }
    for (key, label) in [
        ("pid", "pid"),
        ("uid", "uid"),
        ("exe", "exe"),
        ("source", "from"),
    ] {
        if !actor[key].is_null() {
            parts.push(format!("{label} {}", text(&actor[key])));
        }
    }
    parts.join(", ")
}

fn list_text(pending: &Value) -> String {
    let Some(pending) = pending.as_array().filter(|p| !p.is_empty()) else {
        return "no request is waiting for approval\n".to_owned();
    };
    let mut out = String::new();
    for request in pending {
        out.push_str(&format!(
            "{:>5}  {}  {}s left  {}  rule {}  {}\n       {}\n",
            text(&request["id"]),
            text(&request["target"]),
            text(&request["seconds_left"]),
            who(request),
            text(&request["rule"]),
            text(&request["db_user"]),
            text(&request["statement"]),
        ));
    }
    out
}

fn show_text(request: &Value) -> String {
    let actor = &request["requester"]["actor"];
    let mut out = format!("approval {}\n", text(&request["id"]));
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<18} {value}\n"));
    line("waiting since", text(&request["since"]));
    line("deadline", text(&request["deadline"]));
    line(
        "target",
        format!(
            "{} (database {}, user {})",
            text(&request["target"]),
            text(&request["database"]),
            text(&request["db_user"])
        ),
    );
    line(
        "process",
        format!(
            "pid {} uid {} exe {}",
            text(&actor["pid"]),
            text(&actor["uid"]),
            text(&actor["exe"])
        ),
    );
    line("command line", text(&actor["cmdline"]));
    line("cgroup", text(&actor["cgroup"]));
    line(
        "token subject",
        text(&request["requester"]["token_subject"]),
    );
    line("token groups", text(&request["requester"]["token_groups"]));
    line("rule", text(&request["rule"]));
    line("statement", text(&request["statement"]));
    line("tables", text(&request["tables"]));
    let columns: Vec<String> = (request["classified_columns"]
        .as_array()
        .into_iter()
        .flatten())
    .map(|c| {
        format!(
            "{} ({}) -> {}",
            text(&c["column"]),
            text(&c["categories"]),
            text(&c["mask"])
        )
    })
    .collect();
    line(
        "classified columns",
        if columns.is_empty() {
            "-".to_owned()
        } else {
            columns.join(", ")
        },
    );
    line("row estimate", text(&request["row_estimate"]));
    line("approved by", text(&request["approved_by"]));
    line("request hash", text(&request["request_hash"]));
    out
}

fn grants_text(grants: &Value) -> String {
    let Some(grants) = grants.as_array().filter(|g| !g.is_empty()) else {
        return "no grant is in force\n".to_owned();
    };
    let mut out = String::new();
    for grant in grants {
        out.push_str(&format!(
            "{:>5}  {}  until {}  used {}x  approval {} by {}\n       {}\n",
            text(&grant["id"]),
            text(&grant["grantee"]),
            text(&grant["expires"]),
            text(&grant["uses"]),
            text(&grant["approval"]),
            text(&grant["approvers"]),
            text(&grant["statement"]),
        ));
    }
    out
}
