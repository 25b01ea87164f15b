//! Frontend messages gathered into whole requests: a `Query`, or extended-protocol messages up
//! to `Sync` or `Flush`. Each request carries what policy needs (statement text, bound
//! parameters, the portal an `Execute` runs) and the exact bytes to forward. What the
//! messages name is kept in the session's one table of names.

use std::{ops::Range, sync::Arc};

use super::names::{Portal, SessionNames};

use bytes::BytesMut;
use pgwire::messages::{extendedquery::Bind, PgWireFrontendMessage};

/// Extended-protocol messages buffered beyond this are handed on as a partial request, so a
/// long pipeline without `Sync` cannot grow without bound.
const PARTIAL_REQUEST_BYTES: usize = 1024 * 1024;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// A simple `Query` (or a `FunctionCall`): answered by exactly one ReadyForQuery.
    Query,
    /// `Sync`: answered by exactly one ReadyForQuery.
    Sync,
    /// `Flush`: the client wants what is pending, no ReadyForQuery.
    Flush,
    /// Messages handed on before their Sync or Flush: nothing more was readable, or the
    /// buffer reached [`PARTIAL_REQUEST_BYTES`].
    Partial,
}

impl RequestEnd {
    pub fn answered_by_ready(self) -> bool {
        matches!(self, RequestEnd::Query | RequestEnd::Sync)
    }
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
        /// through it, forgotten, or prepared with SQL-level PREPARE.
        sql: Option<Sql>,
        parameters: Vec<Parameter>,
        max_rows: i32,
    },
}

impl Statement {
    /// The text it runs, when the gateway knows it.
    pub fn sql(&self) -> Option<&str> {
        match self {
            Self::Simple { sql } | Self::Prepare { sql, .. } => Some(sql),
            Self::Execute { sql, .. } => sql.as_deref(),
        }
    }
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
}

