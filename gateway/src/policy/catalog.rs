//! What provenance knows of a target database's relations: names, columns by attribute
//! number, and view definitions. The gateway fills it on demand with what statements and
//! results name (see `postgres/catalog`); plain data here so resolution stays pure and
//! testable.
//!
//! A snapshot only answers for names it was told about: a name whose relations were not read
//! (or were forgotten after DDL) resolves to nothing, which provenance treats as unknown and
//! masks. Snapshots are immutable and cheap to copy (see [`shards`]).

mod shards;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use self::shards::Shards;
use crate::sql::{self, Analysis, OutputItem, RelationName, Source, SqlError, StatementFacts};

/// Result origins not in the snapshot that are remembered for the next read; more are
/// dropped (they stay unknown, and masked).
const MAX_MISSES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// Tables, partitioned tables, foreign tables: values come from the relation itself.
    Table,
    /// Views and materialized views: values come from the defining query.
    View,
}

#[derive(Debug)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// (attribute number, name) of live columns, in attribute order.
    pub columns: Vec<(i16, String)>,
    /// The defining query of a view (`pg_get_viewdef`).
    pub view_sql: Option<String>,
    /// The view's analysis, made on first use.
    view_analysis: OnceLock<Result<Analysis, SqlError>>,
}

impl Relation {
    pub fn new(
        oid: u32,
        schema: String,
        name: String,
        kind: RelationKind,
        columns: Vec<(i16, String)>,
        view_sql: Option<String>,
    ) -> Self {
        Self {
            oid,
            schema,
            name,
            kind,
            columns,
            view_sql,
            view_analysis: OnceLock::new(),
        }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(_, column)| column == name)
    }

    pub fn attnum_index(&self, attnum: i16) -> Option<usize> {
        self.columns
            .iter()
            .position(|(number, _)| *number == attnum)
    }

    /// The view's defining query, analysed (an error for a table or an unreadable view).
    pub fn view_analysis(&self) -> &Result<Analysis, SqlError> {
        self.view_analysis.get_or_init(|| match &self.view_sql {
            Some(text) => sql::analyze(text),
            None => Err(SqlError::Unreadable("not a view".into())),
        })
    }

    /// The names a view's definition looks up (empty for a table or an unreadable view).
    pub fn names_needed(&self) -> Vec<RelationName> {
        let mut names = Vec::new();
        if self.kind == RelationKind::View {
            if let Ok(analysis) = self.view_analysis() {
                for facts in &analysis.statements {
                    Catalog::names_needed(facts, &mut names);
                }
            }
        }
        names
    }
}

/// The relations of one name that a snapshot knows, and for which schemas it knows them all.
#[derive(Debug)]
struct NameEntry {
    /// Every relation of this name, in every schema.
    everywhere: bool,
    /// Schemas in which every relation of this name is known (qualified names).
    schemas: Vec<String>,
    relations: Vec<Arc<Relation>>,
}

/// The relations of one database that are known at one moment.
#[derive(Clone, Default)]
pub struct Catalog {
    by_oid: Shards<u32, Arc<Relation>>,
    by_name: Shards<String, Arc<NameEntry>>,
    /// Shared by every snapshot derived from this one.
    misses: Arc<Mutex<Vec<u32>>>,
}

impl Catalog {
    /// A snapshot that knows these relations and, for each of their names, that there are no
    /// others.
    pub fn new(relations: impl IntoIterator<Item = Relation>) -> Self {
        let mut catalog = Self::default();
        let mut by_name: HashMap<String, Vec<Arc<Relation>>> = HashMap::new();
        for relation in relations {
            let relation = Arc::new(relation);
            by_name
                .entry(relation.name.clone())
                .or_default()
                .push(relation.clone());
            catalog.insert_relation(relation);
        }
        for (name, relations) in by_name {
            catalog.set_name(&name, true, Vec::new(), relations);
        }
        catalog
    }

