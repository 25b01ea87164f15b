//! The session state the gateway tracks from both directions: the frontend pump checks each
//! client message against it, the backend pump moves it on from the server's messages.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use tokio::sync::Notify;

use super::{
    codec::TextReading,
    encoding::ClientEncoding,
    errors::ClientError,
    pipeline::{InFlight, Pipeline, Position, RequestId, Sent},
    request::RequestEnd,
};
use pgwire::messages::{
    response::TransactionStatus, startup::Authentication, PgWireBackendMessage,
    PgWireFrontendMessage,
};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Before the startup packet has been read.
    Startup,
    /// Startup forwarded; the server has not yet accepted the client.
    Authenticating,
    Idle,
    InTransaction,
    FailedTransaction,
    CopyIn,
    CopyOut,
    /// Requests forwarded and not yet answered by ReadyForQuery.
    Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copy {
    In,
    Out,
}

/// The client's side of COPY FROM STDIN, which the server's side lags behind: a client may
/// send CopyDone and its next requests before the server has answered the CopyDone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientCopy {
    None,
    /// From the server's CopyInResponse until the client's CopyDone or CopyFail.
    Sending,
    /// The client has just sent CopyDone or CopyFail; a Sync may follow.
    Ended,
}

#[derive(Debug)]
struct Tracker {
    started: bool,
    ready: bool,
    transaction: TransactionStatus,
    copy: Option<Copy>,
    client_copy: ClientCopy,
    /// The requests sent and not yet answered.
    pipeline: Pipeline,
    /// The COPY FROM STDIN in progress was started by an extended-protocol request that
    /// ended with Sync: the server ignores that Sync and answers the one after CopyDone.
    copy_awaits_sync: bool,
    /// Requests were sent behind the COPY FROM STDIN in progress.
    copy_pipelined: bool,
    sasl_offered: bool,
    /// The client encoding the server last reported.
    encoding: ClientEncoding,
}

/// Shared by the two pumps of one session (one task, so the lock is never contended).
/// Authentication, set once and asked before every frame is read (its size limit), is kept
/// beside the lock.
#[derive(Debug)]
pub struct SharedState(Mutex<Tracker>, Notify, AtomicBool);

impl Default for SharedState {
    fn default() -> Self {
        Self(
            Mutex::new(Tracker {
                started: false,
                ready: false,
                transaction: TransactionStatus::Idle,
                copy: None,
                client_copy: ClientCopy::None,
                pipeline: Pipeline::default(),
                copy_awaits_sync: false,
                copy_pipelined: false,
                sasl_offered: false,
                encoding: ClientEncoding::UTF8,
            }),
            Notify::new(),
            AtomicBool::new(false),
        )
    }
}

