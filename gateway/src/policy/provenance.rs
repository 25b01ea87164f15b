//! Where a statement's output values come from, in terms of classified columns: parser lineage
//! resolved through the catalog (views expanded), and the origins PostgreSQL reports in
//! RowDescription. Anything that cannot be traced is `unknown`, and masked when it matters.
//! Columns agents filled from classified data carry what they were filled from (see
//! [`super::derived`]).

mod stored;

use std::collections::BTreeSet;

use super::{
    catalog::{Catalog, Relation, RelationKind},
    derived::DerivedColumn,
    rules::{Category, TargetClassification},
};
use crate::sql::{Lineage, OutputItem, RelationName, Source, StatementFacts, StatementKind};

/// Views over views are followed this deep; deeper is unknown.
const MAX_VIEW_DEPTH: usize = 16;

/// Catalog tables that hold sample values of every column (planner statistics, behind the
/// `pg_stats` views): nothing says which table the values come from, so they are untraceable.
const SAMPLED_VALUES: [&str; 2] = ["pg_statistic", "pg_statistic_ext_data"];

fn holds_sampled_values(relation: &Relation) -> bool {
    relation.schema == "pg_catalog" && SAMPLED_VALUES.contains(&relation.name.as_str())
}

/// What one output column carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedColumn {
    pub categories: BTreeSet<Category>,
    /// Exactly a column's value, not computed from it.
    pub direct: bool,
    pub unknown: bool,
}

impl ResolvedColumn {
    fn merge(&mut self, other: ResolvedColumn) {
        self.categories.extend(other.categories);
        self.direct &= other.direct;
        self.unknown |= other.unknown;
    }
}

/// What a statement touches and returns, for policy and masking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Categories of the classified columns the statement returns.
    pub categories: BTreeSet<Category>,
    /// It reads or writes a relation with classified columns (directly or through views).
    pub classified: bool,
    /// Something in it could not be traced (a relation not in the catalog, a function that
    /// is not a known pure transform, an output the parser could not align).
    pub unknown: bool,
    /// One entry per output column, or None when the parser's list cannot be aligned with
    /// the columns (a `*` over a relation the catalog does not have).
    pub outputs: Option<Vec<ResolvedColumn>>,
    /// The destination columns it fills with classified or untraceable values.
    pub stored: Vec<DerivedColumn>,
}

pub struct Resolver<'a> {
    pub catalog: Option<&'a Catalog>,
    pub classes: &'a TargetClassification,
}

