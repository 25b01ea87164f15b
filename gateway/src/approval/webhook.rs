//! A webhook told when a request starts waiting: a JSON POST whose `text` a Slack (or
//! Mattermost, Teams workflow) incoming webhook shows as is, with the request's details beside
//! it for anything else. It carries what an approver is shown minus the command line (which
//! may hold anything): never a literal value. A failed delivery is retried with backoff while
//! the request still waits.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use tokio::sync::{broadcast, Semaphore};

use super::{Approvals, Change, Pending};
use crate::net::http::client::HttpClient;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Deliveries in flight at once; past this, notices wait their turn.
const CONCURRENT: usize = 16;

/// Posts every request that starts waiting to `client`'s URL until the gateway stops.
pub async fn run(approvals: Arc<Approvals>, client: HttpClient) {
    let client = Arc::new(client);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut changes = approvals.subscribe();
    loop {
        let id = match changes.recv().await {
            Ok(Change::Waiting(id)) => id,
            Ok(Change::Gone(_) | Change::Updated(_)) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    event = "approval.webhook_lagged",
                    missed,
                    "webhook missed requests that started waiting"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(pending) = approvals.get(id) else {
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (approvals, client) = (approvals.clone(), client.clone());
        tokio::spawn(async move {
            deliver(&approvals, &client, &pending).await;
            drop(slot);
        });
    }
}

async fn deliver(approvals: &Approvals, client: &HttpClient, pending: &Pending) {
    let body = payload(pending).to_string();
    let mut pause = FIRST_RETRY;
    for attempt in 1.. {
        match client.post_json(body.as_bytes()).await {
            Ok(_) => {
                tracing::info!(
                    event = "approval.webhook_delivered",
                    approval = pending.id,
                    attempt,
                    url = client.url(),
                    "webhook told"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(event = "approval.webhook_failed", approval = pending.id, attempt, url = client.url(), %error, "webhook not told; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
        // Nobody needs telling about a request that no longer waits.
        if approvals.get(pending.id).is_none() {
            return;
        }
    }
}

pub fn payload(pending: &Pending) -> Value {
    let (requester, ask, actor) = (&pending.requester, &pending.ask, &pending.requester.actor);
    let who = match (&requester.token_subject, actor.pid) {
        (Some(subject), _) => format!("token subject {subject}"),
        (None, Some(pid)) => format!(
            "{} (pid {pid}, uid {})",
            actor.comm.as_deref().unwrap_or("a process"),
            actor.uid.map_or("?".to_owned(), |u| u.to_string())
        ),
        (None, None) => format!("remote {}", actor.source.as_deref().unwrap_or("?")),
    };
    let text = format!(
        "Tollgate: request {id} waits for approval. {who} wants to run `{statement}` on {target} \
         (database {database}, rule {rule}). Approve with `tollgate approvals approve {id}` or \
         deny with `tollgate approvals deny {id} --reason ...`; it waits until {deadline}.",
        id = pending.id,
        statement = ask.statement,
        target = ask.target,
        database = ask.database,
        rule = ask.rule,
        deadline = crate::clock::rfc3339_utc(pending.deadline),
    );
    let mut approval = super::view::pending_json(pending);
    // A command line may hold anything; approvers see it with `approvals show`.
    if let Some(actor) = approval["requester"]["actor"].as_object_mut() {
        actor.remove("cmdline");
    }
    json!({ "text": text, "approval": approval })
}
