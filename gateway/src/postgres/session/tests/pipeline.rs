//! Requests are decided and forwarded as soon as nothing more of them is readable: a client
//! that pipelines without Sync or Flush gets its answers as it would directly.

use pgwire::messages::{
    extendedquery::{Bind, Describe, Execute, Flush, Parse, Sync},
    simplequery::Query,
    PgWireFrontendMessage as F,
};

use crate::proxy::guard::Outcome;

use super::{
    fake_server::{text_column, Canned, Column},
    start, POLICY,
};

fn parse(name: &str, sql: &str) -> F {
    F::Parse(Parse::new(
        Some(name.to_owned()).filter(|n| !n.is_empty()),
        sql.to_owned(),
        vec![],
    ))
}

fn bind(portal: &str, statement: &str) -> F {
    F::Bind(Bind::new(
        Some(portal.to_owned()).filter(|n| !n.is_empty()),
        Some(statement.to_owned()).filter(|n| !n.is_empty()),
        vec![],
        vec![],
        vec![],
    ))
}

fn execute(portal: &str) -> F {
    F::Execute(Execute::new(
        Some(portal.to_owned()).filter(|n| !n.is_empty()),
        0,
    ))
}

fn describe_portal(portal: &str) -> F {
    F::Describe(Describe::new(
        b'P',
        Some(portal.to_owned()).filter(|n| !n.is_empty()),
    ))
}

fn sync() -> F {
    F::Sync(Sync::new())
}

fn query(sql: &str) -> F {
    F::Query(Query::new(sql.to_owned()))
}

/// The scripted server's tables: `patients.ssn` (classified by [`super::POLICY`]) and a few
/// clean answers.
pub(super) fn patients() -> Canned {
    let ssn = Column {
        name: "ssn",
        table_oid: 16400,
        attnum: 2,
        type_oid: 25,
    };
    Canned::default()
        .rows("SELECT 1", vec![text_column("one")], &[&["1"]])
        .rows(
            "SELECT ssn FROM patients",
            vec![ssn],
            &[&["123-45-6789"], &["987-65-4321"]],
        )
        .rows("SELECT 2", vec![text_column("two")], &[&["2"]])
        .command("BEGIN", "BEGIN")
        .command("COMMIT", "COMMIT")
}

/// What a client sees for Parse, Bind, Execute of `SELECT 1`.
const SELECT_ONE: [&str; 4] = ["1", "2", "D 1", "C SELECT 1"];

#[tokio::test]
async fn a_batch_without_sync_or_flush_is_answered() {
    for policy in [None, Some(POLICY)] {
        let mut session = start(policy, patients()).await;
        session
            .client
            .send(vec![parse("", "SELECT 1"), bind("", ""), execute("")])
            .await;
        let mut lines = Vec::new();
        for _ in 0..SELECT_ONE.len() {
            lines.push(session.client.next_line().await);
        }
        assert_eq!(lines, SELECT_ONE, "policy: {}", policy.is_some());
        // The Sync that comes later still gets its ReadyForQuery.
        session.client.send(vec![sync()]).await;
        assert_eq!(session.client.until_ready(1).await, ["Z I"]);
    }
}

#[tokio::test]
async fn messages_trickling_in_one_at_a_time_are_answered_one_at_a_time() {
    let mut session = start(Some(POLICY), patients()).await;
    session.client.send(vec![parse("s1", "SELECT 1")]).await;
    assert_eq!(session.client.next_line().await, "1");
    session.client.send(vec![bind("p1", "s1")]).await;
    assert_eq!(session.client.next_line().await, "2");
    session.client.send(vec![execute("p1")]).await;
    assert_eq!(session.client.next_line().await, "D 1");
    assert_eq!(session.client.next_line().await, "C SELECT 1");
    session.client.send(vec![sync()]).await;
    assert_eq!(session.client.until_ready(1).await, ["Z I"]);
}

