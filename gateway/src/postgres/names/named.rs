//! What a session's named statements or cursors stand for, as far as Tollgate can tell.
//!
//! The server refuses to define a name that exists, so a definition is believed only for a
//! name that certainly does not exist. Every name ever defined is held to exist until the
//! server has confirmed a release of it (see [`super::PendingReleases`]); a name defined
//! again meanwhile, or any name after something Tollgate could not follow, stands for
//! something Tollgate does not know.

use std::collections::HashMap;

/// Names remembered by default; past the limit every name is unknown until all are released.
const DEFAULT_LIMIT: usize = 256;

pub struct Named<T> {
    entries: HashMap<String, Entry<T>>,
    limit: usize,
    /// Numbers each definition, so a release applies only to what existed when it ran.
    sequence: u64,
    /// Since this point any name may exist (names dropped for room, or defined unseen).
    forgotten_at: Option<u64>,
}

impl<T: Clone> Default for Named<T> {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
}

struct Entry<T> {
    /// None: the name stands for something Tollgate does not know.
    value: Option<T>,
    /// It outlives its transaction (prepared statements, cursors WITH HOLD).
    held: bool,
    defined: u64,
}

impl<T: Clone> Named<T> {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            entries: HashMap::new(),
            limit,
            sequence: 0,
            forgotten_at: None,
        }
    }

    /// What `name` stands for, if Tollgate knows.
    pub fn get(&self, name: &str) -> Option<T> {
        self.entries.get(name)?.value.clone()
    }

    /// Where the definitions stand now: a release recorded now covers what is defined up to
    /// here.
    pub fn mark(&self) -> u64 {
        self.sequence
    }

    /// `name` is defined (if it does not exist yet) as `value`.
    pub fn define(&mut self, name: &str, value: Option<T>, held: bool) {
        let certainly_new = self.forgotten_at.is_none() && !self.entries.contains_key(name);
        if !self.entries.contains_key(name) && self.entries.len() >= self.limit {
            self.forget_all();
        }
        self.sequence += 1;
        let entry = Entry {
            value: value.filter(|_| certainly_new),
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
