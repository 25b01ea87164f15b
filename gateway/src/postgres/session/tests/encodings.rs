//! Sessions in client encodings other than UTF-8: statements read, and values masked, in the
//! session's encoding; bytes invalid in it refused as the server refuses them.

use bytes::{BufMut, BytesMut};
use pgwire::messages::{
    extendedquery::{Bind, Execute, Parse, Sync},
    PgWireFrontendMessage as F,
};

use super::{
    fake_server::{text_column, Canned, Column},
    start, POLICY,
};

/// A Query message carrying these exact bytes.
fn query_bytes(sql: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    frame.put_u8(b'Q');
    frame.put_i32(4 + sql.len() as i32 + 1);
    frame.put_slice(sql);
    frame.put_u8(0);
    frame
}

fn patients_in(encoding: &'static str) -> Canned {
    let ssn = Column {
        name: "ssn",
        table_oid: 16400,
        attnum: 2,
        type_oid: 25,
    };
    // The fake server reads non-UTF-8 texts byte by byte, as LATIN1 does.
    Canned::default()
        .encoding(encoding)
        .byte_rows(
            "SELECT name, ssn FROM patients WHERE name = 'José'",
            vec![text_column("name"), ssn],
            vec![vec![b"Jos\xe9".to_vec(), b"123-45-6789".to_vec()]],
        )
        .byte_rows(
            "SELECT 'José' AS name",
            vec![text_column("name")],
            vec![vec![b"Jos\xe9".to_vec()]],
        )
}

#[tokio::test]
async fn a_latin1_session_is_read_and_masked_in_latin1() {
    let mut session = start(Some(POLICY), patients_in("LATIN1")).await;
    let sql = b"SELECT name, ssn FROM patients WHERE name = 'Jos\xe9'";
    session.client.send_raw(&query_bytes(sql)).await;
    let lines = session.client.until_ready(1).await;
    // Read as LATIN1 and decided (not refused); what cannot be traced is masked too.
    assert_eq!(
        lines,
        ["T name ssn", "D REDACTED|REDACTED", "C SELECT 1", "Z I"]
    );
    // A result that touches nothing classified passes as the server sent it.
    session
        .client
        .send_raw(&query_bytes(b"SELECT 'Jos\xe9' AS name"))
        .await;
    let lines = session.client.until_ready(1).await;
    assert_eq!(lines, ["T name", "D Jos\u{fffd}", "C SELECT 1", "Z I"]);
}

#[tokio::test]
async fn bytes_invalid_in_the_encoding_are_refused_and_the_session_goes_on() {
    let canned = Canned::default().rows("SELECT 1", vec![text_column("one")], &[&["1"]]);
    let mut session = start(Some(POLICY), canned).await;
    session
        .client
        .send_raw(&query_bytes(b"SELECT '\xff'"))
        .await;
    session.client.send_raw(&query_bytes(b"SELECT 1")).await;
    assert_eq!(
        session.client.until_ready(2).await,
        [
            "E ERROR 22021 invalid byte sequence for encoding \"UTF8\": 0xff",
            "Z I",
            "T one",
            "D 1",
            "C SELECT 1",
            "Z I"
        ]
    );
}

#[tokio::test]
async fn a_text_sent_right_behind_an_encoding_change_is_read_in_the_new_encoding() {
    // The server reads the second Query in LATIN1 (0xe9 is é); read before the first is
    // answered, it would be taken as invalid UTF-8.
    let canned = Canned::default()
        .command("SET client_encoding = 'LATIN1'", "SET")
        .rows(
            "SELECT 'Josée' AS name",
            vec![text_column("name")],
            &[&["x"]],
        );
    let mut session = start(Some(POLICY), canned).await;
    let mut pipelined = query_bytes(b"SET client_encoding = 'LATIN1'");
    pipelined.unsplit(query_bytes(b"SELECT 'Jos\xe9e' AS name"));
    session.client.send_raw(&pipelined).await;
    assert_eq!(
        session.client.until_ready(2).await,
        [
            "C SET",
            "S client_encoding=LATIN1",
            "Z I",
            "T name",
            "D x",
            "C SELECT 1",
            "Z I"
        ]
    );
}

#[tokio::test]
async fn a_text_an_encoding_change_in_an_open_batch_could_alter_is_not_trusted() {
    // Executed in a batch without Sync, `SET client_encoding` is reported only at the Sync:
    // the server could read the next text as SJIS, where 0x95 0x5C is one character and the
    // quote after it ends the literal.
    let canned = Canned::default().command("SET client_encoding = 'SJIS'", "SET");
    let mut session = start(Some(POLICY), canned).await;
    let mut frames = BytesMut::new();
    for message in [
        F::Parse(Parse::new(
            None,
            "SET client_encoding = 'SJIS'".into(),
            vec![],
        )),
        F::Bind(Bind::new(None, None, vec![], vec![], vec![])),
        F::Execute(Execute::new(None, 0)),
    ] {
        message.encode(&mut frames).unwrap();
    }
    frames.unsplit(parse_bytes(b"SELECT E'\x95\\' OR 1=1 --'"));
    session.client.send_raw(&frames).await;
    let lines = session.client.until("E ").await;
    assert_eq!(lines[..3], ["1", "2", "C SET"], "{lines:?}");
    assert!(
        lines[3].starts_with(
            "E ERROR 42501 Tollgate: statement denied by policy rule \"default-deny\""
        ),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_text_that_cannot_be_read_safely_is_masked_where_policy_allows_unparsed_statements() {
    // A permissive policy: the same text is forwarded as the client sent it, and whatever the
    // server makes of it is masked as untraceable.
    let policy = format!(
        "{POLICY}\n[[rules]]\nid = \"unparsed-too\"\neffect = \"allow\"\n\
         identities = [\"agent\"]\nunparsed = true\n"
    );
    let ssn = Column {
        name: "ssn",
        table_oid: 16400,
        attnum: 2,
        type_oid: 25,
    };
    let canned = Canned::default()
        .command("SET client_encoding = 'SJIS'", "SET")
        .rows(
            "SELECT E'\u{95}\\' OR 1=1 --'",
            vec![ssn],
            &[&["123-45-6789"]],
        );
    let mut session = start(Some(&policy), canned).await;
    let mut frames = BytesMut::new();
    for message in [
        F::Parse(Parse::new(
            None,
            "SET client_encoding = 'SJIS'".into(),
            vec![],
        )),
        F::Bind(Bind::new(None, None, vec![], vec![], vec![])),
        F::Execute(Execute::new(None, 0)),
    ] {
        message.encode(&mut frames).unwrap();
    }
    frames.unsplit(parse_bytes(b"SELECT E'\x95\\' OR 1=1 --'"));
    for message in [
        F::Bind(Bind::new(None, None, vec![], vec![], vec![])),
        F::Execute(Execute::new(None, 0)),
        F::Sync(Sync::new()),
    ] {
        message.encode(&mut frames).unwrap();
    }
    session.client.send_raw(&frames).await;
    assert_eq!(
        session.client.until_ready(1).await,
        [
            "1",
            "2",
            "C SET",
            "1",
            "2",
            "D REDACTED",
            "C SELECT 1",
            "S client_encoding=SJIS",
            "Z I"
        ]
    );
}

/// A Parse of the unnamed statement carrying these exact bytes.
fn parse_bytes(sql: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    frame.put_u8(b'P');
    frame.put_i32(4 + 1 + sql.len() as i32 + 1 + 2);
    frame.put_u8(0);
    frame.put_slice(sql);
    frame.put_u8(0);
    frame.put_i16(0);
    frame
}
