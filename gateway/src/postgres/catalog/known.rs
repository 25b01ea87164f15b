//! What the gateway knows of one database's catalog, and when it learnt it: which names have
//! been read (in every schema, or in one), the relations found with their fingerprints, names
//! found absent, and the snapshot handed to sessions. Pure bookkeeping with the clock passed
//! in; the I/O is in the cache around it.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use super::{
    server::{Probed, Wanted},
    wanted::Changes,
};
use crate::{
    policy::{Catalog, Relation},
    sql::RelationName,
};

/// A name found absent is believed that long: a client naming relations that do not exist
/// cannot make the gateway read on every statement, and a table created meanwhile is found.
pub const ABSENT_FOR: Duration = Duration::from_secs(2);
/// After this, the cached relations are probed in the background.
pub const PROBE_AFTER: Duration = Duration::from_millis(500);
/// After this without a probe, a statement waits for one: no decision is made on what was
/// read longer ago (the window in which another session's DDL can go unnoticed).
pub const MAX_STALENESS: Duration = Duration::from_secs(2);
/// Views over views are followed this deep (as provenance does).
const MAX_VIEW_DEPTH: usize = 16;
/// More cached relations than this and the cache starts over: memory and probes stay bounded.
const MAX_RELATIONS: usize = 20_000;
/// Forgotten names remembered for reads in flight (see [`Known::discarded_since`]).
const FORGOTTEN_LOG: usize = 1024;

/// A relation ready to be cached: its definition analysed outside the lock.
pub struct Entry {
    pub relation: Arc<Relation>,
    pub fingerprint: String,
    /// The names its view definition looks up.
    pub needs: Vec<RelationName>,
    pub in_flux: bool,
}

#[derive(Clone, Copy)]
struct Read {
    at: Instant,
    found: bool,
}

impl Read {
    fn believed(&self, now: Instant) -> bool {
        self.found || now.saturating_duration_since(self.at) < ABSENT_FOR
    }
}

/// One relation name (`relname`): the cached relations with it and how far it was read.
#[derive(Default)]
struct Name {
    oids: Vec<u32>,
    everywhere: Option<Read>,
    schemas: HashMap<String, Read>,
}

impl Name {
    fn covers(&self, schema: &str) -> bool {
        self.everywhere.is_some() || self.schemas.contains_key(schema)
    }
}

/// Whether the cache may be used as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    Fresh,
    /// Usable; a probe should start.
    Aging,
    /// Not usable before a probe.
    Stale,
}

/// What was forgotten since a read or probe began.
enum Discarded {
    Nothing,
    Names(HashSet<String>),
    Everything,
}

impl Discarded {
    fn contains(&self, name: &str) -> bool {
        match self {
            Discarded::Nothing => false,
            Discarded::Names(names) => names.contains(name),
            Discarded::Everything => true,
        }
    }
}

pub struct Known {
    relations: HashMap<u32, Entry>,
    names: HashMap<String, Name>,
    absent_oids: HashMap<u32, Instant>,
    snapshot: Arc<Catalog>,
    /// The next snapshot, while a change is being made.
    draft: Option<Catalog>,
    /// Counts forgettings; a read or probe notes it when it starts.
    epoch: u64,
    forgotten: VecDeque<(u64, Option<String>)>,
    /// Everything cached was current at this instant (or later).
    validated_at: Option<Instant>,
    /// The earliest start of a read applied since the running probe took its names.
    unprobed_since: Option<Instant>,
}

impl Default for Known {
    fn default() -> Self {
        Self {
            relations: HashMap::new(),
            names: HashMap::new(),
            absent_oids: HashMap::new(),
            snapshot: Arc::new(Catalog::default()),
            draft: None,
            epoch: 0,
            forgotten: VecDeque::new(),
            validated_at: None,
            unprobed_since: None,
        }
    }
}

