//! What the gateway answers itself and what it passes as the server would: FunctionCall,
//! refused requests (replication) and clients that break the protocol (oversized or malformed frames, messages illegal in the
//! session state, SQL that is not UTF-8, a startup that never ends).

use std::time::Duration;

use xtask::testbed::{write_catalog_credentials, TempDir};

use crate::{
    common::pg_bed,
    support::{
        after_startup, assert_closed_with, close_events, run_agent, run_direct, same_both_ways,
    },
};

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn function_calls_work_as_directly() {
    let bed = pg_bed("function_call", |_| {});
    // The large-object API as libpq drives it, in a transaction rolled back so both runs
    // start from the same state: create, open for writing, write, close, reopen, read.
    let script = "Q begin\nrecv 1\n\
                  F 715 text:16500\nrecv 1\n\
                  F 952 text:16500 text:131072\nrecv 1\n\
                  F 955 text:0 text:\\\\x616263\nrecv 1\n\
                  F 953 text:0\nrecv 1\n\
                  F 952 text:16500 text:262144\nrecv 1\n\
                  F 954 text:0 text:10\nrecv 1\n\
                  F 964 text:424242\nrecv 1\n\
                  Q rollback\nrecv 1\nX\nrecv eof\n";
    let (output, agent) = same_both_ways(&bed, script);
    let lines = after_startup(&output);
    assert!(lines.contains(&"V 16500"), "{output}");
    assert!(
        lines.iter().any(|l| l.starts_with("E ERROR 42704")),
        "unlinking a missing object fails as directly: {output}"
    );
    assert_closed_with(&bed, agent.pid, "closed");
    // The OIDs Tollgate names calls by are this server's.
    let oids: Vec<String> = tollgate::postgres::BUILTIN_FUNCTIONS
        .iter()
        .map(|(oid, _)| oid.to_string())
        .collect();
    let listed = bed
        .pg
        .psql_direct(&format!(
            "SELECT string_agg(oid || ' ' || proname, ',' ORDER BY oid) FROM pg_proc \
             WHERE oid IN ({}) AND pronamespace = 'pg_catalog'::regnamespace",
            oids.join(",")
        ))
        .expect("pg_proc");
    let expected: Vec<String> = tollgate::postgres::BUILTIN_FUNCTIONS
        .iter()
        .map(|(oid, name)| format!("{oid} {name}"))
        .collect();
    assert_eq!(listed.trim(), expected.join(","));
}

const FUNCTION_POLICY: &str = r#"
version = 1

[[identities]]
id = "agents"
cgroup = ["*tollgate-pg-*"]

[[classify]]
table = "public.patients"
columns = { ssn = "ssn" }

[[rules]]
id = "no-exports"
effect = "deny"
functions = ["export_*"]

