//! What the gateway answers itself: requests it refuses (FunctionCall, replication) and
//! clients that break the protocol (oversized or malformed frames, messages illegal in the
//! session state, SQL that is not UTF-8, a startup that never ends).

use std::time::Duration;

use crate::{
    common::pg_bed,
    support::{
        after_startup, assert_closed_with, close_events, run_agent, same_both_ways, EVENT_WAIT,
    },
};

const FUNCTION_CALL_REFUSED: &str = "E ERROR 0A000 the FunctionCall protocol message is not \
     allowed through Tollgate (it carries no SQL to inspect); call the function in a SELECT instead";

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn function_call_is_refused_and_the_session_stays_usable() {
    let bed = pg_bed("function_call", |_| {});
    // Pipelined: the refusal comes back in its place among the other answers.
    let run = run_agent(
        &bed,
        "Q select 1 as before\nF 1\nQ select 2 as after\nrecv 3\nF 1\nrecv 1\nX\nrecv eof\n",
    );
    assert_eq!(
        after_startup(run.ok("function call")),
        [
            "T before:23",
            "D 1",
            "C SELECT 1",
            "Z I",
            FUNCTION_CALL_REFUSED,
            "Z I",
            "T after:23",
            "D 2",
            "C SELECT 1",
            "Z I",
            FUNCTION_CALL_REFUSED,
            "Z I",
            "EOF",
        ]
    );
    assert_closed_with(&bed, run.pid, "closed");
    let refused = bed
        .gateway
        .wait_for_event(EVENT_WAIT, |e| e["event"] == "request.refused")
        .expect("request.refused record");
    assert_eq!(refused["code"], "0A000");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn function_call_inside_an_open_extended_batch_ends_the_session() {
    let bed = pg_bed("function_call_in_batch", |_| {});
    // Its refusal could not be ordered after the batch's answers: fail closed, not misordered.
    for script in [
        "P - select 5\nB - -\nE -\nF 1\nS\nrecv eof\n",
        "P - select 5\nB - -\nE -\nH\nrecv-until C\nF 1\nS\nrecv eof\n",
    ] {
        let run = run_agent(&bed, script);
        let output = run.ok(script);
        let lines = after_startup(output);
        assert!(
            lines.ends_with(&[
                "E FATAL 08P01 FunctionCall inside an unfinished extended-query batch",
                "EOF"
            ]),
            "script:\n{script}\ngot:\n{output}"
        );
        assert_closed_with(&bed, run.pid, "protocol_violation");
    }
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn replication_connections_are_refused() {
    let bed = pg_bed("replication", |_| {});
    let run = run_agent(&bed, "param replication=database\nQ select 1\nrecv 1\n");
    assert_eq!(
        run.ok("replication").lines().collect::<Vec<_>>(),
        [
            "E FATAL 42501 replication connections are not allowed through Tollgate",
            "EOF"
        ]
    );
    let close = assert_closed_with(&bed, run.pid, "refused");
    assert_eq!(close["reason"], "replication connection");
}

/// Each script must end with exactly `expected` after the startup (or from the start with
/// `no-startup`), and its connection must close as a protocol violation.
fn assert_violation(bed: &crate::common::PgBed, script: &str, expected: &str) {
    let run = run_agent(bed, script);
    let output = run.ok(script);
    let lines: Vec<&str> = if script.starts_with("no-startup") {
        output.lines().collect()
    } else {
        after_startup(output)
    };
    let (fatal, rest) = lines
        .split_first()
        .unwrap_or_else(|| panic!("no output: {script}"));
    assert!(
        fatal.starts_with(expected) && rest == ["EOF"],
        "script:\n{script}\nexpected `{expected}...` then EOF, got:\n{output}"
    );
    assert_closed_with(bed, run.pid, "protocol_violation");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn malformed_frames_end_the_session_with_a_protocol_violation() {
    let bed = pg_bed("frames", |config| {
        config
            .extra_gateway
            .push("max_message_bytes = 100000".to_owned())
    });
    let cases = [
        // Before authentication PostgreSQL's own 10,000-byte limit applies.
        (
            "no-startup\nraw 00002711\nrecv eof\n",
            "E FATAL 08P01 message length 10001 exceeds the limit of 10000 bytes",
        ),
        (
            "no-startup\nraw 00000004\nrecv eof\n",
            "E FATAL 08P01 invalid message length 4",
        ),
        (
            "raw 51 000186a1\nrecv eof\n",
            "E FATAL 08P01 message length 100001 exceeds the limit of 100000 bytes",
        ),
        (
            "raw 51 00000003\nrecv eof\n",
            "E FATAL 08P01 invalid message length 3",
        ),
        (
            "raw 51 ffffffff\nrecv eof\n",
            "E FATAL 08P01 invalid message length -1",
        ),
        // An unknown message type, and a Bind that claims a parameter it does not carry.
        (
            "raw 7a 00000004\nrecv eof\n",
            "E FATAL 08P01 malformed frontend message",
        ),
        (
            "raw 42 0000000c 00 00 0000 0002 0000\nrecv eof\n",
            "E FATAL 08P01 malformed frontend message",
        ),
    ];
    for (script, expected) in cases {
        assert_violation(&bed, script, expected);
    }
    // A message just under the limit is fine.
    let big = format!("Q select '{}' = ''\nrecv 1\n", "x".repeat(99_000));
    let (output, _) = same_both_ways(&bed, &big);
    assert_eq!(after_startup(&output)[1], "D f");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn messages_illegal_in_the_session_state_end_the_session() {
    let bed = pg_bed("state", |_| {});
    let copy = "Q create temp table t(a int); copy t from stdin\nrecv-until G\n\
                Q select 1\nrecv eof\n";
    let run = run_agent(&bed, copy);
    assert_eq!(
        after_startup(run.ok("query during copy")),
        [
            "C CREATE TABLE",
            "G 0 0",
            "E FATAL 08P01 unexpected message during COPY FROM STDIN",
            "EOF"
        ]
    );
    assert_closed_with(&bed, run.pid, "protocol_violation");
    assert_violation(
        &bed,
        "raw 70 00000008 78787800\nrecv eof\n",
        "E FATAL 08P01 unexpected password message after authentication",
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn sql_that_is_not_utf8_is_refused() {
    let bed = pg_bed("utf8", |_| {});
    for script in [
        "Q select '\\xff'\nrecv eof\n",
        "P s1 select 'caf\\xc3'\nS\nrecv eof\n",
    ] {
        assert_violation(&bed, script, "E FATAL 08P01 invalid UTF-8 in SQL text");
    }
    // Valid multi-byte text goes through unchanged.
    let (output, _) = same_both_ways(&bed, "Q select 'caf\\xc3\\xa9' as word\nrecv 1\n");
    assert_eq!(after_startup(&output)[1], "D caf\\xc3\\xa9");
    // Names must be UTF-8 too: \xff and \xfe would otherwise both read as U+FFFD.
    assert_violation(
        &bed,
        // A Bind of portal "p\\xff" to statement "s1", written byte by byte.
        "P s1 select 1\nraw 42 00000010 70ff00 733100 0000 0000 0000\nS\nrecv eof\n",
        "E FATAL 08P01 invalid UTF-8 in a statement or portal name",
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_client_encoding_other_than_utf8_ends_the_session() {
    let bed = pg_bed("client_encoding", |_| {});
    // Set by a statement: the server's ParameterStatus ends the session before more SQL.
    assert_violation(
        &bed,
        "Q set client_encoding = 'SJIS'\nrecv eof\n",
        "E FATAL 0A000 Tollgate requires client_encoding UTF8; the session asked for SJIS",
    );
    // Asked for at startup.
    let run = run_agent(&bed, "param client_encoding=BIG5\nrecv eof\n");
    let output = run.ok("client_encoding at startup");
    assert!(
        output.contains(
            "E FATAL 0A000 Tollgate requires client_encoding UTF8; the session asked for BIG5"
        ) && output.ends_with("EOF\n"),
        "{output}"
    );
    assert_closed_with(&bed, run.pid, "protocol_violation");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_client_that_never_finishes_startup_is_dropped() {
    let bed = pg_bed("startup_timeout", |config| {
        config
            .extra_gateway
            .push("startup_timeout_ms = 1000".to_owned())
    });
    // Silent after connecting, or stopping in the middle of the startup packet.
    for script in [
        "no-startup\nrecv eof\n",
        "no-startup\nraw 00000050 00030000\nrecv eof\n",
    ] {
        let run = run_agent(&bed, script);
        assert_eq!(run.ok(script).lines().collect::<Vec<_>>(), ["EOF"]);
        assert!(
            run.elapsed >= Duration::from_millis(900) && run.elapsed < Duration::from_secs(5),
            "dropped after {:?}, expected about 1 s",
            run.elapsed
        );
        let close = assert_closed_with(&bed, run.pid, "refused");
        assert_eq!(close["reason"], "startup packet not received in time");
    }
    // The timeout covers the startup only: a session may then stay idle past it.
    let (output, agent) =
        same_both_ways(&bed, "Q select 1\nrecv 1\nsleep 1500\nQ select 2\nrecv 1\n");
    assert_eq!(after_startup(&output).last(), Some(&"Z I"));
    assert!(after_startup(&output).contains(&"D 2"));
    assert_eq!(close_events(&bed, agent.pid, 1)[0]["outcome"], "closed");
}
