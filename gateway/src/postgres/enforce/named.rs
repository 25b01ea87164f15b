//! What the session's SQL-level prepared statements and cursors are, as far as Tollgate can
//! tell: an `EXECUTE` or `FETCH` is decided by the statement its name stands for.
//!
//! The server refuses to define a name that exists, so a name defined twice while the first
//! may still exist could stand for either statement; and a name prepared through the
//! protocol, or defined by something Tollgate could not read, stands for a statement it does
//! not know. Such names are kept as unknown, and what runs them is treated as unparsed.

use std::{collections::HashMap, sync::Arc};

use crate::sql::StatementFacts;

/// Names remembered per kind; past this, every name is treated as unknown until the session
/// releases them all.
const MAX_NAMED: usize = 256;

#[derive(Default)]
pub struct Named {
    entries: HashMap<String, Entry>,
    /// Names were dropped for room, or defined unseen: any name may exist.
    anything_may_exist: bool,
}

struct Entry {
    /// None: the name stands for a statement Tollgate does not know.
    facts: Option<Arc<StatementFacts>>,
    /// It outlives its transaction (prepared statements, cursors WITH HOLD).
    held: bool,
}

impl Named {
    /// What `name` stands for, if Tollgate knows.
    pub fn get(&self, name: &str) -> Option<Arc<StatementFacts>> {
        self.entries.get(name)?.facts.clone()
    }

    /// `name` is defined (when it does not exist yet) as `facts`.
    pub fn define(&mut self, name: &str, facts: Option<Arc<StatementFacts>>, held: bool) {
        let known = !self.anything_may_exist && !self.entries.contains_key(name);
        if !self.entries.contains_key(name) && self.entries.len() >= MAX_NAMED {
            self.forget_all();
        }
        let facts = facts.filter(|_| known);
        self.entries.insert(name.to_owned(), Entry { facts, held });
    }

    pub fn release(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Every name is gone (`DEALLOCATE ALL`, `CLOSE ALL`, `DISCARD ALL`).
    pub fn release_all(&mut self) {
        self.entries.clear();
        self.anything_may_exist = false;
    }

    /// Something Tollgate could not read may have defined or released names.
    pub fn forget_all(&mut self) {
        self.entries.clear();
        self.anything_may_exist = true;
    }

    /// The transaction ended: only what outlives it is left.
    pub fn end_transaction(&mut self) {
        self.entries.retain(|_, entry| entry.held);
    }
}
