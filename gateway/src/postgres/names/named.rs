//! What a session's named statements or cursors stand for, as far as Tollgate can tell.
//!
//! The server refuses to define a name that exists, so a definition is believed only for a
//! name that certainly does not exist. Every name ever defined is held to exist until the
//! server has confirmed a release of it (see [`super::PendingReleases`]); a name defined
//! again meanwhile, or any name after something Tollgate could not follow, stands for
//! something Tollgate does not know.

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::{Hash, Hasher},
};

/// Names remembered by default; past the limit the oldest are kept only as hashes.
const DEFAULT_LIMIT: usize = 256;
/// Hashes of names let go for room; past this every name is unknown until all are released.
const MAX_LET_GO: usize = 1 << 20;

pub struct Named<T> {
    entries: HashMap<String, Entry<T>>,
    limit: usize,
    /// Numbers each definition, so a release applies only to what existed when it ran.
    sequence: u64,
    /// Since this point any name may exist (defined where Tollgate could not see).
    forgotten_at: Option<u64>,
    /// Names let go for room, by hash, with when they were defined: they may still exist.
    let_go: HashMap<u64, u64>,
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
            let_go: HashMap::new(),
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
        let certainly_new = self.forgotten_at.is_none()
            && !self.entries.contains_key(name)
            && !self.let_go.contains_key(&hash(name));
        if !self.entries.contains_key(name) && self.entries.len() >= self.limit {
            self.let_go_all();
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
        let hashed = hash(name);
        if self
            .let_go
            .get(&hashed)
            .is_some_and(|defined| *defined <= mark)
        {
            self.let_go.remove(&hashed);
        }
    }

    /// The server released every name defined up to `mark` (`DEALLOCATE ALL`, `CLOSE ALL`,
    /// `DISCARD ALL`).
    pub fn release_all(&mut self, mark: u64) {
        self.entries.retain(|_, e| e.defined > mark);
        self.let_go.retain(|_, defined| *defined > mark);
        if self.forgotten_at.is_some_and(|at| at <= mark) {
            self.forgotten_at = None;
        }
    }

    /// The transaction that ended had only the names defined up to `mark`; what does not
    /// outlive it is gone.
    pub fn end_transaction(&mut self, mark: u64) {
        self.entries.retain(|_, e| e.held || e.defined > mark);
    }

    /// Keeps only the names' hashes, so a name defined again is still not believed.
    fn let_go_all(&mut self) {
        if self.let_go.len() + self.entries.len() > MAX_LET_GO {
            return self.forget_all();
        }
        for (name, entry) in self.entries.drain() {
            self.let_go.insert(hash(&name), entry.defined);
        }
    }

    /// Something Tollgate could not read may have defined or released names.
    pub fn forget_all(&mut self) {
        self.entries.clear();
        self.let_go.clear();
        self.sequence += 1;
        self.forgotten_at = Some(self.sequence);
    }
}

fn hash(name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::Named;

    #[test]
    fn names_let_go_for_room_are_not_believed_when_defined_again() {
        let mut named = Named::with_limit(2);
        named.define("a", Some(1), true);
        named.define("b", Some(2), true);
        named.define("c", Some(3), true);
        assert_eq!(named.get("c"), Some(3), "a new name is still believed");
        named.define("a", Some(4), true);
        assert_eq!(named.get("a"), None, "a may still be the first a");
        let mark = named.mark();
        named.release_all(mark);
        named.define("a", Some(5), true);
        assert_eq!(named.get("a"), Some(5), "all released: a is new");
    }
}
