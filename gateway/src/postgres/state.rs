//! The session state the gateway tracks from both directions: the frontend pump checks each
//! client message against it, the backend pump moves it on from the server's messages.

use std::sync::Mutex;

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

#[derive(Debug)]
struct Tracker {
    started: bool,
    authenticated: bool,
    ready: bool,
    transaction: TransactionStatus,
    copy: Option<Copy>,
    in_flight: usize,
}

/// Shared by the two pumps of one session (one task, so the lock is never contended).
#[derive(Debug)]
pub struct SharedState(Mutex<Tracker>);

impl Default for SharedState {
    fn default() -> Self {
        Self(Mutex::new(Tracker {
            started: false,
            authenticated: false,
            ready: false,
            transaction: TransactionStatus::Idle,
            copy: None,
            in_flight: 0,
        }))
    }
}

impl SharedState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A poisoned lock only means a pump panicked; the state itself is plain data.
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn state(&self) -> SessionState {
        let t = self.lock();
        match (t.started, t.ready, t.copy, t.in_flight, t.transaction) {
            (false, ..) => SessionState::Startup,
            (true, false, ..) => SessionState::Authenticating,
            (_, _, Some(Copy::In), ..) => SessionState::CopyIn,
            (_, _, Some(Copy::Out), ..) => SessionState::CopyOut,
            (_, _, None, 1.., _) => SessionState::Waiting,
            (_, _, None, 0, TransactionStatus::Idle) => SessionState::Idle,
            (_, _, None, 0, TransactionStatus::Transaction) => SessionState::InTransaction,
            (_, _, None, 0, TransactionStatus::Error) => SessionState::FailedTransaction,
        }
    }

    pub fn startup_forwarded(&self) {
        self.lock().started = true;
    }

    pub fn authenticated(&self) -> bool {
        self.lock().authenticated
    }

    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    pub fn transaction(&self) -> TransactionStatus {
        self.lock().transaction
    }

    pub fn in_copy_in(&self) -> bool {
        self.lock().copy == Some(Copy::In)
    }

    pub fn request_sent(&self) {
        self.lock().in_flight += 1;
    }

    /// Whether a client message is legal now; the error text is sent with `FATAL 08P01`.
    pub fn check_frontend(&self, message: &PgWireFrontendMessage) -> Result<(), &'static str> {
        use PgWireFrontendMessage as F;
        let t = self.lock();
        if !t.authenticated {
            return match message {
                F::PasswordMessageFamily(_) | F::Terminate(_) => Ok(()),
                _ => Err("unexpected message during authentication"),
            };
        }
        match message {
            F::PasswordMessageFamily(_) => Err("unexpected password message after authentication"),
            F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) | F::Flush(_) | F::Sync(_) => Ok(()),
            F::Terminate(_) => Ok(()),
            _ if t.copy == Some(Copy::In) => Err("unexpected message during COPY FROM STDIN"),
            _ => Ok(()),
        }
    }

    /// Moves the state on from one server message.
    pub fn on_backend(&self, message: &PgWireBackendMessage) {
        use PgWireBackendMessage as B;
        let mut t = self.lock();
        match message {
            B::Authentication(Authentication::Ok) => t.authenticated = true,
            B::ReadyForQuery(ready) => {
                t.ready = true;
                t.transaction = ready.status;
                t.copy = None;
                t.in_flight = t.in_flight.saturating_sub(1);
            }
            B::CopyInResponse(_) => t.copy = Some(Copy::In),
            B::CopyOutResponse(_) => t.copy = Some(Copy::Out),
            // The end of a COPY, successful or not.
            B::CommandComplete(_) | B::ErrorResponse(_) => t.copy = None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::{
        copy::{CopyData, CopyInResponse},
        response::{CommandComplete, ReadyForQuery},
        simplequery::Query,
        startup::{Password, PasswordMessageFamily},
    };

    fn query() -> PgWireFrontendMessage {
        PgWireFrontendMessage::Query(Query::new("SELECT 1".into()))
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

        state.request_sent();
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
