//! Statements a rule sends for approval: what an approver is shown of each (never a literal),
//! and the stand-ins that refuse them when the answer is no.

use std::sync::Arc;

use super::{replacement, Denials, SessionEnforcement, Standins};
use crate::{
    audit::event::ClassifiedColumn,
    policy::derived::{Derived, DerivedColumn, DerivedRecord, SettingsRecord, TEMP_SCHEMA},
    postgres::{
        errors::ClientError,
        request::{Request, Statement},
        results::{classified_column, StatementResults},
    },
    sql::{FactsCache, OutputItem},
};

/// A statement that runs only once approved.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldStatement {
    /// Its index in the request.
    pub index: usize,
    /// The rule that asked for approval.
    pub rule: Arc<str>,
    /// The relations it reads, writes or defines.
    pub tables: Vec<String>,
    /// The classified columns it returns, with the masks they get if it runs.
    pub classified: Vec<ClassifiedColumn>,
    /// How long it waits, when its rule says.
    pub timeout: Option<std::time::Duration>,
    /// The planner's estimate, when its rule (`rows_over`) asked for one already.
    pub row_estimate: Option<u64>,
}

impl HeldStatement {
    pub(super) fn of(
        index: usize,
        rule: Arc<str>,
        statement: &Statement,
        results: &StatementResults,
        facts: &FactsCache,
    ) -> Self {
        let analysis = statement.sql().map(|sql| facts.get(sql));
        let statements = match analysis.as_ref().map(|a| a.as_ref()) {
            Some(Ok(analysis)) => analysis.statements.as_slice(),
            _ => &[],
        };
        let mut tables: Vec<String> = Vec::new();
        for facts in statements {
            for relation in facts
                .reads
                .iter()
                .chain(&facts.writes)
                .chain(&facts.ddl_objects)
            {
                let name = relation.to_string();
                if !tables.contains(&name) {
                    tables.push(name);
                }
            }
        }
        let rules: Vec<_> = match results {
            StatementResults::Query(rules) => rules.statements.iter().collect(),
            StatementResults::Execute(rule) => vec![rule],
            StatementResults::Parse => Vec::new(),
        };
        let mut classified = Vec::new();
        for (position, rule) in rules.into_iter().enumerate() {
            let Some(rule) = rule else { continue };
            let Some(columns) = &rule.parsed else {
                continue;
            };
            // The parser's names, when they line up with the columns.
            let names = statements
                .get(position)
                .map(|f| &f.outputs)
                .filter(|outputs| outputs.len() == columns.len());
            for (at, column) in columns.iter().enumerate() {
                let name = match names.and_then(|n| n.get(at)) {
                    Some(OutputItem::Column { name, .. }) => name.clone(),
                    _ => format!("column {}", at + 1),
                };
                classified.extend(classified_column(
                    &name,
                    column,
                    rule.plan.method_for(column),
                ));
            }
        }
        Self {
            index,
            rule,
            tables,
            classified,
            timeout: None,
            row_estimate: None,
        }
    }
}

/// What statements waiting for approval would derive. This session masks by it at once (a
/// later statement of the same request may read what they store); the store, and so every
/// other session, learns of it only once they are approved: a statement that never ran
/// classifies nothing.
#[derive(Default)]
pub(super) struct Provisional {
    pub columns: Derived,
    pub records: Vec<DerivedRecord>,
    pub settings: Option<SettingsRecord>,
}

impl Provisional {
    /// Notes what a held statement stores; true when this session's classification changed.
    pub fn hold(&mut self, stored: &[DerivedColumn], records: Vec<DerivedRecord>) -> bool {
        self.records.extend(records);
        self.columns.add(stored.iter().cloned())
    }
}

impl SessionEnforcement {
    /// The statements that waited are decided: approved, what they derive is kept (the
    /// store records it for every session); refused, it is dropped.
    pub fn held_decided(&mut self, approved: bool) {
        let provisional = std::mem::take(&mut self.provisional);
        if approved {
            let temporary = provisional
                .columns
                .columns()
                .filter(|c| c.schema == TEMP_SCHEMA);
            self.temporary.add(temporary.cloned());
            let derived = &self.shared.derived;
            let recorded = match provisional.records.is_empty() {
                true => Ok(()),
                false => derived.record(provisional.records),
            };
            let settings = provisional
                .settings
                .map_or(Ok(()), |s| derived.record_settings(s));
            if let Err(error) = recorded.and(settings) {
                tracing::error!(event = "classified.store_failed", %error, "derived classification not saved");
            }
        }
        if !provisional.columns.is_empty() {
            let loaded = self.shared.store.current();
            let catalog = self.recent.context().catalog.clone();
            self.reclassify(&loaded, catalog);
        }
    }

    /// Refuses the held statements of a request with `error` (denied, timed out, withdrawn):
    /// each is replaced by a stand-in the server rejects, as a denied statement is.
    pub fn refuse_held(
        &mut self,
        request: &Request,
        held: &[HeldStatement],
        error: &ClientError,
    ) -> (Standins, Denials) {
        held.iter()
            .map(|statement| {
                let id = self.next_denial;
                self.next_denial = self.next_denial.wrapping_add(1);
                let standin = replacement(&request.statements[statement.index], id);
                ((statement.index, standin), (id, error.clone()))
            })
            .unzip()
    }
}
