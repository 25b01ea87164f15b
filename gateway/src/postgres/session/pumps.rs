//! The two directions of a running session. The frontend pump gathers client messages into
//! requests, checks them against the session state and passes them through the request hook;
//! the backend pump moves the state on from server messages and passes them through the
//! response hook. Replies the gateway makes itself are queued behind the answers to earlier
//! requests, so the client sees them in protocol order.

use std::io;

use bytes::BytesMut;
use pgwire::messages::{
    startup::{Authentication, BackendKeyData, ParameterStatus},
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::{
    function_call,
    hold::{self, HoldEnd},
    SessionEnd, SessionParts,
};
use crate::postgres::{
    cancel::CancelRegistration,
    codec::{decode_backend, decode_frontend, session_context, CodecError, Frontend},
    encoding::{structure_depends_on_encoding, ClientEncoding},
    enforce::{denial_marker, HeldStatement, SessionEnforcement},
    errors::{sqlstate, ClientError},
    frame::{complete_frame_len, FrameError, FrameKind, FrameReader, PRE_AUTH_LIMIT},
    hooks::{RequestVerdict, ResponseVerdict},
    names::SessionNames,
    pipeline::{Pipeline, Sent},
    request::{Request, RequestAssembler},
    results::{plan_steps, Handled, ResultError, ResultTracker},
    settings::MASKED_SETTING,
    state::SharedState,
};
use crate::proxy::busy_poll::{self, ServerTurn};

/// Server messages may be as large as PostgreSQL allows (1 GiB); the server is trusted to
/// frame correctly, the limit only guards against a corrupt length.
const BACKEND_LIMIT: usize = 1 << 30;

/// Server messages gathered for the client are written once they reach this size.
const BACKEND_FLUSH_BYTES: usize = 64 * 1024;

/// SCRAM channel binding ties the client's SCRAM exchange to the TLS session it sees; behind
/// a gateway that is a different session from the server's, so `-PLUS` can never succeed.
const CHANNEL_BINDING_SUFFIX: &str = "-PLUS";

#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The client broke the protocol; the message goes to the client as FATAL.
    #[error("{}", .0.message)]
    Client(ClientError),
    #[error("agent connection: {0}")]
    Agent(io::Error),
    #[error("upstream connection: {0}")]
    Upstream(String),
    /// A result could not be masked or placed: the session ends before anything unmasked
    /// is forwarded.
    #[error("{}", .0.message)]
    Unmaskable(ClientError),
}

