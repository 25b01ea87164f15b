//! Results on their way back to the agent. Every server message is matched to the client
//! message it answers (see [`Step`]), so the rows, COPY data and error texts of a statement
//! that touches classified data are masked by that statement's plan, and result caps are
//! kept. A result's column provenance comes from its RowDescription (table OID and attribute
//! number, resolved through the catalog) together with the parser's lineage at the same
//! position; a column neither can trace is masked. Anything the tracker cannot place ends
//! the session rather than letting a value through unmasked.

mod caps;
mod layout;
mod steps;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::{
    copy::CopyOutResponse, data::RowDescription, response::NotificationResponse,
    PgWireBackendMessage,
};

use super::{
    encoding::ClientEncoding,
    errors::{sqlstate, ClientError},
    masking::{rewrite_data_row, scrub_error_fields, ColumnMask, CopyMasker, MaskError},
    pipeline::Pipeline,
};
use crate::policy::{mask::TokenKey, Catalog, MaskPlan, ResolvedColumn, TargetClassification};

use caps::Caps;
pub use layout::classified_column;
pub use steps::{plan_steps, Step};

/// What the masks of one request resolve against: the catalog snapshot and classification
/// its statements were decided with, and the tokenization key.
pub struct MaskContext {
    pub catalog: Option<Arc<Catalog>>,
    pub classes: Arc<TargetClassification>,
    pub key: Arc<TokenKey>,
}

/// What applies to the results of one allowed statement.
#[derive(Clone)]
pub struct ResultRule {
    pub plan: MaskPlan,
    /// Parser lineage per output column (None: it cannot be aligned with the columns).
    pub parsed: Option<Vec<ResolvedColumn>>,
    /// Result columns are checked and masked (the statement returns classified or
    /// untraceable values).
    pub mask_columns: bool,
    /// Errors and notices may quote classified values, so their texts are scrubbed.
    pub scrub_messages: bool,
    /// `COPY ... TO STDOUT`: how its text or CSV rows are written.
    pub copy: Option<crate::sql::CopyFacts>,
    pub context: Arc<MaskContext>,
}

// The context (catalog, key) stays out of logs.
impl std::fmt::Debug for ResultRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultRule")
            .field("rule", &self.plan.rule)
            .field("mask_columns", &self.mask_columns)
            .field("scrub_messages", &self.scrub_messages)
            .finish_non_exhaustive()
    }
}

impl ResultRule {
    /// Whether results need watching at all (masks, scrubbing or caps); asked before a rule
    /// is built, since most statements need none.
    pub fn is_needed(mask_columns: bool, scrub_messages: bool, plan: &MaskPlan) -> bool {
        mask_columns || scrub_messages || plan.max_rows.is_some() || plan.max_bytes.is_some()
    }
}

pub type Rule = Option<Arc<ResultRule>>;

/// What a notification's payload becomes on a target with classified data.
const MASKED_PAYLOAD: &str = "[payload masked by Tollgate]";

/// The rules of the statements one `Query` string holds, in order. Results beyond the
/// list (the server split the text differently) get `beyond`.
#[derive(Debug, Clone, Default)]
pub struct QueryRules {
    pub statements: Arc<[Rule]>,
    pub beyond: Rule,
}

impl QueryRules {
    fn get(&self, index: usize) -> &Rule {
        self.statements.get(index).unwrap_or(&self.beyond)
    }
}

/// Per statement of a request (Query, Parse, Execute, in order): what its results need.
pub enum StatementResults {
    Query(QueryRules),
    Parse,
    Execute(Rule),
}

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("a {0} message arrived where the gateway expected none")]
    Unexpected(&'static str),
    #[error("rows arrived for a masked result whose columns were not described")]
    Undescribed,
    #[error(transparent)]
    Mask(#[from] MaskError),
}

impl ResultError {
    /// What the agent is told before the session ends.
    pub fn to_client(&self) -> ClientError {
        ClientError::fatal(
            sqlstate::INTERNAL_ERROR,
            format!(
                "Tollgate could not mask a result safely ({self}); the session is closed so \
                 that nothing passes unmasked"
            ),
        )
    }
}

/// What the backend pump does with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Forward the frame as it is.
    Forward,
    /// The tracker wrote what replaces it (possibly nothing).
    Replaced,
}

