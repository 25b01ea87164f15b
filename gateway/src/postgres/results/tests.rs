//! The tracker against hand-made server answers: which rows are masked, what is swallowed,
//! how errors skip steps, and that anything out of place ends the session.

use std::{collections::BTreeSet, sync::Arc};

use crate::postgres::encoding::ClientEncoding;

use bytes::BytesMut;
use pgwire::messages::{
    data::{DataRow, FieldDescription, NoData, RowDescription},
    extendedquery::{BindComplete, ParseComplete},
    response::{CommandComplete, ErrorResponse, ReadyForQuery, TransactionStatus},
    PgWireBackendMessage as B, PgWireFrontendMessage as F,
};

use super::*;
use crate::{
    policy::{mask::MaskMethod, TargetClassification},
    postgres::{
        names::SessionNames,
        pipeline::{Pipeline, Sent},
        request::{RequestAssembler, RequestEnd},
    },
};

fn rule(parsed: Vec<ResolvedColumn>, max_rows: Option<u64>) -> Arc<ResultRule> {
    let mut methods = std::collections::BTreeMap::new();
    methods.insert(Arc::<str>::from("ssn"), MaskMethod::Redact);
    Arc::new(ResultRule {
        plan: MaskPlan {
            rule: "agents".into(),
            protect: true,
            methods: methods.into(),
            max_rows,
            max_bytes: None,
        },
        parsed: Some(parsed),
        mask_columns: true,
        scrub_messages: true,
        copy: None,
        context: Arc::new(MaskContext {
            catalog: None,
            classes: Arc::new(TargetClassification::default()),
            key: Arc::new(TokenKey::from_bytes([7; 32])),
        }),
    })
}

fn ssn() -> ResolvedColumn {
    ResolvedColumn {
        categories: BTreeSet::from([Arc::<str>::from("ssn")]),
        direct: true,
        unknown: false,
    }
}

fn plain() -> ResolvedColumn {
    ResolvedColumn::default()
}

fn field(name: &str) -> FieldDescription {
    FieldDescription::new(name.into(), 0, 0, 25, -1, -1, 0)
}

fn row(values: &[&str]) -> B {
    let mut data = BytesMut::new();
    for value in values {
        data.extend_from_slice(&(value.len() as i32).to_be_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    B::DataRow(DataRow::new(data, values.len() as i16))
}

/// The tracker with the session's pipeline, moved on as the backend pump moves it.
struct Tracked {
    tracker: ResultTracker,
    pipeline: Pipeline,
}

impl Tracked {
    /// A request forwarded with these answers expected.
    fn push(&mut self, steps: Vec<Step>) {
        let end = match steps.last() {
            Some(Step::Sync) => RequestEnd::Sync,
            Some(Step::Query { .. } | Step::FunctionCall(_)) => RequestEnd::Query,
            _ => RequestEnd::Partial,
        };
        self.pipeline.push(Sent {
            steps,
            protect: true,
            ..Sent::new(end)
        });
    }
}

/// Feeds messages; returns what the agent receives, or the tracker's error.
fn feed(tracked: &mut Tracked, messages: Vec<B>) -> Result<String, ResultError> {
    let mut delivered = BytesMut::new();
    for message in messages {
        let mut frame = BytesMut::new();
        message.encode(&mut frame).unwrap();
        let Tracked { tracker, pipeline } = tracked;
        let handled = tracker.on_message(
            pipeline,
            &message,
            &frame,
            ClientEncoding::UTF8,
            &mut delivered,
        )?;
        if handled == Handled::Forward {
            delivered.extend_from_slice(&frame);
        }
        let started = tracker.started;
        match &message {
            B::ReadyForQuery(ready) if started => pipeline.on_ready(ready.status),
            B::ErrorResponse(_) => pipeline.on_error(),
            _ => {}
        }
    }
    Ok(String::from_utf8_lossy(&delivered).into_owned())
}

/// Past startup (whose ReadyForQuery answers no request).
fn started() -> Tracked {
    let mut tracked = Tracked {
        tracker: ResultTracker::default(),
        pipeline: Pipeline::default(),
    };
    feed(&mut tracked, vec![ready()]).unwrap();
    tracked
}

fn ready() -> B {
    B::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle))
}

fn complete(tag: &str) -> B {
    B::CommandComplete(CommandComplete::new(tag.into()))
}

fn query_step(rules: Vec<Rule>) -> Step {
    Step::Query {
        rules: QueryRules {
            statements: rules.into(),
            beyond: None,
        },
        index: 0,
    }
}

#[test]
fn a_query_masks_the_classified_column_of_its_own_statement_only() {
    let mut tracker = started();
    tracker.push(vec![query_step(vec![
        None,
        Some(rule(vec![plain(), ssn()], None)),
    ])]);
    let seen = feed(
        &mut tracker,
        vec![
            B::RowDescription(RowDescription::new(vec![field("id"), field("ssn")])),
            row(&["1", "123-45-6789"]),
            complete("SELECT 1"),
            B::RowDescription(RowDescription::new(vec![field("id"), field("ssn")])),
            row(&["2", "987-65-4321"]),
            complete("SELECT 1"),
            ready(),
        ],
    )
    .unwrap();
    // The first statement needs nothing; the second one's ssn is redacted.
    assert!(seen.contains("123-45-6789"), "{seen:?}");
    assert!(!seen.contains("987-65-4321"), "{seen:?}");
    assert!(seen.contains("REDACTED"), "{seen:?}");
}

