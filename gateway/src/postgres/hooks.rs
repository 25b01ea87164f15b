//! The two points where policy meets the protocol: every whole request before it is forwarded,
//! every server message before it reaches the agent. This stage's hooks allow everything. Each
//! statement, its parameters (described, never their values) and who sent it are recorded
//! once per request by [`request_event`]: the audit record and the operational line alike.

use pgwire::messages::PgWireBackendMessage;

use super::{
    enforce::Verdict,
    redact::{describe_parameter, redact_sql},
    request::{Request, Statement},
    startup::StartupInfo,
};
use crate::{
    audit::event::{RequestDecided, StatementRecord},
    identity::{printable, token::TokenIdentity, AgentIdentity},
};

/// Who a session belongs to, as the hooks see it.
#[derive(Debug)]
pub struct SessionInfo {
    pub conn_id: u64,
    pub target: String,
    pub agent: AgentIdentity,
    pub startup: StartupInfo,
    /// The agent's connection is TLS-encrypted (to the gateway).
    pub tls: bool,
    /// With `auth = "token"`: who the access token names.
    pub token: Option<TokenIdentity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVerdict {
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseVerdict {
    Forward,
}

pub trait RequestHook: Send + Sync {
    /// `verdicts` holds the policy's decision per statement (empty without a policy).
    fn on_request(
        &self,
        session: &SessionInfo,
        request: &Request,
        verdicts: &[Verdict],
    ) -> RequestVerdict;
}

pub trait ResponseHook: Send + Sync {
    /// Every server message but rows (DataRow, CopyData): those are the hot path and go,
    /// undecoded, to the result masking of the policy.
    fn on_response(&self, session: &SessionInfo, message: &PgWireBackendMessage)
        -> ResponseVerdict;
}

/// Allows everything (the records are written by [`request_event`]).
#[derive(Debug, Default)]
pub struct RecordingHooks;

impl RequestHook for RecordingHooks {
    fn on_request(&self, _: &SessionInfo, _: &Request, _: &[Verdict]) -> RequestVerdict {
        RequestVerdict::Forward
    }
}

impl ResponseHook for RecordingHooks {
    fn on_response(&self, _: &SessionInfo, _: &PgWireBackendMessage) -> ResponseVerdict {
        ResponseVerdict::Forward
    }
}

/// The record of a request, written before it is forwarded (and, at debug level, one
/// operational `statement` line per statement); None when it runs no statement (a Sync, a
/// Describe).
pub fn request_event(
    session: &SessionInfo,
    request: &Request,
    verdicts: &[Verdict],
) -> Option<crate::audit::Event> {
    let statements: Vec<StatementRecord> = request
        .statements
        .iter()
        .enumerate()
        .filter_map(|(index, statement)| statement_record(statement, verdicts.get(index)))
        .collect();
    if statements.is_empty() {
        return None;
    }
    let decided = RequestDecided {
        conn_id: session.conn_id,
        target: session.target.clone(),
        db_user: printable(&session.startup.user),
        database: printable(&session.startup.database),
        token_subject: session.token.as_ref().map(|t| printable(&t.subject)),
        statements,
    };
    log_statements(session, &decided);
    Some(crate::audit::Event::RequestDecided(decided))
}

fn statement_record(statement: &Statement, verdict: Option<&Verdict>) -> Option<StatementRecord> {
    let (protocol, sql, parameters) = match statement {
        Statement::Simple { sql } => ("simple", Some(redact_sql(sql)), None),
        // A named statement is recorded when prepared: what the server will run under that
        // name, even if its Execute is later recorded with other text or never seen. Unnamed
        // ones are recorded with their Execute.
        Statement::Prepare { name, sql } if !name.is_empty() => {
            ("prepare", Some(redact_sql(sql)), None)
        }
        // Unnamed ones are recorded with their Execute, unless refused here.
        Statement::Prepare { sql, .. } if verdict.is_some_and(|v| v.decision != "allow") => {
            ("prepare", Some(redact_sql(sql)), None)
        }
        Statement::Prepare { .. } => return None,
        Statement::Execute {
            sql, parameters, ..
        } => (
            "extended",
            sql.as_deref().map(redact_sql),
            Some(
                parameters
                    .iter()
                    .map(|p| describe_parameter(p.value.as_deref(), p.binary))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ),
    };
    Some(StatementRecord {
        protocol: protocol.to_owned(),
        sql,
        parameters,
        decision: verdict.map(|v| v.decision.to_owned()),
        rule: verdict.map(|v| v.rule.to_string()),
    })
}

/// Statements are evidence, kept by the audit log; stdout repeats them only for debugging
/// (`RUST_LOG=debug`), as a line per statement costs about as much as its record.
fn log_statements(session: &SessionInfo, decided: &RequestDecided) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let pid = match &session.agent {
        AgentIdentity::Process(process) => Some(process.pid),
        AgentIdentity::Remote { .. } => None,
    };
    for record in &decided.statements {
        tracing::debug!(
            event = "statement",
            conn_id = decided.conn_id,
            target = %decided.target,
            identity = session.agent.kind(),
            pid,
            subject = decided.token_subject.as_deref(),
            db_user = %decided.db_user,
            database = %decided.database,
            protocol = record.protocol,
            sql = record.sql.as_deref().unwrap_or("<unknown prepared statement>"),
            parameters = record.parameters.as_deref(),
            decision = record.decision.as_deref(),
            rule = record.rule.as_deref(),
            "statement"
        );
    }
}
