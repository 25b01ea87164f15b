//! Statements a rule sends for approval wait on the open connection: nothing reaches the
//! server until an approver decides; approved they run (masked), denied or timed out they
//! fail as PostgreSQL fails a statement, cancelled or abandoned they are withdrawn.

use std::{sync::Arc, time::Duration};

use pgwire::messages::{
    extendedquery::{Bind, Execute, Parse, Sync},
    simplequery::Query,
    PgWireFrontendMessage as F,
};

use super::{pipeline::patients, start_holding, Session, POLICY};
use crate::approval::{Approvals, Approver, Pending};

/// The session tests' policy with its deny rule made an approval rule for `patients`:
/// anything else runs, and what an approved statement returns is masked as `[masking]` says.
fn holding() -> String {
    let denied = "id = \"no-secrets\"\neffect = \"deny\"\ntables = [\"public.secrets\"]";
    assert!(POLICY.contains(denied), "the session tests' policy changed");
    let held =
        "id = \"approve-patients\"\neffect = \"require_approval\"\ntables = [\"public.patients\"]";
    POLICY.replace(denied, held)
}

const WAIT: Duration = Duration::from_secs(60);

fn query(sql: &str) -> F {
    F::Query(Query::new(sql.to_owned()))
}

fn alice() -> Approver {
    Approver {
        name: "alice".to_owned(),
        uid: Some(2000),
        token_subject: None,
    }
}

async fn held_session(timeout: Duration) -> (Session, Arc<Approvals>) {
    let approvals = Approvals::new(1, None);
    let (session, _) = start_holding(&holding(), patients(), approvals.clone(), timeout).await;
    (session, approvals)
}

/// [`held_session`] with one more setting on its approval rule.
async fn held_session_with(setting: &str) -> (Session, Arc<Approvals>) {
    let policy = holding().replace(
        "effect = \"require_approval\"\n",
        &format!("effect = \"require_approval\"\n{setting}\n"),
    );
    let approvals = Approvals::new(1, None);
    let (session, _) = start_holding(&policy, patients(), approvals.clone(), WAIT).await;
    (session, approvals)
}

/// The request waiting, once the client has been told.
async fn waiting(session: &mut Session, approvals: &Approvals) -> Pending {
    let notice = session.client.next_line().await;
    assert!(
        notice.starts_with("N NOTICE 00000 Tollgate: this statement waits for a person's approval"),
        "the client is told at once: {notice}"
    );
    let pending = approvals.pending();
    assert_eq!(pending.len(), 1, "one request waits");
    let pending = pending.into_iter().next().unwrap();
    assert!(
        notice.contains(&format!("approval {}", pending.id)),
        "{notice}"
    );
    pending
}

/// Nothing more arrives for a while: the statement has not run.
async fn nothing_arrives(session: &mut Session) {
    let quiet = tokio::time::timeout(Duration::from_millis(200), session.client.next_line()).await;
    assert!(
        quiet.is_err(),
        "nothing may arrive before a decision: {quiet:?}"
    );
}

#[tokio::test]
async fn an_approved_statement_runs_masked_and_the_session_goes_on() {
    let (mut session, approvals) = held_session(WAIT).await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    assert_eq!(pending.ask.statement, "SELECT ssn FROM patients");
    assert_eq!(pending.ask.rule, "approve-patients");
    assert_eq!(pending.ask.tables, ["patients"]);
    assert_eq!(pending.ask.classified_columns.len(), 1);
    assert_eq!(pending.ask.classified_columns[0].mask, "redact");
    nothing_arrives(&mut session).await;
    approvals
        .approve(
            pending.id,
            &alice(),
            None,
            None,
            Some(pending.ask.request_hash),
        )
        .expect("approved");
    assert_eq!(
        session.client.until_ready(1).await,
        ["T ssn", "D REDACTED", "D REDACTED", "C SELECT 2", "Z I"]
    );
    session.client.send(vec![query("SELECT 1")]).await;
    assert_eq!(
        session.client.until_ready(1).await,
        ["T one", "D 1", "C SELECT 1", "Z I"]
    );
}

#[tokio::test]
async fn a_denied_statement_fails_with_the_reason_and_leaves_the_transaction_failed() {
    let (mut session, approvals) = held_session(WAIT).await;
    session.client.send(vec![query("BEGIN")]).await;
    assert_eq!(session.client.until_ready(1).await, ["C BEGIN", "Z T"]);
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    approvals
        .deny(pending.id, &alice(), "not for this ticket".to_owned())
        .expect("denied");
    let answer = session.client.until_ready(1).await;
    assert_eq!(
        answer,
        [
            format!(
                "E ERROR 42501 Tollgate: approval {} was denied by alice: not for this ticket",
                pending.id
            ),
            "Z E".to_owned()
        ]
    );
    assert!(approvals.pending().is_empty());
}