impl SharedState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A poisoned lock only means a pump panicked; the state itself is plain data.
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn state(&self) -> SessionState {
        let t = self.lock();
        let waiting = t.pipeline.awaiting_ready();
        match (t.started, t.ready, t.copy, waiting, t.transaction) {
            (false, ..) => SessionState::Startup,
            (true, false, ..) => SessionState::Authenticating,
            (_, _, Some(Copy::In), ..) => SessionState::CopyIn,
            (_, _, Some(Copy::Out), ..) => SessionState::CopyOut,
            (_, _, None, true, _) => SessionState::Waiting,
            (_, _, None, false, TransactionStatus::Idle) => SessionState::Idle,
            (_, _, None, false, TransactionStatus::Transaction) => SessionState::InTransaction,
            (_, _, None, false, TransactionStatus::Error) => SessionState::FailedTransaction,
        }
    }

    pub fn startup_forwarded(&self) {
        self.lock().started = true;
    }

    /// Whether the client message now due is a SASLInitialResponse: the server has just
    /// offered SASL and no password message has followed yet.
    pub fn sasl_initial_due(&self) -> bool {
        let mut t = self.lock();
        std::mem::take(&mut t.sasl_offered)
    }

    /// The client is authenticated: by the server's AuthenticationOk, or by the gateway
    /// itself (token mode). It never goes back.
    pub fn mark_authenticated(&self) {
        self.2.store(true, Ordering::Relaxed);
    }

    pub fn authenticated(&self) -> bool {
        self.2.load(Ordering::Relaxed)
    }

    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    /// Records a client message. True for a Sync or Flush that belongs to the client's COPY
    /// FROM STDIN and so is no request of its own: the server ignores Sync and Flush during the
    /// copy (libpq and tokio-postgres send a Sync right after the COPY's Execute), and the Sync
    /// that follows CopyDone or CopyFail gets the ReadyForQuery the COPY's request expects.
    pub fn copy_in_sync(&self, message: &PgWireFrontendMessage) -> bool {
        use PgWireFrontendMessage as F;
        let mut t = self.lock();
        match (message, t.client_copy) {
            (F::CopyDone(_) | F::CopyFail(_), ClientCopy::Sending) => {
                t.client_copy = ClientCopy::Ended;
                false
            }
            (F::Sync(_) | F::Flush(_), ClientCopy::Sending) => true,
            (F::Flush(_), ClientCopy::Ended) => true,
            // After a simple Query's COPY (or one whose request is not in flight) the server
            // answers this Sync with a ReadyForQuery of its own: it is a request.
            (F::Sync(_), ClientCopy::Ended) => {
                t.client_copy = ClientCopy::None;
                t.copy_awaits_sync
            }
            (F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_), _) => false,
            (_, ClientCopy::Ended) => {
                t.client_copy = ClientCopy::None;
                false
            }
            _ => false,
        }
    }

    pub fn set_encoding(&self, encoding: ClientEncoding) {
        self.lock().encoding = encoding;
    }

    /// Whether waiting for every answer needs nothing more from the client: not during a
    /// COPY FROM STDIN, where the server waits for the client's data.
    pub fn answers_come_unprompted(&self) -> bool {
        let t = self.lock();
        t.client_copy == ClientCopy::None && !t.copy_pipelined
    }

    /// Returns once every request sent has been answered, so the client encoding the server
    /// last reported is the one in force (it reports a change just before ReadyForQuery).
    pub async fn answered(&self) {
        loop {
            let notified = self.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let t = self.lock();
                if t.answered() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// How client texts are read now: the encoding the server last reported is the one in
    /// force unless a request is still unanswered (it may have changed it; the server reports
    /// a change just before ReadyForQuery) or an extended-protocol batch is open.
    pub fn text_reading(&self, batch_open: bool) -> TextReading {
        let t = self.lock();
        TextReading {
            encoding: t.encoding,
            encoding_settled: t.answered() && !batch_open,
        }
    }

    /// How far the server has answered.
    pub fn position(&self) -> Position {
        self.lock().pipeline.position()
    }

    /// A request was forwarded.
    pub fn request_sent(&self, sent: Sent) -> RequestId {
        self.lock().pipeline.push(sent)
    }

    /// The oldest request once the server has answered it: what it confirmed is applied in
    /// the order requests were sent.
    pub fn pop_answered(&self) -> Option<InFlight> {
        self.lock().pipeline.pop_done()
    }

    /// The error a denied statement's stand-in stands for.
    /// Tallies of recorded requests the server has finished answering.
    pub fn take_tallied(&self) -> Vec<crate::postgres::pipeline::Tally> {
        self.lock().pipeline.take_tallied()
    }

    pub fn take_denial(&self, marker: u32) -> Option<ClientError> {
        self.lock().pipeline.take_denial(marker)
    }

    /// Runs `answer` on the requests in flight, with the client encoding in force: the
    /// result tracker follows the server's answers through them.
    pub fn with_pipeline<T>(&self, answer: impl FnOnce(&mut Pipeline, ClientEncoding) -> T) -> T {
        let mut t = self.lock();
        let encoding = t.encoding;
        answer(&mut t.pipeline, encoding)
    }

    /// Whether a client message is legal now; the error text is sent with `FATAL 08P01`.
    pub fn check_frontend(&self, message: &PgWireFrontendMessage) -> Result<(), &'static str> {
        use PgWireFrontendMessage as F;
        if !self.authenticated() {
            return match message {
                F::PasswordMessageFamily(_) | F::Terminate(_) => Ok(()),
                _ => Err("unexpected message during authentication"),
            };
        }
        let t = self.lock();
        if t.copy_pipelined {
            return Err("requests sent behind a COPY FROM STDIN");
        }
        // After the COPY of an extended-protocol request the server waits for Sync (skipping
        // anything else after an error): another request would share the COPY's answer.
        let copy_wants_sync = t.client_copy == ClientCopy::Ended && t.copy_awaits_sync;
        if copy_wants_sync
            && !matches!(
                message,
                F::Sync(_)
                    | F::Flush(_)
                    | F::CopyData(_)
                    | F::CopyDone(_)
                    | F::CopyFail(_)
                    | F::Terminate(_)
            )
        {
            return Err("a request before the Sync that ends an extended-protocol COPY");
        }
        match message {
            F::PasswordMessageFamily(_) => Err("unexpected password message after authentication"),
            F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) | F::Flush(_) | F::Sync(_) => Ok(()),
            F::Terminate(_) => Ok(()),
            // Judged by the client's side: after its CopyDone the server may still be copying.
            _ if t.client_copy == ClientCopy::Sending => {
                Err("unexpected message during COPY FROM STDIN")
            }
            _ => Ok(()),
        }
    }

    /// Whether a FunctionCall is legal now (as any request outside COPY); the error text is
    /// sent with `FATAL 08P01`.
    pub fn check_function_call(&self) -> Result<(), &'static str> {
        if !self.authenticated() {
            return Err("unexpected message during authentication");
        }
        let t = self.lock();
        if t.copy_pipelined || t.client_copy != ClientCopy::None {
            return Err("unexpected message during COPY FROM STDIN");
        }
        Ok(())
    }

    /// Moves the state on from one server message.
    pub fn on_backend(&self, message: &PgWireBackendMessage) {
        use PgWireBackendMessage as B;
        let mut t = self.lock();
        match message {
            B::Authentication(Authentication::Ok) => self.mark_authenticated(),
            B::Authentication(Authentication::SASL(_)) => t.sasl_offered = true,
            B::ReadyForQuery(ready) => {
                // The first one ends startup and answers no request, even when the client
                // has already sent one.
                if t.ready {
                    t.pipeline.on_ready(ready.status);
                }
                t.ready = true;
                t.transaction = ready.status;
                t.copy = None;
                self.1.notify_waiters();
            }
            B::CopyInResponse(_) => {
                t.copy = Some(Copy::In);
                t.client_copy = ClientCopy::Sending;
                // The COPY's request is the oldest in flight; a request sent behind it makes
                // the server fail the COPY, and which Sync it answers would be guesswork.
                let (awaits_sync, pipelined) = match t.pipeline.oldest_awaiting_ready() {
                    Some((copy, behind)) => (copy.end == RequestEnd::Sync, behind),
                    None => (false, false),
                };
                t.copy_awaits_sync = awaits_sync;
                t.copy_pipelined = pipelined;
                t.pipeline.on_answer();
            }
            B::CopyOutResponse(_) => t.copy = Some(Copy::Out),
            // The end of a COPY, successful or not.
            B::CommandComplete(_) => t.copy = None,
            B::ErrorResponse(error) => {
                if let Some((_, code)) = error.fields.iter().find(|(field, _)| *field == b'C') {
                    t.pipeline.note_error(code);
                }
                t.pipeline.on_error();
                t.copy = None;
                // The server stopped the copy: it drops the client's further copy messages
                // and answers its next Sync (or, after a simple Query, already has).
                if t.client_copy == ClientCopy::Sending {
                    t.client_copy = ClientCopy::Ended;
                }
            }
            _ if t.ready => t.pipeline.on_answer(),
            _ => {}
        }
    }
}