pub async fn frontend<R, W>(
    parts: &SessionParts<'_>,
    mut enforcement: Option<&mut SessionEnforcement>,
    reader: &mut FrameReader<R>,
    upstream: &mut W,
    forwarded: &mut u64,
) -> Result<SessionEnd, PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let context = session_context(parts.session.startup.protocol);
    let mut assembler = RequestAssembler::default();
    let mut names = SessionNames::default();
    let mut out = BytesMut::new();
    loop {
        // What the server has confirmed of the session's names since, in request order.
        while let Some(answered) = parts.state.pop_answered() {
            names.settle(answered.answered());
            tracing::debug!(
                event = "request.answered",
                conn_id = parts.session.conn_id,
                request = answered.id,
                failed = answered.failed,
                rules = ?answered.verdicts.iter().map(|v| &*v.rule).collect::<Vec<_>>(),
                "request answered"
            );
        }
        // Asked as bytes arrive: this read may start before the server accepts the client.
        let limit = || message_limit(parts);
        let frame = match reader.next_with_limit(FrameKind::Tagged, limit).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                // Passed on as it came: the server answers what it has read, then closes.
                let _ = upstream.shutdown().await;
                return Ok(SessionEnd::ClientClosed);
            }
            Err(error) => return Err(frame_error(error)),
        };
        let mut reading = parts.state.text_reading(assembler.batch_open());
        if !reading.encoding_settled
            && !assembler.batch_open()
            && parts.state.answers_come_unprompted()
            && matches!(frame.first(), Some(b'Q' | b'P'))
            && structure_depends_on_encoding(&frame[5..])
        {
            // An unanswered request may have changed the client encoding, and this text
            // reads differently in some encodings: it is read once the server has answered
            // (every request in flight is a Query, a FunctionCall or ends with Sync, so no
            // client input is needed for that). Inside an open batch that cannot be waited
            // for, and the text is decided as unreadable.
            write_upstream(parts, upstream, &mut out, forwarded).await?;
            parts.state.answered().await;
            reading = parts.state.text_reading(false);
        }
        let message = match decode_frontend(&frame, &context, reading) {
            Ok(Frontend::Message(message)) => message,
            // Answered by its own ReadyForQuery, which the server sends at once even inside
            // an extended batch: the batch's answers could not be placed. Fail closed.
            Ok(Frontend::FunctionCall { .. }) if assembler.batch_open() => {
                return Err(violation(
                    "FunctionCall inside an unfinished extended-query batch".to_owned(),
                ))
            }
            Ok(Frontend::FunctionCall { oid, arguments }) => {
                parts
                    .state
                    .check_function_call()
                    .map_err(|reason| violation(reason.to_owned()))?;
                let frames = function_call::forward(
                    parts,
                    enforcement.as_deref_mut(),
                    &mut names,
                    frame,
                    oid,
                    arguments,
                )
                .await?;
                out.unsplit(frames);
                let more_buffered = reader_has_frame(reader, limit());
                flush(parts, more_buffered, &mut out, upstream, forwarded).await?;
                continue;
            }
            Err(error) => return Err(codec_error(error)),
        };
        parts
            .state
            .check_frontend(&message)
            .map_err(|reason| violation(reason.to_owned()))?;
        let copy_in_sync = parts.state.copy_in_sync(&message);
        let mut complete = None;
        use PgWireFrontendMessage as F;
        match &message {
            F::Terminate(_) => {
                out.unsplit(frame);
                write_upstream(parts, upstream, &mut out, forwarded).await?;
                return Ok(SessionEnd::ClientTerminated);
            }
            F::PasswordMessageFamily(_)
                if parts.state.sasl_initial_due()
                    && parts.upstream_tls
                    && claims_channel_binding_support(&frame) =>
            {
                return Err(PumpError::Client(channel_binding_refusal()));
            }
            F::PasswordMessageFamily(_) | F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => {
                out.unsplit(frame)
            }
            // Part of a COPY FROM STDIN, not a request (see `SharedState::copy_in_sync`).
            F::Sync(_) | F::Flush(_) if copy_in_sync => out.unsplit(frame),
            _ => complete = assembler.push(frame, &message, &mut names),
        }
        let more_buffered = reader_has_frame(reader, limit());
        // Once nothing more is readable, what the client has sent is decided and forwarded
        // without waiting for a Sync or Flush, which the protocol does not promise (after a
        // complete request nothing is left gathered).
        let request = match complete {
            Some(request) => Some(request),
            None if !more_buffered => assembler.cut(),
            None => None,
        };
        let mut more_buffered = more_buffered;
        if let Some(request) = request {
            let frames = match decide(parts, enforcement.as_deref_mut(), &mut names, request)
                .await?
            {
                Decided::Ready(frames) => frames,
                Decided::Held(mut waiting) => {
                    // What came before it goes on now; it waits alone.
                    flush(parts, false, &mut out, upstream, forwarded).await?;
                    let end = hold::wait(
                        parts,
                        reader,
                        enforcement.as_deref(),
                        &waiting.request,
                        &waiting.held,
                        waiting.sent.record,
                    )
                    .await;
                    let enforcement = enforcement
                        .as_deref_mut()
                        .expect("only a policy holds requests");
                    enforcement.held_decided(matches!(end, HoldEnd::Approved));
                    match end {
                        HoldEnd::Approved => {}
                        HoldEnd::Refused(error) => {
                            let (standins, denials) =
                                enforcement.refuse_held(&waiting.request, &waiting.held, &error);
                            waiting.replacements.extend(standins);
                            waiting.sent.denials.extend(denials);
                        }
                        HoldEnd::ClientGone => {
                            let _ = upstream.shutdown().await;
                            return Ok(SessionEnd::ClientClosed);
                        }
                    }
                    // The client may have sent more while it waited.
                    more_buffered = reader_has_frame(reader, limit());
                    send(parts, &mut names, *waiting)
                }
            };
            out.unsplit(frames);
        }
        if more_buffered {
            continue;
        }
        flush(parts, false, &mut out, upstream, forwarded).await?;
    }
}

