//! The session's names as the server's answers bear them out: requests gathered by the
//! assembler, entered in the pipeline with what they do to names, answered by hand.

use bytes::{Bytes, BytesMut};
use pgwire::messages::{
    extendedquery::{Bind, Close, Execute, Parse, Sync},
    response::TransactionStatus,
    simplequery::Query,
    PgWireFrontendMessage as F,
};

use super::SessionNames;
use crate::postgres::{
    pipeline::{Pipeline, Sent},
    request::{Request, RequestAssembler, Statement},
};

#[derive(Default)]
struct Session {
    assembler: RequestAssembler,
    names: SessionNames,
    pipeline: Pipeline,
}

impl Session {
    /// Sends one request (messages up to its Sync, or a Query) as the frontend pump does.
    fn send(&mut self, messages: Vec<F>) -> Request {
        while let Some(answered) = self.pipeline.pop_done() {
            self.names.settle(answered.answered());
        }
        let mut request = None;
        for message in messages {
            let mut frame = BytesMut::new();
            message.encode(&mut frame).unwrap();
            request = self.assembler.push(frame, &message, &mut self.names);
        }
        let request = request.expect("a complete request");
        self.pipeline.push(Sent {
            effects: self.names.take_effects(),
            marks: self.names.marks(),
            ..Sent::new(request.end)
        });
        request
    }

    /// The server answers the oldest request, with an error first if `error`.
    fn answer(&mut self, error: bool, status: TransactionStatus) {
        if error {
            self.pipeline.on_error();
        }
        self.pipeline.on_ready(status);
    }

    fn answered(&mut self) {
        self.answer(false, TransactionStatus::Idle);
    }

    fn parse(&mut self, name: &str, sql: &str) {
        let parse = Parse::new(
            Some(name.into()).filter(|n: &String| !n.is_empty()),
            sql.into(),
            vec![],
        );
        self.send(vec![F::Parse(parse), sync()]);
    }

    /// Binds `statement` to `portal` and executes it: the text the gateway believes runs.
    fn run(&mut self, portal: &str, statement: &str) -> Option<String> {
        let request = self.send(vec![
            F::Bind(bind(portal, statement)),
            F::Execute(Execute::new(
                Some(portal.into()).filter(|p: &String| !p.is_empty()),
                0,
            )),
            sync(),
        ]);
        executed(&request)
    }

    /// Executes `portal` as it is bound now.
    fn execute(&mut self, portal: &str) -> Option<String> {
        let execute = Execute::new(Some(portal.into()), 0);
        executed(&self.send(vec![F::Execute(execute), sync()]))
    }

    fn close(&mut self, target: u8, name: &str) {
        self.send(vec![
            F::Close(Close::new(target, Some(name.into()))),
            sync(),
        ]);
    }
}

fn sync() -> F {
    F::Sync(Sync::new())
}

fn bind(portal: &str, statement: &str) -> Bind {
    Bind::new(
        Some(portal.into()).filter(|p: &String| !p.is_empty()),
        Some(statement.into()).filter(|s: &String| !s.is_empty()),
        vec![],
        vec![Some(Bytes::from_static(b"1"))],
        vec![],
    )
}

fn executed(request: &Request) -> Option<String> {
    request
        .statements
        .iter()
        .find_map(|statement| match statement {
            Statement::Execute { sql, .. } => Some(sql.as_deref().map(str::to_owned)),
            _ => None,
        })?
}

#[test]
fn prepared_statements_outlive_requests_until_a_close_is_confirmed() {
    let mut session = Session::default();
    session.parse("s1", "SELECT 1");
    session.answered();
    assert_eq!(session.run("", "s1").as_deref(), Some("SELECT 1"));
    session.answered();
    // Until the Close is answered, s1 may still exist: a Parse now may be refused.
    session.close(b'S', "s1");
    session.parse("s1", "SELECT ssn FROM patients");
    assert_eq!(session.run("", "s1"), None, "either statement may run");
}

#[test]
fn a_confirmed_close_frees_the_name_and_a_failed_one_does_not() {
    for (error, expected) in [(false, Some("SELECT 2")), (true, None)] {
        let mut session = Session::default();
        session.parse("s1", "SELECT 1");
        session.answered();
        session.close(b'S', "s1");
        session.answer(error, TransactionStatus::Idle);
        session.parse("s1", "SELECT 2");
        assert_eq!(session.run("", "s1").as_deref(), expected, "error: {error}");
    }
}

