//! Frontend messages gathered into whole requests: a `Query`, or extended-protocol messages up
//! to `Sync` or `Flush`. Each request carries what policy needs (statement text, bound
//! parameters, the portal an `Execute` runs) and the exact bytes to forward.

use std::{collections::HashMap, ops::Range, sync::Arc};

use super::{
    names::{Named, PendingReleases},
    state::Progress,
};

use bytes::BytesMut;
use pgwire::messages::{extendedquery::Bind, PgWireFrontendMessage};

/// Extended-protocol messages buffered beyond this are handed on as a partial request, so a
/// long pipeline without `Sync` cannot grow without bound.
const PARTIAL_REQUEST_BYTES: usize = 1024 * 1024;

/// Portals the gateway remembers (with their bound values). The server drops portals at the
/// end of their transaction, which the gateway does not see in order with the client's
/// messages; past this many the map is cleared, and an Execute of a forgotten portal is
/// recorded as unknown rather than memory growing without bound.
const MAX_PORTALS: usize = 256;

/// Named statements remembered; past this every named statement is unknown until the
/// session ends (drivers close what they no longer use, so few are live at once).
const MAX_STATEMENTS: usize = 4096;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// A simple `Query`: answered by exactly one ReadyForQuery.
    Query,
    /// `Sync`: answered by exactly one ReadyForQuery.
    Sync,
    /// `Flush`: the client wants what is pending, no ReadyForQuery.
    Flush,
    /// Messages handed on before their Sync or Flush: nothing more was readable, or the
    /// buffer reached [`PARTIAL_REQUEST_BYTES`].
    Partial,
}

/// A prepared statement's text, shared by every portal and execution that uses it.
pub type Sql = Arc<str>;

/// One statement the server will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// A simple-protocol query string (possibly several statements).
    Simple { sql: Sql },
    /// `Parse`: a statement prepared under a name ("" is the unnamed statement).
    Prepare { name: String, sql: Sql },
    /// `Execute` of a portal, with the statement it was bound from and its parameters.
    Execute {
        portal: String,
        /// `None` when the portal or statement is unknown to the gateway: never prepared
        /// through it, forgotten (see [`MAX_PORTALS`]), or prepared with SQL-level PREPARE.
        sql: Option<Sql>,
        parameters: Vec<Parameter>,
        max_rows: i32,
    },
}

/// One bound parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub value: Option<bytes::Bytes>,
    pub binary: bool,
}

#[derive(Debug)]
pub struct Request {
    pub end: RequestEnd,
    pub statements: Vec<Statement>,
    /// Where in `frames` the message of each statement is (Query, Parse or Execute).
    pub spans: Vec<Range<usize>>,
    /// The frames exactly as received, in order.
    pub frames: BytesMut,
    /// Named portals bound: SQL-level FETCH and CLOSE can reach them as cursors.
    pub portals_bound: Vec<String>,
}

impl Request {
    pub fn expects_ready_for_query(&self) -> bool {
        matches!(self.end, RequestEnd::Query | RequestEnd::Sync)
    }

    /// Replaces the messages of some statements (by index) with other frames.
    pub fn substitute(&mut self, mut replacements: Vec<(usize, BytesMut)>) {
        if replacements.is_empty() {
            return;
        }
        replacements.sort_by_key(|(index, _)| *index);
        let mut frames = BytesMut::with_capacity(self.frames.len());
        let mut copied = 0;
        for (index, frame) in replacements {
            let span = self.spans[index].clone();
            frames.extend_from_slice(&self.frames[copied..span.start]);
            frames.extend_from_slice(&frame);
            copied = span.end;
        }
        frames.extend_from_slice(&self.frames[copied..]);
        self.frames = frames;
        // Spans no longer describe the frames.
        self.spans.clear();
    }
}

#[derive(Debug, Clone)]
struct Portal {
    sql: Option<Sql>,
    parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, Copy)]
enum Confirmation {
    /// Parsed in the batch still open: its own Bind and Execute run it or are skipped too.
    InBatch,
    /// The batch ended; answered by this ReadyForQuery, good if no error came before it.
    Pending {
        answered_by: u64,
        errors: u64,
    },
    Confirmed,
}