[[rules]]
id = "agents-read"
effect = "allow"
identities = ["agents"]
"#;

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_function_call_is_decided_by_the_name_the_catalog_gives_its_oid() {
    let dir = TempDir::new("tollgate-function-call").expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, FUNCTION_POLICY).expect("write the policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    let bed = pg_bed("function_call_by_name", |config| {
        config.enforce_policy("clinic", &policy, &credentials)
    });
    let oids = bed
        .pg
        .psql_direct(
            "CREATE TABLE patients (id int PRIMARY KEY, ssn text);
             INSERT INTO patients VALUES (1, '123-45-6789');
             CREATE FUNCTION export_patient(int) RETURNS text LANGUAGE sql
                 AS $$ SELECT ssn FROM patients WHERE id = $1 $$;
             CREATE FUNCTION patient_ssn(int) RETURNS text LANGUAGE sql
                 AS $$ SELECT ssn FROM patients WHERE id = $1 $$;
             SELECT 'export_patient'::regproc::oid || ' ' || 'patient_ssn'::regproc::oid",
        )
        .expect("the functions");
    let (export, read) = oids.trim().split_once(' ').expect("two OIDs");
    let script = format!("F {export} text:1\nrecv 1\nF {read} text:1\nrecv 1\nX\nrecv eof\n");
    let direct = run_direct(&bed, &script);
    assert_eq!(
        after_startup(direct.ok(&script)),
        ["V 123-45-6789", "Z I", "V 123-45-6789", "Z I", "EOF"],
        "both functions return the SSN directly"
    );
    let run = run_agent(&bed, &script);
    let output = run.ok(&script);
    let lines = after_startup(output);
    assert!(
        lines[0].starts_with("E ERROR 42501") && lines[0].contains("\"no-exports\""),
        "the call is denied by the rule naming the function: {output}"
    );
    assert_eq!(
        lines[1..],
        ["Z I", "V NULL", "Z I", "EOF"],
        "the allowed call's untraceable result is withheld: {output}"
    );
    assert!(!output.contains("123-45-6789"), "{output}");
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
    // An invalid startup packet length (over PostgreSQL's own 10,000 bytes, or too short)
    // is closed without a reply, as the server does: node-postgres ending a connection it is
    // still making writes `X\0\0\0\x04` where the startup packet goes.
    for script in [
        "no-startup\nraw 00002715\nrecv eof\n",
        "no-startup\nraw 00000004\nrecv eof\n",
        "no-startup\nraw 58000000 04\nrecv eof\n",
    ] {
        let (output, agent) = same_both_ways(&bed, script);
        assert_eq!(output, "EOF\n", "{script}");
        assert_closed_with(&bed, agent.pid, "protocol_violation");
    }
    let cases = [
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
fn sql_invalid_in_the_client_encoding_is_refused_as_the_server_refuses_it() {
    let bed = pg_bed("utf8", |_| {});
    for script in [
        "Q select '\\xff'\nrecv 1\nQ select 1 as after\nrecv 1\n",
        "P s1 select 'caf\\xc3'\nS\nrecv 1\nQ select 1 as after\nrecv 1\n",
    ] {
        let (output, _) = same_both_ways(&bed, script);
        let lines = after_startup(&output);
        assert!(
            lines[0].starts_with("E ERROR 22021 invalid byte sequence for encoding \"UTF8\": 0x"),
            "{output}"
        );
        assert!(lines.contains(&"D 1"), "the session goes on: {output}");
    }
    // Valid multi-byte text goes through unchanged.
    let (output, _) = same_both_ways(&bed, "Q select 'caf\\xc3\\xa9' as word\nrecv 1\n");
    assert_eq!(after_startup(&output)[1], "D caf\\xc3\\xa9");
    // Names must be valid too: \xff and \xfe would otherwise both read as U+FFFD.
    assert_violation(
        &bed,
        // A Bind of portal "p\\xff" to statement "s1", written byte by byte.
        "P s1 select 1\nraw 42 00000010 70ff00 733100 0000 0000 0000\nS\nrecv eof\n",
        "E FATAL 08P01 invalid byte sequence for encoding \"UTF8\" in a statement or portal name",
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn every_client_encoding_works_as_directly() {
    let bed = pg_bed("client_encoding", |_| {});
    // Changed by a statement, and asked for at startup; text in the session's encoding
    // (0xe9 is é in LATIN1 and WIN1252; 0x955c is one SJIS character ending in a backslash).
    for script in [
        "Q set client_encoding = 'SJIS'\nrecv 1\nQ select E'\\x95\\x5c' as kanji\nrecv 1\n",
        "param client_encoding=LATIN1\nQ select 'caf\\xe9' as word, length('caf\\xe9')\nrecv 1\n",
        "param client_encoding=WIN1252\nQ select 'caf\\xe9' as word\nrecv 1\n",
        "param client_encoding=BIG5\nQ select 1 as one\nrecv 1\n",
        "param client_encoding=SQL_ASCII\nQ select 'caf\\xc3\\xa9' as word\nrecv 1\n",
    ] {
        let (output, agent) = same_both_ways(&bed, script);
        assert!(
            !output.contains("E ") && output.contains("C SELECT 1"),
            "{script}\n{output}"
        );
        assert_closed_with(&bed, agent.pid, "closed");
    }
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
