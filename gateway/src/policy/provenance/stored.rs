//! Where a statement's stores put classified data: per destination column, what it
//! receives, resolved as the statement's outputs are.

use super::{ResolvedColumn, Resolver};
use crate::{
    policy::{
        catalog::Relation,
        derived::{DerivedColumn, ANY, TEMP_SCHEMA},
    },
    sql::{OutputItem, StatementFacts, Store, StoredColumns, UNNAMED},
};

impl Resolver<'_> {
    /// The destination columns the statement fills with classified or untraceable values.
    pub fn stored(&self, facts: &StatementFacts) -> Vec<DerivedColumn> {
        let mut derived = Vec::new();
        for store in &facts.stores {
            for (schema, relation) in self.places(store) {
                for (column, class) in self.received(store, relation) {
                    let already = relation.is_some_and(|r| self.declared_as(r, &column, &class));
                    if (class.unknown || !class.categories.is_empty()) && !already {
                        derived.push(DerivedColumn {
                            schema: schema.clone(),
                            table: store.target.name.clone(),
                            column,
                            class,
                        });
                    }
                }
            }
        }
        derived
    }

    /// Where the destination is: a new table in the schema written (any schema when none:
    /// where it lands depends on the search path); an existing one wherever the catalog finds
    /// its name (all of them when several could be meant).
    fn places(&self, store: &Store) -> Vec<(String, Option<&Relation>)> {
        if store.temporary {
            return vec![(TEMP_SCHEMA.to_owned(), None)];
        }
        let found = match store.new_table {
            true => Vec::new(),
            false => self.lookup(&store.target),
        };
        if found.is_empty() {
            let schema = store.target.schema.as_deref().unwrap_or(ANY);
            return vec![(schema_key(schema), None)];
        }
        found
            .into_iter()
            .map(|relation| (schema_key(&relation.schema), Some(relation)))
            .collect()
    }

    /// What each destination column receives ([`ANY`]: it cannot be told which column).
    fn received(
        &self,
        store: &Store,
        relation: Option<&Relation>,
    ) -> Vec<(String, ResolvedColumn)> {
        match &store.columns {
            StoredColumns::Named(columns) => columns
                .iter()
                .map(|(column, lineage)| (column.clone(), self.lineage(lineage, 0)))
                .collect(),
            StoredColumns::Whole(lineage) => vec![(ANY.to_owned(), self.lineage(lineage, 0))],
            StoredColumns::InOrder(items) => {
                // A new table takes the select list's names; an existing one the catalog does
                // not know (created earlier in the same request, say) could be filled in any
                // order.
                let names = match (relation, store.new_table) {
                    (Some(relation), _) => {
                        Some(relation.columns.iter().map(|(_, n)| n.clone()).collect())
                    }
                    (None, true) => self.item_names(items),
                    (None, false) => None,
                };
                match (names, self.outputs(items, 0)) {
                    (Some(names), Some(columns)) if names.len() >= columns.len() => {
                        names.into_iter().zip(columns).collect()
                    }
                    (_, columns) => vec![(ANY.to_owned(), merged(columns))],
                }
            }
        }
    }

    /// A column the policy declares with these categories already holds such values as
    /// they are (a copy within a PHI table adds no second home); a computed value is new.
    fn declared_as(&self, relation: &Relation, column: &str, class: &ResolvedColumn) -> bool {
        let Some(declared) = self
            .classes
            .column(&relation.schema, &relation.name, column)
        else {
            return false;
        };
        class.direct && !class.unknown && class.categories.iter().all(|c| c == declared)
    }

    /// The column names a new table takes from a select list (`*` through the catalog). A
    /// name the server chooses in a way the text does not tell is [`ANY`]: what that column
    /// holds is filed under every column of the table rather than under a guess.
    fn item_names(&self, items: &[OutputItem]) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for item in items {
            match item {
                OutputItem::Column { name, .. } if name == UNNAMED => names.push(ANY.to_owned()),
                OutputItem::Column { name, .. } => names.push(name.clone()),
                OutputItem::Expand(relation) => {
                    let found = self.lookup(relation);
                    let [relation] = found.as_slice() else {
                        return None;
                    };
                    names.extend(relation.columns.iter().map(|(_, name)| name.clone()));
                }
            }
        }
        Some(names)
    }
}

/// Temporary tables of every session live in `pg_temp_N` schemas.
fn schema_key(schema: &str) -> String {
    match schema == "pg_temp" || schema.starts_with("pg_temp_") {
        true => TEMP_SCHEMA.to_owned(),
        false => schema.to_owned(),
    }
}

/// Everything a list of columns holds, as one value (unknown when it could not be resolved).
fn merged(columns: Option<Vec<ResolvedColumn>>) -> ResolvedColumn {
    let Some(columns) = columns else {
        return ResolvedColumn {
            unknown: true,
            ..Default::default()
        };
    };
    let mut all = ResolvedColumn::default();
    for column in columns {
        all.merge(column);
    }
    all.direct = false;
    all
}
