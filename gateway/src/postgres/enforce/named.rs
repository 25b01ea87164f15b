//! What the session's SQL-level prepared statements and cursors are, as far as Tollgate can
//! tell: an `EXECUTE` or `FETCH` is decided by the statement its name stands for.
//!
//! The server refuses to define a name that exists, so a definition is believed only for a
//! name that certainly does not exist. Every name ever defined is held to exist until the
//! server has confirmed a release of it (see `PendingRelease` in enforce.rs); a name
//! defined again meanwhile, a name prepared through the protocol, or any name after
//! something Tollgate could not read stands for a statement Tollgate does not know, and
//! what runs it is treated as unparsed.

use std::{collections::HashMap, sync::Arc};

use crate::sql::StatementFacts;

/// Names remembered per kind; past this, every name is treated as unknown until the session
/// releases them all.
const MAX_NAMED: usize = 256;

#[derive(Default)]
pub struct Named {
    entries: HashMap<String, Entry>,
    /// Numbers each definition, so a release applies only to what existed when it ran.
    sequence: u64,
    /// Since this point any name may exist (names dropped for room, or defined unseen).
    forgotten_at: Option<u64>,
}

struct Entry {
    /// None: the name stands for a statement Tollgate does not know.
    facts: Option<Arc<StatementFacts>>,
    /// It outlives its transaction (prepared statements, cursors WITH HOLD).
    held: bool,
    defined: u64,
}

impl Named {
    /// What `name` stands for, if Tollgate knows.
    pub fn get(&self, name: &str) -> Option<Arc<StatementFacts>> {
        self.entries.get(name)?.facts.clone()
    }

    /// Where the definitions stand now: a release recorded now covers what is defined up to
    /// here.
    pub fn mark(&self) -> u64 {
        self.sequence
    }

    /// `name` is defined (if it does not exist yet) as `facts`.
    pub fn define(&mut self, name: &str, facts: Option<Arc<StatementFacts>>, held: bool) {
        let certainly_new = self.forgotten_at.is_none() && !self.entries.contains_key(name);
        if !self.entries.contains_key(name) && self.entries.len() >= MAX_NAMED {
            self.forget_all();
        }
        self.sequence += 1;
        let entry = Entry {
            facts: facts.filter(|_| certainly_new),
            held,
            defined: self.sequence,
        };
        self.entries.insert(name.to_owned(), entry);
    }

    /// The server released `name` as defined up to `mark`.
    pub fn release(&mut self, name: &str, mark: u64) {
        if self.entries.get(name).is_some_and(|e| e.defined <= mark) {
            self.entries.remove(name);
        }
    }

    /// The server released every name defined up to `mark` (`DEALLOCATE ALL`, `CLOSE ALL`,
    /// `DISCARD ALL`).
    pub fn release_all(&mut self, mark: u64) {
        self.entries.retain(|_, e| e.defined > mark);
        if self.forgotten_at.is_some_and(|at| at <= mark) {
            self.forgotten_at = None;
        }
    }

    /// The transaction that ended had only the names defined up to `mark`; what does not
    /// outlive it is gone.
    pub fn end_transaction(&mut self, mark: u64) {
        self.entries.retain(|_, e| e.held || e.defined > mark);
    }

    /// Something Tollgate could not read may have defined or released names.
    pub fn forget_all(&mut self) {
        self.entries.clear();
        self.sequence += 1;
        self.forgotten_at = Some(self.sequence);
    }
}
