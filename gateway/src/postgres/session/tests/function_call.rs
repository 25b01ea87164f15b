//! The FunctionCall message (libpq's large-object API) is decided as the SELECT of the
//! function it names: allowed calls reach the server, denied ones never do, and a result
//! that policy would mask in a SELECT is withheld.

use bytes::{BufMut, BytesMut};

use super::{fake_server::Canned, start, POLICY};

/// A FunctionCall of `oid` with integer arguments in text format, text result.
fn function_call(oid: u32, arguments: &[&str]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u32(oid);
    body.put_i16(0);
    body.put_i16(arguments.len() as i16);
    for argument in arguments {
        body.put_i32(argument.len() as i32);
        body.put_slice(argument.as_bytes());
    }
    body.put_i16(0);
    let mut frame = BytesMut::new();
    frame.put_u8(b'F');
    frame.put_i32(4 + body.len() as i32);
    frame.unsplit(body);
    frame
}

const LO_OPEN: u32 = 952;
const LOREAD: u32 = 954;
const LO_IMPORT: u32 = 764;

const DENY_LO_IMPORT: &str = r#"
[[rules]]
id = "no-server-files"
effect = "deny"
functions = ["lo_import", "lo_export"]
"#;

#[tokio::test]
async fn calls_reach_the_server_without_a_policy() {
    let mut session = start(None, Canned::default()).await;
    session
        .client
        .send_raw(&function_call(LO_IMPORT, &["/etc/hosts"]))
        .await;
    assert_eq!(session.client.until_ready(1).await, ["V f()", "Z I"]);
}

#[tokio::test]
async fn an_allowed_call_is_forwarded_and_its_result_kept_when_it_carries_no_row_data() {
    let mut session = start(Some(POLICY), Canned::default()).await;
    session
        .client
        .send_raw(&function_call(LO_OPEN, &["16500", "262144"]))
        .await;
    assert_eq!(session.client.until_ready(1).await, ["V f()", "Z I"]);
}

#[tokio::test]
async fn a_result_that_policy_would_mask_is_withheld() {
    // loread returns a large object's contents: untraceable on a target with PHI.
    let mut session = start(Some(POLICY), Canned::default()).await;
    session
        .client
        .send_raw(&function_call(LOREAD, &["0", "100"]))
        .await;
    assert_eq!(session.client.until_ready(1).await, ["V NULL", "Z I"]);
}

#[tokio::test]
async fn a_denied_call_never_reaches_the_server() {
    let policy = format!("{POLICY}{DENY_LO_IMPORT}");
    let mut session = start(Some(&policy), Canned::default()).await;
    let mut calls = function_call(LO_IMPORT, &["/etc/shadow"]);
    calls.unsplit(function_call(LO_OPEN, &["16500", "262144"]));
    session.client.send_raw(&calls).await;
    let lines = session.client.until_ready(2).await;
    assert!(
        lines[0].starts_with(
            "E ERROR 42501 Tollgate: statement denied by policy rule \"no-server-files\""
        ),
        "{lines:?}"
    );
    // The fake server answers every call it sees with `f()`: only the second got there.
    assert_eq!(lines[1..], ["Z I", "V f()", "Z I"]);
}

#[tokio::test]
async fn a_function_tollgate_cannot_name_is_decided_as_unparsed() {
    let mut session = start(Some(POLICY), Canned::default()).await;
    session.client.send_raw(&function_call(99_999, &[])).await;
    let lines = session.client.until_ready(1).await;
    assert!(
        lines[0].starts_with(
            "E ERROR 42501 Tollgate: statement denied by policy rule \"default-deny\""
        ),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_unknown_function_allowed_as_unparsed_has_its_result_withheld() {
    let policy = format!(
        "{POLICY}\n[[rules]]\nid = \"unparsed-too\"\neffect = \"allow\"\n\
         identities = [\"agent\"]\nunparsed = true\n"
    );
    let mut session = start(Some(&policy), Canned::default()).await;
    session.client.send_raw(&function_call(99_999, &[])).await;
    assert_eq!(session.client.until_ready(1).await, ["V NULL", "Z I"]);
}
