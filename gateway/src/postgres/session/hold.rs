//! A request a rule sends for approval waits here, on its open connection: nothing of it
//! reaches the server, and nothing the client sends after it is read as a request, until an
//! approver decides (or it times out, or the client cancels it or leaves). The client is told
//! at once, with a NoticeResponse naming the approval id. What is decided, and by whom, is the
//! approval module's; this file only speaks PostgreSQL.

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use pgwire::messages::{response::NoticeResponse, PgWireBackendMessage};
use sha2::{Digest, Sha256};
use tokio::{
    io::AsyncRead,
    sync::{mpsc, watch},
};

use super::SessionParts;
use crate::{
    approval::{Approvals, Ask, Held, Outcome, Requester},
    identity::printable,
    postgres::{
        enforce::{HeldStatement, SessionEnforcement},
        errors::{sqlstate, ClientError},
        frame::FrameReader,
        redact::redact_sql,
        request::Request,
    },
};

/// Client bytes read ahead while a request waits, so that a client that leaves is noticed;
/// past this the client is not read until the request is decided.
const READ_AHEAD_LIMIT: usize = 1 << 20;

/// What a session needs to hold requests.
pub struct Holds {
    pub approvals: Arc<Approvals>,
    pub timeout: Duration,
    /// Changed by every CancelRequest for this session: a waiting request is withdrawn.
    pub cancels: Arc<watch::Sender<u64>>,
    /// Messages the gateway makes for the client, written by the backend pump between the
    /// server's messages.
    pub to_client: mpsc::UnboundedSender<BytesMut>,
}

/// How the wait ended.
pub enum HoldEnd {
    /// Approved now, or covered by a grant: the request goes on unchanged.
    Approved,
    /// Denied, timed out, cancelled or unrecordable: its held statements are refused with
    /// this error, as a denial is.
    Refused(ClientError),
    /// The client left while it waited: the request was withdrawn.
    ClientGone,
}

/// Waits for the decision on a request whose `held` statements need approval. `record`: the
/// index of its audit record.
pub async fn wait<R: AsyncRead + Unpin>(
    parts: &SessionParts<'_>,
    reader: &mut FrameReader<R>,
    enforcement: Option<&SessionEnforcement>,
    request: &Request,
    held: &[HeldStatement],
    record: Option<u64>,
) -> HoldEnd {
    let Some(holds) = parts.holds else {
        return HoldEnd::Refused(no_approvals(held));
    };
    let (requester, mut ask) = asked(parts, holds, request, held, record);
    if let Some(enforcement) = enforcement {
        ask.row_estimate = row_estimate(enforcement, request, held).await;
    }
    if holds.approvals.granted(&requester, &ask).is_some() {
        return HoldEnd::Approved;
    }
    let mut cancels = holds.cancels.subscribe();
    cancels.mark_unchanged();
    let timeout = ask.timeout;
    let mut waiting = match holds.approvals.hold(requester, ask) {
        Ok(waiting) => waiting,
        Err(error) => {
            tracing::warn!(conn_id = parts.session.conn_id, %error, "request refused: hold not recorded");
            return HoldEnd::Refused(ClientError::error(
                crate::audit::UNAVAILABLE_SQLSTATE,
                "Tollgate: this request's hold cannot be recorded (audit log or state directory), \
                 so it was not run",
            ));
        }
    };
    tracing::info!(
        event = "approval.waiting",
        conn_id = parts.session.conn_id,
        approval = waiting.id(),
        "request held for approval"
    );
    let notice = waiting_notice(&waiting, held, timeout);
    // Told once the requests before it are answered, so the notice follows their answers.
    let tell = async {
        parts.state.answered().await;
        let _ = holds.to_client.send(notice);
        std::future::pending::<()>().await
    };
    let id = waiting.id();
    tokio::select! {
        outcome = waiting.outcome() => outcome_end(id, outcome, timeout),
        () = tell => unreachable!("telling the client never ends the wait"),
        // Dropping `waiting` withdraws it, and the withdrawal is recorded.
        _ = cancels.changed() => HoldEnd::Refused(ClientError::error(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to user request (it was waiting for approval; nothing ran)",
        )),
        () = client_gone(reader) => HoldEnd::ClientGone,
    }
}

