//! Privileged protocol tests: message scripts (`xtask pg-script`, see `xtask/src/pg_script.rs`)
//! that assert exact backend message sequences. Each feature's script runs twice, straight
//! against the cluster and as an agent through Tollgate, and the two conversations must be
//! identical; the expected key lines are asserted too, so a test cannot pass on two equally
//! wrong outputs. Refusals and faults (`refusals`, `faults`) are the gateway's own answers.
//! Like `e2e.rs`, they are `#[ignore]`d for plain `cargo test` and run by `cargo xtask test`
//! as root; without root they fail, saying how to run them.

mod common;
#[path = "protocol/faults.rs"]
mod faults;
#[path = "protocol/refusals.rs"]
mod refusals;
#[path = "protocol/support.rs"]
mod support;

use common::pg_bed;
use support::{after_startup, assert_closed_with, assert_lines_in_order, same_both_ways};

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn simple_query_with_several_statements_an_error_and_an_empty_query() {
    let bed = pg_bed("simple_query", |_| {});
    let (output, agent) = same_both_ways(
        &bed,
        "Q select 1 as a, 'secret-literal-77' as b, null::text as c; select * from nope; select 2\n\
         recv 1\n\
         Q\n\
         recv 1\n\
         Q select 3 as after_error\n\
         recv 1\n",
    );
    let lines = after_startup(&output);
    assert_eq!(
        lines,
        [
            "T a:23 b:25 c:25",
            "D 1|secret-literal-77|NULL",
            "C SELECT 1",
            "E ERROR 42P01 relation \"nope\" does not exist",
            "Z I",
            "I",
            "Z I",
            "T after_error:23",
            "D 3",
            "C SELECT 1",
            "Z I",
        ],
        "the statement after the error is skipped, the empty query answers I"
    );
    // The statement is recorded with its shape but without its values.
    let statement = bed
        .gateway
        .wait_for_statement(support::EVENT_WAIT, |s| s["pid"] == agent.pid)
        .unwrap_or_else(|| panic!("no statement record; log:\n{}", bed.gateway.log_text()));
    let sql = statement["sql"].as_str().expect("sql field");
    assert!(
        sql.starts_with("select ? as a, ? as b, null::text as c; select * from nope"),
        "redacted SQL: {sql}"
    );
    assert_eq!(statement["protocol"], "simple");
    support::assert_in_no_log(&bed, "secret-literal", "a literal value");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn extended_query_with_named_and_unnamed_statements_and_portals() {
    let bed = pg_bed("extended_query", |_| {});
    let (output, agent) = same_both_ways(
        &bed,
        "P s1 select $1::int + 1 as n, $2::text as t\n\
         D S s1\n\
         B - s1 text:41 text:phi-value-xyz\n\
         E -\n\
         P - select $1::int * 2 as doubled\n\
         B p2 - bin:00000015 results=1\n\
         D P p2\n\
         E p2\n\
         C P p2\n\
         C S s1\n\
         S\n\
         recv 1\n\
         B - s1 text:1 null\n\
         E -\n\
         S\n\
         recv 1\n\
         P - select 5 as flushed\nB - -\nE -\nH\nrecv-until C\n\
         S\nrecv 1\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "1",
            "t 23 25",
            "T n:23 t:25",
            "2",
            "D 42|phi-value-xyz",
            "C SELECT 1",
            "1",
            "2",
            "T doubled:23:b",
            "D \\x00\\x00\\x00*",
            "C SELECT 1",
            "3",
            "3",
            "Z I",
            "E ERROR 26000 prepared statement \"s1\" does not exist",
            "Z I",
            // Flush: the answers come without waiting for Sync.
            "1",
            "2",
            "D 5",
            "C SELECT 1",
            "Z I",
        ]
    );
    let statement = bed
        .gateway
        .wait_for_statement(support::EVENT_WAIT, |s| {
            s["pid"] == agent.pid && s["protocol"] == "extended"
        })
        .unwrap_or_else(|| panic!("no extended statement; log:\n{}", bed.gateway.log_text()));
    assert_eq!(statement["sql"], "select $1::int + ? as n, $2::text as t");
    support::assert_in_no_log(&bed, "phi-value-xyz", "a parameter value");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn pipelined_batches_are_answered_in_order() {
    let bed = pg_bed("pipelining", |_| {});
    // Everything below goes out in one write before anything is read.
    let (output, _) = same_both_ways(
        &bed,
        "P - select 1 as one\nB - -\nE -\nS\n\
         P - select 2 as two\nB - -\nE -\nS\n\
         Q select 3 as three\n\
         P - select 4 as four\nB - -\nE -\nS\n\
         recv 4\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "1",
            "2",
            "D 1",
            "C SELECT 1",
            "Z I", //
            "1",
            "2",
            "D 2",
            "C SELECT 1",
            "Z I", //
            "T three:23",
            "D 3",
            "C SELECT 1",
            "Z I", //
            "1",
            "2",
            "D 4",
            "C SELECT 1",
            "Z I",
        ]
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_batch_without_sync_or_flush_is_answered_as_directly() {
    // libpq's pipeline mode may send Bind/Execute with nothing behind them. The server
    // sends what its 8 KiB output buffer cannot hold (the first of two long rows, pushed out
    // whole by the second); through the gateway (recording, and with a permissive policy)
    // that row comes the same way, before the Sync the client sends only after it.
    let script = "P - select repeat('x', 100000) as big from generate_series(1, 2)\n\
                  B - -\nE -\nrecv-until D\nS\nrecv 1\n";
    for policy in [false, true] {
        let files = xtask::testbed::TempDir::new("tollgate-no-sync").expect("temp dir");
        let bed = pg_bed("no_sync", |config| {
            if policy {
                common::permissive_policy(config, files.path());
            }
        });
        let (output, _) = same_both_ways(&bed, script);
        let lines = after_startup(&output);
        let big = format!("D {}", "x".repeat(100_000));
        assert_eq!(
            lines,
            ["1", "2", big.as_str(), big.as_str(), "C SELECT 2", "Z I"],
            "policy: {policy}"
        );
    }
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn execute_with_a_row_limit_suspends_the_portal() {
    let bed = pg_bed("row_limit", |_| {});
    let (output, _) = same_both_ways(
        &bed,
        "P g select generate_series(1, 5) as g\n\
         B p g\nE p 2\nE p 2\nE p 2\nS\nrecv 1\n\
         Q begin\nrecv 1\n\
         B q g\nE q 3\nS\nrecv 1\n\
         E q 3\nS\nrecv 1\n\
         Q commit\nrecv 1\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "1",
            "2",
            "D 1",
            "D 2",
            "s",
            "D 3",
            "D 4",
            "s",
            "D 5",
            "C SELECT 1",
            "Z I",
            "C BEGIN",
            "Z T",
            "2",
            "D 1",
            "D 2",
            "D 3",
            "s",
            "Z T",
            "D 4",
            "D 5",
            "C SELECT 2",
            "Z T",
            "C COMMIT",
            "Z I",
        ],
        "a portal suspended in a transaction block survives Sync"
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn an_error_in_an_extended_batch_skips_to_sync() {
    let bed = pg_bed("extended_error", |_| {});
    let (output, _) = same_both_ways(
        &bed,
        "P - select 1 as ok\nB - -\nE -\n\
         P - selec broken\nB - -\nD P -\nE -\n\
         P - select 2 as skipped\nB - -\nE -\nS\n\
         P - select 3 as next\nB - -\nE -\nS\n\
         recv 2\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "1",
            "2",
            "D 1",
            "C SELECT 1",
            "E ERROR 42601 syntax error at or near \"selec\"",
            "Z I",
            "1",
            "2",
            "D 3",
            "C SELECT 1",
            "Z I",
        ]
    );
}

/// A binary COPY file with one int4 row holding 42.
const BINARY_COPY_ROW: &str =
    "5047434f50590aff0d0a00 00000000 00000000 0001 00000004 0000002a ffff";

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn copy_in_and_out_in_text_and_binary() {
    let bed = pg_bed("copy", |_| {});
    let (output, _) = same_both_ways(
        &bed,
        &format!(
            "Q create temp table t(a int, b text); copy t from stdin\n\
             recv-until G\n\
             d 1\\tone\\n\nd 2\\t\\\\N\\n\nc\n\
             recv 1\n\
             Q copy t to stdout\nrecv 1\n\
             Q create temp table n(a int); copy n from stdin (format binary)\n\
             recv-until G\n\
             dx {BINARY_COPY_ROW}\nc\nrecv 1\n\
             Q copy n to stdout (format binary)\nrecv 1\n\
             Q copy t from stdin\nrecv-until G\nd 3\\tthree\\n\nf client gave up\nrecv 1\n\
             Q select count(*) from t\nrecv 1\n"
        ),
    );
    assert_lines_in_order(
        &output,
        &[
            "G 0 0,0",
            "C COPY 2",
            "H 0 0,0",
            "d 1\\tone\\n",
            "d 2\\t\\\\N\\n",
            "c",
            "C COPY 2",
            "G 1 1",
            "C COPY 1",
            "H 1 1",
            "d PGCOPY\\n\\xff\\r\\n\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\
             \\x00\\x00\\x00\\x04\\x00\\x00\\x00*",
            "d \\xff\\xff",
            "C COPY 1",
            "E ERROR 57014 COPY from stdin failed: client gave up",
            "D 2",
        ],
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn notifications_notices_parameter_status_and_transaction_states() {
    let bed = pg_bed("async_messages", |_| {});
    let (output, _) = same_both_ways(
        &bed,
        "Q listen chan; notify chan, 'payload'\nrecv 1\n\
         Q DO $$ BEGIN RAISE NOTICE 'hi'; END $$\nrecv 1\n\
         Q SET application_name = 'changed'\nrecv 1\n\
         Q begin\nrecv 1\n\
         Q select 1/0\nrecv 1\n\
         Q select 1\nrecv 1\n\
         Q rollback\nrecv 1\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "C LISTEN",
            "C NOTIFY",
            "A chan payload",
            "Z I",
            "N NOTICE 00000 hi",
            "C DO",
            "Z I",
            "C SET",
            "S application_name=changed",
            "Z I",
            "C BEGIN",
            "Z T",
            "E ERROR 22012 division by zero",
            "Z E",
            "E ERROR 25P02 current transaction is aborted, commands ignored until end of \
             transaction block",
            "Z E",
            "C ROLLBACK",
            "Z I",
        ]
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn terminate_ends_the_session() {
    let bed = pg_bed("terminate", |_| {});
    let (output, agent) = same_both_ways(&bed, "Q select 1\nrecv 1\nX\nrecv eof\n");
    assert_eq!(
        after_startup(&output),
        ["T ?column?:23", "D 1", "C SELECT 1", "Z I", "EOF"]
    );
    assert_lines_in_order(&output, &["R ok", "K", "Z I"]);
    assert_closed_with(&bed, agent.pid, "closed");
}