#[tokio::test]
async fn an_undecided_statement_times_out_with_57014() {
    let (mut session, approvals) = held_session(Duration::from_millis(300)).await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    let answer = session.client.until_ready(1).await;
    assert_eq!(answer.len(), 2, "{answer:?}");
    assert!(
        answer[0].starts_with(&format!(
            "E ERROR 57014 Tollgate: approval {} was not given",
            pending.id
        )),
        "{answer:?}"
    );
    assert!(
        approvals.pending().is_empty(),
        "a timed-out request leaves the queue"
    );
    // The session goes on.
    session.client.send(vec![query("SELECT 1")]).await;
    assert_eq!(
        session.client.until_ready(1).await,
        ["T one", "D 1", "C SELECT 1", "Z I"]
    );
}

#[tokio::test]
async fn a_cancel_request_withdraws_the_waiting_statement() {
    let approvals = Approvals::new(1, None);
    let (mut session, cancels) =
        start_holding(&holding(), patients(), approvals.clone(), WAIT).await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    cancels.send_modify(|n| *n += 1);
    let answer = session.client.until_ready(1).await;
    assert!(
        answer[0].starts_with("E ERROR 57014 canceling statement due to user request"),
        "{answer:?}"
    );
    assert!(approvals.get(pending.id).is_none(), "withdrawn");
}

#[tokio::test]
async fn requests_pipelined_behind_a_waiting_one_wait_in_order() {
    let (mut session, approvals) = held_session(WAIT).await;
    session
        .client
        .send(vec![
            query("SELECT 1"),
            query("SELECT ssn FROM patients"),
            query("SELECT 2"),
        ])
        .await;
    // The request before it is answered; the one after it waits with it.
    assert_eq!(
        session.client.until_ready(1).await,
        ["T one", "D 1", "C SELECT 1", "Z I"]
    );
    let pending = waiting(&mut session, &approvals).await;
    nothing_arrives(&mut session).await;
    approvals
        .approve(pending.id, &alice(), None, None, None)
        .expect("approved");
    assert_eq!(
        session.client.until_ready(2).await,
        [
            "T ssn",
            "D REDACTED",
            "D REDACTED",
            "C SELECT 2",
            "Z I",
            "T two",
            "D 2",
            "C SELECT 1",
            "Z I"
        ]
    );
}

#[tokio::test]
async fn an_extended_query_waits_at_its_execute_not_its_parse() {
    let (mut session, approvals) = held_session(WAIT).await;
    let parse = F::Parse(Parse::new(
        Some("s".to_owned()),
        "SELECT ssn FROM patients".to_owned(),
        vec![],
    ));
    session.client.send(vec![parse, F::Sync(Sync::new())]).await;
    assert_eq!(
        session.client.until_ready(1).await,
        ["1", "Z I"],
        "preparing runs nothing"
    );
    assert!(approvals.pending().is_empty());
    let bind = F::Bind(Bind::new(
        None,
        Some("s".to_owned()),
        vec![],
        vec![],
        vec![],
    ));
    let execute = F::Execute(Execute::new(None, 0));
    session
        .client
        .send(vec![bind, execute, F::Sync(Sync::new())])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    approvals
        .approve(pending.id, &alice(), None, None, None)
        .expect("approved");
    assert_eq!(
        session.client.until_ready(1).await,
        ["2", "D REDACTED", "D REDACTED", "C SELECT 2", "Z I"]
    );
}

#[tokio::test]
async fn a_client_that_leaves_withdraws_its_waiting_statement() {
    let (mut session, approvals) = held_session(WAIT).await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    session.outcome().await;
    assert!(
        approvals.get(pending.id).is_none(),
        "withdrawn when the client left"
    );
}

#[tokio::test]
async fn a_rule_s_own_timeout_wins_over_the_gateway_s() {
    let (mut session, approvals) = held_session_with("timeout_s = 1").await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    assert_eq!(pending.ask.timeout, Duration::from_secs(1));
    let answer = session.client.until_ready(1).await;
    assert!(answer[0].contains("was not given within 1 s"), "{answer:?}");
}

/// A `rows_over` rule with no estimate to go on (this session has no catalog connection):
/// a read runs, and no more than the rule's limit of its rows reaches the client; a write,
/// whose rows cannot be cut on the way back, waits.
#[tokio::test]
async fn without_an_estimate_a_rows_over_rule_caps_a_read_and_holds_a_write() {
    let (mut session, approvals) = held_session_with("rows_over = 1").await;
    session
        .client
        .send(vec![query("SELECT ssn FROM patients")])
        .await;
    let answer = session.client.until_ready(1).await;
    assert_eq!(answer[..2], ["T ssn", "D REDACTED"], "{answer:?}");
    assert!(
        answer[2].contains("truncated to 1 rows by policy rule \"approve-patients\""),
        "{answer:?}"
    );
    assert_eq!(answer[3..], ["C SELECT 1", "Z I"], "{answer:?}");
    assert!(approvals.pending().is_empty(), "the read never waited");

    session
        .client
        .send(vec![query("UPDATE patients SET ssn = NULL")])
        .await;
    let pending = waiting(&mut session, &approvals).await;
    assert_eq!(pending.ask.rule, "approve-patients");
    assert_eq!(pending.ask.row_estimate, None);
    nothing_arrives(&mut session).await;
    approvals
        .deny(pending.id, &alice(), "no estimate".to_owned())
        .expect("denied");
    let answer = session.client.until_ready(1).await;
    assert!(answer[0].contains("no estimate"), "{answer:?}");
}
