//! Analyses by SQL text, shared by the worker threads. Agents repeat the same statements, so
//! each distinct text is parsed once; the hit path is one hash, one lock and an `Arc` clone.
//! Simple SELECTs that differ only in the numbers they compare against share one analysis
//! (see [`literal_shape`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use super::{analyze, shape::literal_shape, SharedAnalysis};

/// Longer texts (bulk inserts, generated reports) are rarely repeated: analysed every time
/// rather than held in memory.
const MAX_CACHED_BYTES: usize = 64 * 1024;

type Entries = HashMap<Arc<str>, SharedAnalysis>;

/// Two bounded maps, from SQL text and from literal shape to the analysis. When one is full,
/// half of its entries are dropped: cheap, and a hot statement is back after one more parse.
pub struct FactsCache {
    capacity: usize,
    entries: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    texts: Entries,
    /// Kept apart from `texts`, so no text can ever be mistaken for a shape.
    shapes: Entries,
}

impl Maps {
    fn of(&mut self, shaped: bool) -> &mut Entries {
        if shaped {
            &mut self.shapes
        } else {
            &mut self.texts
        }
    }
}

impl FactsCache {
    pub fn new(capacity: usize) -> Self {
        FactsCache {
            capacity,
            entries: Mutex::new(Maps::default()),
        }
    }

    /// The analysis of `sql`, from the cache or made now (outside the lock).
    pub fn get(&self, sql: &str) -> SharedAnalysis {
        self.get_shaped(sql, literal_shape(sql).as_deref())
    }

    /// As [`get`](Self::get), for a caller that already has the text's literal shape.
    pub fn get_shaped(&self, sql: &str, shape: Option<&str>) -> SharedAnalysis {
        let key = shape.unwrap_or(sql);
        if let Some(hit) = self.lock().of(shape.is_some()).get(key) {
            return Arc::clone(hit);
        }
        let analysis: SharedAnalysis = Arc::new(analyze(sql));
        // A shape shares only a successful analysis: a parser error quotes its own text.
        let shareable = shape.is_none() || analysis.is_ok();
        if self.capacity == 0 || sql.len() > MAX_CACHED_BYTES || !shareable {
            return analysis;
        }
        let mut maps = self.lock();
        let entries = maps.of(shape.is_some());
        if entries.len() >= self.capacity {
            evict_half(entries);
        }
        Arc::clone(entries.entry(Arc::from(key)).or_insert(analysis))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let maps = self.lock();
        maps.texts.len() + maps.shapes.len()
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // The maps hold no invariant a panicking holder could break.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for FactsCache {
    /// Sizes only: the keys are SQL text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let maps = self.lock();
        f.debug_struct("FactsCache")
            .field("capacity", &self.capacity)
            .field("texts", &maps.texts.len())
            .field("shapes", &maps.shapes.len())
            .finish()
    }
}

/// Drops every other entry (in the map's arbitrary order).
fn evict_half(entries: &mut Entries) {
    let mut keep = false;
    entries.retain(|_, _| {
        keep = !keep;
        keep
    });
}
