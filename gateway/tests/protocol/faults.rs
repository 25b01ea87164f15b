//! Faults on either side of a session: a server that cannot be reached or dies mid-query, a
//! client that goes away mid-transaction, and a query cancelled with the key the client got.

use std::{process::Command, time::Duration};

use xtask::testbed::free_port;

use crate::{
    common::{pg_bed, PgBed},
    support::{
        after_startup, assert_closed_with, close_events, eventually, run_agent, same_both_ways,
        spawn_agent, spawn_direct, Run, Running, EVENT_WAIT,
    },
};

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn an_unreachable_upstream_is_reported_naming_the_target() {
    let closed_port = free_port();
    let bed = pg_bed("upstream_unreachable", |config| {
        config
            .upstreams
            .push(("clinic".to_owned(), format!("127.0.0.1:{closed_port}")));
    });
    let run = run_agent(&bed, "Q select 1\nrecv 1\n");
    assert_eq!(
        run.ok("unreachable upstream").lines().collect::<Vec<_>>(),
        [
            "E FATAL 08006 Tollgate could not connect to the database server of target \"clinic\"",
            "EOF"
        ]
    );
    let close = assert_closed_with(&bed, run.pid, "upstream_unreachable");
    let error = close["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{closed_port}")),
        "the record names the upstream: {close}"
    );
}

/// The pid of the server backend running `application_name`'s active query.
fn active_backend(bed: &PgBed, application_name: &str) -> String {
    let sql = format!(
        "select pid from pg_stat_activity where application_name = '{application_name}' \
         and state = 'active'"
    );
    let mut pid = String::new();
    let found = eventually(Duration::from_secs(5), || {
        pid = bed
            .pg
            .psql_direct(&sql)
            .unwrap_or_default()
            .trim()
            .to_owned();
        !pid.is_empty()
    });
    assert!(found, "no active backend for {application_name}");
    pid
}

/// Starts the script, ends its backend with `end(bed, pid)` once the query runs, and returns
/// the run, which must have ended promptly.
fn end_backend_mid_query(
    bed: &PgBed,
    start: fn(&PgBed, &str) -> Running,
    end: impl Fn(&PgBed, &str),
) -> Run {
    let running = start(
        bed,
        "param application_name=victim\nQ select pg_sleep(30)\nrecv 1\n",
    );
    let pid = active_backend(bed, "victim");
    end(bed, &pid);
    let run = running.finish();
    assert!(
        run.elapsed < Duration::from_secs(8),
        "the client waited {:?} after its server died",
        run.elapsed
    );
    run
}

fn terminate(bed: &PgBed, pid: &str) {
    bed.pg
        .psql_direct(&format!("select pg_terminate_backend({pid})"))
        .expect("pg_terminate_backend");
}

fn kill9(_: &PgBed, pid: &str) {
    let status = Command::new("kill").args(["-9", pid]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -9 {pid}");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn an_upstream_that_dies_mid_query_is_reported_at_once() {
    let bed = pg_bed("upstream_dies", |_| {});
    // Terminated by an administrator: the server's own FATAL reaches the client unchanged.
    let direct = end_backend_mid_query(&bed, spawn_direct, terminate);
    let through = end_backend_mid_query(&bed, spawn_agent, terminate);
    let output = direct.ok("direct");
    assert_eq!(output, through.ok("through the gateway"));
    assert_eq!(
        after_startup(output),
        [
            "T pg_sleep:2278",
            "E FATAL 57P01 terminating connection due to administrator command",
            "EOF"
        ]
    );
    assert_closed_with(&bed, through.pid, "closed");
    // A backend that vanishes without a word (its RowDescription, still in its output
    // buffer, dies with it): the gateway says the connection was lost.
    let through = end_backend_mid_query(&bed, spawn_agent, kill9);
    assert_eq!(
        after_startup(through.ok("server killed")),
        [
            "E FATAL 08006 the connection to the database server of target \"clinic\" was lost",
            "EOF"
        ]
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_client_that_goes_away_mid_transaction_is_rolled_back() {
    let bed = pg_bed("client_drop", |_| {});
    bed.pg
        .psql_direct("create table drops(a int)")
        .expect("create table");
    // The script ends here: its socket closes without Terminate.
    let (output, agent) = same_both_ways(
        &bed,
        "param application_name=dropper\nQ begin; insert into drops values (1)\nrecv 1\n",
    );
    assert_eq!(after_startup(&output), ["C BEGIN", "C INSERT 0 1", "Z T"]);
    let backends = "select count(*) from pg_stat_activity where application_name = 'dropper'";
    let gone = eventually(Duration::from_secs(5), || {
        bed.pg.psql_direct(backends).unwrap_or_default().trim() == "0"
    });
    assert!(gone, "the server backend outlived the client by 5 s");
    let rows = bed.pg.psql_direct("select count(*) from drops").unwrap();
    assert_eq!(rows.trim(), "0", "the open transaction was rolled back");
    let close = assert_closed_with(&bed, agent.pid, "closed");
    let ended = bed
        .gateway
        .wait_for_event(EVENT_WAIT, |e| {
            e["event"] == "session.end" && e["conn_id"] == close["conn_id"]
        })
        .expect("session.end record");
    assert_eq!(ended["state"], "InTransaction", "{ended}");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_cancel_request_with_the_issued_key_cancels_the_query() {
    let bed = pg_bed("cancel", |_| {});
    let (output, agent) = same_both_ways(
        &bed,
        "Q select pg_sleep(20)\ncancel-after-ms 500\nrecv 1\n\
         Q select 1 as still_usable\nrecv 1\n",
    );
    assert_eq!(
        after_startup(&output),
        [
            "T pg_sleep:2278",
            "E ERROR 57014 canceling statement due to user request",
            "Z I",
            "T still_usable:23",
            "D 1",
            "C SELECT 1",
            "Z I",
        ]
    );
    assert!(
        agent.elapsed < Duration::from_secs(10),
        "the cancel took {:?}",
        agent.elapsed
    );
    let forwarded = bed
        .gateway
        .wait_for_event(EVENT_WAIT, |e| e["event"] == "cancel.forwarded")
        .unwrap_or_else(|| panic!("no cancel.forwarded; log:\n{}", bed.gateway.log_text()));
    let closes = close_events(&bed, agent.pid, 2);
    let outcomes: Vec<&str> = closes
        .iter()
        .map(|c| c["outcome"].as_str().unwrap_or_default())
        .collect();
    assert!(
        outcomes.contains(&"cancel_forwarded") && outcomes.contains(&"closed"),
        "outcomes of the session and its cancel connection: {outcomes:?}"
    );
    let session = closes
        .iter()
        .find(|c| c["outcome"] == "closed")
        .expect("session close");
    assert_eq!(forwarded["cancelled_conn_id"], session["conn_id"]);
}