/// Writes what is gathered once nothing complete is left to process (coalesced).
async fn flush<W>(
    parts: &SessionParts<'_>,
    more_buffered: bool,
    out: &mut BytesMut,
    upstream: &mut W,
    forwarded: &mut u64,
) -> Result<(), PumpError>
where
    W: AsyncWrite + Unpin,
{
    if out.is_empty() || more_buffered {
        return Ok(());
    }
    write_upstream(parts, upstream, out, forwarded).await
}

/// After it, the session waits for its server's answer (busy polling counts such sessions).
async fn write_upstream<W: AsyncWrite + Unpin>(
    parts: &SessionParts<'_>,
    upstream: &mut W,
    out: &mut BytesMut,
    forwarded: &mut u64,
) -> Result<(), PumpError> {
    write_counted(upstream, out, forwarded, Toward::Server(parts.server_turn))
        .await
        .map_err(upstream_io)
}

/// A request decided and recorded, ready to go on or waiting for approval.
enum Decided {
    Ready(BytesMut),
    Held(Box<Waiting>),
}

/// A request some of whose statements wait for approval, with what goes on when they do.
struct Waiting {
    request: Request,
    sent: Sent,
    replacements: Vec<(usize, BytesMut)>,
    held: Vec<HeldStatement>,
}

/// Decides one request (with a policy) and records it. Unless it waits for approval, it is
/// entered in the session's pipeline with the answers it will get, and its frames returned.
async fn decide(
    parts: &SessionParts<'_>,
    mut enforcement: Option<&mut SessionEnforcement>,
    names: &mut SessionNames,
    mut request: Request,
) -> Result<Decided, PumpError> {
    let mut sent = Sent::new(request.end);
    let mut replacements = Vec::new();
    let mut held = Vec::new();
    if let Some(enforcement) = enforcement.as_deref_mut() {
        let inspection = enforcement
            .inspect(&mut request, names, parts.state.position())
            .await
            .map_err(PumpError::Client)?;
        sent.steps = plan_steps(&mut request, inspection.results);
        sent.verdicts = inspection.verdicts;
        sent.denials = inspection.denials;
        sent.protect = inspection.protect;
        replacements = inspection.replacements;
        held = inspection.held;
    }
    match parts
        .request_hook
        .on_request(parts.session, &request, &sent.verdicts)
    {
        RequestVerdict::Forward => {}
    }
    let recorded = record_request(parts, &request, &mut sent, &mut replacements).await;
    let waiting = Waiting {
        request,
        sent,
        replacements,
        held,
    };
    if waiting.held.is_empty() {
        return Ok(Decided::Ready(send(parts, names, waiting)));
    }
    if !recorded {
        // Every statement is refused already: nothing is left to wait for.
        if let Some(enforcement) = enforcement {
            enforcement.held_decided(false);
        }
        return Ok(Decided::Ready(send(parts, names, waiting)));
    }
    Ok(Decided::Held(Box::new(waiting)))
}

/// Enters a decided request in the session's pipeline and returns its frames, with the
/// stand-ins of its refused statements in place.
fn send(parts: &SessionParts<'_>, names: &mut SessionNames, waiting: Waiting) -> BytesMut {
    let Waiting {
        mut request,
        mut sent,
        replacements,
        ..
    } = waiting;
    request.substitute(replacements);
    sent.effects = names.take_effects();
    sent.marks = names.marks();
    parts.state.request_sent(sent);
    request.frames
}