/// The result in flight: its rule, how its values are masked, and how much has passed.
struct Flow {
    rule: Arc<ResultRule>,
    masks: Masks,
    caps: Caps,
}

enum Masks {
    /// Nothing in this result is masked.
    None,
    /// DataRow fields, per column.
    Rows(Vec<Option<ColumnMask>>),
    Copy(Box<CopyMasker>),
}

/// Matches server messages to the steps of the requests in flight (the session's
/// [`Pipeline`], which the server's ReadyForQuery and ErrorResponse move on) and masks
/// results.
#[derive(Default)]
pub struct ResultTracker {
    /// The first ReadyForQuery (end of startup) answers no request.
    started: bool,
    /// Columns from an injected Describe, for the Execute that follows it.
    described: Option<Masks>,
    flow: Option<Flow>,
}

impl ResultTracker {
    /// Handles one server message, whose values are in the session's client `encoding`;
    /// `Replaced` means what the agent gets was written to `out`. Called before the
    /// pipeline itself moves on from the message (a ReadyForQuery completes a request, an
    /// ErrorResponse skips to Sync there).
    pub fn on_message(
        &mut self,
        pipeline: &mut Pipeline,
        message: &PgWireBackendMessage,
        frame: &[u8],
        encoding: ClientEncoding,
        out: &mut BytesMut,
    ) -> Result<Handled, ResultError> {
        use PgWireBackendMessage as B;
        match message {
            B::ParseComplete(_) | B::BindComplete(_) | B::CloseComplete(_) => {
                expect(pipeline, |s| matches!(s, Step::Single), "completion")?;
                pipeline.pop_step();
                Ok(Handled::Forward)
            }
            B::ParameterDescription(_) => {
                expect(
                    pipeline,
                    |s| matches!(s, Step::DescribeStatement),
                    "ParameterDescription",
                )?;
                Ok(Handled::Forward)
            }
            B::RowDescription(description) => self.on_row_description(pipeline, description),
            B::NoData(_) => self.on_no_data(pipeline),
            B::DataRow(_) | B::CopyData(_) => self.on_row(pipeline, frame, encoding, out),
            B::CommandComplete(_) | B::EmptyQueryResponse(_) | B::PortalSuspended(_) => {
                self.on_result_end(pipeline, message, out)
            }
            B::CopyOutResponse(response) => self.on_copy_out(pipeline, response, encoding),
            B::CopyDone(_) => {
                if let Some(Flow {
                    masks: Masks::Copy(masker),
                    ..
                }) = &mut self.flow
                {
                    masker.finish(out)?;
                }
                Ok(Handled::Forward)
            }
            B::ErrorResponse(_) => {
                let handled = scrub_if_needed(pipeline, frame, out)?;
                self.on_error();
                Ok(handled)
            }
            B::NoticeResponse(_) => scrub_if_needed(pipeline, frame, out),
            // `pg_notify(channel, payload)` can carry any value, from any session, at any
            // time: no statement of this session explains it, so on a target with classified
            // data the payload is withheld.
            B::NotificationResponse(notification) if pipeline.protect() => {
                let masked = NotificationResponse::new(
                    notification.pid,
                    notification.channel.clone(),
                    MASKED_PAYLOAD.to_owned(),
                );
                PgWireBackendMessage::NotificationResponse(masked)
                    .encode(out)
                    .map_err(|_| ResultError::Unexpected("NotificationResponse"))?;
                Ok(Handled::Replaced)
            }
            B::ReadyForQuery(_) => {
                if !self.started {
                    self.started = true;
                    return Ok(Handled::Forward);
                }
                expect(
                    pipeline,
                    |s| matches!(s, Step::Sync | Step::Query { .. } | Step::FunctionCall(_)),
                    "ReadyForQuery",
                )?;
                self.end_result();
                Ok(Handled::Forward)
            }
            _ => Ok(Handled::Forward),
        }
    }

