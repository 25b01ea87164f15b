//! COPY through the session loop: data flows as it comes, an extended-protocol COPY need
//! not be followed by Sync before the server starts it, and COPY TO STDOUT is masked.

use bytes::Bytes;
use pgwire::messages::{
    copy::{CopyData, CopyDone},
    extendedquery::{Bind, Execute, Parse, Sync},
    simplequery::Query,
    PgWireFrontendMessage as F,
};

use super::{fake_server::Canned, start, POLICY};

fn data(row: &'static str) -> F {
    F::CopyData(CopyData::new(Bytes::from_static(row.as_bytes())))
}

fn canned() -> Canned {
    Canned::default()
        .copy_in("COPY notes FROM STDIN", 2)
        .copy_out(
            "COPY (SELECT id, ssn FROM patients) TO STDOUT",
            2,
            vec!["1\t123-45-6789\n", "2\t987-65-4321\n"],
        )
}

#[tokio::test]
async fn copy_from_stdin_of_a_simple_query() {
    let mut session = start(Some(POLICY), canned()).await;
    session
        .client
        .send(vec![F::Query(Query::new("COPY notes FROM STDIN".into()))])
        .await;
    assert_eq!(session.client.next_line().await, "G");
    session
        .client
        .send(vec![
            data("1\ta\n"),
            data("2\tb\n"),
            F::CopyDone(CopyDone::new()),
        ])
        .await;
    assert_eq!(session.client.until_ready(1).await, ["C COPY 2", "Z I"]);
}

#[tokio::test]
async fn an_extended_copy_starts_before_its_sync_is_sent() {
    let mut session = start(Some(POLICY), canned()).await;
    session
        .client
        .send(vec![
            F::Parse(Parse::new(None, "COPY notes FROM STDIN".into(), vec![])),
            F::Bind(Bind::new(None, None, vec![], vec![], vec![])),
            F::Execute(Execute::new(None, 0)),
        ])
        .await;
    assert_eq!(session.client.until("G").await, ["1", "2", "G"]);
    session
        .client
        .send(vec![data("1\ta\n"), F::CopyDone(CopyDone::new())])
        .await;
    assert_eq!(session.client.next_line().await, "C COPY 1");
    session.client.send(vec![F::Sync(Sync::new())]).await;
    assert_eq!(session.client.until_ready(1).await, ["Z I"]);
}

#[tokio::test]
async fn copy_to_stdout_is_masked() {
    let mut session = start(Some(POLICY), canned()).await;
    session
        .client
        .send(vec![F::Query(Query::new(
            "COPY (SELECT id, ssn FROM patients) TO STDOUT".into(),
        ))])
        .await;
    // Without a catalog the id's origin is untraceable on a target with PHI: masked too.
    assert_eq!(
        session.client.until_ready(1).await,
        [
            "H",
            "d REDACTED\tREDACTED\n",
            "d REDACTED\tREDACTED\n",
            "c",
            "C COPY 2",
            "Z I"
        ]
    );
}