#[test]
fn an_execute_gets_a_describe_whose_answer_is_swallowed() {
    let mut assembler = RequestAssembler::default();
    let mut names = SessionNames::default();
    let mut request = None;
    for message in [
        F::Parse(pgwire::messages::extendedquery::Parse::new(
            None,
            "SELECT ssn FROM patients".into(),
            vec![],
        )),
        F::Bind(pgwire::messages::extendedquery::Bind::new(
            None,
            None,
            vec![],
            vec![],
            vec![],
        )),
        F::Execute(pgwire::messages::extendedquery::Execute::new(None, 0)),
        F::Sync(pgwire::messages::extendedquery::Sync::new()),
    ] {
        let mut frame = BytesMut::new();
        message.encode(&mut frame).unwrap();
        request = assembler.push(frame, &message, &mut names);
    }
    let mut request = request.unwrap();
    let steps = plan_steps(
        &mut request,
        vec![
            StatementResults::Parse,
            StatementResults::Execute(Some(rule(vec![ssn()], None))),
        ],
    );
    let tags: Vec<u8> = frame_tags(&request.frames);
    assert_eq!(tags, b"PBDES", "a Describe goes in before the Execute");
    let mut tracker = started();
    tracker.push(steps);
    let seen = feed(
        &mut tracker,
        vec![
            B::ParseComplete(ParseComplete::new()),
            B::BindComplete(BindComplete::new()),
            B::RowDescription(RowDescription::new(vec![field("ssn")])),
            row(&["123-45-6789"]),
            complete("SELECT 1"),
            ready(),
        ],
    )
    .unwrap();
    assert!(!seen.contains("123-45-6789"), "{seen:?}");
    assert!(
        !seen.contains("ssn"),
        "the injected description is not forwarded: {seen:?}"
    );
    assert!(seen.contains("REDACTED"));
}

#[test]
fn rows_of_a_masked_execute_without_a_description_end_the_session() {
    let mut tracker = started();
    tracker.push(vec![
        Step::Execute(Some(rule(vec![ssn()], None))),
        Step::Sync,
    ]);
    let error = feed(&mut tracker, vec![row(&["123-45-6789"])]).unwrap_err();
    assert!(matches!(error, ResultError::Undescribed), "{error}");
}

#[test]
fn a_message_no_step_expects_ends_the_session() {
    let mut tracker = started();
    tracker.push(vec![Step::Single, Step::Sync]);
    let error = feed(&mut tracker, vec![row(&["123-45-6789"])]).unwrap_err();
    assert!(
        matches!(error, ResultError::Unexpected("DataRow")),
        "{error}"
    );
}

#[test]
fn an_error_skips_to_sync_even_when_the_sync_comes_later() {
    let mut tracker = started();
    tracker.push(vec![Step::Single, Step::Single]);
    let error = B::ErrorResponse(ErrorResponse::new(vec![
        (b'S', "ERROR".into()),
        (b'C', "42601".into()),
        (b'M', "syntax error".into()),
    ]));
    feed(&mut tracker, vec![error]).unwrap();
    // Sent after the error: skipped by the server, so no answers are expected for them.
    tracker.push(vec![
        Step::Single,
        Step::Execute(Some(rule(vec![ssn()], None))),
        Step::Sync,
    ]);
    feed(&mut tracker, vec![ready()]).unwrap();
    tracker.push(vec![Step::DescribePortal(None), Step::Sync]);
    feed(&mut tracker, vec![B::NoData(NoData::new()), ready()]).unwrap();
}

#[test]
fn rows_past_max_rows_are_dropped_and_the_completion_says_so() {
    let mut tracker = started();
    tracker.push(vec![query_step(vec![Some(rule(vec![plain()], Some(2)))])]);
    let seen = feed(
        &mut tracker,
        vec![
            B::RowDescription(RowDescription::new(vec![field("id")])),
            row(&["row-1"]),
            row(&["row-2"]),
            row(&["row-3"]),
            complete("SELECT 3"),
            ready(),
        ],
    )
    .unwrap();
    assert!(
        seen.contains("row-2") && !seen.contains("row-3"),
        "{seen:?}"
    );
    assert!(
        seen.contains("SELECT 2") && !seen.contains("SELECT 3"),
        "{seen:?}"
    );
    assert!(
        seen.contains("truncated to 2 rows by policy rule \"agents\""),
        "{seen:?}"
    );
}

fn frame_tags(frames: &[u8]) -> Vec<u8> {
    let mut tags = Vec::new();
    let mut at = 0;
    while at < frames.len() {
        tags.push(frames[at]);
        let len = i32::from_be_bytes(frames[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 1 + len;
    }
    tags
}