    /// A DataRow or CopyData frame, undecoded: rows are the hot path.
    pub fn on_row(
        &mut self,
        pipeline: &Pipeline,
        frame: &[u8],
        encoding: ClientEncoding,
        out: &mut BytesMut,
    ) -> Result<Handled, ResultError> {
        match frame.first() {
            Some(b'D') => self.on_data_row(pipeline, frame, encoding, out),
            Some(b'd') => self.on_copy_data(frame.get(5..).unwrap_or_default(), out),
            _ => Err(ResultError::Unexpected("row")),
        }
    }

    /// A FunctionCallResponse (`V`, undecoded: pgwire does not model it). Where the call's
    /// rule masks its result, the value is withheld (NULL): it has no column type to mask by.
    pub fn on_function_result(
        &mut self,
        pipeline: &Pipeline,
        out: &mut BytesMut,
    ) -> Result<Handled, ResultError> {
        let Some(Step::FunctionCall(rule)) = pipeline.step() else {
            return Err(ResultError::Unexpected("FunctionCallResponse"));
        };
        if !rule.as_ref().is_some_and(|r| r.mask_columns) {
            return Ok(Handled::Forward);
        }
        out.extend_from_slice(&[b'V', 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]);
        Ok(Handled::Replaced)
    }

    /// An error (the server's, or a denial the gateway answers itself) ends the result in
    /// progress; the pipeline skips what the server skips.
    pub fn on_error(&mut self) {
        self.end_result();
        self.described = None;
    }

    fn on_row_description(
        &mut self,
        pipeline: &mut Pipeline,
        description: &RowDescription,
    ) -> Result<Handled, ResultError> {
        match pipeline.step_mut() {
            Some(Step::DescribeStatement | Step::DescribePortal(None)) => {
                pipeline.pop_step();
                Ok(Handled::Forward)
            }
            Some(Step::DescribePortal(Some(rule))) => {
                let (masks, classified) = layout::row_masks(rule, &description.fields);
                self.described = Some(masks);
                pipeline.pop_step();
                pipeline.note_classified(classified);
                Ok(Handled::Replaced)
            }
            Some(Step::Query { rules, index }) => {
                if let Some(rule) = rules.get(*index).clone() {
                    let (masks, classified) = layout::row_masks(&rule, &description.fields);
                    self.flow = Some(Flow::new(rule, masks));
                    pipeline.note_classified(classified);
                }
                Ok(Handled::Forward)
            }
            _ => Err(ResultError::Unexpected("RowDescription")),
        }
    }

    fn on_no_data(&mut self, pipeline: &mut Pipeline) -> Result<Handled, ResultError> {
        match pipeline.pop_step() {
            Some(Step::DescribeStatement | Step::DescribePortal(None)) => Ok(Handled::Forward),
            Some(Step::DescribePortal(Some(_))) => {
                self.described = Some(Masks::None);
                Ok(Handled::Replaced)
            }
            _ => Err(ResultError::Unexpected("NoData")),
        }
    }

    /// The flow of an Execute starts with its first result message.
    fn start_execute_flow(&mut self, pipeline: &Pipeline) -> Result<(), ResultError> {
        if self.flow.is_some() {
            return Ok(());
        }
        let Some(Step::Execute(Some(rule))) = pipeline.step() else {
            return Ok(());
        };
        let masks = match self.described.take() {
            Some(masks) => masks,
            None if rule.mask_columns => return Err(ResultError::Undescribed),
            None => Masks::None,
        };
        self.flow = Some(Flow::new(rule.clone(), masks));
        Ok(())
    }

    fn on_data_row(
        &mut self,
        pipeline: &Pipeline,
        frame: &[u8],
        encoding: ClientEncoding,
        out: &mut BytesMut,
    ) -> Result<Handled, ResultError> {
        match pipeline.step() {
            Some(Step::Execute(_)) => self.start_execute_flow(pipeline)?,
            Some(Step::Query { .. }) => {}
            _ => return Err(ResultError::Unexpected("DataRow")),
        }
        let Some(flow) = &mut self.flow else {
            // A Query statement whose rule needs nothing.
            if current_rule(pipeline).is_some_and(|r| r.mask_columns) {
                return Err(ResultError::Undescribed);
            }
            return Ok(Handled::Forward);
        };
        if !flow.caps.admit(frame.len()) {
            return Ok(Handled::Replaced);
        }
        match &flow.masks {
            Masks::Rows(columns) => {
                rewrite_data_row(frame, columns, &flow.rule.context.key, encoding, out)?;
                Ok(Handled::Replaced)
            }
            Masks::None => Ok(Handled::Forward),
            Masks::Copy(_) => Err(ResultError::Unexpected("DataRow")),
        }
    }