#[tokio::test]
async fn rows_of_an_unsynced_batch_are_masked() {
    let mut session = start(Some(POLICY), patients()).await;
    session
        .client
        .send(vec![
            parse("", "SELECT ssn FROM patients"),
            bind("", ""),
            describe_portal(""),
            execute(""),
        ])
        .await;
    let lines = session.client.until("C ").await;
    assert_eq!(
        lines,
        ["1", "2", "T ssn", "D REDACTED", "D REDACTED", "C SELECT 2"]
    );
    // An Execute that was not described is masked as well (the gateway describes it).
    session
        .client
        .send(vec![bind("", ""), execute(""), F::Flush(Flush::new())])
        .await;
    let lines = session.client.until("C ").await;
    assert_eq!(lines, ["2", "D REDACTED", "D REDACTED", "C SELECT 2"]);
    session.client.send(vec![sync()]).await;
    assert_eq!(session.client.until_ready(1).await, ["Z I"]);
}

#[tokio::test]
async fn an_error_mid_pipeline_skips_to_sync_as_the_server_does() {
    let canned = patients().error(
        "SELECT * FROM gone",
        "42P01",
        "relation \"gone\" does not exist",
    );
    let mut session = start(Some(POLICY), canned).await;
    session
        .client
        .send(vec![
            parse("", "SELECT * FROM gone"),
            bind("", ""),
            execute(""),
        ])
        .await;
    let line = session.client.next_line().await;
    assert_eq!(line, "E ERROR 42P01 relation \"gone\" does not exist");
    // Skipped by the server until Sync: no answers, then ReadyForQuery.
    session
        .client
        .send(vec![
            parse("", "SELECT 1"),
            bind("", ""),
            execute(""),
            sync(),
        ])
        .await;
    assert_eq!(session.client.until_ready(1).await, ["Z I"]);
    // And the session goes on normally.
    session
        .client
        .send(vec![
            parse("", "SELECT 2"),
            bind("", ""),
            execute(""),
            sync(),
        ])
        .await;
    assert_eq!(
        session.client.until_ready(1).await,
        ["1", "2", "D 2", "C SELECT 1", "Z I"]
    );
}

#[tokio::test]
async fn a_denied_statement_in_an_unsynced_batch_never_reaches_the_server() {
    let canned = patients().rows(
        "SELECT * FROM secrets",
        vec![text_column("secret")],
        &[&["the-secret"]],
    );
    let mut session = start(Some(POLICY), canned).await;
    session
        .client
        .send(vec![
            parse("", "SELECT 1"),
            bind("", ""),
            execute(""),
            parse("", "SELECT * FROM secrets"),
            bind("", ""),
            execute(""),
        ])
        .await;
    let lines = session.client.until("E ").await;
    assert_eq!(lines[..SELECT_ONE.len()], SELECT_ONE);
    let denial = &lines[SELECT_ONE.len()];
    assert!(
        denial
            .starts_with("E ERROR 42501 Tollgate: statement denied by policy rule \"no-secrets\""),
        "{lines:?}"
    );
    session
        .client
        .send(vec![bind("", ""), execute(""), sync(), query("SELECT 2")])
        .await;
    assert_eq!(
        session.client.until_ready(2).await,
        ["Z I", "T two", "D 2", "C SELECT 1", "Z I"]
    );
}

#[tokio::test]
async fn a_transaction_pipelined_in_one_write_keeps_its_order() {
    let mut session = start(Some(POLICY), patients()).await;
    session
        .client
        .send(vec![
            query("BEGIN"),
            parse("", "SELECT 1"),
            bind("", ""),
            execute(""),
            sync(),
            query("COMMIT"),
        ])
        .await;
    assert_eq!(
        session.client.until_ready(3).await,
        [
            "C BEGIN",
            "Z T",
            "1",
            "2",
            "D 1",
            "C SELECT 1",
            "Z T",
            "C COMMIT",
            "Z I"
        ]
    );
}

#[tokio::test]
async fn a_client_that_leaves_right_after_its_requests_gets_their_answers_whole() {
    for terminate in [false, true] {
        let mut session = start(Some(POLICY), patients()).await;
        let mut messages = vec![query("SELECT ssn FROM patients")];
        if terminate {
            messages.push(F::Terminate(pgwire::messages::terminate::Terminate::new()));
        }
        session.client.send(messages).await;
        session.client.shut_write().await;
        assert_eq!(
            session.client.until_eof().await,
            [
                "T ssn",
                "D REDACTED",
                "D REDACTED",
                "C SELECT 2",
                "Z I",
                "EOF"
            ],
            "terminate: {terminate}"
        );
        let (outcome, error) = session.outcome().await;
        assert_eq!(outcome, Outcome::Closed, "{error:?}");
    }
}
