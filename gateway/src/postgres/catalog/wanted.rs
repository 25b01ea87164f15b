//! The relation names a request's statements look up when they are decided (what each text
//! names, and what the SQL-level prepared statements and cursors it runs name), and what its
//! own DDL may change before its later statements run.

use std::sync::Arc;

use crate::{
    policy::Catalog,
    postgres::request::Request,
    sql::{FactsCache, RelationName, StatementFacts, StatementKind},
};

/// What one request needs of the catalog.
#[derive(Debug, Default)]
pub struct RequestNames {
    /// Names to have in the catalog before deciding it.
    pub wanted: Vec<RelationName>,
    /// What its statements may change on the server.
    pub changes: Changes,
    /// It ends a transaction (COMMIT, ROLLBACK): what the session changed in it may now
    /// show differently to the gateway's side connection.
    pub ends_transaction: bool,
}

/// DDL that changes at most the relations it names (or none): forgetting those names, what
/// reads through them and what was found absent is enough. Any other DDL (schemas, types,
/// extensions, ownership, ...) may change many relations at once, and the cache starts over.
pub(super) const PRECISE_DDL: [&str; 24] = [
    "CREATE TABLE",
    "CREATE TABLE AS",
    "CREATE VIEW",
    "CREATE MATERIALIZED VIEW",
    "CREATE INDEX",
    "CREATE SEQUENCE",
    "CREATE TRIGGER",
    "CREATE POLICY",
    "CREATE FUNCTION",
    "CREATE PROCEDURE",
    "CREATE ROLE",
    "ALTER TABLE",
    "ALTER VIEW",
    "ALTER INDEX",
    "ALTER POLICY",
    "ALTER ROLE",
    "COMMENT",
    "DROP TABLE",
    "DROP VIEW",
    "DROP MATERIALIZED VIEW",
    "DROP INDEX",
    "DROP SEQUENCE",
    "DROP TRIGGER",
    "DROP POLICY",
];

/// Names beyond this in one set of changes count as everything.
const MAX_CHANGED_NAMES: usize = 256;

/// Relations that DDL (or code Tollgate cannot read) may change: until the server has run
/// it, the catalog cannot say what they are, so they are unknown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Relation names (any schema).
    pub names: Vec<String>,
    pub everything: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.everything
    }

    pub fn add(&mut self, other: &Changes) {
        self.everything |= other.everything;
        for name in &other.names {
            if !self.names.contains(name) {
                self.names.push(name.clone());
            }
        }
        if self.names.len() > MAX_CHANGED_NAMES {
            self.names.clear();
            self.everything = true;
        }
    }
}

/// What `request` needs. Texts are analysed through the shared cache, where the decision
/// finds them again.
pub fn wanted_names(
    request: &Request,
    facts: &FactsCache,
    held_by: &dyn Fn(&StatementFacts) -> Option<Arc<StatementFacts>>,
) -> RequestNames {
    let mut names = RequestNames::default();
    let mut last: Option<&str> = None;
    for statement in &request.statements {
        let Some(sql) = statement.sql() else {
            continue;
        };
        // An Execute usually runs the text just parsed.
        if last == Some(sql) {
            continue;
        }
        last = Some(sql);
        let analysis = facts.get(sql);
        let Ok(analysis) = analysis.as_ref() else {
            // It may be DDL the parser cannot read.
            names.changes.everything = true;
            continue;
        };
        for facts in &analysis.statements {
            Catalog::names_needed(facts, &mut names.wanted);
            // What an EXECUTE or FETCH runs through a name.
            if let Some(held) = held_by(facts) {
                Catalog::names_needed(&held, &mut names.wanted);
            }
            note_changes(facts, &mut names.changes);
            names.ends_transaction |= facts.ends_transaction;
        }
    }
    names
}

fn note_changes(facts: &StatementFacts, changes: &mut Changes) {
    if let Some(own) = Changes::of(facts) {
        changes.add(&own);
    }
}

impl Changes {
    /// What one statement may change of the catalog, if anything.
    pub fn of(facts: &StatementFacts) -> Option<Changes> {
        match facts.kind {
            StatementKind::Create | StatementKind::Alter | StatementKind::Drop => Some(Changes {
                names: facts.ddl_objects.iter().map(|n| n.name.clone()).collect(),
                // DDL on schemas, types, extensions may change any relation.
                everything: !PRECISE_DDL.contains(&facts.command.as_str()),
            }),
            // Procedural code runs statements Tollgate does not see.
            StatementKind::Do | StatementKind::Call => Some(Changes {
                names: Vec::new(),
                everything: true,
            }),
            _ => None,
        }
    }
}