#[test]
fn an_unnamed_statement_is_believed_in_later_batches_once_answered_without_error() {
    for (answer, expected) in [
        (None, None),
        (Some(false), Some("SELECT 1")),
        (Some(true), None),
    ] {
        let mut session = Session::default();
        session.parse("", "SELECT 1");
        if let Some(error) = answer {
            session.answer(error, TransactionStatus::Idle);
        }
        assert_eq!(
            session.run("", "").as_deref(),
            expected,
            "answer {answer:?}"
        );
    }
}

#[test]
fn a_simple_query_drops_the_unnamed_statement_and_portal() {
    let mut session = Session::default();
    session.parse("", "SELECT 1");
    session.answered();
    assert_eq!(session.run("", "").as_deref(), Some("SELECT 1"));
    session.send(vec![F::Query(Query::new("SELECT 2".into()))]);
    assert_eq!(session.execute(""), None);
    assert_eq!(session.run("", ""), None);
}

#[test]
fn a_name_prepared_by_sql_is_unknown_to_a_parse() {
    let mut session = Session::default();
    session.names.prepare("s7", None);
    session.parse("s7", "SELECT 1");
    assert_eq!(session.run("", "s7"), None);
}

#[test]
fn a_named_statement_parsed_again_is_unknown() {
    // The server refuses the second Parse (42P05) when the first succeeded, and accepts it
    // when the first failed: either statement may be the one that runs.
    let mut session = Session::default();
    for sql in ["DELETE FROM patients", "SELECT 1"] {
        session.parse("s1", sql);
        session.answered();
    }
    assert_eq!(session.run("", "s1"), None);
}

#[test]
fn a_named_portal_bound_again_while_it_exists_is_unknown() {
    // Inside a transaction block a named portal lives on; binding the name again fails
    // (42P03) and an Execute runs the first portal.
    let mut session = Session::default();
    session.send(vec![F::Query(Query::new("BEGIN".into()))]);
    session.answer(false, TransactionStatus::Transaction);
    session.parse("ssn", "SELECT ssn FROM patients");
    session.parse("one", "SELECT 1");
    session.answer(false, TransactionStatus::Transaction);
    session.answer(false, TransactionStatus::Transaction);
    session.send(vec![F::Bind(bind("p", "ssn")), sync()]);
    session.answer(false, TransactionStatus::Transaction);
    assert_eq!(
        session.run("p", "one"),
        None,
        "p may still run the SSN query"
    );
    session.answer(true, TransactionStatus::Error);
    assert_eq!(session.execute("p"), None);
}

#[test]
fn named_portals_end_with_their_transaction() {
    let mut session = Session::default();
    session.parse("ssn", "SELECT ssn FROM patients");
    session.parse("one", "SELECT 1");
    session.send(vec![F::Bind(bind("p", "ssn")), sync()]);
    // Outside a transaction block the Sync ends the portal's transaction.
    session.answered();
    session.answered();
    session.answered();
    assert_eq!(session.run("p", "one").as_deref(), Some("SELECT 1"));
    session.answered();
    // Closed and confirmed: the name is free again, also inside a block.
    session.send(vec![F::Query(Query::new("BEGIN".into()))]);
    session.answer(false, TransactionStatus::Transaction);
    session.send(vec![F::Bind(bind("q", "ssn")), sync()]);
    session.answer(false, TransactionStatus::Transaction);
    session.close(b'P', "q");
    session.answer(false, TransactionStatus::Transaction);
    assert_eq!(session.run("q", "one").as_deref(), Some("SELECT 1"));
}

#[test]
fn portals_past_the_cap_are_still_known_when_new() {
    let mut session = Session::default();
    session.parse("s1", "SELECT 1");
    session.answered();
    session.send(vec![F::Query(Query::new("BEGIN".into()))]);
    session.answer(false, TransactionStatus::Transaction);
    for i in 0..=300 {
        session.send(vec![F::Bind(bind(&format!("p{i}"), "s1")), sync()]);
        session.answer(false, TransactionStatus::Transaction);
    }
    assert_eq!(session.execute("p300").as_deref(), Some("SELECT 1"));
    assert!(session.execute("p0").is_none(), "let go for room");
}
