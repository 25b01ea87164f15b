//! The one table of a session's names on the server, and what each stands for: prepared
//! statements (protocol `Parse` and SQL `PREPARE` share one namespace) and portals
//! (protocol `Bind` and SQL `DECLARE` share another). A definition is believed at once (a
//! later message of the same request uses it, or is skipped with it); a release waits for
//! the server's answer to its request (see [`Effect`]); the end of a transaction, read off
//! the server's ReadyForQuery, drops the portals that do not outlive it.

use std::sync::Arc;

use pgwire::messages::response::TransactionStatus;

use super::Named;
use crate::{
    postgres::request::{Parameter, Sql},
    sql::{Released, StatementFacts},
};

/// Named statements remembered; past this the oldest are known only by hash (see
/// [`Named`]): drivers close what they no longer use, so few are live at once.
const MAX_STATEMENTS: usize = 4096;
/// Named portals and cursors remembered, likewise.
const MAX_PORTALS: usize = 256;

/// What a prepared statement name stands for.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Parsed through the protocol: its text.
    Text(Sql),
    /// `PREPARE name AS ...`: the statement it prepared.
    Facts(Arc<StatementFacts>),
}

/// What a portal (or cursor) name stands for.
#[derive(Debug, Clone)]
pub enum Portal {
    /// Bound through the protocol: the statement's text (None when unknown) and its values.
    Bound {
        sql: Option<Sql>,
        parameters: Vec<Parameter>,
    },
    /// `DECLARE name CURSOR FOR ...`: the query it returns rows of.
    Cursor(Arc<StatementFacts>),
}

/// Where the definitions stood when something was recorded: (statements, portals). A
/// release covers only what was defined up to its marks.
pub type Marks = (u64, u64);

/// What a request does to names once the server has answered it without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Release(Released, Marks),
    /// The unnamed statement of this generation was parsed in the request's batch.
    ConfirmUnnamed(u64),
}

/// How the server answered a request, as far as names care.
#[derive(Debug)]
pub struct Answered<'a> {
    pub effects: &'a [Effect],
    /// An error answered (or skipped) one of its messages.
    pub failed: bool,
    /// The names as they stood when the request was sent.
    pub marks: Marks,
    /// The transaction status its ReadyForQuery reported (None: answered by a later one).
    pub status: Option<TransactionStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmation {
    /// Parsed in the batch still open: its own Bind and Execute run it or are skipped too.
    InBatch,
    /// The batch was sent: believed by later batches once answered without error.
    Pending,
    Confirmed,
}

struct Unnamed {
    sql: Sql,
    generation: u64,
    confirmation: Confirmation,
}

pub struct SessionNames {
    statements: Named<Prepared>,
    /// The unnamed statement: every Parse of it replaces it (or, failing, leaves none). A
    /// Parse skipped after an earlier error leaves the old one, so a later batch believes it
    /// only once the server has answered the Parse's batch without error.
    unnamed_statement: Option<Unnamed>,
    generation: u64,
    portals: Named<Portal>,
    /// The unnamed portal: every Bind of it replaces it.
    unnamed_portal: Option<Portal>,
    /// What the request being assembled and decided does once answered.
    effects: Vec<Effect>,
}

impl Default for SessionNames {
    fn default() -> Self {
        Self {
            statements: Named::with_limit(MAX_STATEMENTS),
            unnamed_statement: None,
            generation: 0,
            portals: Named::with_limit(MAX_PORTALS),
            unnamed_portal: None,
            effects: Vec::new(),
        }
    }
}

impl SessionNames {
    /// A simple Query drops the unnamed statement and portal.
    pub fn simple_query(&mut self) {
        self.unnamed_statement = None;
        self.unnamed_portal = None;
    }

    /// A protocol Parse.
    pub fn parse(&mut self, name: &str, sql: Sql) {
        if name.is_empty() {
            self.generation += 1;
            self.unnamed_statement = Some(Unnamed {
                sql,
                generation: self.generation,
                confirmation: Confirmation::InBatch,
            });
        } else {
            self.statements
                .define(name, Some(Prepared::Text(sql)), true);
        }
    }

    /// A protocol Bind of `statement` to `portal`.
    pub fn bind(&mut self, portal: &str, statement: &str, parameters: Vec<Parameter>) {
        let sql = self.statement_text(statement);
        let bound = Portal::Bound { sql, parameters };
        if portal.is_empty() {
            self.unnamed_portal = Some(bound);
        } else {
            // A named portal lasts until its transaction ends.
            self.portals.define(portal, Some(bound), false);
        }
    }