/// Records the request before anything of it is forwarded; when the record cannot be
/// written, every statement of it is refused instead (`53100`), never forwarded unrecorded,
/// and false is returned.
pub(super) async fn record_request(
    parts: &SessionParts<'_>,
    request: &crate::postgres::request::Request,
    sent: &mut Sent,
    replacements: &mut Vec<(usize, BytesMut)>,
) -> bool {
    let Some(event) = crate::postgres::hooks::request_event(parts.session, request, &sent.verdicts)
    else {
        return true;
    };
    let Some(audit) = parts.audit else {
        return true;
    };
    match audit.record(event).await {
        Ok(index) => {
            sent.record = Some(index);
            true
        }
        Err(error) => {
            let refusal = ClientError::error(
                crate::audit::UNAVAILABLE_SQLSTATE,
                "Tollgate: the audit log cannot record this request, so it was not run; try again \
             once the gateway's disk has room",
            );
            tracing::warn!(conn_id = parts.session.conn_id, %error, "request refused: not recorded");
            (*replacements, sent.denials) = crate::postgres::enforce::refuse_all(request, &refusal);
            false
        }
    }
}

/// Records the answers not yet recorded when the backend pump ends, however it ends.
struct AnswersOnExit<'a>(&'a SessionParts<'a>);

impl Drop for AnswersOnExit<'_> {
    fn drop(&mut self) {
        record_answers(self.0);
    }
}

/// The answers of recorded requests the server has finished: what the agent got back.
fn record_answers(parts: &SessionParts<'_>) {
    let Some(audit) = parts.audit else {
        return;
    };
    for tally in parts.state.take_tallied() {
        audit.record_anyway(crate::audit::Event::RequestAnswered(
            crate::audit::event::RequestAnswered {
                conn_id: parts.session.conn_id,
                request: tally.record,
                rows: tally.rows,
                row_bytes: tally.row_bytes,
                sqlstate: tally.sqlstate,
                duration_us: tally.sent_at.elapsed().as_micros() as u64,
                classified_columns: tally.classified,
            },
        ));
    }
}

