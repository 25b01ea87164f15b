//! The queue against hand-made answers: what is counted, when requests are done, and what
//! the server skips after an error.

use pgwire::messages::response::TransactionStatus;

use super::*;
use crate::postgres::{errors::sqlstate, names::Marks};

/// A request that confirms an unnamed statement: it has effects, so it is never folded.
fn sent(end: RequestEnd, steps: Vec<Step>) -> Sent {
    Sent {
        steps,
        effects: vec![Effect::ConfirmUnnamed(1)],
        ..Sent::new(end)
    }
}

/// Requests a ReadyForQuery will answer, counted off the queue; the queue's own count must
/// agree.
fn awaiting(pipeline: &Pipeline) -> usize {
    let counted = pipeline.entries.iter().filter(|e| e.awaits_ready()).count();
    assert_eq!(pipeline.awaiting, counted, "the kept count drifted");
    counted
}

/// Every request, done or not, by number.
fn stages(pipeline: &Pipeline) -> Vec<(RequestId, Stage, bool)> {
    let mut all: Vec<_> = (pipeline.entries.iter().chain(&pipeline.done))
        .map(|e| (e.id, e.stage, e.failed))
        .collect();
    all.sort_by_key(|(id, ..)| *id);
    all
}

#[test]
fn counts_are_read_off_the_queue() {
    let mut pipeline = Pipeline::default();
    pipeline.push(sent(RequestEnd::Partial, Vec::new()));
    pipeline.push(sent(RequestEnd::Sync, Vec::new()));
    pipeline.push(sent(RequestEnd::Query, Vec::new()));
    assert_eq!(awaiting(&pipeline), 2);
    assert_eq!(
        pipeline.position(),
        Position {
            next: 3,
            answered_below: 0
        }
    );
    // The Sync's ReadyForQuery answers the messages sent ahead of it too.
    pipeline.on_ready(TransactionStatus::Idle);
    assert_eq!(awaiting(&pipeline), 1);
    assert_eq!(pipeline.position().answered_below, 2);
    let first = pipeline.pop_done().unwrap();
    assert_eq!((first.id, first.status), (0, None));
    let second = pipeline.pop_done().unwrap();
    assert_eq!(second.status, Some(TransactionStatus::Idle));
    assert!(
        pipeline.pop_done().is_none(),
        "the Query is not answered yet"
    );
    pipeline.on_ready(TransactionStatus::Transaction);
    assert_eq!(pipeline.position().answered_below, 3);
    assert_eq!(awaiting(&pipeline), 0);
}

#[test]
fn an_extended_error_skips_to_the_sync_across_requests_sent_later() {
    let mut pipeline = Pipeline::default();
    pipeline.push(sent(RequestEnd::Partial, vec![Step::Single, Step::Single]));
    pipeline.pop_step();
    pipeline.on_error();
    assert!(
        pipeline.step().is_none(),
        "the rest of the batch is skipped"
    );
    // Sent after the error, before the Sync: skipped too, a Query included.
    pipeline.push(sent(RequestEnd::Partial, vec![Step::Execute(None)]));
    pipeline.push(sent(
        RequestEnd::Query,
        vec![Step::Query {
            rules: Default::default(),
            index: 0,
        }],
    ));
    assert!(pipeline.step().is_none());
    pipeline.push(sent(RequestEnd::Sync, vec![Step::Single, Step::Sync]));
    assert!(matches!(pipeline.step(), Some(Step::Sync)));
    assert_eq!(awaiting(&pipeline), 1, "the skipped Query awaits nothing");
    assert_eq!(
        stages(&pipeline),
        vec![
            (0, Stage::Answering, true),
            (1, Stage::Sent, true),
            (2, Stage::Done, true),
            (3, Stage::Sent, true),
        ]
    );
    pipeline.on_ready(TransactionStatus::Idle);
    assert_eq!(awaiting(&pipeline), 0);
    // After the Sync the server answers again.
    pipeline.push(sent(RequestEnd::Sync, vec![Step::Single, Step::Sync]));
    assert!(matches!(pipeline.step(), Some(Step::Single)));
    assert!(!pipeline.entries.back().unwrap().failed);
}

#[test]
fn an_error_in_a_simple_query_skips_nothing() {
    let mut pipeline = Pipeline::default();
    let query = || Step::Query {
        rules: Default::default(),
        index: 0,
    };
    pipeline.push(sent(RequestEnd::Query, vec![query()]));
    pipeline.push(sent(RequestEnd::Query, vec![query()]));
    pipeline.on_error();
    pipeline.on_ready(TransactionStatus::Idle);
    assert_eq!(
        stages(&pipeline),
        vec![(0, Stage::Done, true), (1, Stage::Sent, false)]
    );
    assert!(matches!(pipeline.step(), Some(Step::Query { .. })));
}

#[test]
fn without_a_plan_an_error_fails_the_batch_up_to_its_sync() {
    let mut pipeline = Pipeline::default();
    pipeline.push(sent(RequestEnd::Flush, Vec::new()));
    pipeline.push(sent(RequestEnd::Sync, Vec::new()));
    pipeline.push(sent(RequestEnd::Sync, Vec::new()));
    pipeline.on_error();
    pipeline.on_ready(TransactionStatus::Idle);
    assert_eq!(
        stages(&pipeline),
        vec![
            (0, Stage::Done, true),
            (1, Stage::Done, true),
            (2, Stage::Sent, false)
        ]
    );
}

#[test]
fn a_denial_is_found_by_its_marker_until_answered() {
    let mut pipeline = Pipeline::default();
    let mut request = sent(RequestEnd::Query, Vec::new());
    let denial = ClientError::error(sqlstate::INSUFFICIENT_PRIVILEGE, "denied");
    request.denials.push((7, denial));
    pipeline.push(request);
    assert!(pipeline.take_denial(6).is_none());
    let found = pipeline.take_denial(7).expect("the denial");
    assert_eq!(found.message, "denied");
    assert!(pipeline.take_denial(7).is_none(), "taken once");
}

#[test]
fn done_requests_that_change_no_names_fold_into_the_latest_transaction_end() {
    let mut pipeline = Pipeline::default();
    let plain = |end, marks: Marks| Sent {
        marks,
        ..Sent::new(end)
    };
    pipeline.push(plain(RequestEnd::Query, (0, 1)));
    pipeline.push(plain(RequestEnd::Query, (0, 2)));
    pipeline.push(plain(RequestEnd::Query, (0, 3)));
    pipeline.push(sent(RequestEnd::Query, Vec::new()));
    pipeline.on_ready(TransactionStatus::Idle);
    pipeline.on_ready(TransactionStatus::Idle);
    pipeline.on_ready(TransactionStatus::Transaction);
    pipeline.on_ready(TransactionStatus::Idle);
    let folded = pipeline.pop_done().unwrap();
    let answered = folded.answered();
    assert_eq!(
        (folded.id, answered.status, answered.marks),
        (0, Some(TransactionStatus::Idle), (0, 2)),
        "the latest end of a transaction among the three"
    );
    let with_effects = pipeline.pop_done().unwrap();
    assert_eq!(with_effects.id, 3);
    assert!(pipeline.pop_done().is_none());
}