    /// A protocol Close of a statement (`statement`) or portal.
    pub fn close(&mut self, statement: bool, name: &str) {
        match (statement, name.is_empty()) {
            (true, true) => self.unnamed_statement = None,
            (false, true) => self.unnamed_portal = None,
            (true, false) => self.release(Released::Prepared(name.to_owned())),
            (false, false) => self.release(Released::Cursor(name.to_owned())),
        }
    }

    /// A Sync ends the batch: its unnamed statement is believed by later batches once the
    /// server has answered this one without error.
    pub fn sync(&mut self) {
        if let Some(unnamed) = &mut self.unnamed_statement {
            if unnamed.confirmation == Confirmation::InBatch {
                unnamed.confirmation = Confirmation::Pending;
                self.effects
                    .push(Effect::ConfirmUnnamed(unnamed.generation));
            }
        }
    }

    /// `PREPARE name AS ...` ran (None: what it prepared is unknown).
    pub fn prepare(&mut self, name: &str, statement: Option<Arc<StatementFacts>>) {
        self.statements
            .define(name, statement.map(Prepared::Facts), true);
    }

    /// `DECLARE name CURSOR [WITH HOLD] FOR ...` ran.
    pub fn declare(&mut self, name: &str, query: Option<Arc<StatementFacts>>, holds: bool) {
        self.portals.define(name, query.map(Portal::Cursor), holds);
    }

    /// A statement releases names once answered without error.
    pub fn release(&mut self, released: Released) {
        let marks = self.marks();
        self.effects.push(Effect::Release(released, marks));
    }

    /// Something Tollgate could not follow ran (unparsed SQL, `DO`, `CALL`): it may have
    /// prepared, declared or released any name.
    pub fn forget_all(&mut self) {
        self.statements.forget_all();
        self.portals.forget_all();
    }

    /// What a prepared statement name stands for, if Tollgate knows.
    pub fn prepared(&self, name: &str) -> Option<Prepared> {
        self.statements.get(name)
    }

    /// What a portal or cursor name stands for, if Tollgate knows ("" is the unnamed portal).
    pub fn portal(&self, name: &str) -> Option<Portal> {
        match name.is_empty() {
            true => self.unnamed_portal.clone(),
            false => self.portals.get(name),
        }
    }

    pub fn marks(&self) -> Marks {
        (self.statements.mark(), self.portals.mark())
    }

    /// What the request just decided does once answered: it travels with the request.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Applies what the server's answer to one request confirmed, oldest request first.
    pub fn settle(&mut self, answered: Answered<'_>) {
        for effect in answered.effects {
            match effect {
                Effect::Release(released, marks) if !answered.failed => {
                    self.apply(released, *marks)
                }
                Effect::Release(..) => {}
                Effect::ConfirmUnnamed(generation) => {
                    self.confirm_unnamed(*generation, answered.failed)
                }
            }
        }
        // Outside a transaction block no transaction is open: portals without HOLD are gone.
        if answered.status == Some(TransactionStatus::Idle) {
            self.portals.end_transaction(answered.marks.1);
        }
    }

    fn confirm_unnamed(&mut self, generation: u64, failed: bool) {
        let Some(unnamed) = &mut self.unnamed_statement else {
            return;
        };
        if unnamed.generation != generation {
            return;
        }
        match failed {
            true => self.unnamed_statement = None,
            false => unnamed.confirmation = Confirmation::Confirmed,
        }
    }

    fn apply(&mut self, released: &Released, (statements, portals): Marks) {
        match released {
            Released::Prepared(name) => self.statements.release(name, statements),
            Released::AllPrepared => self.statements.release_all(statements),
            Released::Cursor(name) => self.portals.release(name, portals),
            Released::AllCursors => self.portals.release_all(portals),
            Released::Everything => {
                self.statements.release_all(statements);
                self.portals.release_all(portals);
            }
        }
    }

    fn statement_text(&self, name: &str) -> Option<Sql> {
        if !name.is_empty() {
            return match self.statements.get(name)? {
                Prepared::Text(sql) => Some(sql),
                Prepared::Facts(_) => None,
            };
        }
        let unnamed = self.unnamed_statement.as_ref()?;
        match unnamed.confirmation {
            Confirmation::InBatch | Confirmation::Confirmed => Some(unnamed.sql.clone()),
            // Not answered yet: the Parse may still be skipped.
            Confirmation::Pending => None,
        }
    }
}