pub async fn backend<R, W>(
    parts: &SessionParts<'_>,
    mut results: Option<&mut ResultTracker>,
    reader: &mut FrameReader<R>,
    agent: &mut W,
    forwarded: &mut u64,
    cancel_registration: &mut Option<CancelRegistration>,
    mut from_gateway: Option<&mut mpsc::UnboundedReceiver<BytesMut>>,
) -> Result<SessionEnd, PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut context = DecodeContext::new(parts.session.startup.protocol);
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = false;
    let mut out = BytesMut::new();
    let mut server_sent_fatal = false;
    // Answers are recorded once written to the agent, off the path between the server's
    // answer and the agent; what is left when the session ends, then.
    let _answers_left = AnswersOnExit(parts);
    loop {
        // Coalesced, but not without bound: a long result reaches the client in pieces while
        // the rest is still being read (and masked), so both ends keep working.
        if !out.is_empty()
            && (out.len() >= BACKEND_FLUSH_BYTES || !reader_has_frame(reader, BACKEND_LIMIT))
        {
            write_counted(agent, &mut out, forwarded, Toward::Agent)
                .await
                .map_err(PumpError::Agent)?;
            record_answers(parts);
        }
        let next = match (&mut from_gateway, reader_has_frame(reader, BACKEND_LIMIT)) {
            (Some(notices), false) => tokio::select! {
                biased;
                next = reader.next(FrameKind::Tagged, BACKEND_LIMIT) => next,
                // The gateway's own message (a request waits for approval), between the
                // server's messages.
                Some(notice) = notices.recv() => {
                    out.unsplit(notice);
                    write_counted(agent, &mut out, forwarded, Toward::Agent)
                        .await
                        .map_err(PumpError::Agent)?;
                    continue;
                }
            },
            _ => reader.next(FrameKind::Tagged, BACKEND_LIMIT).await,
        };
        let frame = match next {
            Ok(Some(frame)) => {
                parts.server_turn.heard();
                frame
            }
            Ok(None) => return Ok(SessionEnd::ServerClosed { server_sent_fatal }),
            // After its FATAL the server may reset rather than close (the client's next
            // messages reached a closed socket): still the server's own close.
            Err(FrameError::Io(_) | FrameError::Truncated) if server_sent_fatal => {
                return Ok(SessionEnd::ServerClosed { server_sent_fatal })
            }
            Err(error) => return Err(PumpError::Upstream(error.to_string())),
        };
        // Rows are the hot path: they go to the result tracker (or straight on) undecoded,
        // and the rows already read after this one follow without the loop's bookkeeping.
        // FunctionCallResponse, which pgwire does not model.
        if frame.first() == Some(&b'V') {
            let tracker = results.as_deref_mut();
            through_tracker(parts.state, tracker, frame, &mut out, |r, p, _, _, out| {
                r.on_function_result(p, out)
            })?;
            continue;
        }
        if is_row(&frame) {
            // Rows are in the client encoding the server last reported.
            let tracker = results.as_deref_mut();
            let before = out.len();
            through_tracker(
                parts.state,
                tracker,
                frame,
                &mut out,
                |r, p, e, frame, out| r.on_row(p, frame, e, out),
            )?;
            let delivered = RowCount::of(out.len() - before);
            drain_buffered_rows(
                parts.state,
                results.as_deref_mut(),
                reader,
                &mut out,
                delivered,
            )?;
            continue;
        }
        let message = decode_backend(&frame, &context)
            .map_err(|error| PumpError::Upstream(error.to_string()))?;
        use PgWireBackendMessage as B;
        // The answers that move the pipeline on are seen by the result tracker first: it
        // checks them against the request they answer.
        let answers = matches!(message, B::ReadyForQuery(_) | B::ErrorResponse(_));
        if !answers {
            parts.state.on_backend(&message);
        }
        match message {
            B::Authentication(Authentication::SASL(mechanisms))
                if mechanisms
                    .iter()
                    .any(|m| m.ends_with(CHANNEL_BINDING_SUFFIX)) =>
            {
                let offered = mechanisms
                    .into_iter()
                    .filter(|m| !m.ends_with(CHANNEL_BINDING_SUFFIX))
                    .collect();
                encode(B::Authentication(Authentication::SASL(offered)), &mut out);
            }
            B::BackendKeyData(key) => {
                let issued = issue_cancel_key(parts, key, cancel_registration)?;
                encode(B::BackendKeyData(issued), &mut out);
            }
            // Statements are read, and values masked, in the session's client encoding.
            B::ParameterStatus(ref status)
                if status.name.eq_ignore_ascii_case("client_encoding") =>
            {
                let Some(encoding) = ClientEncoding::from_name(&status.value) else {
                    return Err(PumpError::Client(ClientError::fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "Tollgate does not know the client encoding {}",
                            crate::identity::printable(&status.value)
                        ),
                    )));
                };
                tracing::info!(
                    event = "session.encoding",
                    conn_id = parts.session.conn_id,
                    client_encoding = encoding.name(),
                    "client encoding in force"
                );
                parts.state.set_encoding(encoding);
                out.unsplit(frame);
            }
            // The server's own report of a setting an agent may have filled with PHI.
            B::ParameterStatus(ref status)
                if parts
                    .settings
                    .as_ref()
                    .is_some_and(|s| s.masks_report(&status.name, &status.value)) =>
            {
                let masked = ParameterStatus::new(status.name.clone(), MASKED_SETTING.to_owned());
                encode(B::ParameterStatus(masked), &mut out);
            }
            B::NegotiateProtocolVersion(ref negotiated) => {
                context.protocol_version = ProtocolVersion::from_version_number(
                    3,
                    negotiated.newest_minor_protocol as u16,
                )
                .unwrap_or(ProtocolVersion::PROTOCOL3_0);
                out.unsplit(frame);
            }
            message => {
                match parts.response_hook.on_response(parts.session, &message) {
                    ResponseVerdict::Forward => {}
                }
                if let B::ErrorResponse(error) = &message {
                    server_sent_fatal = error.fields.iter().any(|(code, value)| {
                        *code == b'V' && value == "FATAL" || *code == b'S' && value == "PANIC"
                    });
                    // The stand-in for a denied statement: the client sees the denial.
                    let denial = error
                        .fields
                        .iter()
                        .find(|(code, _)| *code == b'M')
                        .and_then(|(_, text)| denial_marker(text))
                        .and_then(|marker| parts.state.take_denial(marker));
                    if let Some(denial) = denial {
                        if let Some(results) = results.as_deref_mut() {
                            results.on_error();
                        }
                        parts
                            .state
                            .with_pipeline(|pipeline, _| pipeline.note_error(denial.code));
                        parts.state.on_backend(&message);
                        denial.encode_into(&mut out);
                        continue;
                    }
                }
                let handled = match results.as_deref_mut() {
                    Some(results) => parts
                        .state
                        .with_pipeline(|pipeline, encoding| {
                            results.on_message(pipeline, &message, &frame[..], encoding, &mut out)
                        })
                        .map_err(|error| PumpError::Unmaskable(error.to_client()))?,
                    None => Handled::Forward,
                };
                if answers {
                    parts.state.on_backend(&message);
                }
                if handled == Handled::Forward {
                    out.unsplit(frame);
                }
            }
        }
    }
}