/// What the planner expects the held statements to return or touch, together; None when
/// none of them could be planned. Asked without any of their values.
async fn row_estimate(
    enforcement: &SessionEnforcement,
    request: &Request,
    held: &[HeldStatement],
) -> Option<u64> {
    let mut total = None;
    for statement in held {
        // A `rows_over` rule asked already.
        let rows = match (
            statement.row_estimate,
            request.statements[statement.index].sql(),
        ) {
            (Some(rows), _) => Some(rows),
            (None, Some(sql)) => enforcement.estimate_rows(sql).await,
            (None, None) => None,
        };
        if let Some(rows) = rows {
            total = Some(total.unwrap_or(0u64).saturating_add(rows));
        }
    }
    total
}

/// Who asks and what, as approvers are shown it: never a literal value.
fn asked(
    parts: &SessionParts<'_>,
    holds: &Holds,
    request: &Request,
    held: &[HeldStatement],
    record: Option<u64>,
) -> (Requester, Ask) {
    let session = parts.session;
    let requester = Requester {
        actor: session.agent.actor(),
        token_subject: session.token.as_ref().map(|t| printable(&t.subject)),
        token_groups: (session.token.as_ref())
            .map(|t| t.groups.iter().map(|g| printable(g)).collect())
            .unwrap_or_default(),
    };
    let statement = held
        .iter()
        .filter_map(|h| request.statements[h.index].sql().map(redact_sql))
        .collect::<Vec<_>>()
        .join("; ");
    let mut tables: Vec<String> = Vec::new();
    for table in held.iter().flat_map(|h| &h.tables) {
        if !tables.contains(table) {
            tables.push(table.clone());
        }
    }
    let ask = Ask {
        conn_id: session.conn_id,
        request_record: record,
        target: session.target.clone(),
        db_user: printable(&session.startup.user),
        database: printable(&session.startup.database),
        statement,
        rule: held.first().map(|h| h.rule.to_string()).unwrap_or_default(),
        tables,
        classified_columns: held.iter().flat_map(|h| h.classified.clone()).collect(),
        row_estimate: None,
        request_hash: Sha256::digest(&request.frames).into(),
        // The shortest its rules give, else the gateway's.
        timeout: (held.iter().filter_map(|h| h.timeout).min()).unwrap_or(holds.timeout),
    };
    (requester, ask)
}

fn outcome_end(id: u64, outcome: Outcome, timeout: Duration) -> HoldEnd {
    match outcome {
        Outcome::Approved { .. } => HoldEnd::Approved,
        Outcome::Denied { approver, reason } => HoldEnd::Refused(ClientError::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "Tollgate: approval {id} was denied by {}: {}",
                approver.name,
                printable(&reason)
            ),
        )),
        Outcome::Abandoned { reason } => HoldEnd::Refused(ClientError::error(
            sqlstate::ADMIN_SHUTDOWN,
            format!("Tollgate: approval {id} was abandoned ({reason}); nothing ran"),
        )),
        Outcome::TimedOut => HoldEnd::Refused(ClientError::error(
            sqlstate::QUERY_CANCELED,
            format!(
                "Tollgate: approval {id} was not given within {} s, so the statement did not \
                 run",
                timeout.as_secs()
            ),
        )),
    }
}

/// Resolves once the client has closed its end; what it sends meanwhile stays buffered as
/// the next requests.
async fn client_gone<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) {
    while reader.buffered_bytes().len() < READ_AHEAD_LIMIT {
        if !reader.read_more().await {
            return;
        }
    }
    std::future::pending().await
}

fn waiting_notice(waiting: &Held, held: &[HeldStatement], timeout: Duration) -> BytesMut {
    let id = waiting.id();
    let rule = held.first().map(|h| &*h.rule).unwrap_or_default();
    let fields = vec![
        (b'S', "NOTICE".to_owned()),
        (b'V', "NOTICE".to_owned()),
        (b'C', "00000".to_owned()),
        (
            b'M',
            format!(
                "Tollgate: this statement waits for a person's approval (approval {id}, rule \
                 \"{rule}\"); nothing has run yet"
            ),
        ),
        (
            b'D',
            format!(
                "An approver runs `tollgate approvals approve {id}` (or `deny {id} --reason \
                 ...`). It waits up to {} s; cancelling the statement withdraws it.",
                timeout.as_secs()
            ),
        ),
    ];
    let mut out = BytesMut::new();
    PgWireBackendMessage::NoticeResponse(NoticeResponse::new(fields))
        .encode(&mut out)
        .expect("a notice encodes");
    out
}

fn no_approvals(held: &[HeldStatement]) -> ClientError {
    let rule = held.first().map(|h| &*h.rule).unwrap_or_default();
    ClientError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "Tollgate: statement needs approval under rule \"{rule}\", and this gateway takes none"
        ),
    )
}