/// Gathers messages and remembers prepared statements and portals across requests.
pub struct RequestAssembler {
    frames: BytesMut,
    statements: Vec<Statement>,
    spans: Vec<Range<usize>>,
    /// The unnamed statement: every Parse of it replaces it (or, failing, leaves none). A
    /// Parse skipped after an earlier error leaves the old one, so a later batch believes it
    /// only once the server has answered the Parse's batch without error.
    unnamed: Option<(Sql, Confirmation)>,
    /// Named statements. The server refuses to redefine one that exists, so a Parse is
    /// believed only for a name that certainly does not exist (see [`Named`]).
    named: Named<Sql>,
    /// Closes of named statements, until the server has confirmed them.
    closing: PendingReleases<(String, u64)>,
    portals: HashMap<String, Portal>,
    portals_bound: Vec<String>,
    /// Extended-protocol messages were handed on (at Flush, or in part) without a Sync yet.
    unsynced: bool,
}

impl Default for RequestAssembler {
    fn default() -> Self {
        Self {
            frames: BytesMut::new(),
            statements: Vec::new(),
            spans: Vec::new(),
            unnamed: None,
            named: Named::with_limit(MAX_STATEMENTS),
            closing: PendingReleases::default(),
            portals: HashMap::new(),
            portals_bound: Vec::new(),
            unsynced: false,
        }
    }
}

impl RequestAssembler {
    /// Adds one request message; returns the request once it is complete. `progress` is
    /// how far the server has answered (asked only for Parse and Close).
    pub fn push(
        &mut self,
        frame: BytesMut,
        message: &PgWireFrontendMessage,
        progress: impl FnOnce() -> Progress,
    ) -> Option<Request> {
        use PgWireFrontendMessage as F;
        let start = self.frames.len();
        self.frames.unsplit(frame);
        let span = start..self.frames.len();
        let statements_before = self.statements.len();
        let end = match message {
            F::Query(query) => {
                // A simple query drops the unnamed statement and portal.
                self.unnamed = None;
                self.portals.remove("");
                self.statements.push(Statement::Simple {
                    sql: Sql::from(query.query.as_str()),
                });
                Some(RequestEnd::Query)
            }
            F::Parse(parse) => {
                let name = parse.name.clone().unwrap_or_default();
                let sql = Sql::from(parse.query.as_str());
                if name.is_empty() {
                    self.unnamed = Some((sql.clone(), Confirmation::InBatch));
                } else {
                    self.settle(progress());
                    self.named.define(&name, Some(sql.clone()), true);
                }
                self.statements.push(Statement::Prepare { name, sql });
                None
            }
            F::Bind(bind) => {
                self.bind(bind, progress);
                None
            }
            F::Execute(execute) => {
                let portal = execute.name.clone().unwrap_or_default();
                let known = self.portals.get(&portal).cloned();
                self.statements.push(Statement::Execute {
                    portal,
                    sql: known.as_ref().and_then(|p| p.sql.clone()),
                    parameters: known.map(|p| p.parameters).unwrap_or_default(),
                    max_rows: execute.max_rows,
                });
                None
            }
            F::Close(close) => {
                let name = close.name.clone().unwrap_or_default();
                match close.target_type {
                    b'S' if name.is_empty() => self.unnamed = None,
                    b'S' => {
                        self.settle(progress());
                        let mark = self.named.mark();
                        self.closing.record((name, mark));
                    }
                    _ => {
                        self.portals.remove(&name);
                    }
                }
                None
            }
            F::Sync(_) => {
                if let Some((_, confirmation @ Confirmation::InBatch)) = &mut self.unnamed {
                    let at = progress();
                    *confirmation = Confirmation::Pending {
                        // This batch is the next request counted.
                        answered_by: at.sent + 1,
                        errors: at.errors,
                    };
                }
                // The unnamed portal does not outlive the transaction; keep it simple and
                // let the next Bind replace it.
                Some(RequestEnd::Sync)
            }
            F::Flush(_) => Some(RequestEnd::Flush),
            _ => None,
        };
        if self.statements.len() > statements_before {
            self.spans.push(span);
        }
        let end = end.or_else(|| {
            (self.frames.len() >= PARTIAL_REQUEST_BYTES).then_some(RequestEnd::Partial)
        })?;
        Some(self.finish(end))
    }

    /// What is gathered so far, as a partial request: the client has sent nothing more for
    /// now, and the protocol does not promise a Sync or Flush (the server itself answers
    /// each message as it comes).
    pub fn cut(&mut self) -> Option<Request> {
        (!self.frames.is_empty()).then(|| self.finish(RequestEnd::Partial))
    }

