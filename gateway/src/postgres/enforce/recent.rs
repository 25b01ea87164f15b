//! A session's decisions on the texts it sent lately. Agents repeat a few statements; each
//! repeat would otherwise look its analysis up again, resolve it through the catalog and
//! evaluate every rule, only to reach the same decision.
//!
//! A decision is a function of the policy generation, the session's identities (fixed per
//! generation), the statement's facts (fixed per text or literal shape) and the catalog
//! snapshot, so entries are dropped whenever the generation or the snapshot changes. The
//! caller keeps out decisions that also depend on the session's own state.

use std::sync::Arc;

use super::super::results::{MaskContext, QueryRules};
use crate::policy::{Catalog, Decision};

/// Texts remembered per session; a miss costs one decision, so a few suffice.
const CAPACITY: usize = 16;
/// Longer texts are not remembered: they are rarely repeated, and every session would
/// hold copies of them.
const MAX_KEY_BYTES: usize = 1024;

pub struct RecentDecisions {
    /// The policy generation the decisions were made under.
    generation: u64,
    catalog: Option<Arc<Catalog>>,
    /// What result masks resolve against: this snapshot, the target's classification under
    /// this generation, the tokenization key.
    context: Arc<MaskContext>,
    entries: Vec<Entry>,
    /// The entry replaced next once full (oldest first).
    next: usize,
}

struct Entry {
    /// The text, or its literal shape when `shaped`.
    key: Box<str>,
    shaped: bool,
    decided: (Decision, QueryRules),
}

impl RecentDecisions {
    pub fn new(generation: u64, context: MaskContext) -> Self {
        Self {
            generation,
            catalog: context.catalog.clone(),
            context: Arc::new(context),
            entries: Vec::new(),
            next: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the decisions were made with this catalog snapshot.
    pub fn made_with(&self, catalog: Option<&Arc<Catalog>>) -> bool {
        match (&self.catalog, catalog) {
            (Some(mine), Some(current)) => Arc::ptr_eq(mine, current),
            (None, None) => true,
            _ => false,
        }
    }

    pub fn context(&self) -> &Arc<MaskContext> {
        &self.context
    }

    pub fn get(&self, key: &str, shaped: bool) -> Option<&(Decision, QueryRules)> {
        self.entries
            .iter()
            .find(|entry| entry.shaped == shaped && *entry.key == *key)
            .map(|entry| &entry.decided)
    }

    /// Whether a text (or shape) of this length is kept at all.
    pub fn keeps(key: &str) -> bool {
        key.len() <= MAX_KEY_BYTES
    }

    pub fn insert(&mut self, key: &str, shaped: bool, decided: (Decision, QueryRules)) {
        let entry = Entry {
            key: key.into(),
            shaped,
            decided,
        };
        if self.entries.len() < CAPACITY {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % CAPACITY;
        }
    }
}

#[cfg(test)]
impl RecentDecisions {
    pub fn remembers(&self, key: &str) -> bool {
        self.get(key, false).is_some()
    }
}