    fn on_result_end(
        &mut self,
        pipeline: &mut Pipeline,
        message: &PgWireBackendMessage,
        out: &mut BytesMut,
    ) -> Result<Handled, ResultError> {
        if matches!(pipeline.step(), Some(Step::Execute(_))) {
            self.start_execute_flow(pipeline)?;
        }
        let handled = match (&self.flow, message) {
            (Some(flow), PgWireBackendMessage::CommandComplete(complete))
                if flow.caps.truncated() =>
            {
                flow.caps
                    .write_truncation(&flow.rule.plan.rule, &complete.tag, out);
                Handled::Replaced
            }
            _ => Handled::Forward,
        };
        self.end_result();
        match pipeline.step_mut() {
            Some(Step::Execute(_)) => {
                pipeline.pop_step();
            }
            Some(Step::Query { index, .. })
                if !matches!(message, PgWireBackendMessage::PortalSuspended(_)) =>
            {
                *index += 1;
            }
            _ => return Err(ResultError::Unexpected("command completion")),
        }
        Ok(handled)
    }

    fn on_copy_out(
        &mut self,
        pipeline: &mut Pipeline,
        response: &CopyOutResponse,
        encoding: ClientEncoding,
    ) -> Result<Handled, ResultError> {
        if !matches!(pipeline.step(), Some(Step::Execute(_) | Step::Query { .. })) {
            return Err(ResultError::Unexpected("CopyOutResponse"));
        }
        // COPY answers an Execute without a row description.
        self.described = None;
        if let Some(rule) = current_rule(pipeline).cloned() {
            let masks = match rule.mask_columns {
                true => {
                    let (masker, classified) = layout::copy_masker(&rule, response)?;
                    pipeline.note_classified(classified);
                    Masks::Copy(Box::new(masker.in_encoding(encoding)))
                }
                false => Masks::None,
            };
            self.flow = Some(Flow::new(rule, masks));
        }
        Ok(Handled::Forward)
    }

    fn on_copy_data(&mut self, data: &[u8], out: &mut BytesMut) -> Result<Handled, ResultError> {
        let Some(flow) = &mut self.flow else {
            return Ok(Handled::Forward);
        };
        // The server sends one row per CopyData message.
        if !flow.caps.admit(data.len()) {
            return Ok(Handled::Replaced);
        }
        match &mut flow.masks {
            Masks::Copy(masker) => {
                masker.push(data, out)?;
                Ok(Handled::Replaced)
            }
            Masks::None => Ok(Handled::Forward),
            Masks::Rows(_) => Err(ResultError::Unexpected("CopyData")),
        }
    }

    fn end_result(&mut self) {
        self.flow = None;
    }
}

fn expect(
    pipeline: &Pipeline,
    fits: impl Fn(&Step) -> bool,
    what: &'static str,
) -> Result<(), ResultError> {
    match pipeline.step() {
        Some(step) if fits(step) => Ok(()),
        _ => Err(ResultError::Unexpected(what)),
    }
}

/// The rule of the result the next step is producing.
fn current_rule(pipeline: &Pipeline) -> Option<&Arc<ResultRule>> {
    match pipeline.step()? {
        Step::Execute(rule) | Step::FunctionCall(rule) => rule.as_ref(),
        Step::Query { rules, index } => rules.get(*index).as_ref(),
        _ => None,
    }
}

fn scrub_if_needed(
    pipeline: &Pipeline,
    frame: &[u8],
    out: &mut BytesMut,
) -> Result<Handled, ResultError> {
    if !current_rule(pipeline).is_some_and(|r| r.scrub_messages) {
        return Ok(Handled::Forward);
    }
    scrub_error_fields(frame, out)?;
    Ok(Handled::Replaced)
}

impl Flow {
    fn new(rule: Arc<ResultRule>, masks: Masks) -> Self {
        Self {
            caps: Caps::new(&rule.plan),
            rule,
            masks,
        }
    }
}
