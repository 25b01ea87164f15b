//! The answers a request will get, one step per client message that the server answers, in
//! order. An Execute whose rows must be masked gets a Describe of its portal inserted just
//! before it: the server's answer gives the columns' origins, types and formats, and is not
//! forwarded (the client did not ask for it).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::{QueryRules, ResultRule, Rule, StatementResults};
use crate::postgres::request::Request;

#[derive(Debug, Clone)]
pub enum Step {
    /// ParseComplete, BindComplete or CloseComplete.
    Single,
    /// ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData. With a rule it was inserted by the gateway: the answer
    /// describes the rows of the Execute that follows.
    DescribePortal(Option<Arc<ResultRule>>),
    /// Rows until CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute(Rule),
    /// Each statement's results in turn, until ReadyForQuery.
    Query {
        rules: QueryRules,
        index: usize,
    },
    /// A FunctionCall: its FunctionCallResponse (or an error), then ReadyForQuery.
    FunctionCall(Rule),
    Sync,
}

/// The steps of `request`, whose statements (Query, Parse, Execute messages, in order) have
/// `results`; inserts the Describe messages masking needs.
pub fn plan_steps(request: &mut Request, results: Vec<StatementResults>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut results = results.into_iter();
    let mut rebuilt: Option<BytesMut> = None;
    let frames = &request.frames;
    let mut at = 0;
    while at + 5 <= frames.len() {
        let tag = frames[at];
        let len = i32::from_be_bytes([
            frames[at + 1],
            frames[at + 2],
            frames[at + 3],
            frames[at + 4],
        ]);
        let end = at + 1 + usize::try_from(len).unwrap_or(0).max(4);
        let frame = &frames[at..end.min(frames.len())];
        match tag {
            b'P' => {
                results.next();
                steps.push(Step::Single);
            }
            b'B' | b'C' => steps.push(Step::Single),
            b'D' if frame.get(5) == Some(&b'S') => steps.push(Step::DescribeStatement),
            b'D' => steps.push(Step::DescribePortal(None)),
            b'E' => {
                let rule = match results.next() {
                    Some(StatementResults::Execute(rule)) => rule,
                    _ => None,
                };
                if let Some(rule) = rule.as_ref().filter(|r| r.mask_columns) {
                    let out = rebuilt.get_or_insert_with(|| {
                        let mut out = BytesMut::with_capacity(frames.len() + 64);
                        out.extend_from_slice(&frames[..at]);
                        out
                    });
                    put_describe_portal(portal_of(frame), out);
                    steps.push(Step::DescribePortal(Some(rule.clone())));
                }
                steps.push(Step::Execute(rule));
            }
            b'Q' => {
                let rules = match results.next() {
                    Some(StatementResults::Query(rules)) => rules,
                    _ => QueryRules::default(),
                };
                steps.push(Step::Query { rules, index: 0 });
            }
            b'S' => steps.push(Step::Sync),
            // Flush is not answered.
            _ => {}
        }
        if let Some(out) = &mut rebuilt {
            out.extend_from_slice(frame);
        }
        at = end;
    }
    if let Some(out) = rebuilt {
        request.frames = out;
        request.spans.clear();
    }
    steps
}

/// The portal name of an Execute frame (`E`, length, name, NUL, max rows).
fn portal_of(frame: &[u8]) -> &[u8] {
    let body = frame.get(5..).unwrap_or_default();
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    &body[..end]
}

fn put_describe_portal(portal: &[u8], out: &mut BytesMut) {
    out.put_u8(b'D');
    out.put_i32(4 + 1 + portal.len() as i32 + 1);
    out.put_u8(b'P');
    out.put_slice(portal);
    out.put_u8(0);
}