    pub fn by_oid(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// Relations a name can mean: the one in the given schema, or, written without a schema,
    /// every relation of that name (the session's search_path is not tracked, so all are
    /// considered). Nothing for a name the snapshot was not told about.
    pub fn lookup(&self, schema: Option<&str>, name: &str) -> Vec<&Arc<Relation>> {
        let Some(entry) = self.by_name.get(name) else {
            return Vec::new();
        };
        let known = match schema {
            None => entry.everywhere,
            Some(schema) => entry.everywhere || entry.schemas.iter().any(|s| s == schema),
        };
        if !known {
            return Vec::new();
        }
        entry
            .relations
            .iter()
            .filter(|r| schema.is_none_or(|s| r.schema == s))
            .collect()
    }

    pub fn relation_count(&self) -> usize {
        self.by_oid.len()
    }

    /// An empty snapshot that shares this one's misses.
    pub fn cleared(&self) -> Catalog {
        Catalog {
            misses: self.misses.clone(),
            ..Catalog::default()
        }
    }

    /// Adds (or replaces) a relation found by its OID; names are set apart (see
    /// [`set_name`](Self::set_name)).
    pub fn insert_relation(&mut self, relation: Arc<Relation>) {
        self.by_oid.insert(relation.oid, relation);
    }

    pub fn remove_relation(&mut self, oid: u32) {
        self.by_oid.remove(&oid);
    }

    /// What a name means: its relations, known in every schema or in these schemas only.
    pub fn set_name(
        &mut self,
        name: &str,
        everywhere: bool,
        schemas: Vec<String>,
        relations: Vec<Arc<Relation>>,
    ) {
        let entry = NameEntry {
            everywhere,
            schemas,
            relations,
        };
        self.by_name.insert(name.to_owned(), Arc::new(entry));
    }

    pub fn remove_name(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// Remembers a result origin the snapshot does not have, so the gateway reads it for
    /// later statements (see [`take_misses`](Self::take_misses)).
    pub fn note_miss(&self, oid: u32) {
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if misses.len() < MAX_MISSES && !misses.contains(&oid) {
            misses.push(oid);
        }
    }

    pub fn take_misses(&self) -> Vec<u32> {
        std::mem::take(&mut *self.misses.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every relation name resolution looks up for these facts (what they read and write,
    /// what their outputs name, and what they prepare or declare), added to `out` once each.
    /// Views name more: see [`Relation::names_needed`].
    pub fn names_needed(facts: &StatementFacts, out: &mut Vec<RelationName>) {
        let mut add = |name: &RelationName| {
            if !out.contains(name) {
                out.push(name.clone());
            }
        };
        facts.reads.iter().chain(&facts.writes).for_each(&mut add);
        for item in &facts.outputs {
            match item {
                OutputItem::Expand(name) => add(name),
                OutputItem::Column { lineage, .. } => {
                    for source in &lineage.sources {
                        match source {
                            Source::Column { relations, .. } => relations.iter().for_each(&mut add),
                            Source::WholeRow(name) => add(name),
                        }
                    }
                }
            }
        }
        if let Some(copy) = facts.copy.as_ref().and_then(|c| c.relation.as_ref()) {
            add(copy);
        }
        let inner = facts.prepared.iter().chain(&facts.cursor_query);
        for (_, inner) in inner {
            Self::names_needed(inner, out);
        }
    }
}

// Sizes only: relation names and view definitions stay out of logs.
impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("relations", &self.by_oid.len())
            .field("names", &self.by_name.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32, schema: &str, name: &str) -> Relation {
        Relation::new(
            oid,
            schema.into(),
            name.into(),
            RelationKind::Table,
            vec![(1, "id".into())],
            None,
        )
    }

    fn oids(relations: Vec<&Arc<Relation>>) -> Vec<u32> {
        let mut oids: Vec<u32> = relations.iter().map(|r| r.oid).collect();
        oids.sort_unstable();
        oids
    }

    #[test]
    fn a_name_answers_only_as_far_as_it_is_known() {
        let mut catalog = Catalog::default();
        let a = Arc::new(table(1, "a", "t"));
        let b = Arc::new(table(2, "b", "t"));
        catalog.insert_relation(a.clone());
        catalog.insert_relation(b.clone());
        assert!(catalog.lookup(None, "t").is_empty(), "no name set yet");
        assert_eq!(catalog.by_oid(2).map(|r| r.oid), Some(2), "found by OID");
        // Only schema a was read for `a.t`: unqualified `t` and `b.t` are not known.
        catalog.set_name("t", false, vec!["a".into()], vec![a.clone()]);
        assert_eq!(oids(catalog.lookup(Some("a"), "t")), [1]);
        assert!(catalog.lookup(None, "t").is_empty());
        assert!(catalog.lookup(Some("b"), "t").is_empty());
        catalog.set_name("t", true, Vec::new(), vec![a, b]);
        assert_eq!(oids(catalog.lookup(None, "t")), [1, 2]);
        assert_eq!(oids(catalog.lookup(Some("b"), "t")), [2]);
        assert!(catalog.lookup(Some("c"), "t").is_empty(), "known absent");
        let mut derived = catalog.clone();
        derived.remove_name("t");
        derived.remove_relation(1);
        assert!(derived.lookup(None, "t").is_empty() && derived.by_oid(1).is_none());
        assert_eq!(
            oids(catalog.lookup(None, "t")),
            [1, 2],
            "the original is unchanged"
        );
    }

    #[test]
    fn misses_are_shared_by_derived_snapshots() {
        let catalog = Catalog::new([table(1, "public", "t")]);
        let derived = catalog.clone();
        derived.note_miss(7);
        derived.note_miss(7);
        assert_eq!(catalog.take_misses(), [7]);
        assert!(derived.take_misses().is_empty());
    }

    #[test]
    fn names_needed_cover_what_resolution_looks_up() {
        let analysis = sql::analyze(
            "PREPARE q AS SELECT p.ssn, v.*, row_to_json(w) FROM s.p JOIN v ON true, w; \
             INSERT INTO log SELECT * FROM src; COPY c TO STDOUT",
        )
        .expect("parses");
        let mut names = Vec::new();
        for facts in &analysis.statements {
            Catalog::names_needed(facts, &mut names);
        }
        let mut names: Vec<String> = names
            .iter()
            .map(|n| match &n.schema {
                Some(s) => format!("{s}.{}", n.name),
                None => n.name.clone(),
            })
            .collect();
        names.sort();
        assert_eq!(names, ["c", "log", "s.p", "src", "v", "w"]);
    }
}
