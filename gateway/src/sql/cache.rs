//! Analyses by SQL text, shared by the worker threads. Agents repeat the same statements, so
//! each distinct text is parsed once; the hit path is one hash, one lock and an `Arc` clone.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use super::{analyze, SharedAnalysis};

/// Longer texts (bulk inserts, generated reports) are rarely repeated: analysed every time
/// rather than held in memory.
const MAX_CACHED_BYTES: usize = 64 * 1024;

/// A bounded map from SQL text to its analysis. When full, half of the entries are dropped:
/// cheap, and a hot statement is back after one more parse.
pub struct FactsCache {
    capacity: usize,
    entries: Mutex<HashMap<Arc<str>, SharedAnalysis>>,
}

impl FactsCache {
    pub fn new(capacity: usize) -> Self {
        FactsCache {
            capacity,
            entries: Mutex::new(HashMap::with_capacity(capacity.min(4096))),
        }
    }

    /// The analysis of `sql`, from the cache or made now (outside the lock).
    pub fn get(&self, sql: &str) -> SharedAnalysis {
        if let Some(hit) = self.lock().get(sql) {
            return Arc::clone(hit);
        }
        let analysis: SharedAnalysis = Arc::new(analyze(sql));
        if self.capacity == 0 || sql.len() > MAX_CACHED_BYTES {
            return analysis;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            evict_half(&mut entries);
        }
        Arc::clone(entries.entry(Arc::from(sql)).or_insert(analysis))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, SharedAnalysis>> {
        // The map holds no invariant a panicking holder could break.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for FactsCache {
    /// Sizes only: the keys are SQL text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactsCache")
            .field("capacity", &self.capacity)
            .field("len", &self.lock().len())
            .finish()
    }
}

/// Drops every other entry (in the map's arbitrary order).
fn evict_half(entries: &mut HashMap<Arc<str>, SharedAnalysis>) {
    let mut keep = false;
    entries.retain(|_, _| {
        keep = !keep;
        keep
    });
}