impl Request {
    pub fn expects_ready_for_query(&self) -> bool {
        self.end.answered_by_ready()
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

/// Gathers messages into requests, noting what they name in the session's table.
#[derive(Default)]
pub struct RequestAssembler {
    frames: BytesMut,
    statements: Vec<Statement>,
    spans: Vec<Range<usize>>,
    /// Extended-protocol messages were handed on (at Flush, or in part) without a Sync yet.
    unsynced: bool,
}

impl RequestAssembler {
    /// Adds one request message; returns the request once it is complete.
    pub fn push(
        &mut self,
        frame: BytesMut,
        message: &PgWireFrontendMessage,
        names: &mut SessionNames,
    ) -> Option<Request> {
        use PgWireFrontendMessage as F;
        let start = self.frames.len();
        self.frames.unsplit(frame);
        let span = start..self.frames.len();
        let statements_before = self.statements.len();
        let end = match message {
            F::Query(query) => {
                names.simple_query();
                self.statements.push(Statement::Simple {
                    sql: Sql::from(query.query.as_str()),
                });
                Some(RequestEnd::Query)
            }
            F::Parse(parse) => {
                let name = parse.name.clone().unwrap_or_default();
                let sql = Sql::from(parse.query.as_str());
                names.parse(&name, sql.clone());
                self.statements.push(Statement::Prepare { name, sql });
                None
            }
            F::Bind(bind) => {
                bind_portal(bind, names);
                None
            }
            F::Execute(execute) => {
                let portal = execute.name.clone().unwrap_or_default();
                let (sql, parameters) = match names.portal(&portal) {
                    Some(Portal::Bound { sql, parameters }) => (sql, parameters),
                    Some(Portal::Cursor(_)) | None => (None, Vec::new()),
                };
                self.statements.push(Statement::Execute {
                    portal,
                    sql,
                    parameters,
                    max_rows: execute.max_rows,
                });
                None
            }
            F::Close(close) => {
                let name = close.name.as_deref().unwrap_or_default();
                names.close(close.target_type == b'S', name);
                None
            }
            F::Sync(_) => {
                names.sync();
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
        }
    }

    /// An extended-protocol batch is open: messages are pending or were handed on without a
    /// Sync. The server's answers to it end with no ReadyForQuery of their own.
    pub fn batch_open(&self) -> bool {
        self.unsynced || !self.frames.is_empty()
    }
}

fn bind_portal(bind: &Bind, names: &mut SessionNames) {
    let portal = bind.portal_name.as_deref().unwrap_or_default();
    let statement = bind.statement_name.as_deref().unwrap_or_default();
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
    names.bind(portal, statement, parameters);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pgwire::messages::{
        extendedquery::{Execute, Flush, Parse, Sync},
        simplequery::Query,
    };

    #[derive(Default)]
    struct Client {
        assembler: RequestAssembler,
        names: SessionNames,
    }

    impl Client {
        fn push(&mut self, message: PgWireFrontendMessage) -> Option<Request> {
            let mut frame = BytesMut::new();
            message.encode(&mut frame).unwrap();
            self.assembler.push(frame, &message, &mut self.names)
        }
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
        let mut client = Client::default();
        let parse = Parse::new(Some("s1".into()), "SELECT $1::int".into(), vec![]);
        assert!(client.push(PgWireFrontendMessage::Parse(parse)).is_none());
        let b = bind(
            "p1",
            "s1",
            vec![Some(Bytes::from_static(b"42")), None],
            vec![],
        );
        assert!(client.push(PgWireFrontendMessage::Bind(b)).is_none());
        let execute = Execute::new(Some("p1".into()), 10);
        assert!(client
            .push(PgWireFrontendMessage::Execute(execute))
            .is_none());
        let request = client
            .push(PgWireFrontendMessage::Sync(Sync::new()))
            .unwrap();
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

    #[test]
    fn binary_formats_are_tracked_per_parameter() {
        let mut client = Client::default();
        let parse = Parse::new(None, "SELECT $1, $2".into(), vec![]);
        client.push(PgWireFrontendMessage::Parse(parse));
        let values = vec![
            Some(Bytes::from_static(b"a")),
            Some(Bytes::from_static(&[0, 1])),
        ];
        client.push(PgWireFrontendMessage::Bind(bind(
            "",
            "",
            values,
            vec![0, 1],
        )));
        client.push(PgWireFrontendMessage::Execute(Execute::new(None, 0)));
        let request = client
            .push(PgWireFrontendMessage::Sync(Sync::new()))
            .unwrap();
        let Statement::Execute { parameters, .. } = &request.statements[1] else {
            panic!("expected an Execute")
        };
        assert!(!parameters[0].binary);
        assert!(parameters[1].binary);
    }

    #[test]
    fn a_batch_is_open_until_sync() {
        let mut client = Client::default();
        assert!(!client.assembler.batch_open());
        let parse = Parse::new(None, "SELECT 1".into(), vec![]);
        client.push(PgWireFrontendMessage::Parse(parse));
        assert!(client.assembler.batch_open());
        client.push(PgWireFrontendMessage::Flush(Flush::new()));
        assert!(client.assembler.batch_open(), "flushed but not synced");
        client.push(PgWireFrontendMessage::Sync(Sync::new()));
        assert!(!client.assembler.batch_open());
    }

    #[test]
    fn a_query_is_a_request_on_its_own() {
        let mut client = Client::default();
        let query = Query::new("SELECT 1; SELECT 2".into());
        let request = client.push(PgWireFrontendMessage::Query(query)).unwrap();
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
        let mut client = Client::default();
        let parse = Parse::new(None, "SELECT $1".into(), vec![]);
        client.push(PgWireFrontendMessage::Parse(parse));
        let big = Bytes::from(vec![b'x'; PARTIAL_REQUEST_BYTES]);
        let b = bind("", "", vec![Some(big)], vec![]);
        let request = client.push(PgWireFrontendMessage::Bind(b)).unwrap();
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