impl Known {
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.snapshot.clone()
    }

    pub fn staleness(&self, now: Instant) -> Staleness {
        if self.relations.is_empty() {
            // Absent names expire by themselves.
            return Staleness::Fresh;
        }
        match self
            .validated_at
            .map(|at| now.saturating_duration_since(at))
        {
            Some(age) if age < PROBE_AFTER => Staleness::Fresh,
            Some(age) if age < MAX_STALENESS => Staleness::Aging,
            _ => Staleness::Stale,
        }
    }

    /// What must be read before `wanted` (and every name the views they mean look up) can be
    /// resolved, leaving out what this statement already tried; with the epoch to pass back.
    pub fn missing(
        &self,
        wanted: &[RelationName],
        misses: &[u32],
        tried: &HashSet<RelationName>,
        now: Instant,
    ) -> (Wanted, u64) {
        let mut out = Wanted::default();
        // Borrowed, not cloned: every request of every session passes here.
        let mut seen: HashSet<&RelationName> = HashSet::new();
        let mut queue: Vec<(&RelationName, usize)> = wanted.iter().map(|name| (name, 0)).collect();
        while let Some((name, depth)) = queue.pop() {
            if !seen.insert(name) {
                continue;
            }
            if self.knows(name, now) {
                if depth < MAX_VIEW_DEPTH {
                    for entry in self.meant_by(name) {
                        queue.extend(entry.needs.iter().map(|n| (n, depth + 1)));
                    }
                }
            } else if !tried.contains(name) {
                match &name.schema {
                    None => out.everywhere.push(name.name.clone()),
                    Some(schema) => out.qualified.push((schema.clone(), name.name.clone())),
                }
            }
        }
        // A name read everywhere covers it in each schema.
        out.qualified
            .retain(|(_, name)| !out.everywhere.contains(name));
        for &oid in misses {
            let absent = self
                .absent_oids
                .get(&oid)
                .is_some_and(|at| now.saturating_duration_since(*at) < ABSENT_FOR);
            if !absent && !self.relations.contains_key(&oid) && !out.oids.contains(&oid) {
                out.oids.push(oid);
            }
        }
        (out, self.epoch)
    }

    fn knows(&self, name: &RelationName, now: Instant) -> bool {
        let Some(known) = self.names.get(&name.name) else {
            return false;
        };
        known.everywhere.is_some_and(|r| r.believed(now))
            || name
                .schema
                .as_ref()
                .and_then(|s| known.schemas.get(s))
                .is_some_and(|r| r.believed(now))
    }

    fn meant_by<'a>(&'a self, name: &'a RelationName) -> impl Iterator<Item = &'a Entry> + 'a {
        self.names
            .get(&name.name)
            .into_iter()
            .flat_map(|known| &known.oids)
            .filter_map(|oid| self.relations.get(oid))
            .filter(|entry| {
                name.schema
                    .as_ref()
                    .is_none_or(|s| *s == entry.relation.schema)
            })
    }

    /// Takes what a read started at `started` (at `epoch`) found for `wanted`. Names
    /// forgotten meanwhile, and names with a relation in flux, stay unread.
    pub fn apply_read(&mut self, wanted: &Wanted, found: Vec<Entry>, started: Instant, epoch: u64) {
        let discarded = self.discarded_since(epoch);
        if self.relations.len() + found.len() > MAX_RELATIONS {
            self.forget_all();
        }
        if self.relations.is_empty() {
            // Nothing older is cached: only this read's age counts.
            self.validated_at = None;
        }
        let flux: HashSet<String> = found
            .iter()
            .filter(|e| e.in_flux)
            .map(|e| e.relation.name.clone())
            .collect();
        let read_names: HashSet<&str> = wanted
            .everywhere
            .iter()
            .chain(wanted.qualified.iter().map(|(_, n)| n))
            .map(String::as_str)
            .collect();
        let mut seen_oids = HashSet::new();
        let mut touched = HashSet::new();
        let mut found_in: HashSet<(String, String)> = HashSet::new();
        let before = self.epoch;
        for entry in found {
            let name = entry.relation.name.clone();
            seen_oids.insert(entry.relation.oid);
            found_in.insert((entry.relation.schema.clone(), name.clone()));
            if entry.in_flux || discarded.contains(&name) {
                continue;
            }
            // A relation found by OID whose name was not read stays out of the name's list
            // unless the name is known (then it must be there).
            if read_names.contains(name.as_str()) || wanted.oids.contains(&entry.relation.oid) {
                self.install(entry);
                touched.insert(name);
            }
        }
        // A changed relation makes the views read through it be read again, even in this batch.
        let changed = self.discarded_since(before);
        let usable = |name: &str| {
            !flux.contains(name) && !discarded.contains(name) && !changed.contains(name)
        };
        for name in wanted.everywhere.iter().filter(|n| usable(n)) {
            let found = found_in.iter().any(|(_, n)| n == name);
            self.names.entry(name.clone()).or_default().everywhere =
                Some(Read { at: started, found });
            touched.insert(name.clone());
        }
        for (schema, name) in wanted.qualified.iter().filter(|(_, n)| usable(n)) {
            let found = found_in.contains(&(schema.clone(), name.clone()));
            self.names
                .entry(name.clone())
                .or_default()
                .schemas
                .insert(schema.clone(), Read { at: started, found });
            touched.insert(name.clone());
        }
        for oid in wanted.oids.iter().filter(|oid| !seen_oids.contains(oid)) {
            self.absent_oids.insert(*oid, started);
        }
        for name in &touched {
            self.publish_name(name);
        }
        self.unprobed_since = Some(self.unprobed_since.map_or(started, |at| at.min(started)));
        self.validated_at = Some(self.validated_at.map_or(started, |at| at.min(started)));
        self.publish();
    }

    fn install(&mut self, entry: Entry) {
        let oid = entry.relation.oid;
        let name = entry.relation.name.clone();
        if let Some(old) = self.relations.get(&oid) {
            if old.fingerprint == entry.fingerprint {
                // Unchanged: keep the one whose view analysis may be made already.
                return;
            }
            // It changed: so may everything read through it.
            let old_name = old.relation.name.clone();
            self.forget_names(self.dependents_of(&old_name));
            if let Some(known) = self.names.get_mut(&old_name) {
                known.oids.retain(|o| *o != oid);
            }
            if old_name != name {
                self.forget_names(vec![old_name]);
            }
        }
        let known = self.names.entry(name).or_default();
        if !known.oids.contains(&oid) {
            known.oids.push(oid);
        }
        self.edit().insert_relation(entry.relation.clone());
        self.relations.insert(oid, entry);
    }

    /// Names the probe should check: every name with a cached relation.
    pub fn begin_probe(&mut self) -> Option<(Vec<String>, u64)> {
        let names: Vec<String> = self
            .names
            .iter()
            .filter(|(_, known)| !known.oids.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        if names.is_empty() {
            return None;
        }
        self.unprobed_since = None;
        Some((names, self.epoch))
    }

    /// Forgets every probed name whose relations changed, appeared or went; returns how many.
    pub fn apply_probe(
        &mut self,
        names: &[String],
        probed: &[Probed],
        started: Instant,
        epoch: u64,
    ) -> usize {
        let discarded = self.discarded_since(epoch);
        let mut current: HashMap<&str, Vec<&Probed>> = HashMap::new();
        for row in probed {
            current.entry(row.name.as_str()).or_default().push(row);
        }
        let mut changed = Vec::new();
        for name in names.iter().filter(|n| !discarded.contains(n)) {
            let Some(known) = self.names.get(name) else {
                continue;
            };
            let rows = current.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            let kept = known.oids.iter().all(|oid| {
                let fingerprint = self.relations.get(oid).map(|e| &e.fingerprint);
                rows.iter()
                    .any(|row| row.oid == *oid && Some(&row.fingerprint) == fingerprint)
            });
            let no_newcomer = rows
                .iter()
                .all(|row| known.oids.contains(&row.oid) || !known.covers(&row.schema));
            if !(kept && no_newcomer) {
                changed.push(name.clone());
            }
        }
        let count = changed.len();
        self.forget_names(changed);
        self.validated_at = Some(self.unprobed_since.map_or(started, |at| at.min(started)));
        self.publish();
        count
    }

    /// Forgets these names, every relation with them, and (transitively) every view whose
    /// definition looks one of them up.
    pub fn forget_names(&mut self, names: Vec<String>) {
        let mut queue = names;
        let mut done = HashSet::new();
        while let Some(name) = queue.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            if let Some(known) = self.names.remove(&name) {
                for oid in known.oids {
                    self.relations.remove(&oid);
                    self.edit().remove_relation(oid);
                }
            }
            self.edit().remove_name(&name);
            self.log_forgotten(Some(name.clone()));
            queue.extend(self.dependents_of(&name));
        }
        self.publish();
    }

    /// Forgets that any name or OID was absent.
    pub fn forget_absent(&mut self) {
        self.absent_oids.clear();
        for known in self.names.values_mut() {
            if known.everywhere.is_some_and(|r| !r.found) {
                known.everywhere = None;
            }
            known.schemas.retain(|_, read| read.found);
        }
        // Entries left with nothing are dropped (they answer nothing either way).
        self.names
            .retain(|_, k| !k.oids.is_empty() || k.everywhere.is_some() || !k.schemas.is_empty());
    }

    pub fn forget_all(&mut self) {
        self.relations.clear();
        self.names.clear();
        self.absent_oids.clear();
        self.validated_at = None;
        self.draft = Some(self.snapshot.cleared());
        self.log_forgotten(None);
        self.publish();
    }

    /// The snapshot without what `changes` names and what reads through it: for a request
    /// that the server may run before or after those changes.
    pub fn without(&self, changes: &Changes) -> Arc<Catalog> {
        if changes.everything {
            return Arc::new(self.snapshot.cleared());
        }
        let mut catalog = (*self.snapshot).clone();
        let mut queue = changes.names.clone();
        let mut done = HashSet::new();
        while let Some(name) = queue.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            for oid in self.names.get(&name).iter().flat_map(|known| &known.oids) {
                catalog.remove_relation(*oid);
            }
            catalog.remove_name(&name);
            queue.extend(self.dependents_of(&name));
        }
        Arc::new(catalog)
    }

    /// Names of cached views whose definitions look `name` up.
    fn dependents_of(&self, name: &str) -> Vec<String> {
        self.relations
            .values()
            .filter(|entry| entry.needs.iter().any(|n| n.name == name))
            .map(|entry| entry.relation.name.clone())
            .collect()
    }

    fn log_forgotten(&mut self, name: Option<String>) {
        self.epoch += 1;
        if self.forgotten.len() == FORGOTTEN_LOG {
            self.forgotten.pop_front();
        }
        self.forgotten.push_back((self.epoch, name));
    }

    /// What was forgotten after `epoch`: a read or probe begun then knows nothing newer.
    fn discarded_since(&self, epoch: u64) -> Discarded {
        if epoch == self.epoch {
            return Discarded::Nothing;
        }
        // The log no longer reaches back that far: anything may have been forgotten.
        if self
            .forgotten
            .front()
            .is_none_or(|(first, _)| *first > epoch + 1)
        {
            return Discarded::Everything;
        }
        let mut names = HashSet::new();
        for (_, name) in self.forgotten.iter().filter(|(e, _)| *e > epoch) {
            match name {
                Some(name) => names.insert(name.clone()),
                None => return Discarded::Everything,
            };
        }
        Discarded::Names(names)
    }

    /// Sets the snapshot's entry for one name from what is known of it.
    fn publish_name(&mut self, name: &str) {
        let Some(known) = self.names.get(name) else {
            self.edit().remove_name(name);
            return;
        };
        let everywhere = known.everywhere.is_some();
        let schemas: Vec<String> = known.schemas.keys().cloned().collect();
        let relations: Vec<Arc<Relation>> = known
            .oids
            .iter()
            .filter_map(|oid| self.relations.get(oid))
            .map(|entry| entry.relation.clone())
            .filter(|r| known.covers(&r.schema))
            .collect();
        self.edit().set_name(name, everywhere, schemas, relations);
    }

    fn edit(&mut self) -> &mut Catalog {
        let snapshot = &self.snapshot;
        self.draft.get_or_insert_with(|| (**snapshot).clone())
    }

    fn publish(&mut self) {
        if let Some(draft) = self.draft.take() {
            self.snapshot = Arc::new(draft);
        }
    }
}

#[cfg(test)]
impl Known {
    /// Moves every instant back, as if `by` had passed.
    pub fn age(&mut self, by: Duration) {
        let back = |at: &mut Instant| *at = at.checked_sub(by).unwrap_or(*at);
        self.validated_at.iter_mut().for_each(back);
        self.unprobed_since.iter_mut().for_each(back);
        self.absent_oids.values_mut().for_each(back);
        for known in self.names.values_mut() {
            known.everywhere.iter_mut().for_each(|r| back(&mut r.at));
            known.schemas.values_mut().for_each(|r| back(&mut r.at));
        }
    }
}