impl Resolver<'_> {
    pub fn resolve(&self, facts: &StatementFacts) -> Resolved {
        let mut resolved = Resolved::default();
        for relation in facts.reads.iter().chain(&facts.writes) {
            let (classified, unknown) = self.relation_touch(relation, 0);
            resolved.classified |= classified;
            resolved.unknown |= unknown;
        }
        // Procedural code reads whatever it likes; what it returns and raises is untraceable.
        resolved.unknown |= matches!(facts.kind, StatementKind::Do | StatementKind::Call);
        resolved.outputs = self.outputs(&facts.outputs, 0);
        // Nothing is derived on a target without classified data.
        if !facts.stores.is_empty() && !self.classes.is_empty() {
            resolved.stored = self.stored(facts);
        }
        match &resolved.outputs {
            Some(columns) => {
                for column in columns {
                    resolved
                        .categories
                        .extend(column.categories.iter().cloned());
                    resolved.unknown |= column.unknown;
                }
            }
            None => resolved.unknown = true,
        }
        resolved
    }

    /// The column a RowDescription origin (table OID, attribute number) names. A relation or
    /// column the catalog does not have (yet: it is read on demand) is unknown, never None:
    /// the parser's word for that position may be about another relation of the same name.
    pub fn origin(&self, table_oid: u32, attnum: i16) -> Option<ResolvedColumn> {
        if table_oid == 0 || attnum <= 0 {
            return None;
        }
        let catalog = self.catalog?;
        let unknown = ResolvedColumn {
            unknown: true,
            ..Default::default()
        };
        let Some(relation) = catalog.by_oid(table_oid) else {
            catalog.note_miss(table_oid);
            return Some(unknown);
        };
        match relation.attnum_index(attnum) {
            Some(index) => Some(self.relation_column(relation, index, 0)),
            None => Some(unknown),
        }
    }

    fn outputs(&self, items: &[OutputItem], depth: usize) -> Option<Vec<ResolvedColumn>> {
        let mut columns = Vec::with_capacity(items.len());
        for item in items {
            match item {
                OutputItem::Column { lineage, .. } => columns.push(self.lineage(lineage, depth)),
                OutputItem::Expand(name) => {
                    let relations = self.lookup(name);
                    // A name that means exactly one relation expands to its columns.
                    let [relation] = relations.as_slice() else {
                        return None;
                    };
                    columns.extend(
                        (0..relation.columns.len())
                            .map(|index| self.relation_column(relation, index, depth)),
                    );
                }
            }
        }
        Some(columns)
    }

    fn lineage(&self, lineage: &Lineage, depth: usize) -> ResolvedColumn {
        let mut column = ResolvedColumn {
            categories: BTreeSet::new(),
            direct: lineage.direct && lineage.sources.len() == 1,
            unknown: lineage.unknown,
        };
        for source in &lineage.sources {
            column.merge(self.source(source, depth));
        }
        column
    }

    fn source(&self, source: &Source, depth: usize) -> ResolvedColumn {
        match source {
            Source::Column { relations, column } => {
                let mut resolved = ResolvedColumn {
                    direct: true,
                    ..Default::default()
                };
                let mut found = false;
                for name in relations {
                    for relation in self.lookup(name) {
                        if let Some(index) = relation.column_index(column) {
                            found = true;
                            resolved.merge(self.relation_column(relation, index, depth));
                        }
                    }
                    // Without the catalog's word, go by the classification's names.
                    for (_, columns) in self.classified_named(name) {
                        if let Some(category) = columns.get(column) {
                            resolved.categories.insert(category.clone());
                        }
                    }
                    let derived = self.classes.derived();
                    if let Some(derived) =
                        derived.column(name.schema.as_deref(), &name.name, column)
                    {
                        resolved.merge(derived);
                    }
                }
                resolved.unknown |= !found;
                resolved
            }
            Source::WholeRow(name) => {
                let mut resolved = ResolvedColumn::default();
                let relations = self.lookup(name);
                for relation in &relations {
                    for index in 0..relation.columns.len() {
                        resolved.merge(self.relation_column(relation, index, depth));
                    }
                }
                for (_, columns) in self.classified_named(name) {
                    resolved.categories.extend(columns.values().cloned());
                }
                if let Some(derived) = self
                    .classes
                    .derived()
                    .row(name.schema.as_deref(), &name.name)
                {
                    resolved.merge(derived);
                }
                resolved.unknown |= relations.is_empty();
                resolved.direct = false;
                resolved
            }
        }
    }

    /// Column `index` of a relation: a table's classification, or a view column's lineage.
    fn relation_column(&self, relation: &Relation, index: usize, depth: usize) -> ResolvedColumn {
        match relation.kind {
            RelationKind::Table => {
                let name = &relation.columns[index].1;
                let mut column = ResolvedColumn {
                    categories: self
                        .classes
                        .column(&relation.schema, &relation.name, name)
                        .cloned()
                        .into_iter()
                        .collect(),
                    direct: true,
                    unknown: holds_sampled_values(relation),
                };
                let derived = self.classes.derived();
                if let Some(derived) = derived.column(Some(&relation.schema), &relation.name, name)
                {
                    column.merge(derived);
                }
                column
            }
            RelationKind::View => self
                .view_outputs(relation, depth)
                .and_then(|mut columns| {
                    (columns.len() == relation.columns.len()).then(|| columns.swap_remove(index))
                })
                .unwrap_or(ResolvedColumn {
                    unknown: true,
                    ..Default::default()
                }),
        }
    }

    fn view_outputs(&self, view: &Relation, depth: usize) -> Option<Vec<ResolvedColumn>> {
        if depth >= MAX_VIEW_DEPTH {
            return None;
        }
        let analysis = view.view_analysis().as_ref().ok()?;
        let [statement] = analysis.statements.as_slice() else {
            return None;
        };
        self.outputs(&statement.outputs, depth + 1)
    }

    /// Does reading or writing this relation touch classified columns; is it unknown?
    fn relation_touch(&self, name: &RelationName, depth: usize) -> (bool, bool) {
        let derived = self.classes.derived();
        let mut classified = self.classified_named(name).next().is_some()
            || derived.row(name.schema.as_deref(), &name.name).is_some();
        let relations = self.lookup(name);
        let mut unknown = relations.is_empty();
        for relation in relations {
            match relation.kind {
                RelationKind::Table => {
                    classified |= self
                        .classes
                        .table(&relation.schema, &relation.name)
                        .is_some()
                        || derived
                            .row(Some(&relation.schema), &relation.name)
                            .is_some();
                    unknown |= holds_sampled_values(relation);
                }
                RelationKind::View if depth >= MAX_VIEW_DEPTH => unknown = true,
                RelationKind::View => match relation.view_analysis() {
                    Ok(analysis) => {
                        for inner in analysis.statements.iter().flat_map(|s| &s.reads) {
                            let (c, u) = self.relation_touch(inner, depth + 1);
                            classified |= c;
                            unknown |= u;
                        }
                    }
                    Err(_) => unknown = true,
                },
            }
        }
        (classified, unknown)
    }

    fn lookup(&self, name: &RelationName) -> Vec<&Relation> {
        self.catalog
            .map(|catalog| {
                catalog
                    .lookup(name.schema.as_deref(), &name.name)
                    .into_iter()
                    .map(|r| &**r)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn classified_named<'b>(
        &'b self,
        name: &'b RelationName,
    ) -> impl Iterator<Item = (&'b str, &'b std::collections::HashMap<String, Category>)> + 'b {
        self.classes
            .tables_named(&name.name)
            .filter(move |(schema, _)| name.schema.as_deref().is_none_or(|s| s == *schema))
    }
}

/// The column a result field carries, from both witnesses: the origin PostgreSQL reports
/// (exact for plain column references) and the parser's lineage at the same position.
pub fn combine(origin: Option<ResolvedColumn>, parsed: Option<&ResolvedColumn>) -> ResolvedColumn {
    match (origin, parsed) {
        (Some(mut origin), Some(parsed)) => {
            origin.categories.extend(parsed.categories.iter().cloned());
            origin.direct &= parsed.direct;
            // The server traced this field to a column: that is what it holds, whatever the
            // parser could not follow.
            origin
        }
        (Some(origin), None) => origin,
        (None, Some(parsed)) => parsed.clone(),
        (None, None) => ResolvedColumn {
            unknown: true,
            ..Default::default()
        },
    }
}