impl Tracker {
    /// Every request sent has been answered.
    fn answered(&self) -> bool {
        self.ready && !self.pipeline.awaiting_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::{
        copy::{CopyData, CopyDone, CopyFail, CopyInResponse},
        extendedquery::{Close, Sync},
        response::{CommandComplete, ErrorResponse, ReadyForQuery},
        simplequery::Query,
        startup::{Password, PasswordMessageFamily},
    };

    /// A request as the frontend hands it on without a policy: a simple Query or up to Sync.
    fn sent(simple: bool) -> Sent {
        Sent::new(match simple {
            true => RequestEnd::Query,
            false => RequestEnd::Sync,
        })
    }

    fn query() -> PgWireFrontendMessage {
        PgWireFrontendMessage::Query(Query::new("SELECT 1".into()))
    }

    fn sync() -> PgWireFrontendMessage {
        PgWireFrontendMessage::Sync(Sync::new())
    }

    fn copy_data() -> PgWireFrontendMessage {
        PgWireFrontendMessage::CopyData(CopyData::new(bytes::Bytes::from_static(b"1\n")))
    }

    /// Authenticated and idle, then an extended-protocol COPY FROM STDIN request (up to Sync)
    /// answered with CopyInResponse.
    fn copying() -> SharedState {
        copying_from(&[false])
    }

    /// As [`copying`], with these requests sent (true: a simple Query), the first the COPY.
    fn copying_from(requests: &[bool]) -> SharedState {
        let state = SharedState::default();
        state.startup_forwarded();
        state.on_backend(&PgWireBackendMessage::Authentication(Authentication::Ok));
        state.on_backend(&PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Idle,
        )));
        for simple in requests {
            state.request_sent(sent(*simple));
        }
        state.on_backend(&PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
            0,
            1,
            vec![0],
        )));
        state
    }

    /// Each client message with: whether it is legal now, and whether it is a Sync or Flush
    /// that belongs to the COPY (no request of its own).
    fn assert_client(state: &SharedState, steps: &[(PgWireFrontendMessage, bool, bool)]) {
        for (i, (message, legal, copy_in_sync)) in steps.iter().enumerate() {
            assert_eq!(state.check_frontend(message).is_ok(), *legal, "step {i}");
            if *legal {
                assert_eq!(state.copy_in_sync(message), *copy_in_sync, "step {i}");
            }
        }
    }

    #[test]
    fn a_client_may_go_on_after_copy_done_before_the_server_answers() {
        // tokio-postgres: Bind/Execute/Sync, data, CopyDone + Sync, then Close + Sync (the
        // COPY's statement dropped) written before the server's CommandComplete arrives.
        let state = copying();
        let close = PgWireFrontendMessage::Close(Close::new(b'S', Some("s1".into())));
        assert_client(
            &state,
            &[
                (query(), false, false),
                (copy_data(), true, false),
                (sync(), true, true),
                (
                    PgWireFrontendMessage::CopyDone(CopyDone::new()),
                    true,
                    false,
                ),
                (sync(), true, true),
                (close, true, false),
                (sync(), true, false),
            ],
        );
        assert_eq!(state.state(), SessionState::CopyIn, "the server is behind");
    }

    #[test]
    fn a_sync_after_a_simple_querys_copy_is_a_request_of_its_own() {
        // The server answers the Query's COPY with ReadyForQuery after CopyDone, and this
        // Sync with another one.
        let state = copying_from(&[true]);
        assert_client(
            &state,
            &[
                (copy_data(), true, false),
                (sync(), true, true),
                (
                    PgWireFrontendMessage::CopyDone(CopyDone::new()),
                    true,
                    false,
                ),
                (sync(), true, false),
            ],
        );
    }

    #[test]
    fn requests_sent_behind_a_copy_end_the_session() {
        let state = copying_from(&[false, true]);
        assert!(state.check_frontend(&copy_data()).is_err());
    }

    #[test]
    fn a_simple_query_may_follow_the_copy_fail_of_a_simple_query() {
        let state = copying_from(&[true]);
        assert_client(
            &state,
            &[
                (copy_data(), true, false),
                (
                    PgWireFrontendMessage::CopyFail(CopyFail::new("x".into())),
                    true,
                    false,
                ),
                (query(), true, false),
                (sync(), true, false),
            ],
        );
    }

    #[test]
    fn an_extended_copy_ends_with_sync_before_any_other_request() {
        for end in [
            PgWireFrontendMessage::CopyDone(CopyDone::new()),
            PgWireFrontendMessage::CopyFail(CopyFail::new("x".into())),
        ] {
            let state = copying();
            assert_client(&state, &[(copy_data(), true, false), (end, true, false)]);
            assert!(state.check_frontend(&query()).is_err());
            assert_client(&state, &[(sync(), true, true), (query(), true, false)]);
        }
    }

    #[test]
    fn a_server_error_ends_the_clients_copy() {
        let state = copying();
        state.on_backend(&PgWireBackendMessage::ErrorResponse(ErrorResponse::new(
            vec![(b'C', "22P02".into())],
        )));
        // Late copy messages are dropped by the server; the next Sync is the one it waits for.
        assert_client(
            &state,
            &[
                (copy_data(), true, false),
                (sync(), true, true),
                (query(), true, false),
                (sync(), true, false),
            ],
        );
    }

    #[test]
    fn states_follow_the_server() {
        let state = SharedState::default();
        assert_eq!(state.state(), SessionState::Startup);
        state.startup_forwarded();
        assert_eq!(state.state(), SessionState::Authenticating);
        assert!(state.check_frontend(&query()).is_err());
        let password = PgWireFrontendMessage::PasswordMessageFamily(
            PasswordMessageFamily::Password(Password::new("x".into())),
        );
        assert!(state.check_frontend(&password).is_ok());
        state.on_backend(&PgWireBackendMessage::Authentication(Authentication::Ok));
        state.on_backend(&PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Idle,
        )));
        assert_eq!(state.state(), SessionState::Idle);
        assert!(state.check_frontend(&password).is_err());

        state.request_sent(sent(true));
        assert_eq!(state.state(), SessionState::Waiting);
        state.on_backend(&PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
            0,
            1,
            vec![0],
        )));
        assert_eq!(state.state(), SessionState::CopyIn);
        assert!(state.check_frontend(&query()).is_err());
        let data =
            PgWireFrontendMessage::CopyData(CopyData::new(bytes::Bytes::from_static(b"1\n")));
        assert!(state.check_frontend(&data).is_ok());
        state.on_backend(&PgWireBackendMessage::CommandComplete(
            CommandComplete::new("COPY 1".into()),
        ));
        state.on_backend(&PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Transaction,
        )));
        assert_eq!(state.state(), SessionState::InTransaction);
        state.on_backend(&PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Error,
        )));
        assert_eq!(state.state(), SessionState::FailedTransaction);
    }
}