    fn finish(&mut self, end: RequestEnd) -> Request {
        self.unsynced = matches!(end, RequestEnd::Flush | RequestEnd::Partial);
        Request {
            end,
            statements: std::mem::take(&mut self.statements),
            spans: std::mem::take(&mut self.spans),
            frames: self.frames.split(),
            portals_bound: std::mem::take(&mut self.portals_bound),
        }
    }

    /// An extended-protocol batch is open: messages are pending or were handed on without a
    /// Sync. The server's answers to it end with no ReadyForQuery of their own.
    pub fn batch_open(&self) -> bool {
        self.unsynced || !self.frames.is_empty()
    }

    /// Prepared statement names that SQL of a request defined, or made unknown all at once:
    /// they share the protocol's namespace.
    pub fn note_sql_names(&mut self, prepared: &[String], all_unknown: bool) {
        if all_unknown {
            self.named.forget_all();
        }
        for name in prepared {
            self.named.define(name, None, true);
        }
    }

    /// Applies the closes the server has confirmed.
    fn settle(&mut self, progress: Progress) {
        for (name, mark) in self.closing.settle(progress) {
            self.named.release(&name, mark);
        }
    }

    fn statement(&mut self, name: &str, progress: impl FnOnce() -> Progress) -> Option<Sql> {
        if !name.is_empty() {
            return self.named.get(name);
        }
        let (sql, confirmation) = self.unnamed.as_mut()?;
        match *confirmation {
            Confirmation::InBatch | Confirmation::Confirmed => Some(sql.clone()),
            Confirmation::Pending {
                answered_by,
                errors,
            } => {
                let at = progress();
                if at.readies < answered_by {
                    // Not answered yet: the Parse may still be skipped.
                    None
                } else if at.errors == errors {
                    *confirmation = Confirmation::Confirmed;
                    Some(sql.clone())
                } else {
                    self.unnamed = None;
                    None
                }
            }
        }
    }

