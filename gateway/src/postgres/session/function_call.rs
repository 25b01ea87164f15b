//! The `FunctionCall` message (libpq's large-object API, `psql`'s `\lo_*`, drivers' large
//! object classes): a function named by OID, with arguments. Policy decides it as the
//! `SELECT` of that function it amounts to, so `functions` rules apply (`lo_import` and
//! `lo_export` stay deniable); its result is masked by the same rule. A denied call never
//! reaches the server: a stand-in the server rejects takes its place, as for statements.

use bytes::BytesMut;
use pgwire::messages::{simplequery::Query, PgWireFrontendMessage};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    pumps::{send, Expectation, PumpError},
    SessionParts,
};
use crate::postgres::{
    codec::UNREADABLE,
    enforce::SessionEnforcement,
    hooks::RequestVerdict,
    request::{Request, RequestEnd, Statement},
    results::{QueryRules, StatementResults, Step},
};

/// Built-in functions clients call by OID (OIDs below 16384 are fixed by PostgreSQL's own
/// catalog, the same in every database): the large-object API. Checked against a real
/// server's `pg_proc` by the privileged protocol tests.
pub const BUILTIN_FUNCTIONS: [(u32, &str); 20] = [
    (715, "lo_create"),
    (764, "lo_import"),
    (765, "lo_export"),
    (767, "lo_import"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
    (3457, "lo_from_bytea"),
    (3458, "lo_get"),
    (3459, "lo_get"),
    (3460, "lo_put"),
];

/// The statement a call amounts to; a function Tollgate cannot name is unreadable, so it is
/// decided as an unparsed statement.
pub fn call_sql(oid: u32, arguments: usize) -> String {
    match BUILTIN_FUNCTIONS.iter().find(|(known, _)| *known == oid) {
        Some((_, name)) => {
            let placeholders: Vec<String> = (1..=arguments).map(|n| format!("${n}")).collect();
            format!("SELECT pg_catalog.{name}({})", placeholders.join(", "))
        }
        None => {
            format!("{UNREADABLE}FunctionCall of function OID {oid}, which Tollgate cannot name")
        }
    }
}

/// Decides a FunctionCall, records it and tells the backend pump what answers it gets;
/// returns the frames to forward (the call itself, or the stand-in of a denied one).
pub async fn forward(
    parts: &SessionParts<'_>,
    enforcement: Option<&mut SessionEnforcement>,
    expectations: &UnboundedSender<Expectation>,
    frame: BytesMut,
    oid: u32,
    arguments: usize,
) -> Result<BytesMut, PumpError> {
    let mut request = as_query(&call_sql(oid, arguments));
    let (verdicts, expectation, frames) = match enforcement {
        Some(enforcement) => {
            let inspection = enforcement
                .inspect(&mut request, parts.denials, parts.state.progress())
                .await
                .map_err(PumpError::Client)?;
            let allowed = inspection
                .verdicts
                .first()
                .is_some_and(|v| v.decision == "allow");
            let (step, frames) = if allowed {
                let rule = match inspection.results.into_iter().next() {
                    Some(StatementResults::Query(rules)) => rules.statements.first().cloned(),
                    _ => None,
                };
                (Step::FunctionCall(rule.flatten()), frame)
            } else {
                // The stand-in is a Query the server answers with an error and ReadyForQuery.
                let rules = QueryRules::default();
                (Step::Query { rules, index: 0 }, request.frames.split())
            };
            let expectation = Expectation {
                steps: vec![step],
                protect: inspection.protect,
            };
            (inspection.verdicts, Some(expectation), frames)
        }
        None => (Vec::new(), None, frame),
    };
    match parts
        .request_hook
        .on_request(parts.session, &request, &verdicts)
    {
        RequestVerdict::Forward => {}
    }
    // Answered by one ReadyForQuery, like a simple Query.
    parts.state.request_sent(true);
    if let Some(expectation) = expectation {
        send(expectations, expectation)?;
    }
    Ok(frames)
}

/// The call as the simple Query it amounts to, for policy and the record.
fn as_query(sql: &str) -> Request {
    let mut frames = BytesMut::new();
    PgWireFrontendMessage::Query(Query::new(sql.to_owned()))
        .encode(&mut frames)
        .expect("a Query message encodes");
    let whole = 0..frames.len();
    Request {
        end: RequestEnd::Query,
        statements: vec![Statement::Simple { sql: sql.into() }],
        spans: std::iter::once(whole).collect(),
        frames,
        portals_bound: Vec::new(),
    }
}