/// Rows that reached the agent (a capped row writes nothing) and their bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RowCount {
    rows: u64,
    bytes: u64,
}

impl RowCount {
    fn of(bytes: usize) -> Self {
        let mut count = Self::default();
        count.add(bytes);
        count
    }

    fn add(&mut self, bytes: usize) {
        if bytes > 0 {
            self.rows += 1;
            self.bytes += bytes as u64;
        }
    }
}

fn is_row(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'D' | b'd'))
}

/// A frame the result tracker may replace (a row, a FunctionCallResponse): forwarded as it
/// is unless the tracker wrote what replaces it.
fn through_tracker(
    state: &SharedState,
    results: Option<&mut ResultTracker>,
    frame: BytesMut,
    out: &mut BytesMut,
    handle: impl FnOnce(
        &mut ResultTracker,
        &mut Pipeline,
        ClientEncoding,
        &[u8],
        &mut BytesMut,
    ) -> Result<Handled, ResultError>,
) -> Result<(), PumpError> {
    let handled = match results {
        Some(results) => state
            .with_pipeline(|pipeline, encoding| handle(results, pipeline, encoding, &frame, out))
            .map_err(|error| PumpError::Unmaskable(error.to_client()))?,
        None => Handled::Forward,
    };
    if handled == Handled::Forward {
        out.unsplit(frame);
    }
    Ok(())
}

/// Handles the complete rows at the head of the read buffer in place, up to a flush: a
/// long result costs no split or loop turn per row beyond its masking. What is not a
/// complete row (or is corrupt) is left to the main loop.
/// `delivered`: the row handled just before, counted with these for the audit record.
fn drain_buffered_rows<R>(
    state: &SharedState,
    mut results: Option<&mut ResultTracker>,
    reader: &mut FrameReader<R>,
    out: &mut BytesMut,
    mut delivered: RowCount,
) -> Result<(), PumpError> {
    let relay_only = results.is_none();
    let buffered = reader.buffered_bytes();
    let (at, outcome) = state.with_pipeline(|pipeline, encoding| {
        let mut at = 0;
        let outcome = loop {
            let pending = if relay_only { at } else { 0 };
            if out.len() + pending >= BACKEND_FLUSH_BYTES || !is_row(&buffered[at..]) {
                break Ok(());
            }
            let Ok(Some(len)) =
                complete_frame_len(&buffered[at..], FrameKind::Tagged, BACKEND_LIMIT)
            else {
                break Ok(());
            };
            let frame = &buffered[at..at + len];
            let before = out.len();
            if let Some(results) = results.as_deref_mut() {
                match results.on_row(pipeline, frame, encoding, out) {
                    Ok(Handled::Forward) => out.extend_from_slice(frame),
                    Ok(Handled::Replaced) => {}
                    Err(error) => break Err(PumpError::Unmaskable(error.to_client())),
                }
                delivered.add(out.len() - before);
            } else {
                delivered.add(len);
            }
            at += len;
        };
        pipeline.note_rows(delivered.rows, delivered.bytes);
        (at, outcome)
    });
    if relay_only {
        // The rows leave the buffer as one piece, uncopied.
        out.unsplit(reader.take(at));
    } else {
        reader.skip(at);
    }
    outcome
}