    fn bind(&mut self, bind: &Bind, progress: impl FnOnce() -> Progress) {
        let portal = bind.portal_name.clone().unwrap_or_default();
        let statement = bind.statement_name.clone().unwrap_or_default();
        // Format codes: none = all text, one = applies to all, else one per parameter.
        let binary = |index: usize| match bind.parameter_format_codes.as_slice() {
            [] => false,
            [all] => *all == 1,
            codes => codes.get(index) == Some(&1),
        };
        let parameters = bind
            .parameters
            .iter()
            .enumerate()
            .map(|(index, value)| Parameter {
                value: value.clone(),
                binary: binary(index),
            })
            .collect();
        if !portal.is_empty() {
            self.portals_bound.push(portal.clone());
        }
        let sql = self.statement(&statement, progress);
        if self.portals.len() >= MAX_PORTALS && !self.portals.contains_key(&portal) {
            self.portals.clear();
        }
        self.portals.insert(portal, Portal { sql, parameters });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pgwire::messages::{
        extendedquery::{Close, Execute, Flush, Parse, Sync},
        simplequery::Query,
    };

    /// As a client that waits for each answer, with no errors: every request sent so far
    /// is answered.
    fn push(assembler: &mut RequestAssembler, message: PgWireFrontendMessage) -> Option<Request> {
        push_at(assembler, message, Progress::default())
    }

    fn push_at(
        assembler: &mut RequestAssembler,
        message: PgWireFrontendMessage,
        progress: Progress,
    ) -> Option<Request> {
        let mut frame = BytesMut::new();
        message.encode(&mut frame).unwrap();
        assembler.push(frame, &message, || progress)
    }

    fn bind(portal: &str, statement: &str, values: Vec<Option<Bytes>>, formats: Vec<i16>) -> Bind {
        Bind::new(
            Some(portal.into()).filter(|p: &String| !p.is_empty()),
            Some(statement.into()).filter(|s: &String| !s.is_empty()),
            formats,
            values,
            vec![],
        )
    }

    #[test]
    fn extended_messages_are_gathered_up_to_sync() {
        let mut assembler = RequestAssembler::default();
        let parse = Parse::new(Some("s1".into()), "SELECT $1::int".into(), vec![]);
        assert!(push(&mut assembler, PgWireFrontendMessage::Parse(parse)).is_none());
        let b = bind(
            "p1",
            "s1",
            vec![Some(Bytes::from_static(b"42")), None],
            vec![],
        );
        assert!(push(&mut assembler, PgWireFrontendMessage::Bind(b)).is_none());
        let execute = Execute::new(Some("p1".into()), 10);
        assert!(push(&mut assembler, PgWireFrontendMessage::Execute(execute)).is_none());
        let request = push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new())).unwrap();
        assert_eq!(request.end, RequestEnd::Sync);
        assert!(request.expects_ready_for_query());
        assert_eq!(request.statements.len(), 2);
        assert_eq!(
            request.statements[1],
            Statement::Execute {
                portal: "p1".into(),
                sql: Some("SELECT $1::int".into()),
                parameters: vec![
                    Parameter {
                        value: Some(Bytes::from_static(b"42")),
                        binary: false
                    },
                    Parameter {
                        value: None,
                        binary: false
                    },
                ],
                max_rows: 10,
            }
        );
        // The frames are forwarded byte for byte: P, B, E, S.
        let tags: Vec<u8> = frame_tags(&request.frames);
        assert_eq!(tags, b"PBES");
    }

    /// Bind `statement` to the unnamed portal, Execute it, Sync.
    fn run_unnamed_portal(assembler: &mut RequestAssembler, statement: &str) -> Request {
        let b = bind("", statement, vec![], vec![]);
        push(assembler, PgWireFrontendMessage::Bind(b));
        push(
            assembler,
            PgWireFrontendMessage::Execute(Execute::new(None, 0)),
        );
        push(assembler, PgWireFrontendMessage::Sync(Sync::new())).unwrap()
    }

    fn executed_sql(request: &Request) -> Option<&str> {
        match &request.statements[0] {
            Statement::Execute { sql, .. } => sql.as_deref(),
            other => panic!("expected an Execute, got {other:?}"),
        }
    }

    fn parse_named(assembler: &mut RequestAssembler, name: &str, sql: &str, at: Progress) {
        let parse = Parse::new(Some(name.into()), sql.into(), vec![]);
        push_at(assembler, PgWireFrontendMessage::Parse(parse), at);
        push(assembler, PgWireFrontendMessage::Sync(Sync::new()));
    }

    #[test]
    fn prepared_statements_outlive_requests_until_a_close_is_confirmed() {
        let mut assembler = RequestAssembler::default();
        parse_named(&mut assembler, "s1", "SELECT 1", Progress::default());
        let request = run_unnamed_portal(&mut assembler, "s1");
        assert_eq!(executed_sql(&request), Some("SELECT 1"));

        // The Close is request 1; until its answer, s1 may still exist.
        let close = Close::new(b'S', Some("s1".into()));
        push(&mut assembler, PgWireFrontendMessage::Close(close));
        push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new()));
        let unanswered = Progress {
            sent: 1,
            readies: 0,
            errors: 0,
        };
        parse_named(&mut assembler, "s1", "SELECT ssn FROM patients", unanswered);
        let request = run_unnamed_portal(&mut assembler, "s1");
        assert_eq!(executed_sql(&request), None, "either statement may run");
    }

    #[test]
    fn a_confirmed_close_frees_the_name_and_a_failed_one_does_not() {
        for (errors, expected) in [(0, Some("SELECT 2")), (1, None)] {
            let mut assembler = RequestAssembler::default();
            parse_named(&mut assembler, "s1", "SELECT 1", Progress::default());
            let close = Close::new(b'S', Some("s1".into()));
            push(&mut assembler, PgWireFrontendMessage::Close(close));
            push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new()));
            let answered = Progress {
                sent: 1,
                readies: 1,
                errors,
            };
            parse_named(&mut assembler, "s1", "SELECT 2", answered);
            let request = run_unnamed_portal(&mut assembler, "s1");
            assert_eq!(executed_sql(&request), expected, "errors: {errors}");
        }
    }

    #[test]
    fn binary_formats_are_tracked_per_parameter() {
        let mut assembler = RequestAssembler::default();
        let parse = Parse::new(None, "SELECT $1, $2".into(), vec![]);
        push(&mut assembler, PgWireFrontendMessage::Parse(parse));
        let values = vec![
            Some(Bytes::from_static(b"a")),
            Some(Bytes::from_static(&[0, 1])),
        ];
        push(
            &mut assembler,
            PgWireFrontendMessage::Bind(bind("", "", values, vec![0, 1])),
        );
        push(
            &mut assembler,
            PgWireFrontendMessage::Execute(Execute::new(None, 0)),
        );
        let request = push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new())).unwrap();
        let Statement::Execute { parameters, .. } = &request.statements[1] else {
            panic!("expected an Execute")
        };
        assert!(!parameters[0].binary);
        assert!(parameters[1].binary);
    }

    #[test]
    fn an_unnamed_statement_is_believed_in_later_batches_once_answered_without_error() {
        for (answer, expected) in [((0, 0), None), ((1, 0), Some("SELECT 1")), ((1, 1), None)] {
            let mut assembler = RequestAssembler::default();
            let parse = Parse::new(None, "SELECT 1".into(), vec![]);
            push(&mut assembler, PgWireFrontendMessage::Parse(parse));
            push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new()));
            let (readies, errors) = answer;
            let at = Progress {
                sent: 1,
                readies,
                errors,
            };
            let b = bind("", "", vec![], vec![]);
            push_at(&mut assembler, PgWireFrontendMessage::Bind(b), at);
            push(
                &mut assembler,
                PgWireFrontendMessage::Execute(Execute::new(None, 0)),
            );
            let request = push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new())).unwrap();
            assert_eq!(executed_sql(&request), expected, "answer {answer:?}");
        }
    }

    #[test]
    fn a_name_prepared_by_sql_is_unknown_to_a_parse() {
        let mut assembler = RequestAssembler::default();
        assembler.note_sql_names(&["s7".to_owned()], false);
        parse_named(&mut assembler, "s7", "SELECT 1", Progress::default());
        let request = run_unnamed_portal(&mut assembler, "s7");
        assert_eq!(executed_sql(&request), None);
    }

    #[test]
    fn a_named_statement_parsed_again_is_unknown() {
        // The server refuses the second Parse (42P05) when the first succeeded, and accepts
        // it when the first failed: either statement may be the one that runs.
        let mut assembler = RequestAssembler::default();
        for sql in ["DELETE FROM patients", "SELECT 1"] {
            parse_named(&mut assembler, "s1", sql, Progress::default());
        }
        let request = run_unnamed_portal(&mut assembler, "s1");
        assert_eq!(executed_sql(&request), None);
    }

    #[test]
    fn portals_are_forgotten_past_the_cap() {
        let mut assembler = RequestAssembler::default();
        let parse = Parse::new(Some("s1".into()), "SELECT 1".into(), vec![]);
        push(&mut assembler, PgWireFrontendMessage::Parse(parse));
        for i in 0..=MAX_PORTALS {
            let b = bind(&format!("p{i}"), "s1", vec![], vec![]);
            push(&mut assembler, PgWireFrontendMessage::Bind(b));
        }
        assert!(assembler.portals.len() <= MAX_PORTALS);
        assert!(assembler.portals.contains_key(&format!("p{MAX_PORTALS}")));
    }

    #[test]
    fn a_batch_is_open_until_sync() {
        let mut assembler = RequestAssembler::default();
        assert!(!assembler.batch_open());
        let parse = Parse::new(None, "SELECT 1".into(), vec![]);
        push(&mut assembler, PgWireFrontendMessage::Parse(parse));
        assert!(assembler.batch_open());
        push(&mut assembler, PgWireFrontendMessage::Flush(Flush::new()));
        assert!(assembler.batch_open(), "flushed but not synced");
        push(&mut assembler, PgWireFrontendMessage::Sync(Sync::new()));
        assert!(!assembler.batch_open());
    }

    #[test]
    fn a_query_is_a_request_on_its_own() {
        let mut assembler = RequestAssembler::default();
        let request = push(
            &mut assembler,
            PgWireFrontendMessage::Query(Query::new("SELECT 1; SELECT 2".into())),
        )
        .unwrap();
        assert_eq!(request.end, RequestEnd::Query);
        assert_eq!(
            request.statements,
            vec![Statement::Simple {
                sql: "SELECT 1; SELECT 2".into()
            }]
        );
    }

    #[test]
    fn long_pipelines_are_handed_on_in_parts() {
        let mut assembler = RequestAssembler::default();
        let parse = Parse::new(None, "SELECT $1".into(), vec![]);
        push(&mut assembler, PgWireFrontendMessage::Parse(parse));
        let big = Bytes::from(vec![b'x'; PARTIAL_REQUEST_BYTES]);
        let b = bind("", "", vec![Some(big)], vec![]);
        let request = push(&mut assembler, PgWireFrontendMessage::Bind(b)).unwrap();
        assert_eq!(request.end, RequestEnd::Partial);
        assert!(!request.expects_ready_for_query());
    }

    fn frame_tags(mut frames: &[u8]) -> Vec<u8> {
        let mut tags = Vec::new();
        while frames.len() >= 5 {
            tags.push(frames[0]);
            let len = i32::from_be_bytes(frames[1..5].try_into().unwrap()) as usize;
            frames = &frames[1 + len..];
        }
        tags
    }
}
