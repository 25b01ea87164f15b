//! The `FunctionCall` message (libpq's large-object API, `psql`'s `\lo_*`, drivers' large
//! object classes): a function named by OID, with arguments. Policy decides it as the
//! `SELECT` of that function it amounts to, so `functions` rules apply (`lo_import` and
//! `lo_export` stay deniable); its result is masked by the same rule. A denied call never
//! reaches the server: a stand-in the server rejects takes its place, as for statements.

use bytes::BytesMut;
use pgwire::messages::{simplequery::Query, PgWireFrontendMessage};

use super::{pumps::PumpError, SessionParts};
use crate::postgres::{
    codec::UNREADABLE,
    enforce::SessionEnforcement,
    errors::{sqlstate, ClientError},
    hooks::RequestVerdict,
    names::SessionNames,
    pipeline::Sent,
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

/// The function a call names: a built-in one by its fixed OID, any other as the session's
/// database names it now (through the catalog, with a policy in force).
async fn function_named(
    enforcement: Option<&SessionEnforcement>,
    oid: u32,
) -> Option<(String, String)> {
    if let Some((_, name)) = BUILTIN_FUNCTIONS.iter().find(|(known, _)| *known == oid) {
        return Some(("pg_catalog".to_owned(), (*name).to_owned()));
    }
    enforcement?.function_name(oid).await
}

/// The statement a call amounts to; a function Tollgate cannot name is unreadable, so it is
/// decided as an unparsed statement.
fn call_sql(oid: u32, arguments: usize, named: Option<(&str, &str)>) -> String {
    match named {
        Some((schema, name)) => {
            let placeholders: Vec<String> = (1..=arguments).map(|n| format!("${n}")).collect();
            let (schema, name) = (identifier(schema), identifier(name));
            format!("SELECT {schema}.{name}({})", placeholders.join(", "))
        }
        None => {
            format!("{UNREADABLE}FunctionCall of function OID {oid}, which Tollgate cannot name")
        }
    }
}

/// A name as SQL spells it: quoted unless it is a plain lower-case identifier.
fn identifier(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true => name.to_owned(),
        false => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Decides a FunctionCall, records it and enters it in the session's pipeline with the
/// answers it gets; returns the frames to forward (the call itself, or the stand-in of a
/// denied one).
pub async fn forward(
    parts: &SessionParts<'_>,
    enforcement: Option<&mut SessionEnforcement>,
    names: &mut SessionNames,
    frame: BytesMut,
    oid: u32,
    arguments: usize,
) -> Result<BytesMut, PumpError> {
    let named = function_named(enforcement.as_deref(), oid).await;
    let named = named
        .as_ref()
        .map(|(schema, name)| (schema.as_str(), name.as_str()));
    let mut request = as_query(&call_sql(oid, arguments, named));
    // Answered by one ReadyForQuery, like a simple Query.
    let mut sent = Sent {
        marks: names.marks(),
        ..Sent::new(RequestEnd::Query)
    };
    let frames = match enforcement {
        Some(enforcement) => {
            let mut inspection = enforcement
                .inspect(&mut request, names, parts.state.position())
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
                let mut replacements = inspection.replacements;
                let mut denials = inspection.denials;
                if !inspection.held.is_empty() {
                    // A fast-path call cannot wait for approval: refused, as policy would.
                    let (standins, refused) =
                        enforcement.refuse_held(&request, &inspection.held, &held_call_refusal());
                    enforcement.held_decided(false);
                    replacements.extend(standins);
                    denials.extend(refused);
                }
                inspection.denials = denials;
                request.substitute(replacements);
                (Step::Query { rules, index: 0 }, request.frames.split())
            };
            sent.steps = vec![step];
            sent.verdicts = inspection.verdicts;
            sent.denials = inspection.denials;
            sent.protect = inspection.protect;
            frames
        }
        None => frame,
    };
    match parts
        .request_hook
        .on_request(parts.session, &request, &sent.verdicts)
    {
        RequestVerdict::Forward => {}
    }
    let mut refused = Vec::new();
    super::pumps::record_request(parts, &request, &mut sent, &mut refused).await;
    let frames = match refused.pop() {
        // Not recorded: the call's stand-in Query is refused in its place.
        Some((_, standin)) => {
            let rules = QueryRules::default();
            sent.steps = vec![Step::Query { rules, index: 0 }];
            standin
        }
        None => frames,
    };
    parts.state.request_sent(sent);
    Ok(frames)
}

fn held_call_refusal() -> ClientError {
    ClientError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "Tollgate: this function call needs a person's approval, which only a statement can \
         wait for: call the function in a SELECT",
    )
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
    }
}