fn issue_cancel_key(
    parts: &SessionParts<'_>,
    key: BackendKeyData,
    registration: &mut Option<CancelRegistration>,
) -> Result<BackendKeyData, PumpError> {
    let (issued, new_registration) = parts
        .cancels
        .register(
            parts.session.conn_id,
            &parts.session.target,
            parts.upstream,
            key.pid,
            key.secret_key,
            parts.holds.map(|h| h.cancels.clone()),
        )
        .map_err(|error| PumpError::Upstream(format!("issuing a cancel key: {error}")))?;
    *registration = Some(new_registration);
    Ok(BackendKeyData::new(key.pid, issued))
}

/// A SASLInitialResponse whose GS2 header is `y`: "I support channel binding but you did not
/// offer it". The server, which does support it over its TLS connection, would take that as
/// a downgrade attack; the flag is covered by the client's proof, so it cannot be rewritten.
fn claims_channel_binding_support(frame: &[u8]) -> bool {
    let body = &frame[5.min(frame.len())..];
    let Some(end) = body.iter().position(|&b| b == 0) else {
        return false;
    };
    body.get(end + 5..)
        .is_some_and(|data| data.starts_with(b"y,"))
}

fn channel_binding_refusal() -> ClientError {
    ClientError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        "SCRAM channel binding cannot pass through Tollgate's TLS termination, and this \
         server connection uses TLS: connect with channel_binding=disable, or ask the operator \
         for auth = \"token\" on this target",
    )
}

fn message_limit(parts: &SessionParts<'_>) -> usize {
    if parts.state.authenticated() {
        parts.max_message_bytes
    } else {
        PRE_AUTH_LIMIT
    }
}

/// A complete (or invalid) frame is waiting, so processing goes on before writing.
fn reader_has_frame<R>(reader: &FrameReader<R>, limit: usize) -> bool {
    matches!(
        complete_frame_len(reader.buffered_bytes(), FrameKind::Tagged, limit),
        Ok(Some(_)) | Err(_)
    )
}

fn encode(message: PgWireBackendMessage, out: &mut BytesMut) {
    message
        .encode(out)
        .expect("messages rebuilt from decoded ones encode");
}

/// Which peer a write goes to.
enum Toward<'a> {
    Server(&'a ServerTurn),
    Agent,
}

async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut BytesMut,
    counter: &mut u64,
    toward: Toward<'_>,
) -> io::Result<()> {
    writer.write_all(out).await?;
    // A TLS stream may hold the last records back until flushed (when the socket was full
    // as they were written): without it a long result's tail waits for the next write.
    writer.flush().await?;
    if let Toward::Server(turn) = toward {
        turn.sent();
    }
    busy_poll::wrote();
    *counter += out.len() as u64;
    out.clear();
    Ok(())
}

fn upstream_io(error: io::Error) -> PumpError {
    PumpError::Upstream(error.to_string())
}

fn violation(message: String) -> PumpError {
    PumpError::Client(ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, message))
}

fn frame_error(error: FrameError) -> PumpError {
    match error {
        FrameError::Io(error) => PumpError::Agent(error),
        FrameError::Truncated => PumpError::Agent(io::Error::from(io::ErrorKind::UnexpectedEof)),
        other => violation(other.to_string()),
    }
}

fn codec_error(error: CodecError) -> PumpError {
    violation(error.to_string())
}
