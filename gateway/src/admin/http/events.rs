//! `GET /api/events`: server-sent events. The stream opens with a `snapshot` of everything
//! waiting, then pushes `waiting` (a new request, in full), `updated` (one more approval
//! in), and `gone` (decided, timed out or withdrawn) the moment they happen: nobody polls.
//! It ends when the token expires (`expired`: sign in again) or the gateway stops.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::broadcast::error::RecvError,
    time::Instant,
};

use super::{routes::TokenCaller, status_line, HttpApi, SECURITY_HEADERS, WRITE_TIMEOUT};
use crate::approval::{view::pending_json, Change};

/// A comment line this often keeps idle proxies and the browser from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream<S: AsyncWrite + Unpin>(stream: &mut S, api: &HttpApi, caller: TokenCaller) {
    // Subscribed before the snapshot is taken, so no change falls between the two.
    let mut changes = api.approvals.subscribe();
    let mut head = status_line(200);
    head.push_str("Content-Type: text/event-stream\r\n");
    head.push_str(SECURITY_HEADERS);
    head.push_str("Connection: close\r\n\r\n");
    if !send(stream, &head).await {
        return;
    }
    let expires = token_deadline(caller.expires_at);
    let mut drain = api.drain.clone();
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut next = Some(snapshot(api));
    loop {
        if let Some(text) = next.take() {
            if Instant::now() >= expires || !send(stream, &text).await {
                return;
            }
        }
        next = tokio::select! {
            change = changes.recv() => match change {
                Ok(Change::Waiting(id)) => api
                    .approvals
                    .get(id)
                    .map(|pending| event("waiting", &pending_json(&pending))),
                Ok(Change::Updated(id)) => api
                    .approvals
                    .get(id)
                    .map(|pending| event("updated", &pending_json(&pending))),
                Ok(Change::Gone(id)) => Some(event("gone", &json!({ "id": id }))),
                // Too far behind to say what changed: say what is.
                Err(RecvError::Lagged(_)) => Some(snapshot(api)),
                Err(RecvError::Closed) => return,
            },
            _ = keep_alive.tick() => Some(": keep-alive\n\n".to_owned()),
            () = tokio::time::sleep_until(expires) => {
                let text = event("expired", &json!({ "reason": "the access token expired" }));
                send(stream, &text).await;
                return;
            }
            () = drain.signaled() => return,
        };
    }
}

/// Writes and flushes `text`; false when the client is gone or stopped reading.
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, text: &str) -> bool {
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.flush().await
    };
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

fn snapshot(api: &HttpApi) -> String {
    let pending: Vec<Value> = api.approvals.pending().iter().map(pending_json).collect();
    event("snapshot", &json!({ "pending": pending }))
}

/// One event; JSON has no raw newline, so `data` is one line.
fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn token_deadline(expires_at: u64) -> Instant {
    // A token valid for longer than a day is still asked for again after one.
    let left = UNIX_EPOCH
        .checked_add(Duration::from_secs(expires_at))
        .and_then(|expires| expires.duration_since(SystemTime::now()).ok())
        .unwrap_or_default()
        .min(Duration::from_secs(24 * 3600));
    Instant::now() + left
}
